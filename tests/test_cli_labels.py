"""sortpoint labels issue / list / revoke."""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
import zxingcpp

from protocol.labels import public_key_from_text, verify_label
from tests.clitools import fails, run, run_json, setup_community


def _public_key(runner):
    return public_key_from_text(run_json(runner, "community", "list")[0]["label_public_key"])


def test_issue_prints_one_verifiable_payload_per_line(runner):
    setup_community(runner)
    lines = run(runner, "labels", "issue", "oak", "H1", "--count", "4").stdout.splitlines()
    assert len(lines) == 4 and len(set(lines)) == 4
    key = _public_key(runner)
    for line in lines:
        claims = verify_label(line, key)
        assert (claims.community, claims.household) == ("oak", "H1")


def test_issue_with_pdf_and_json(runner, tmp_path):
    setup_community(runner)
    pdf = tmp_path / "h2.pdf"
    out = run_json(runner, "labels", "issue", "oak", "H2", "--count", "3", "--pdf", str(pdf))
    assert out["pdf"] == str(pdf)
    payloads = sorted(label["payload"] for label in out["labels"])
    doc = pdfium.PdfDocument(pdf.read_bytes())
    try:
        image = doc[0].render(scale=200 / 72).to_pil()
    finally:
        doc.close()
    assert sorted(r.text for r in zxingcpp.read_barcodes(image)) == payloads


def test_unwritable_pdf_issues_nothing(runner, tmp_path):
    setup_community(runner)
    message = fails(
        runner,
        "labels",
        "issue",
        "oak",
        "H1",
        "--count",
        "2",
        "--pdf",
        str(tmp_path / "missing-dir" / "x.pdf"),
    )
    assert "cannot write" in message
    assert run_json(runner, "labels", "list", "oak") == []


def test_pdf_write_failure_rolls_the_labels_back(runner, tmp_path, monkeypatch):
    setup_community(runner)

    def disk_full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    result = run(
        runner,
        "labels",
        "issue",
        "oak",
        "H1",
        "--count",
        "2",
        "--pdf",
        str(tmp_path / "x.pdf"),
        exit_code=1,
    )
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("No space left on device")
    monkeypatch.undo()
    assert run_json(runner, "labels", "list", "oak") == []


def test_issue_errors(runner):
    setup_community(runner)
    assert "no household 'H9'" in fails(runner, "labels", "issue", "oak", "H9", "--count", "1")
    assert "no community" in fails(runner, "labels", "issue", "pine", "H1", "--count", "1")
    result = run(runner, "labels", "issue", "oak", "H1", "--count", "0", exit_code=2)
    assert "Traceback" not in result.stderr


def test_list_and_reprint(runner, tmp_path):
    setup_community(runner)
    issued = run_json(runner, "labels", "issue", "oak", "H1", "--count", "2")["labels"]
    run(runner, "labels", "issue", "oak", "H2", "--count", "1")
    listed = run_json(runner, "labels", "list", "oak", "H1")
    assert sorted(listed, key=lambda x: x["serial"]) == sorted(issued, key=lambda x: x["serial"])
    text = run(runner, "labels", "list", "oak").stdout.splitlines()
    assert len(text) == 3 and all(len(line.split("\t")) == 3 for line in text)
    pdf = tmp_path / "reprint.pdf"
    run(runner, "labels", "list", "oak", "--pdf", str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF")


def test_revoke(runner):
    setup_community(runner)
    serial = run_json(runner, "labels", "issue", "oak", "H1", "--count", "1")["labels"][0]["serial"]
    out = run_json(runner, "labels", "revoke", serial, "--reason", "lost bag")
    assert out["serial"] == serial and out["reason"] == "lost bag" and out["changed"] is True
    assert "already revoked (lost bag)" in run(runner, "labels", "revoke", serial).stdout
    assert run_json(runner, "labels", "list", "oak") == []
    assert len(run_json(runner, "labels", "list", "oak", "--all")) == 1
    assert "no label" in fails(runner, "labels", "revoke", "ZZZZZZZZZZ")


def test_list_all_marks_the_revoked_labels(runner):
    setup_community(runner)
    issued = run_json(runner, "labels", "issue", "oak", "H1", "--count", "2")["labels"]
    kept, lost = sorted(label["serial"] for label in issued)
    revoked_at = run_json(runner, "labels", "revoke", lost, "--reason", "lost bag")["revoked_at"]

    lines = run(runner, "labels", "list", "oak", "--all").stdout.splitlines()
    states = {line.split("\t")[1]: line.split("\t")[3] for line in lines}
    assert all(len(line.split("\t")) == 4 for line in lines)
    assert states == {kept: "active", lost: f"revoked {revoked_at} (lost bag)"}

    listed = {i["serial"]: i for i in run_json(runner, "labels", "list", "oak", "H1", "--all")}
    assert listed[kept]["revoked_at"] is None and listed[kept]["revoked_reason"] is None
    assert listed[lost]["revoked_at"] == revoked_at
    assert listed[lost]["revoked_reason"] == "lost bag"
    # without --all: only the active label, in the three columns and keys as before
    assert run(runner, "labels", "list", "oak").stdout.split("\t")[1] == kept
    assert set(run_json(runner, "labels", "list", "oak")[0]) == {"household", "serial", "payload"}

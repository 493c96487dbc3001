"""Replace one ``## Section`` of docs/performance.md, leaving other sections alone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "docs" / "performance.md"


def update_section(title: str, body: str, path: Path = DOC_PATH) -> None:
    """Replace (or append) the ``## title`` section of ``path`` with ``body``."""
    # re-read right before writing: other benchmarks own other sections
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"## {title}\n\n{body.rstrip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text.rstrip() + "\n")

"""The ``kiosk`` command line: run the station (real or simulated), calibrate, self-test, status.

Every command takes ``--help``; ``selftest``, ``status``, ``requeue`` and ``scan-image`` take
``--json``.  A config or hardware error is one line on stderr and exit status 2 (usage) or 1,
never a traceback.  See docs/simulator.md for ``run --sim``.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

import click

from hardware import HardwareError
from kiosk import KioskError

DEMO_KIOSK_FILE = "demo-kiosk.json"
DEMO_LABELS_FILE = "demo-labels.txt"
#: the simulator's log, in its state dir: the terminal is the resident's transcript
SIM_LOG_FILE = "kiosk-sim.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the --config every command but ``run`` and ``status`` requires (they take ``--sim`` instead)
config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
)


def _log_level(verbose: int, default: int) -> int:
    return {0: default, 1: logging.INFO}.get(verbose, logging.DEBUG)


def _setup_logging(verbose: int, default: int) -> None:
    logging.basicConfig(level=_log_level(verbose, default), stream=sys.stderr, format=LOG_FORMAT)


def _setup_sim_logging(verbose: int, state_dir: Path) -> Path:
    """Send the log, Python warnings too, to ``<state_dir>/kiosk-sim.log``; return its path.

    Not stderr: in a terminal it would land between the screens the resident reads.
    """
    path = state_dir / SIM_LOG_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=1_000_000, backupCount=1, encoding="utf-8"
        )
    except OSError as exc:
        raise click.ClickException(f"cannot start: cannot write the log {path}: {exc}") from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=_log_level(verbose, logging.WARNING), handlers=[handler])
    logging.captureWarnings(True)
    return path


def _load(config_path: str):
    from kiosk.config import load_config

    try:
        return load_config(config_path)
    except KioskError as exc:
        raise click.ClickException(str(exc)) from None


def _open_journal(config):
    """Open the configured journal with its configured outbox limit and warn ratio."""
    from kiosk.journal import Journal

    return Journal(
        config.journal_path,
        outbox_limit=config.journal.outbox_limit,
        outbox_warn_ratio=config.journal.outbox_warn_ratio,
    )


def _instance_dir() -> Path:
    return Path(os.environ.get("SORTPOINT_INSTANCE_PATH") or "var")


def _sim_config(config_path: str | None, state_dir: str | None):
    """Return the config a simulated kiosk runs with (a file, or the backend demo's kiosk)."""
    from kiosk.config import sim_config_from_demo

    if config_path:
        config = _load(config_path)
        if state_dir:
            import msgspec

            config = msgspec.structs.replace(
                config,
                kiosk=msgspec.structs.replace(
                    config.kiosk, state_dir=str(Path(state_dir).resolve())
                ),
            )
        return config
    demo = _instance_dir() / DEMO_KIOSK_FILE
    if not demo.exists():
        raise click.ClickException(
            f"{demo} not found: start the backend demo first (scripts/demo, or `sortpoint demo seed`),"
            " or give --config FILE"
        )
    try:
        return sim_config_from_demo(
            demo, Path(state_dir or _instance_dir() / "kiosk-sim").resolve()
        )
    except KioskError as exc:
        raise click.ClickException(str(exc)) from None


def _station_config(config_path: str | None, sim: bool, state_dir: str | None):
    """Return the config of the kiosk a command is about: ``--config FILE`` or ``--sim``."""
    if sim:
        return _sim_config(config_path, state_dir)
    if state_dir:
        raise click.UsageError("--state-dir needs --sim")
    if not config_path:
        raise click.UsageError("give --config FILE (or --sim)")
    return _load(config_path)


def _with_ui(config, ui_port: int | None):
    """Return ``config`` with the touch-screen page on ``ui_port`` (unchanged if None)."""
    if ui_port is None:
        return config
    import msgspec

    ui = msgspec.structs.replace(config.ui, enabled=True, port=ui_port)
    return msgspec.structs.replace(config, ui=ui)


@click.group()
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output (-v info, -vv debug): on stderr, or in <state_dir>/kiosk-sim.log"
    " for run --sim.",
)
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Run and look after a sortpoint kiosk."""
    ctx.obj = {"verbose": verbose}


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Kiosk TOML config.",
)
@click.option(
    "--sim",
    is_flag=True,
    help="Simulated hardware driven from the terminal (or --script).",
)
@click.option(
    "--script",
    "script",
    type=click.File("r"),
    help="With --sim: read commands from FILE.",
)
@click.option(
    "--real-time",
    is_flag=True,
    help="With --script: wait in real seconds, not virtual.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="With --sim: where the journal lives.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(dir_okay=False, exists=True),
    help="With --sim: HOUSEHOLD<TAB>SERIAL<TAB>PAYLOAD lines for `label N` (default: the demo's).",
)
@click.option(
    "--ui-port",
    type=click.IntRange(0, 65535),
    help="Serve the touch-screen page on [ui] host (127.0.0.1) at this port (0: any free"
    " port); overrides [ui]. Off in --sim unless given.",
)
@click.pass_context
def run(ctx, config_path, sim, script, real_time, state_dir, labels_path, ui_port) -> None:
    """Run the kiosk: `--config FILE` on real hardware, or `--sim [--script FILE]`."""
    verbose = ctx.obj["verbose"]
    if script and not sim:
        raise click.UsageError("--script needs --sim")
    config = _with_ui(_station_config(config_path, sim, state_dir), ui_port)
    if not sim:
        _setup_logging(verbose, logging.INFO)
        from kiosk.station import Station

        try:
            station = Station(config)
        except (KioskError, HardwareError, OSError) as exc:
            raise click.ClickException(f"cannot start: {exc}") from None
        station.run()
        return
    log_path = _setup_sim_logging(verbose, config.state_path)
    from kiosk.sim import build_sim_station, read_labels, run_interactive, run_script

    demo_labels = _instance_dir() / DEMO_LABELS_FILE
    if labels_path is None and config_path is None and demo_labels.exists():
        labels_path = demo_labels
    labels = read_labels(labels_path) if labels_path else []
    virtual = script is not None and not real_time
    click.echo(
        f"kiosk {config.kiosk.name} (simulated) -> {config.backend.url}; state in"
        f" {config.kiosk.state_dir}; log in {log_path}"
    )
    try:
        station, screen = build_sim_station(config, virtual=virtual)
    except (KioskError, HardwareError, OSError) as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    if station.ui is not None:
        click.echo(f"touch-screen page: {station.ui.url}")
    if script is not None:
        sys.exit(run_script(station, screen, script, virtual=virtual, labels=labels))
    sys.exit(run_interactive(station, screen, labels=labels))


@main.command()
@config_option
@click.option(
    "--known-g",
    required=True,
    type=click.IntRange(min=1),
    help="The calibration mass in grams.",
)
@click.option(
    "--scale",
    "scale_name",
    default="main",
    show_default=True,
    help="Which scale ([scales.NAME]).",
)
@click.option("--yes", is_flag=True, help="Do not wait for Enter (the mass is already handled).")
@click.pass_context
def calibrate(ctx, config_path, known_g, scale_name, yes) -> None:
    """Tare the empty scale, weigh a known mass, write <state_dir>/calibration.toml."""
    _setup_logging(ctx.obj["verbose"], logging.WARNING)
    from kiosk.calibrate import calibrate_scale, write_calibration
    from kiosk.config import build_driver

    config = _load(config_path)
    spec = config.scale if scale_name == "main" else config.scales.get(scale_name)
    if spec is None:
        raise click.ClickException(f"no scale {scale_name!r} in {config_path}")
    if scale_name != "main":
        raise click.ClickException(
            "calibration.toml holds the [scale] table only: calibrate [scales.*] by hand"
        )
    _refuse_if_running(config)

    def place_mass() -> None:
        click.echo(f"Tare done. Put the {known_g} g mass on the platform.")
        if not yes:
            click.pause("Press any key when it is still...")

    click.echo("Make sure the platform is empty; taring...")
    scale = build_driver("scale", spec)
    try:
        result = calibrate_scale(scale, known_g, place_mass)
    except (HardwareError, ValueError) as exc:
        raise click.ClickException(f"calibration failed: {exc}") from None
    finally:
        scale.close()
    click.echo(result.message)
    if result.values:
        path = write_calibration(config.calibration_path, result.values)
        click.echo(f"wrote {path}; restart the kiosk to use it")
    if not result.ok:
        sys.exit(1)


def _refuse_if_running(config) -> None:
    from kiosk.status import read_status

    status = read_status(config.state_path)
    if status and status.get("running"):
        raise click.ClickException(
            f"the kiosk is running (pid {status.get('pid')}): stop it first (systemctl stop sortpoint-kiosk)"
        )


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
def selftest(ctx, config_path, as_json) -> None:
    """Test each door, the scanner, the scale, the backend and the journal: PASS/FAIL each."""
    _setup_logging(ctx.obj["verbose"], logging.WARNING)
    from kiosk.parts import build_hardware
    from kiosk.selftest import run_selftest
    from kiosk.sync import BackendClient

    config = _load(config_path)
    _refuse_if_running(config)
    backend = config.backend
    try:
        hardware = build_hardware(config)
    except (HardwareError, OSError) as exc:
        raise click.ClickException(f"cannot open the hardware: {exc}") from None
    client = BackendClient(
        backend.url, backend.kiosk_id, backend.secret, min(backend.timeout_s, 5.0)
    )
    journal = _open_journal(config)
    try:
        checks = run_selftest(hardware, client, journal)
    finally:
        hardware.close()
        journal.close()
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        for check in checks:
            click.echo(check.line())
    if not all(c.ok for c in checks):
        sys.exit(1)


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Kiosk TOML config.",
)
@click.option(
    "--sim",
    is_flag=True,
    help="The simulated kiosk `kiosk run --sim` runs (with the same --config and --state-dir).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="With --sim: where its journal lives.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(config_path, sim, state_dir, as_json) -> None:
    """Show the state, outbox depth, last sync and faults (works while the kiosk runs)."""
    from kiosk.status import read_status

    config = _station_config(config_path, sim, state_dir)
    station = read_status(config.state_path) or {}
    journal_status = {}
    if config.journal_path.exists():
        journal = _open_journal(config)  # its outbox_capacity fault uses the configured ratio
        try:
            journal_status = journal.status()
        finally:
            journal.close()
    report = {"kiosk": config.kiosk.name, "station": station, "journal": journal_status}
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(_status_text(report))


def _ago(ts, now: float | None = None) -> str:
    """Return a wall-clock time and how long ago it was (or that it is ahead of this clock)."""
    if not ts:
        return "never"
    age_s = (time.time() if now is None else now) - ts
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    # a stamp another clock wrote (a copied journal, or this clock set back since) can be
    # ahead of ours: say so rather than print a negative age
    if age_s <= -1:
        return f"{when} ({int(-age_s)} s ahead of this machine's clock)"
    return f"{when} ({max(0, int(age_s))} s ago)"


def _status_text(report: dict) -> str:
    station, journal = report["station"], report["journal"]
    running = "running" if station.get("running") else "NOT running"
    lines = [f"kiosk {report['kiosk']}: {running}"]
    if station:
        lines.append(f"state: {station.get('state')}  (screen: {station.get('screen')!r})")
        if station.get("fault"):
            lines.append(f"FAULT {station['fault'].get('kind')}: {station['fault'].get('reason')}")
        lines.append(f"status written: {_ago(station.get('updated_at'))}")
    if journal:
        lines.append(
            f"outbox: {journal['outbox_depth']} of {journal['outbox_limit']} awaiting upload"
        )
        lines.append("deposits: " + ", ".join(f"{k} {v}" for k, v in journal["states"].items()))
        lines.append(
            f"last sync: {_ago(journal.get('last_sync_at'))}; last ok: {_ago(journal.get('last_sync_ok_at'))}"
        )
        if journal.get("last_sync_error"):
            lines.append(f"last sync error: {journal['last_sync_error']}")
        for fault in journal.get("faults") or []:
            lines.append(f"FAULT {fault['key']}: {fault['message']}")
    else:
        lines.append("no journal yet")
    return "\n".join(lines)


@main.command()
@config_option
def reset(config_path) -> None:
    """Ask the running kiosk to clear its fault (after the cause has been fixed)."""
    from kiosk.status import request_reset

    config = _load(config_path)
    path = request_reset(config.state_path, by=os.environ.get("USER", "technician"))
    click.echo(f"reset requested ({path}); `kiosk status` shows the result")


@main.command()
@config_option
@click.argument("deposit_id", required=False)
@click.option("--all-held", is_flag=True, help="Requeue every held deposit instead of one id.")
@click.option("--json", "as_json", is_flag=True, help="Print what was requeued as JSON.")
def requeue(config_path, deposit_id, all_held, as_json) -> None:
    """Put a held, rejected or conflicting deposit back in the upload queue (kiosk may run)."""
    if bool(deposit_id) == all_held:
        raise click.UsageError("give one DEPOSIT_ID or --all-held")
    config = _load(config_path)
    if not config.journal_path.exists():
        raise click.ClickException(f"no journal at {config.journal_path}: nothing to requeue")
    journal = _open_journal(config)
    try:
        targets = _held(journal) if all_held else [_requeueable(journal, deposit_id)]
        done = []
        for deposit in targets:
            journal.requeue(deposit.id)  # re-checks the state in its own transaction
            done.append(_requeued(deposit))
    except KioskError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        journal.close()
    if as_json:
        click.echo(json.dumps({"requeued": done}, indent=2))
        return
    for item in done:
        click.echo(f"requeued {item['id']} (was {item['was']}: {item['reason']})")
    click.echo(
        f"{len(done)} deposit(s) back in the upload queue; the kiosk uploads them at its next sync"
    )


def _requeueable(journal, deposit_id: str):
    """Return the deposit if staff may requeue it; a clear error naming its state otherwise."""
    deposit = journal.get(deposit_id)  # JournalError: no such deposit
    held = deposit.state == "recorded" and deposit.held_reason is not None
    if not (held or deposit.state in ("rejected", "conflict")):
        state = "queued for upload" if deposit.state == "recorded" else repr(deposit.state)
        raise KioskError(
            f"deposit {deposit_id} is {state}: only held, rejected or conflict deposits"
            " can be requeued"
        )
    return deposit


def _held(journal) -> list:
    depth = journal.outbox_depth()
    recorded = journal.deposits(("recorded",), limit=max(1, depth))
    return [deposit for deposit in recorded if deposit.held_reason]


def _requeued(deposit) -> dict:
    if deposit.state == "recorded":
        return {"id": deposit.id, "was": "held", "reason": deposit.held_reason}
    reason = deposit.error_message or deposit.error_code or deposit.sync_status
    return {"id": deposit.id, "was": deposit.state, "reason": reason}


@main.command("scan-image")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--decoder",
    type=click.Choice(["zxing", "pyzbar"]),
    default="zxing",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {file, payload}.")
def scan_image(files, decoder, as_json) -> None:
    """Decode QR labels in image files: one `FILE<TAB>PAYLOAD` line each (empty if none)."""
    from hardware.decode import scan_files

    try:
        results = scan_files(files, decoder=decoder)
    except HardwareError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([{"file": f, "payload": p} for f, p in results], indent=2))
        return
    for path, payload in results:
        click.echo(f"{path}\t{payload}")


if __name__ == "__main__":  # pragma: no cover
    main()

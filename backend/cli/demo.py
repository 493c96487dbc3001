"""``sortpoint demo``: seed the demo community and write its kiosk and label files."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app

from backend.core.cli import SortpointGroup, emit, json_option

demo_cli = SortpointGroup("demo", help="Seed a demo community.")


@demo_cli.command("seed")
@click.option(
    "--backend-url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="URL the demo kiosk should use, written to demo-kiosk.json.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write demo-kiosk.json and the labels (default: the instance folder).",
)
@json_option
def demo_seed(backend_url: str, out_dir: Path | None, as_json: bool) -> None:
    """Create the demo community once (re-running changes nothing) and write its files."""
    from backend import demo

    result = demo.seed(out_dir or Path(current_app.instance_path), backend_url)
    emit(result, as_json, demo.describe(result))

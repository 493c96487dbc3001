"""``kiosk run --sim``: the station on simulated hardware, driven from a terminal or a script.

Every driver is replaced by its fake (``hardware.fakes``); the backend, journal, flow and
sync are the real ones.  The commands, one per line, are listed in ``HELP`` (what ``help``
prints) and explained in docs/simulator.md.

In a script (``--script FILE``) time is virtual unless ``--real-time``: each command is
followed by as many loop steps as the machine needs (weighing, recovery), and ``wait N``
moves the clock N seconds.  ``expect`` passes when TEXT is part of a screen shown since the
previous command (or of the current one); a failed ``expect`` stops the script with exit
status 1.

The physical world (load on the scale, doors standing open) is saved in
``<state_dir>/sim-world.json`` after every command and restored at start, so a simulated kiosk
that is killed and restarted finds the bag still on the scale, as a real one would.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import msgspec

from hardware.fakes import FakeClock
from kiosk.config import KioskConfig
from kiosk.flow import BUSY_STATES

log = logging.getLogger(__name__)

WORLD_FILE = "sim-world.json"
#: the longest a script command may keep the machine busy (virtual seconds)
MAX_SETTLE_S = 600.0
#: the same bound in real time (interactive use, ``--real-time`` scripts)
MAX_REAL_SETTLE_S = 30.0

#: journal states of a deposit whose label has reached, or will reach, the backend (an
#: empty or interrupted deposit never leaves the kiosk, so its label is still unused)
LABEL_USED_STATES = ("open", "recorded", "synced", "rejected", "conflict")

NO_LABELS = "no labels: give --labels FILE (HOUSEHOLD<TAB>SERIAL<TAB>PAYLOAD lines)"

#: what ``help`` prints: every command the driver takes (a test holds the two together)
HELP = """\
commands, one per line (docs/simulator.md explains each):
  SP1.... | scan PAYLOAD     hold a label under the scanner
  label N                    scan the N-th label of the labels file
  label next | label         scan the first label this kiosk has not used yet
  label again                scan the last label scanned once more
  labels                     list the labels (those this kiosk used are marked)
  plastic | 2 | 2 paper      choose a bin: by category, by door, or both
  door N                     choose door N
  500 | 500g | drop 500      open the unlocked door and drop 500 g in
  open [N] | close [N]       open a door by hand / close it
  block [N] | repair [N]     jam a door's lock / clear the jam
  remove N                   take N g off the scale
  unstable | unstable off    keep the scale moving / stop
  scale fail | scale ok      the scale stops answering / answers again
  unplug | replug            pull out / plug in the scanner's cable
  cancel                     the resident gives up
  reset                      a technician clears a fault
  sync                       upload the outbox now
  wait N                     let N seconds pass
  status                     print the state, doors, weight, outbox and faults
  expect TEXT                (scripts) fail unless TEXT is on the screen
  expect-state STATE         (scripts) fail unless the flow is in STATE
  help | quit | exit         this list / stop the simulator
A bare number is a door while the kiosk asks for a bin, otherwise grams."""


class ScriptFailed(Exception):
    """An ``expect`` did not hold, or a command was not understood."""


# -- the simulated world --------------------------------------------------------------


def load_world(state_dir: str | Path) -> dict | None:
    """Return the saved world ``{"scale_g": {name: g}, "open_doors": [n]}``, or None."""
    try:
        world = json.loads((Path(state_dir) / WORLD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {
        "scale_g": dict(world.get("scale_g") or {}),
        "open_doors": list(world.get("open_doors") or []),
    }


def save_world(state_dir: str | Path, hardware) -> None:
    """Save the load on each fake scale and which doors stand open (atomically)."""
    world = {
        "scale_g": {name: scale.load_g for name, scale in hardware.scales.items()},
        "open_doors": sorted(n for n, slot in hardware.doors.items() if not slot.door.is_closed()),
    }
    path = Path(state_dir) / WORLD_FILE
    tmp = path.with_name(WORLD_FILE + ".tmp")
    tmp.write_text(json.dumps(world), encoding="utf-8")
    tmp.replace(path)


def simulated(config: KioskConfig, world: dict | None = None) -> KioskConfig:
    """Return ``config`` with every driver replaced by its fake, restoring a saved world.

    A table that already names the fake keeps its options (``initial_g``, ``settle_s``...);
    a real driver's options are dropped.  The saved world, when there is one, overrides the
    load on each scale and which doors stand open.
    """
    replace = msgspec.structs.replace

    def fake(spec, **saved):
        if spec is None:
            return None
        options = dict(spec.options) if spec.driver == "fake" else {}
        return replace(spec, driver="fake", options={**options, **saved})

    def scale(name, spec):
        if world is None or name not in world["scale_g"]:
            return fake(spec)
        return fake(spec, initial_g=int(world["scale_g"][name]))

    def door(spec):
        if world is None:
            return fake(spec)
        return fake(spec, start_open=spec.number in world["open_doors"])

    return replace(
        config,
        scanner=fake(config.scanner),
        scale=scale("main", config.scale),
        scales={name: scale(name, spec) for name, spec in config.scales.items()},
        doors=[door(d) for d in config.doors],
        indicator=fake(config.indicator),
        # door buttons ([[doors]] button_pin) then sit on the simulated header, not a Pi's
        gpio=replace(config.gpio, backend="sim"),
    )


# -- what the resident sees ------------------------------------------------------------


class SimScreen:
    """Print every new screen text, and keep them for ``expect``."""

    def __init__(self, out: IO[str] = sys.stdout):
        self.out = out
        self.text = ""
        self.tone = "info"
        self.history: list[str] = []
        self._lock = threading.Lock()

    def show(self, text: str, *, tone: str = "info") -> None:
        """Print the text as the resident would read it (a repeat is not printed again)."""
        with self._lock:
            if text == self.text:
                return
            self.text, self.tone = text, tone
            self.history.append(text)
            del self.history[:-500]
        mark = {"ok": "+", "warn": "!", "error": "X"}.get(tone, ">")
        print(f"  [{mark}] {text}", file=self.out, flush=True)

    def mark(self) -> int:
        """Return a position in the history (``expect`` looks from here on)."""
        with self._lock:
            return len(self.history)

    def since(self, position: int) -> list[str]:
        """Return the texts shown since ``position``, and the current one."""
        with self._lock:
            return [*self.history[max(0, position - 1) :], self.text]


# -- the command driver ------------------------------------------------------------------


class SimDriver:
    """Turn simulator commands into actions on the fakes and events for the station."""

    def __init__(
        self,
        station,
        screen: SimScreen,
        *,
        virtual: bool,
        out: IO[str] = sys.stdout,
        labels: list[tuple[str, str]] | None = None,
    ):
        self.station = station
        #: (household, payload) pairs that ``label N`` scans, e.g. from demo-labels.txt
        self.labels = labels or []
        self.screen = screen
        self.virtual = virtual
        self.out = out
        self.hardware = station.hardware
        self._since = screen.mark()
        self.stopped = False
        #: the payload scanned last (``label again`` scans it once more)
        self.last_payload: str | None = None

    # -- running -----------------------------------------------------------------------

    def execute(self, line: str) -> None:
        """Run one command line; raise ScriptFailed when it cannot run or an expect fails."""
        line = line.strip()
        if not line or line.startswith("#"):
            return
        word, _, rest = line.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word == "expect":
            return self._expect(rest)
        if word == "expect-state":
            return self._expect_state(rest)
        self._since = self.screen.mark()
        handler = getattr(self, f"_cmd_{word.replace('-', '_')}", None)
        if handler is not None:
            handler(rest)
        elif line.startswith("SP1.") or word == "scan":
            self._scan(rest if word == "scan" else line)
        elif _is_grams(line) and not self._asks_for_bin():
            self._drop(_grams(line))
        else:
            self.station.post("choose", choice=line)
        self._save_world()
        self.settle()

    def settle(self) -> None:
        """Let the station act on the command: until it waits for the resident (bounded)."""
        if not self.virtual:
            self._settle_real_time()
            return
        station = self.station
        deadline_s = station.clock.monotonic() + MAX_SETTLE_S
        station.step()
        while (
            (station.flow.state in BUSY_STATES or not station.events.empty())
            and station.clock.monotonic() < deadline_s
            and not self.stopped
        ):
            station.step()

    def _settle_real_time(self) -> None:
        """Real time: wait until the loop has acted on the input and is not weighing (bounded).

        Nothing queued is not enough: the loop may have taken an event off the queue and not
        yet applied it (the state still the old one), and the scanner thread may have taken
        a scan from the scanner and not yet posted it.  So "not busy" must hold again after
        the loop step in progress and one whole step more.
        """
        station = self.station
        deadline_s = time.monotonic() + MAX_REAL_SETTLE_S

        def busy() -> bool:
            return (
                station.hardware.scanner.pending > 0
                or not station.events.empty()
                or station.flow.state in BUSY_STATES
            )

        def running() -> bool:
            return time.monotonic() < deadline_s and not self.stopped

        while running():
            time.sleep(3 * station.tick_s)  # the loop polls doors and scales each tick
            if busy():
                continue
            steps = station.steps
            while station.steps < steps + 2 and running():
                time.sleep(station.tick_s / 5)
            if not busy():
                return

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass: step through virtual time, or sleep for real."""
        if not self.virtual:
            time.sleep(seconds)
            return
        station = self.station
        end_s = station.clock.monotonic() + seconds
        while station.clock.monotonic() < end_s and not self.stopped:
            station.step()

    def _save_world(self) -> None:
        save_world(self.station.config.state_path, self.hardware)

    # -- helpers -------------------------------------------------------------------------

    def _asks_for_bin(self) -> bool:
        return self.station.flow.state == "choosing"

    def _door(self, rest: str):
        if rest:
            try:
                return self.hardware.doors[int(rest)].door
            except (ValueError, KeyError):
                raise ScriptFailed(f"no door {rest!r}") from None
        slot = self.station.flow.active_door()
        if slot is None:
            if len(self.hardware.doors) == 1:
                return next(iter(self.hardware.doors.values())).door
            raise ScriptFailed("which door? (no deposit in progress: give its number)")
        return slot.door

    def _scale(self):
        slot = self.station.flow.active_door()
        name = slot.scale if slot is not None else None
        scales = self.hardware.scales
        return scales.get(name) or next(iter(scales.values()))

    def _drop(self, grams: int) -> None:
        door = self._door("")
        if not door.is_closed() or door.open_by_hand():
            self._scale().place(grams)
            print(f"  (door open, {grams} g dropped)", file=self.out)
        else:
            print("  (the door is locked: nothing dropped)", file=self.out)

    # -- commands --------------------------------------------------------------------------

    def _cmd_drop(self, rest: str) -> None:
        if not _is_grams(rest):
            raise ScriptFailed(f"drop needs grams, not {rest!r}")
        self._drop(_grams(rest))

    def _cmd_open(self, rest: str) -> None:
        if not self._door(rest).open_by_hand():
            print("  (the door is locked: it does not open)", file=self.out)

    def _cmd_close(self, rest: str) -> None:
        self._door(rest).close_by_hand()

    def _cmd_block(self, rest: str) -> None:
        self._door(rest).block()

    def _cmd_repair(self, rest: str) -> None:
        self._door(rest).repair()

    def _cmd_remove(self, rest: str) -> None:
        self._scale().remove(_grams(rest))

    def _cmd_unstable(self, rest: str) -> None:
        self._scale().unstable(rest.lower() not in ("off", "no", "0", "false"))

    def _cmd_scale(self, rest: str) -> None:
        if rest == "fail":
            self._scale().fail("scale not responding (simulated)")
        elif rest == "ok":
            self._scale().recover()
        else:
            raise ScriptFailed("scale fail|ok")

    def _cmd_unplug(self, rest: str) -> None:
        self.hardware.scanner.unplug()

    def _cmd_replug(self, rest: str) -> None:
        self.hardware.scanner.replug()

    def _cmd_label(self, rest: str) -> None:
        which = rest.lower()
        if which == "again":
            self._scan_again()
            return
        if which in ("", "next"):
            number, note = self._first_unused_label(), ": the first one this kiosk has not used"
        else:
            number, note = self._label_number(rest), ""
        household, payload = self.labels[number - 1]
        print(f"  (scanning label {number}, of {household}{note})", file=self.out)
        self._scan(payload)

    def _cmd_labels(self, rest: str) -> None:
        if not self.labels:
            print(f"  ({NO_LABELS})", file=self.out)
            return
        used = self._used_labels()
        for number, (household, payload) in enumerate(self.labels, 1):
            mark = "  (used here)" if payload in used else ""
            print(f"  {number:>3}  {household:<12} {payload[:40]}...{mark}", file=self.out)

    def _scan(self, payload: str) -> None:
        self.last_payload = payload
        self.hardware.scanner.present(payload)

    def _scan_again(self) -> None:
        if self.last_payload is None:
            raise ScriptFailed("no label scanned yet: `label again` scans the last one once more")
        numbers = [n for n, (_, p) in enumerate(self.labels, 1) if p == self.last_payload]
        if numbers:
            household = self.labels[numbers[0] - 1][0]
            print(f"  (scanning label {numbers[0]} again, of {household})", file=self.out)
        else:
            print("  (scanning the last label again)", file=self.out)
        self._scan(self.last_payload)

    def _label_number(self, text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = 0
        if not 1 <= number <= len(self.labels):
            raise ScriptFailed(
                f"no label {text!r}: there are {len(self.labels)} (see `labels`);"
                " `label next` scans the first one this kiosk has not used"
            )
        return number

    def _used_labels(self) -> set[str]:
        """Return the payloads of the deposits this kiosk's journal holds for the backend."""
        journal = self.station.journal
        counts = journal.status()["states"]
        held = sum(counts.get(state, 0) for state in LABEL_USED_STATES)
        return {d.label for d in journal.deposits(LABEL_USED_STATES, limit=max(1, held))}

    def _first_unused_label(self) -> int:
        """Return the number of the first label of the list this kiosk has not used."""
        if not self.labels:
            raise ScriptFailed(NO_LABELS)
        used = self._used_labels()
        for number, (_, payload) in enumerate(self.labels, 1):
            if payload not in used:
                return number
        raise ScriptFailed(
            f"every one of the {len(self.labels)} labels has been used at this kiosk: issue more"
            " (`sortpoint labels issue COMMUNITY HOUSEHOLD --count N`; for the demo, `sortpoint"
            " demo seed` then lists them in demo-labels.txt), or scan a used one with `label N`"
        )

    def _cmd_door(self, rest: str) -> None:
        self.station.post("choose", choice=rest)

    def _cmd_cancel(self, rest: str) -> None:
        self.station.post("cancel")

    def _cmd_reset(self, rest: str) -> None:
        self.station.post("reset")

    def _cmd_sync(self, rest: str) -> None:
        if self.virtual:
            self.station.sync_now()
        else:
            self.station.syncer.wake()

    def _cmd_wait(self, rest: str) -> None:
        try:
            seconds = float(rest.rstrip("s"))
        except ValueError:
            raise ScriptFailed(f"wait needs seconds, not {rest!r}") from None
        self.wait(seconds)

    def _cmd_status(self, rest: str) -> None:
        status = self.station.status()
        journal = self.station.journal.status()
        print(
            f"  state {status['state']}; doors {status['doors']}; scale {status['weight_g']} g;"
            f" outbox {journal['outbox_depth']}; faults {[f['message'] for f in journal['faults']]}",
            file=self.out,
        )

    def _cmd_quit(self, rest: str) -> None:
        self.stopped = True
        self.station.stop()

    _cmd_exit = _cmd_quit

    def _cmd_help(self, rest: str) -> None:
        print(HELP, file=self.out)

    def _expect(self, text: str) -> None:
        shown = self.screen.since(self._since)
        if not any(text in screen for screen in shown):
            raise ScriptFailed(f"expected {text!r} on the screen; it showed: {shown!r}")
        print(f"  ok: {text!r}", file=self.out)

    def _expect_state(self, state: str) -> None:
        if self.station.flow.state != state:
            raise ScriptFailed(
                f"expected state {state!r}, the kiosk is in {self.station.flow.state!r}"
            )
        print(f"  ok: state {state}", file=self.out)


def _is_grams(text: str) -> bool:
    text = text.strip().lower().removesuffix("g").strip()
    return text.isdigit()


def _grams(text: str) -> int:
    if not _is_grams(text):
        raise ScriptFailed(f"not a weight in grams: {text!r}")
    return int(text.strip().lower().removesuffix("g").strip())


# -- entry points used by the command line ------------------------------------------------------


def build_sim_station(config: KioskConfig, *, virtual: bool, out: IO[str] = sys.stdout, **parts_kw):
    """Return a station on fakes (with the saved world restored) and its screen.

    ``parts_kw`` go to ``kiosk.parts.build_parts`` (a test's journal or backend client).
    """
    from kiosk.parts import build_parts
    from kiosk.station import Station

    world = load_world(config.state_path)
    config = simulated(config, world)
    screen = SimScreen(out)
    clock = FakeClock(start=time.time(), monotonic_start=1_000.0) if virtual else None
    kwargs = {"screen": screen, **parts_kw}
    if clock is not None:
        kwargs["clock"] = clock
    return Station(config, build_parts(config, **kwargs), threaded=not virtual), screen


def read_labels(path: str | Path) -> list[tuple[str, str]]:
    """Return (household, payload) from a ``HOUSEHOLD<TAB>SERIAL<TAB>PAYLOAD`` file."""
    labels = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[2].strip():
            labels.append((fields[0].strip(), fields[2].strip()))
    return labels


def run_script(
    station,
    screen: SimScreen,
    lines: Iterable[str],
    *,
    virtual: bool,
    out=sys.stdout,
    labels: list[tuple[str, str]] | None = None,
) -> int:
    """Run a script against a station; return 0, or 1 at the first failed line."""
    driver = SimDriver(station, screen, virtual=virtual, out=out, labels=labels)
    if virtual:
        station.start()
        driver.settle()
        return _run_lines(driver, lines, out, finish=station.shutdown)
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False}, daemon=True)
    runner.start()
    try:
        return _run_lines(driver, lines, out, finish=lambda: None)
    finally:
        station.stop()
        runner.join(timeout=10)


def _run_lines(driver: SimDriver, lines: Iterable[str], out, finish) -> int:
    try:
        for number, line in enumerate(lines, 1):
            text = line.rstrip("\n")
            if text.strip() and not text.lstrip().startswith("#"):
                print(f"{number:>3}> {text}", file=out, flush=True)
            try:
                driver.execute(text)
            except ScriptFailed as exc:
                print(f"FAILED at line {number}: {exc}", file=out, flush=True)
                return 1
            if driver.stopped:
                break
        return 0
    finally:
        finish()


def run_interactive(
    station,
    screen: SimScreen,
    *,
    inp: IO[str] = sys.stdin,
    out: IO[str] = sys.stdout,
    labels: list[tuple[str, str]] | None = None,
) -> int:
    """Run the station for real time; read commands from the terminal until ``quit``/EOF."""
    driver = SimDriver(station, screen, virtual=False, out=out, labels=labels)

    def read_commands() -> None:
        print(
            "kiosk simulator: scan a label (`label next`, or paste a payload), pick a bin, type"
            " grams, 'close'; 'help' lists every command, 'quit' stops",
            file=out,
        )
        for line in inp:
            try:
                driver.execute(line)
            except ScriptFailed as exc:
                print(f"  ? {exc}", file=out, flush=True)
            if driver.stopped:
                return
        station.stop()

    threading.Thread(target=read_commands, name="sim-input", daemon=True).start()
    station.run()
    return 0


__all__ = [
    "ScriptFailed",
    "SimDriver",
    "SimScreen",
    "build_sim_station",
    "load_world",
    "read_labels",
    "run_interactive",
    "run_script",
    "save_world",
    "simulated",
]

"""The station: hardware, journal, syncer and the deposit flow wired into one loop.

The station runs the flow and decides nothing about states: the chart (``kiosk.flow``) does.

* **Build.** ``kiosk.parts.build_parts(config)`` returns the typed ``StationParts``: every
  driver the config names (through the registry, with the station clock, so an all-fake
  station runs in virtual time), the journal, the syncer, the screen and the clocks.  A test
  or the simulator builds them with its own clock, screen, hardware, journal or client.
* **Loop.** Single-threaded: ``step()`` drains a bounded event queue (scans, choices,
  commands) into the flow (``offer``), passes door sensor changes on (``door_moved``), lets
  the flow read the scales, scanner and journal (``poll``) and fire its timeouts (``tick``),
  then does the housekeeping (sync, config refresh, reset requests, journal upkeep, status,
  watchdog).  In ``threaded`` mode (a Pi) the scanner and scales are read on daemon threads
  that only post events or update a window (``kiosk.monitors``); in inline mode (tests,
  scripted simulator) ``step()`` reads them itself and a fake's read moves virtual time.
* **Recovery.** On start every door is locked first; the flow then resolves every ``open``
  journal deposit in its ``recovering`` state.
* **Choosing a bin.** A push button per door (``[[doors]] button_pin``, polled and
  debounced by ``hardware.button_gpio``) and the touch-screen page (``kiosk.ui``, when
  ``[ui] enabled``) only post ``choose``/``cancel`` events to the queue; the flow decides.
* **Fail-secure.** Doors are locked on start, on exit, on SIGTERM and on any unhandled
  exception (``run()``'s ``finally``), and whenever the flow enters ``fault``.

``SORTPOINT_KIOSK_CRASH_AT`` injects crashes for the tests (``kiosk.crash``).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable

from statemachine.exceptions import TransitionNotAllowed

from kiosk.config import KioskConfig
from kiosk.doors import DoorLocker
from kiosk.flow import DepositFlow, FlowContext, FlowSettings, NoLabelKey
from kiosk.labels import LabelVerifier
from kiosk.monitors import InputMonitors
from kiosk.parts import StationParts, build_parts, rules_from_backend_config
from kiosk.status import take_reset_request, write_status
from kiosk.upkeep import JournalPruner

log = logging.getLogger(__name__)

#: how often the loop looks for a reset request or a config fetched by the sync thread
POLL_EVERY_S = 0.5
#: how often the status file is rewritten when nothing changes (real seconds)
STATUS_EVERY_S = 2.0
EVENT_QUEUE_SIZE = 256
#: journal meta key of the cached GET /api/v1/kiosk/config answer
BACKEND_CONFIG_META = "backend_config"


class _Entered:
    """Flow listener: note that a state was entered (the status file is rewritten then)."""

    def __init__(self) -> None:
        self.any = False

    def on_enter_state(self, state) -> None:
        self.any = True


class Station:
    """The running kiosk: one loop over the flow, fed by hardware and the syncer."""

    def __init__(
        self,
        config: KioskConfig,
        parts: StationParts | None = None,
        *,
        threaded: bool = True,
        tick_s: float = 0.05,
    ):
        parts = parts or build_parts(config)
        self.config, self.threaded, self.tick_s = config, threaded, tick_s
        self.hardware, self.journal, self.syncer = parts.hardware, parts.journal, parts.syncer
        self.screen, self.notifier, self.crash = parts.screen, parts.notifier, parts.crash
        self.clock, self.wall_clock = parts.clock, parts.wall_clock
        self.events: queue.Queue = queue.Queue(maxsize=EVENT_QUEUE_SIZE)
        self.events_dropped = 0
        self.steps = 0  # loop iterations completed
        # on a Pi an open door's lock() waits for it to shut: never in the loop
        self.locker = DoorLocker(background=threaded)
        weighing = config.weighing
        self.inputs = InputMonitors.build(
            self.hardware.scales,
            self.hardware.scanner,
            self.post,
            band_g=weighing.band_g,
            window_s=weighing.window_s,
            clock=self.clock,
        )
        self._load_backend_config()
        self._entered = _Entered()
        self.flow = DepositFlow(self._flow_context(), listeners=[self._entered, self.crash])
        self._init_schedule()
        self.buttons = self._build_buttons()
        try:
            self.ui = self._build_ui()
        except BaseException:
            if self.buttons is not None:
                self.buttons.close()
            raise

    # -- construction helpers ----------------------------------------------------------

    def _init_schedule(self) -> None:
        """Set the loop's bookkeeping: door states seen, when to sync, refresh, poll."""
        self._door_closed = {n: s.door.is_closed() for n, s in self.hardware.doors.items()}
        self._stopping = False
        self._started = False
        now_s = self.clock.monotonic()
        self._next_sync_s = now_s
        self._next_refresh_s = now_s + self.config.backend.config_refresh_s
        self._next_poll_s = now_s
        self._status_due_s = 0.0
        self._started_at = time.time()
        self.pruner = JournalPruner(
            self.journal, keep_synced_days=self.config.journal.keep_synced_days, clock=self.clock
        )

    def _build_buttons(self):
        """Return a poller over the configured push buttons, or None without any."""
        config = self.config
        pins = {
            ("door", d.number): (
                d.button_pin,
                f"button of door {d.number} ({d.category})",
            )
            for d in config.doors
            if d.button_pin is not None
        }
        if config.buttons.cancel_pin is not None:
            pins[("cancel", 0)] = (config.buttons.cancel_pin, "cancel button")
        if not pins:
            return None
        from hardware.button_gpio import build_button_poller

        return build_button_poller(
            pins,
            self._on_button,
            gpio=config.gpio.backend,
            active_low=config.buttons.active_low,
            debounce_s=config.buttons.debounce_ms / 1000,
            poll_s=config.buttons.poll_ms / 1000,
            clock=self.clock,
        )

    def _on_button(self, key) -> None:
        """A debounced press (any thread): choose that door's bin, or cancel."""
        kind, number = key
        if kind == "cancel":
            self.post("cancel")
            return
        # number and category: a door is meant even where two doors take one category
        self.post("choose", choice=f"{number} {self.hardware.doors[number].category}")

    def _build_ui(self):
        """Bind the touch-screen page's server when ``[ui] enabled`` (served from start())."""
        if not self.config.ui.enabled:
            return None
        from kiosk.ui import StationUi

        return StationUi(self, host=self.config.ui.host, port=self.config.ui.port)

    def _flow_context(self) -> FlowContext:
        return FlowContext(
            doors=self.hardware.doors,
            journal=self.journal,
            readings=self.inputs,
            verifier=self._require_verifier,
            screen=self.screen,
            indicator=self.hardware.indicator,
            clock=self.clock,
            wall_clock=self.wall_clock,
            settings=FlowSettings.from_config(self.config),
            rules=lambda: self._rules,
            locker=self.locker,
        )

    def _require_verifier(self) -> LabelVerifier:
        if self.verifier is None:
            raise NoLabelKey(self.verifier_error or "no label key")
        return self.verifier

    def _load_backend_config(self) -> None:
        """(Re)build the label verifier and points rules from the cached backend config."""
        cached = self.journal.get_meta(BACKEND_CONFIG_META)
        backend = self.config.backend
        self.verifier: LabelVerifier | None = None
        self.verifier_error: str | None = None
        try:
            self.verifier = LabelVerifier.from_backend_config(
                cached,
                community=backend.community,
                fallback_public_key=backend.label_public_key,
            )
        except ValueError as exc:
            self.verifier_error = str(exc)
        self._rules: dict[str, tuple[int, int]] = rules_from_backend_config(cached)
        self.category_names: dict[str, str] = {
            str(c.get("code")): str(c.get("name"))
            for c in (cached or {}).get("categories") or []
            if isinstance(c, dict) and c.get("code") and c.get("name")
        }
        self._config_loaded_at = self.journal.get_meta("backend_config_at")

    # -- events from other threads ---------------------------------------------------

    def post(self, name: str, **kwargs) -> bool:
        """Queue an event for the loop (thread-safe); drop and count it if the queue is full."""
        try:
            self.events.put_nowait((name, kwargs))
            return True
        except queue.Full:
            self.events_dropped += 1
            log.warning("event queue full: dropped %s", name)
            return False

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Lock every door, schedule recovery of open deposits, start inputs, tell systemd."""
        problems = self.hardware.lock_all(self.locker)
        if problems:
            self.flow.offer("fail", kind="door_jammed", reason="; ".join(problems))
        if not self.threaded:
            self.refresh_config()  # the syncer thread does this itself in threaded mode
        self.flow.resume()
        if self.threaded:
            self.inputs.start()
            self.syncer.start()
            if self.buttons is not None:
                self.buttons.start()
        if self.ui is not None:
            self.ui.refresh()
            self.ui.start()
        self._started = True
        self._write_status(force=True)
        self.notifier.ready(f"state {self.flow.state}")

    def run(self, *, install_signals: bool = True) -> None:
        """Start, loop until stopped, and always leave every door locked."""
        if install_signals and threading.current_thread() is threading.main_thread():
            # the handler only sets a flag: raising inside it could land in a library's bare
            # `except:` and be swallowed; the loop notices within one tick
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        try:
            self.start()
            while not self._stopping:
                self.step()
        finally:
            self.shutdown()

    def _on_signal(self, signum, frame) -> None:
        log.info("stopping on signal %s", signal.Signals(signum).name)
        self._stopping = True

    def stop(self) -> None:
        """Ask the loop to finish after the current step (thread-safe)."""
        self._stopping = True
        self.post("noop")

    def shutdown(self) -> None:
        """Lock every door, stop the threads, close hardware and journal."""
        self.notifier.stopping()
        problems = self.hardware.lock_all(self.locker)
        if problems:
            log.error("doors not locked at shutdown: %s", "; ".join(problems))
        if self.ui is not None:
            self.ui.stop()
        self.inputs.stop()
        if self.buttons is not None:
            self.buttons.close()
        if self.threaded and self._started:
            self.syncer.stop()
        try:
            self._write_status(force=True, stopped=True)
        except OSError:
            log.exception("cannot write the final status")
        self.hardware.close()
        self.journal.close()

    # -- the loop ------------------------------------------------------------------------

    def step(self) -> None:
        """Run one iteration: events, inputs, doors, the flow's watch and timeout, housekeeping."""
        started_s = self.clock.monotonic()
        self._drain_events(self.tick_s if self.threaded else 0.0)
        if not self.threaded:
            self.inputs.scanner.poll_once()
            if self.buttons is not None:
                self.buttons.poll_once()
            self.inputs.poll_scales()
            self._drain_events(0.0)
        self._watch_doors()
        self._run_flow(self.flow.poll)
        self._run_flow(self.flow.tick)
        self._housekeeping()
        if self.ui is not None:
            self.ui.refresh()  # the page reads this snapshot, never the flow itself
        self.steps += 1  # the simulator's real-time settle waits on it (kiosk/sim.py)
        if not self.threaded and self.clock.monotonic() == started_s:
            self.clock.sleep(self.tick_s)  # inline mode: time must move every step

    def _drain_events(self, wait_s: float) -> None:
        try:
            name, kwargs = (
                self.events.get(timeout=wait_s) if wait_s > 0 else self.events.get_nowait()
            )
        except queue.Empty:
            return
        while True:
            self._dispatch(name, kwargs)
            try:
                name, kwargs = self.events.get_nowait()
            except queue.Empty:
                return

    def _dispatch(self, name: str, kwargs: dict) -> None:
        if name == "noop":
            return
        if name == "quit":
            self._stopping = True
            return
        if name == "reset":
            log.warning("technician reset requested")
        self._run_flow(lambda: self.flow.offer(name, **kwargs))

    def _watch_doors(self) -> None:
        """Tell the flow of every door sensor change; it decides what the change means."""
        for number, slot in self.hardware.doors.items():
            closed = slot.door.is_closed()
            if closed != self._door_closed[number]:
                self._door_closed[number] = closed
                self._run_flow(lambda n=number, c=closed: self.flow.door_moved(n, c))

    def _run_flow(self, action: Callable[[], object]) -> None:
        """Run one flow call, then act on the states it entered (sync, status)."""
        try:
            action()
        except TransitionNotAllowed as exc:  # a timeout raced a transition: harmless, logged
            log.warning("%s", exc)
        self._after_transitions()

    def _after_transitions(self) -> None:
        """Sync a deposit the flow asks to upload; refresh the status when a state was entered."""
        if self.flow.take_upload_request():
            self._sync_soon()
        if not self._entered.any:
            return
        self._entered.any = False
        self.notifier.status(f"state {self.flow.state}")
        self._write_status(force=True)

    # -- sync and housekeeping -------------------------------------------------------------

    def _sync_soon(self) -> None:
        if self.threaded:
            self.syncer.wake()
        else:
            self.sync_now()
            self.flow.poll()  # the answer, if it came, shows at once

    def sync_now(self) -> None:
        """Upload the outbox now, in this thread; a failure is logged (the journal keeps all)."""
        try:
            report = self.syncer.sync_once()
            log.debug("sync: %s", report)
        except Exception as exc:  # noqa: BLE001 - the journal keeps all; the next attempt retries
            log.warning("sync failed: %s", exc)

    def refresh_config(self) -> None:
        """Fetch the backend config (keys, rules, revocations) and rebuild the verifier."""
        try:
            self.syncer.refresh_config()
        except Exception as exc:  # noqa: BLE001 - offline is normal: the cached config serves
            log.warning("config refresh failed (using the cached config): %s", exc)
        self._load_backend_config()
        backend = self.config.backend
        # without a label key the kiosk is out of order: try again at the sync pace, not hourly
        every_s = backend.config_refresh_s if self.verifier else backend.sync_interval_s
        self._next_refresh_s = self.clock.monotonic() + every_s

    def _housekeeping(self) -> None:
        now_s = self.clock.monotonic()
        if not self.threaded:
            if now_s >= max(self._next_sync_s, self.syncer.next_attempt_s):
                self._next_sync_s = now_s + self.config.backend.sync_interval_s
                self.sync_now()
            if now_s >= self._next_refresh_s:
                self.refresh_config()
        if now_s >= self._next_poll_s:
            self._next_poll_s = now_s + POLL_EVERY_S
            self._poll_outside_requests()
        if self.flow.at_rest():
            self.pruner.run_if_due()
        self.notifier.ping_if_due()
        self._write_status()

    def _poll_outside_requests(self) -> None:
        """Pick up a config the sync thread fetched, and a technician's reset request."""
        if self.threaded:
            fetched_at = self.journal.get_meta("backend_config_at")
            if fetched_at != self._config_loaded_at:
                self._load_backend_config()
        request = take_reset_request(self.config.state_path)
        if request is not None:
            self._run_flow(lambda: self.flow.reset_requested(request.get("by", "?")))

    def status(self) -> dict:
        """Return what ``kiosk status`` shows about the running station."""
        flow = self.flow
        monitor = self.inputs.monitor(None)
        return {
            "pid": os.getpid(),
            "kiosk": self.config.kiosk.name,
            "state": flow.state,
            "screen": getattr(self.screen, "text", None),
            "fault": {"kind": flow.fault_kind, "reason": flow.fault_reason}
            if flow.state == "fault"
            else None,
            "doors": {
                str(n): {
                    "closed": s.door.is_closed(),
                    "locked": getattr(s.door, "locked", None),
                }
                for n, s in self.hardware.doors.items()
            },
            "weight_g": monitor.last_g() if monitor else None,
            "scale_error": monitor.error if monitor else None,
            "scanner_error": self.inputs.scanner_error(),
            "events_dropped": self.events_dropped,
            "started_at": self._started_at,
            "updated_at": time.time(),
        }

    def _write_status(self, *, force: bool = False, stopped: bool = False) -> None:
        now_s = time.monotonic()  # real time: the file is for people and other processes
        if not force and now_s < self._status_due_s:
            return
        self._status_due_s = now_s + STATUS_EVERY_S
        status = self.status()
        status["stopped"] = stopped
        try:
            write_status(self.config.state_path, status)
        except OSError as exc:
            log.warning("cannot write the status file: %s", exc)

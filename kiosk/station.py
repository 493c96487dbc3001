"""The station: hardware, journal, syncer and the deposit flow wired into one loop.

* **Build.** ``kiosk.parts.build_hardware(config)`` constructs every driver the config names
  through the registry, with the station clock, so an all-fake station runs in virtual time.
* **Loop.** Single-threaded: ``step()`` drains a bounded event queue (scans, choices,
  commands), polls door sensors, asks the scale monitors for a stable weight, fires state
  timeouts and pings the watchdog.  In ``threaded`` mode (a Pi) the scanner and scales are
  read on daemon threads that only post events or update a window; in inline mode (tests,
  scripted simulator) ``step()`` reads them itself and a fake's read moves virtual time.
* **Recovery.** On start every door is locked first; every ``open`` journal deposit is then
  resolved by the flow's ``recovering`` state: once the doors are shut and the weight is
  stable, an increase of at least ``min_deposit_g`` over ``before_g`` is recorded with that
  net, anything else is marked interrupted.  The deposit id was the journal's before the door
  unlocked and is the backend's idempotency key, so nothing is lost or counted twice.
* **Choosing a bin.** A push button per door (``[[doors]] button_pin``, polled and
  debounced by ``hardware.button_gpio``) and the touch-screen page (``kiosk.ui``, when
  ``[ui] enabled``) only post ``choose``/``cancel`` events to the queue; the loop decides.
* **Fail-secure.** Doors are locked on start, on exit, on SIGTERM and on any unhandled
  exception (``run()``'s ``finally``), and whenever the flow enters ``fault``.
* **Faults.** ``door_left_open``, ``scale``, ``scanner``, ``outbox_full`` and ``config`` faults
  clear by themselves once their condition clears (checked every ``FAULT_CHECK_S``); every
  other fault (a jammed or forced door, an internal error) waits for a technician's
  ``kiosk reset`` (or ``reset`` in the simulator).

``SORTPOINT_KIOSK_CRASH_AT`` injects crashes for the tests (``kiosk.crash``).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import threading
import time

from statemachine.exceptions import TransitionNotAllowed

from hardware.clock import SYSTEM_CLOCK
from kiosk.config import KioskConfig
from kiosk.crash import CRASH_ENV, CrashHook, CrashingClient
from kiosk.doors import DoorLocker
from kiosk.flow import (
    SELF_CLEARING_FAULTS,
    DepositFlow,
    DoorSlot,
    FlowContext,
    NoLabelKey,
)
from kiosk.journal import Journal
from kiosk.labels import LabelVerifier
from kiosk.monitors import ScaleMonitor, ScannerPump
from kiosk.parts import (
    Hardware,
    LogScreen,
    build_hardware,
    flow_settings,
    rules_from_backend_config,
)
from kiosk.status import take_reset_request, write_status
from kiosk.systemd import Notifier
from kiosk.upkeep import JournalPruner

log = logging.getLogger(__name__)

#: how often a self-clearing fault's condition is checked
FAULT_CHECK_S = 1.0
#: how often the loop looks for a reset request or a config fetched by the sync thread
POLL_EVERY_S = 0.5
#: how often the status file is rewritten when nothing changes (real seconds)
STATUS_EVERY_S = 2.0
EVENT_QUEUE_SIZE = 256
#: journal meta key of the cached GET /api/v1/kiosk/config answer
BACKEND_CONFIG_META = "backend_config"


class _Entered:
    """Flow listener: remember the states entered, restart weighing windows at once."""

    def __init__(self, monitors: dict[str, ScaleMonitor]):
        self.states: list[str] = []
        self.monitors = monitors

    def on_enter_state(self, state) -> None:
        self.states.append(state.id)
        if state.id in ("weighing_after", "recovering"):
            # the weight "after" must come from samples taken after the door shut
            for monitor in self.monitors.values():
                monitor.restart()


class Station:
    """The running kiosk: one loop over the flow, fed by hardware and the syncer."""

    def __init__(
        self,
        config: KioskConfig,
        *,
        clock=SYSTEM_CLOCK,
        wall_clock=SYSTEM_CLOCK,
        threaded: bool = True,
        hardware: Hardware | None = None,
        journal: Journal | None = None,
        client=None,
        syncer=None,
        screen=None,
        notifier: Notifier | None = None,
        tick_s: float = 0.05,
        crash_at: str | None = None,
        rng: random.Random | None = None,
    ):
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self.threaded = threaded
        self.tick_s = tick_s
        self.screen = screen or LogScreen()
        self.notifier = notifier or Notifier()
        self.crash = CrashHook(crash_at if crash_at is not None else os.environ.get(CRASH_ENV))
        self.events: queue.Queue = queue.Queue(maxsize=EVENT_QUEUE_SIZE)
        self.events_dropped = 0
        self.steps = 0  # loop iterations completed
        config.state_path.mkdir(parents=True, exist_ok=True)
        self.hardware = hardware or build_hardware(config, clock)
        # on a Pi an open door's lock() waits for it to shut: never in the loop
        self.locker = DoorLocker(background=threaded)
        self.journal = journal or Journal(
            config.journal_path,
            outbox_limit=config.journal.outbox_limit,
            outbox_warn_ratio=config.journal.outbox_warn_ratio,
        )
        self.syncer = syncer or self._build_syncer(client, rng)
        self.monitors = self._build_monitors()
        self.scanner = ScannerPump(self.hardware.scanner, self.post)
        self.category_names: dict[str, str] = {}
        self.verifier: LabelVerifier | None = None
        self.verifier_error: str | None = None
        self._rules: dict[str, tuple[int, int]] = {}
        self._load_backend_config()
        self._entered = _Entered(self.monitors)
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

    def _build_monitors(self) -> dict[str, ScaleMonitor]:
        weighing = self.config.weighing
        return {
            name: ScaleMonitor(
                name,
                scale,
                band_g=weighing.band_g,
                window_s=weighing.window_s,
                clock=self.clock,
            )
            for name, scale in self.hardware.scales.items()
        }

    def _init_schedule(self) -> None:
        """Set the loop's bookkeeping: door states seen, when to sync, refresh, check."""
        self._door_closed = {n: s.door.is_closed() for n, s in self.hardware.doors.items()}
        self._stopping = False
        self._started = False
        now_s = self.clock.monotonic()
        self._next_sync_s = now_s
        self._next_refresh_s = now_s + self.config.backend.config_refresh_s
        self._next_fault_check_s = now_s
        self._next_poll_s = now_s
        self._status_due_s = 0.0
        self._started_at = time.time()
        self.pruner = JournalPruner(
            self.journal, keep_synced_days=self.config.journal.keep_synced_days, clock=self.clock
        )

    def _build_syncer(self, client, rng):
        from kiosk.sync import BackendClient, Syncer

        backend = self.config.backend
        if client is None:
            # signatures carry real time whatever clock the flow runs on: the server checks it
            client = BackendClient(backend.url, backend.kiosk_id, backend.secret, backend.timeout_s)
        if self.crash.point == "upload":
            client = CrashingClient(client, self.crash)
        return Syncer(
            self.journal,
            client,
            batch_size=backend.batch_size,
            base_delay_s=backend.retry_base_s,
            max_delay_s=backend.retry_max_s,
            interval_s=backend.sync_interval_s,
            config_refresh_s=backend.config_refresh_s,
            clock=self.clock,
            rng=rng or random.Random(),
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
            verifier=self._require_verifier,
            screen=self.screen,
            indicator=self.hardware.indicator,
            clock=self.clock,
            wall_clock=self.wall_clock,
            settings=flow_settings(self.config),
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
        try:
            self.verifier = LabelVerifier.from_backend_config(
                cached,
                community=backend.community,
                fallback_public_key=backend.label_public_key,
            )
            self.verifier_error = None
        except ValueError as exc:
            self.verifier, self.verifier_error = None, str(exc)
        self._rules = rules_from_backend_config(cached)
        self.category_names = {
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
            self._send("fail", kind="door_jammed", reason="; ".join(problems))
        if not self.threaded:
            self.refresh_config()  # the syncer thread does this itself in threaded mode
        open_deposits = self.journal.open_deposits()
        if open_deposits and self.flow.state == "idle":
            log.warning("recovering %d open deposit(s) after a restart", len(open_deposits))
            self._send("recover")
        if self.threaded:
            for monitor in self.monitors.values():
                monitor.start()
            self.scanner.start()
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
        self.scanner.stop()
        if self.buttons is not None:
            self.buttons.close()
        for monitor in self.monitors.values():
            monitor.stop()
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
        """Run one iteration: events, inputs, doors, weight, timeouts, housekeeping."""
        started_s = self.clock.monotonic()
        self._drain_events(self.tick_s if self.threaded else 0.0)
        if not self.threaded:
            self.scanner.poll_once()
            if self.buttons is not None:
                self.buttons.poll_once()
            for monitor in self.monitors.values():
                monitor.poll_once()
            self._drain_events(0.0)
        self._watch_doors()
        self._feed_flow()
        self._safely(self.flow.tick)
        self._after_transitions()
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
        self._send(name, **kwargs)
        self._after_transitions()

    def _send(self, event: str, **kwargs) -> bool:
        """Send one event to the flow; a disallowed one is logged and explained, not ignored."""
        try:
            self.flow.send(event, **kwargs)
            return True
        except TransitionNotAllowed:
            hint = self.flow.busy_hint()
            log.warning("event %r not allowed in state %s: %s", event, self.flow.state, hint)
            self.screen.show(hint, tone="warn")
            return False

    def _safely(self, action) -> None:
        try:
            action()
        except TransitionNotAllowed as exc:  # a timeout raced a transition: harmless, logged
            log.warning("%s", exc)

    # -- inputs -> flow events -------------------------------------------------------------

    def _watch_doors(self) -> None:
        for number, slot in self.hardware.doors.items():
            closed = slot.door.is_closed()
            if closed == self._door_closed[number]:
                continue
            self._door_closed[number] = closed
            active = self.flow.active_door()
            state = self.flow.state
            is_active = active is not None and active.number == number
            if not closed and is_active and state in ("door_unlocked", "weighing_after"):
                self._send("door_opened")
            elif closed and is_active and state == "door_open":
                self._send("door_closed")
            elif (
                not closed
                and state not in ("fault", "recovering")
                and not (is_active and state == "door_open")
            ):
                # only the unlocked door may move: any other opening means a broken lock
                self._send(
                    "fail",
                    kind="door_forced",
                    reason=f"door {number} opened while locked",
                )
            self._after_transitions()

    def _monitor_for(self, slot: DoorSlot | None) -> ScaleMonitor | None:
        if slot is not None and slot.scale in self.monitors:
            return self.monitors[slot.scale]
        return next(iter(self.monitors.values()), None)

    def _feed_flow(self) -> None:
        state, flow = self.flow.state, self.flow
        monitor = self._monitor_for(flow.active_door())
        # the result screen needs no scale: let it finish, the fault comes at idle
        if monitor is not None and monitor.error and state not in ("fault", "showing_result"):
            self._send("fail", kind="scale", reason=f"scale fault: {monitor.error}")
            return
        if state == "weighing_before":
            grams = monitor.stable_g()
            if grams is not None:
                self._send("settled", grams=grams)
        elif state == "weighing_after":
            grams = monitor.stable_g()  # restarted on entry: only samples since then
            if grams is not None:
                self._send("settled", grams=grams)
        elif state == "recovering":
            weights = {name: m.stable_g() for name, m in self.monitors.items()}
            if weights and None not in weights.values():  # every scale settled since entry
                self._send("settled", grams=monitor.stable_g(), weights=weights)
        elif state == "showing_result":
            self._poll_answer()
        elif state == "fault":
            self._check_fault_cleared()
        elif state == "idle":
            self._check_idle_health()

    def _check_idle_health(self) -> None:
        if self.scanner.error:
            self._send("fail", kind="scanner", reason=f"scanner fault: {self.scanner.error}")
        elif self.verifier is None:
            self._send(
                "fail",
                kind="config",
                reason=f"cannot verify labels: {self.verifier_error}",
            )

    def _poll_answer(self) -> None:
        deposit = self.flow.current
        if deposit is None or deposit.answered or deposit.deposit_id is None:
            return
        result = self.journal.get(deposit.deposit_id).answer()
        if result is not None:  # with the backend's reason: the screen says why
            self._send("answer", result=result)

    def _check_fault_cleared(self) -> None:
        now_s = self.clock.monotonic()
        if now_s < self._next_fault_check_s or self.flow.fault_kind not in SELF_CLEARING_FAULTS:
            return
        self._next_fault_check_s = now_s + FAULT_CHECK_S
        if self._fault_condition_cleared(self.flow.fault_kind):
            log.warning("fault %s cleared by itself", self.flow.fault_kind)
            self._send("cleared")

    def _fault_condition_cleared(self, kind: str) -> bool:
        if kind == "door_left_open":
            return all(slot.door.is_closed() for slot in self.hardware.doors.values())
        if kind == "scale":
            return all(m.error is None and m.stable_g() is not None for m in self.monitors.values())
        if kind == "scanner":
            return self.scanner.error is None
        if kind == "config":
            return self.verifier is not None
        if kind == "outbox_full":
            pending = self.journal.outbox_depth() + len(self.journal.open_deposits())
            return pending < self.journal.outbox_limit
        return False

    def _after_transitions(self) -> None:
        """React to states just entered: sync a finished deposit, refresh the status file."""
        entered, self._entered.states = self._entered.states, []
        if not entered:
            return
        if "showing_result" in entered:
            deposit = self.flow.current
            if deposit is not None and deposit.net_g and deposit.net_g > 0:
                self._sync_soon()
        self.notifier.status(f"state {self.flow.state}")
        self._write_status(force=True)

    # -- sync and housekeeping -------------------------------------------------------------

    def _sync_soon(self) -> None:
        if self.threaded:
            self.syncer.wake()
        else:
            self.sync_now()
            self._poll_answer()

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
        if self.flow.state == "idle":  # never between a scan and its unlock
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
        if request is None:
            return
        by, state = request.get("by", "?"), self.flow.state
        log.warning("reset requested by %s in state %s", by, state)
        if state == "fault":
            self._send("reset")
            self._after_transitions()

    def status(self) -> dict:
        """Return what ``kiosk status`` shows about the running station."""
        flow = self.flow
        monitor = self._monitor_for(None)
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
            "scanner_error": self.scanner.error,
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

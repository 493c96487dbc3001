"""The deposit flow: an explicit state chart from a scanned label to credited points.

::

    idle --scan(ok)--> choosing --choose(ok)--> weighing_before --settled--> door_unlocked
      ^  (single-door kiosks skip choosing)                        journal.begin_deposit, unlock
      |                                                                      |
      |                            door_open <----------door_opened----------+
      |                               | door_closed          ^ door_opened
      |                               v                      |
      +--timeout-- showing_result <--settled-- weighing_after
                   (estimate, balance)         journal.finish_deposit, lock

    any state --fault / action error--> fault --reset / cleared--> recovering | idle
    idle --recover--> recovering --settled--> idle    (open journal deposits resolved)

Rules the chart keeps (python-statemachine ``StateChart``):

* every waiting state has a timeout (``TIMEOUTS``), checked by ``tick()`` against the
  injected clock, so tests run in virtual time; ``idle`` waits for residents forever and
  ``fault`` never times out (a fault must not clear itself by the clock);
* transition actions run as ``before`` callbacks, so an action that raises (a door that
  will not lock, a full outbox) aborts its transition and ``error.execution`` takes the
  chart to ``fault``, whose entry locks every door;
* an event that is not allowed in the current state raises ``TransitionNotAllowed``
  (``allow_event_without_transition = False``): nothing is silently ignored;
* the deposit id is journalled before a door unlocks and the result before it locks.

The chart makes every per-state decision; the station (``kiosk.station``) only runs it: it
passes on queued events (``offer``), door sensor changes (``door_moved``), and calls ``poll``
and ``tick`` every step.  ``poll`` reads what the current state waits for from the station's
inputs (``Readings``: stable weights, scale and scanner errors), the answer from the journal,
and whether a fault's cause has cleared.  The flow does no I/O of its own beyond the objects it
is given (doors, journal, readings, screen, indicator).  What the resident reads (prompts,
hints, the words for the backend's answers) is in ``kiosk.texts``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from statemachine import State, StateChart
from statemachine.exceptions import TransitionNotAllowed

from hardware import DoorFault, HardwareFault, ScaleFault
from hardware.clock import Clock, WallClock
from hardware.interfaces import Door, Indicator
from kiosk import KioskError, OutboxFull
from kiosk.config import KioskConfig, TimeoutsSection, WeighingSection
from kiosk.doors import DoorLocker
from kiosk.journal import Journal
from kiosk.labels import LabelVerifier, label_text
from kiosk.texts import (
    CHOICE_IMPOSSIBLE,
    LABEL_UNUSABLE,
    NOTICES,
    PROMPTS,
    answer_outcome,
    busy_hint,
    choose_prompt,
    label_refusal,
    reason_text,
    rejection_text,
    result_text,
)
from protocol.labels import LabelClaims, LabelError

log = logging.getLogger(__name__)

# answer_outcome, reason_text and rejection_text live in kiosk.texts; re-exported for callers
__all__ = [
    "DepositFlow",
    "DoorSlot",
    "FlowSettings",
    "TransitionNotAllowed",
    "answer_outcome",
    "points_estimate",
    "reason_text",
    "rejection_text",
    "resolve_choice",
]

#: state -> the settings attribute holding its timeout
TIMEOUTS: dict[str, str] = {
    "choosing": "category_s",
    "weighing_before": "stable_timeout_s",
    "door_unlocked": "door_open_s",
    "door_open": "door_close_s",
    "weighing_after": "stable_timeout_s",
    "showing_result": "result_display_s",
    "recovering": "recovery_timeout_s",
}

#: fault kind -> the flow's check that its cause is gone; every other kind needs a reset
SELF_CLEARING_FAULTS: dict[str, str] = {
    "door_left_open": "doors_closed",
    "scale": "scales_settled",
    "scanner": "scanner_ok",
    "config": "label_key_loaded",
    "outbox_full": "outbox_has_room",
}
#: how often a self-clearing fault's cause is checked (seconds)
FAULT_CHECK_S = 1.0

#: fault kind -> why the kiosk is out of order, given the error's words
FAULT_REASONS = {
    "scale": "scale fault: {}",
    "scanner": "scanner fault: {}",
    "config": "cannot verify labels: {}",
    "door_jammed": "door fault: {}",
    "hardware": "hardware fault: {}",
}

#: state -> what the flow watches for in it, every step (``poll``)
WATCHES = {
    "idle": "_watch_health",
    "weighing_before": "_watch_weight",
    "weighing_after": "_watch_weight",
    "recovering": "_watch_recovery",
    "showing_result": "_watch_answer",
    "fault": "_watch_fault",
}
#: states a scale error does not interrupt: the result needs no scale (the fault comes at
#: idle), and a fault has its own check
SCALE_FREE_STATES = frozenset({"showing_result", "fault"})


class NoLabelKey(KioskError):
    """The kiosk has no community key to verify labels with (never reached the backend)."""


#: an action's error -> the fault it is (first match; anything else is "internal")
ERROR_FAULTS: tuple[tuple[type[Exception], str], ...] = (
    (DoorFault, "door_jammed"),
    (ScaleFault, "scale"),
    (NoLabelKey, "config"),
    (OutboxFull, "outbox_full"),
    (HardwareFault, "hardware"),
)


#: states in which the machine, not the resident, is expected to act next
BUSY_STATES = frozenset({"weighing_before", "weighing_after", "recovering"})


@dataclass(frozen=True, slots=True)
class DoorSlot:
    """One bin door: its number, the category it takes, its lock and its scale."""

    number: int
    category: str
    capacity_g: int
    door: Door
    scale: str = "main"


#: the kiosk config's defaults, the one source of the flow's
_TIMEOUTS, _WEIGHING = TimeoutsSection(), WeighingSection()


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Timeouts (seconds) and weighing limits the flow runs with; defaults are the config's."""

    category_s: float = _TIMEOUTS.category_s
    door_open_s: float = _TIMEOUTS.door_open_s
    door_close_s: float = _TIMEOUTS.door_close_s
    result_display_s: float = _TIMEOUTS.result_display_s
    backend_answer_s: float = _TIMEOUTS.backend_answer_s
    stable_timeout_s: float = _WEIGHING.stable_timeout_s
    min_deposit_g: int = _WEIGHING.min_deposit_g

    @classmethod
    def from_config(cls, config: KioskConfig) -> FlowSettings:
        """Return the flow's timeouts and limits from the kiosk config."""
        t, w = config.timeouts, config.weighing
        return cls(
            category_s=t.category_s,
            door_open_s=t.door_open_s,
            door_close_s=t.door_close_s,
            result_display_s=t.result_display_s,
            backend_answer_s=t.backend_answer_s,
            stable_timeout_s=w.stable_timeout_s,
            min_deposit_g=w.min_deposit_g,
        )

    @property
    def recovery_timeout_s(self) -> float:
        """Allow a door to be closed and the weight to settle while recovering."""
        return self.door_close_s + self.stable_timeout_s


@dataclass(slots=True)
class Deposit:
    """The deposit in progress: what the resident has done so far."""

    payload: str
    claims: LabelClaims
    slot: DoorSlot | None = None
    deposit_id: str | None = None
    before_g: int | None = None
    after_g: int | None = None
    net_g: int | None = None
    estimate: int | None = None
    answer: dict | None = None
    answered: bool = False
    #: the label's serial went to the backend from this kiosk before: no points are promised
    label_used: bool = False


class Screen(Protocol):
    """Where the resident reads the kiosk's messages."""

    def show(self, text: str, *, tone: str = "info") -> None:
        """Replace the screen text; ``tone`` is "info", "ok", "warn" or "error"."""
        ...


class Readings(Protocol):
    """What the flow reads from the station's inputs; a scale named None is the first one."""

    def scale_error(self, scale: str | None) -> str | None:
        """Return why the scale cannot be read, or None."""
        ...

    def stable_g(self, scale: str | None) -> int | None:
        """Return the scale's stable weight since the last restart, or None."""
        ...

    def stable_weights(self) -> dict[str, int] | None:
        """Return every scale's stable weight, or None until each one has settled."""
        ...

    def scales_settled(self) -> bool:
        """True when every scale answers and is stable."""
        ...

    def restart_weighing(self) -> None:
        """Forget the samples so far: a weight from now on is made of later ones."""
        ...

    def scanner_error(self) -> str | None:
        """Return why the scanner cannot be read, or None."""
        ...


@dataclass
class FlowContext:
    """Everything the flow acts on, injected by the station (or a test)."""

    doors: dict[int, DoorSlot]
    journal: Journal
    readings: Readings
    #: returns the label verifier; raises NoLabelKey while the kiosk has none
    verifier: Callable[[], LabelVerifier]
    screen: Screen
    indicator: Indicator
    clock: Clock
    #: wall time for ``occurred_at`` (the flow's ``clock`` may be virtual)
    wall_clock: WallClock | None = None
    settings: FlowSettings = field(default_factory=FlowSettings)
    #: category -> (points_per_kg, min_net_g) from the cached backend config
    rules: Callable[[], dict[str, tuple[int, int]]] = dict
    #: locks doors fail-secure; an open door does not block (see kiosk.doors)
    locker: DoorLocker = field(default_factory=lambda: DoorLocker(background=False))

    def now(self):
        """Return the aware UTC time a deposit occurred at."""
        return (self.wall_clock or self.clock).utcnow()


def points_estimate(net_g: int, points_per_kg: int, min_net_g: int) -> int:
    """Return the backend's points for ``net_g``: floor(net_g * per_kg / 1000), 0 under the minimum."""
    if net_g <= 0 or net_g < min_net_g:
        return 0
    return net_g * points_per_kg // 1000


def resolve_choice(doors: dict[int, DoorSlot], choice: str | int) -> DoorSlot:
    """Return the door a resident's choice means; raise ValueError with the reason shown."""
    text = str(choice).strip().lower().replace(":", " ")
    number_text, _, category = text.partition(" ")
    category = category.strip()
    if number_text.isdigit():
        slot = doors.get(int(number_text))
        if slot is None:
            raise ValueError(f"there is no door {number_text}")
        if category and category != slot.category.lower():
            raise ValueError(f"door {slot.number} takes {slot.category}, not {category}")
        return slot
    for slot in sorted(doors.values(), key=lambda s: s.number):
        if slot.category.lower() == text:
            return slot
    raise ValueError(f"no bin here takes {text or 'that'}")


class DepositFlow(StateChart):
    """The deposit state chart (see the module docstring for the picture)."""

    allow_event_without_transition = False
    catch_errors_as_events = True

    idle = State(initial=True)
    choosing = State()
    weighing_before = State()
    door_unlocked = State()
    door_open = State()
    weighing_after = State()
    showing_result = State()
    recovering = State()
    fault = State()

    scan = (
        idle.to(choosing, cond="label_ok", unless="single_door", before="take_label")
        | idle.to(weighing_before, cond="label_ok", before="take_label_single_door")
        | idle.to(idle, before="refuse_label")
        | showing_result.to(choosing, cond="label_ok", unless="single_door", before="take_label")
        | showing_result.to(weighing_before, cond="label_ok", before="take_label_single_door")
        | showing_result.to(idle, before="refuse_label")
    )
    choose = choosing.to(weighing_before, cond="choice_ok", before="take_choice") | choosing.to(
        choosing, before="refuse_choice"
    )
    settled = (
        weighing_before.to(door_unlocked, before="begin_and_unlock")
        | weighing_after.to(showing_result, before="finish_and_lock")
        | recovering.to(idle, cond="doors_closed", before="resolve_open_deposits")
        | recovering.to(None, before="ask_to_close_doors")
    )
    door_opened = door_unlocked.to(door_open) | weighing_after.to(door_open)
    door_closed = door_open.to(weighing_after)
    answer = showing_result.to(None, before="take_answer")
    no_answer = showing_result.to(None, before="mark_pending")
    cancel = (
        choosing.to(idle, before="note_cancelled")
        | weighing_before.to(idle, before="note_cancelled")
        | door_unlocked.to(idle, before="abandon_deposit")
        | showing_result.to(idle)
    )
    timeout = (
        choosing.to(idle, before="note_no_choice")
        | weighing_before.to(fault, before="fault_never_settled")
        | door_unlocked.to(idle, before="abandon_deposit")
        | door_open.to(fault, before="fault_left_open")
        | weighing_after.to(fault, before="fault_never_settled")
        | showing_result.to(idle)
        | recovering.to(fault, before="fault_never_settled")
    )
    recover = idle.to(recovering)
    reset = fault.to(recovering, cond="has_open_deposits", before="secure_doors") | fault.to(
        idle, before="secure_doors"
    )
    cleared = fault.to(recovering, cond="has_open_deposits", before="secure_doors") | fault.to(
        idle, before="secure_doors"
    )
    fail = fault.from_.any(before="set_fault")
    error_execution = fault.from_.any(before="fault_from_error")

    def __init__(self, ctx: FlowContext, *, listeners: list | None = None):
        self.ctx = ctx
        self.current: Deposit | None = None
        self.fault_kind: str | None = None
        self.fault_reason: str | None = None
        self.notice: str | None = None
        self.entered_at_s = ctx.clock.monotonic()
        self._pending_claims: tuple[str, LabelClaims | None, str | None] | None = None
        self._next_fault_check_s = ctx.clock.monotonic()
        self._upload_wanted = False
        super().__init__(listeners=listeners)

    # -- queries ---------------------------------------------------------------

    @property
    def state(self) -> str:
        """Return the id of the current state."""
        return str(self.current_state_value)

    def timeout_s(self) -> float | None:
        """Return the current state's timeout, or None where it has none."""
        attr = TIMEOUTS.get(self.state)
        if attr is None:
            return None
        limit_s = getattr(self.ctx.settings, attr)
        slot = self.active_door()
        if self.state == "door_unlocked" and slot is not None:
            # a solenoid is released after max_energise_s whatever happens: after that the
            # door cannot be opened, so waiting longer would only mislead the resident
            energise_s = getattr(slot.door, "max_energise_s", None)
            if energise_s:
                limit_s = min(limit_s, energise_s)
        return limit_s

    def tick(self) -> str | None:
        """Fire the current state's timeout if it has run out; return the event sent."""
        now_s = self.ctx.clock.monotonic()
        elapsed_s = now_s - self.entered_at_s
        current = self.current
        if (
            self.state == "showing_result"
            and current is not None
            and not current.answered
            and elapsed_s >= self.ctx.settings.backend_answer_s
        ):
            self.send("no_answer")
            return "no_answer"
        limit_s = self.timeout_s()
        if limit_s is not None and elapsed_s >= limit_s:
            self.send("timeout")
            return "timeout"
        return None

    def active_door(self) -> DoorSlot | None:
        """Return the door of the deposit in progress, if one is chosen."""
        return self.current.slot if self.current else None

    def busy_hint(self) -> str:
        """Return what to tell a resident whose action is not possible now."""
        return busy_hint(self.state, self.fault_reason)

    def at_rest(self) -> bool:
        """True where upkeep may take time: at idle, never between a scan and its unlock."""
        return self.state == "idle"

    def take_upload_request(self) -> bool:
        """Return True once after a deposit worth uploading was recorded (sync it soon)."""
        wanted, self._upload_wanted = self._upload_wanted, False
        return wanted

    # -- driven by the station ---------------------------------------------------

    def offer(self, event: str, **kwargs) -> bool:
        """Send a resident's or technician's event; one not allowed now is explained, not ignored."""
        try:
            self.send(event, **kwargs)
            return True
        except TransitionNotAllowed:
            hint = self.busy_hint()
            log.warning("event %r not allowed in state %s: %s", event, self.state, hint)
            self.ctx.screen.show(hint, tone="warn")
            return False

    def resume(self) -> None:
        """At start, recover the deposits a crash left open before serving anyone."""
        open_deposits = self.ctx.journal.open_deposits()
        if open_deposits and self.state == "idle":
            log.warning("recovering %d open deposit(s) after a restart", len(open_deposits))
            self.send("recover")

    def reset_requested(self, by: str) -> None:
        """Clear a fault on a technician's request (``kiosk reset``); anywhere else, only log it."""
        log.warning("reset requested by %s in state %s", by, self.state)
        if self.state == "fault":
            self.offer("reset")

    def door_moved(self, number: int, closed: bool) -> None:
        """Act on a door sensor change: the deposit's door opening or shutting, or a forced door."""
        state, slot = self.state, self.active_door()
        is_active = slot is not None and slot.number == number
        if not closed and is_active and state in ("door_unlocked", "weighing_after"):
            self.offer("door_opened")
        elif closed and is_active and state == "door_open":
            self.offer("door_closed")
        elif (
            not closed
            and state not in ("fault", "recovering")
            and not (is_active and state == "door_open")
        ):
            # only the unlocked door may move: any other opening means a broken lock
            self.offer("fail", kind="door_forced", reason=f"door {number} opened while locked")

    def poll(self) -> None:
        """Act on what the inputs show now, as the current state asks (``tick`` times it out)."""
        if self.state not in SCALE_FREE_STATES:
            error = self.ctx.readings.scale_error(self._scale_name())
            if error:
                self._fail("scale", error)
                return
        watch = WATCHES.get(self.state)
        if watch is not None:
            getattr(self, watch)()

    def _scale_name(self) -> str | None:
        slot = self.active_door()
        return slot.scale if slot is not None else None

    def _fail(self, kind: str, detail: object) -> None:
        self.send("fail", kind=kind, reason=FAULT_REASONS[kind].format(detail))

    def _watch_health(self) -> None:
        """At idle: a scanner that cannot be read or a missing label key is a fault."""
        scanner_error = self.ctx.readings.scanner_error()
        if scanner_error:
            self._fail("scanner", scanner_error)
        elif (key_error := self._label_key_error()) is not None:
            self._fail("config", key_error)

    def _watch_weight(self) -> None:
        """Weighing: go on once the deposit's scale is stable."""
        grams = self.ctx.readings.stable_g(self._scale_name())
        if grams is not None:
            self.send("settled", grams=grams)

    def _watch_recovery(self) -> None:
        """Recovering: weigh once every scale has settled since entry."""
        weights = self.ctx.readings.stable_weights()
        if weights:
            self.send(
                "settled", grams=self.ctx.readings.stable_g(self._scale_name()), weights=weights
            )

    def _watch_answer(self) -> None:
        """The result screen: show the backend's answer once the journal has it."""
        deposit = self.current
        if deposit is None or deposit.answered or deposit.deposit_id is None:
            return
        result = self.ctx.journal.get(deposit.deposit_id).answer()
        if result is not None:  # with the backend's reason: the screen says why
            self.send("answer", result=result)

    def _watch_fault(self) -> None:
        """A fault whose cause has gone clears by itself (checked every ``FAULT_CHECK_S``)."""
        check = SELF_CLEARING_FAULTS.get(self.fault_kind)
        now_s = self.ctx.clock.monotonic()
        if check is None or now_s < self._next_fault_check_s:
            return
        self._next_fault_check_s = now_s + FAULT_CHECK_S
        if getattr(self, check)():
            log.warning("fault %s cleared by itself", self.fault_kind)
            self.send("cleared")

    def _label_key_error(self) -> str | None:
        try:
            self.ctx.verifier()
        except NoLabelKey as exc:
            return str(exc)
        return None

    # -- entry actions: what the resident sees ---------------------------------

    def _show(self, text: str, tone: str = "info") -> None:
        if self.notice:
            text = f"{self.notice}. {text}"
            self.notice = None
        self.ctx.screen.show(text, tone=tone)

    def on_enter_state(self, state) -> None:
        """Remember when the state was entered: its timeout counts from here."""
        self.entered_at_s = self.ctx.clock.monotonic()
        log.debug("flow -> %s", state.id)

    def on_enter_idle(self) -> None:
        """Forget the finished deposit and invite the next resident."""
        self.current = None
        self.fault_kind = self.fault_reason = None
        self.ctx.indicator.show("idle")
        self._show(PROMPTS["idle"])

    def on_enter_choosing(self) -> None:
        """Offer the bins."""
        doors = sorted(self.ctx.doors.values(), key=lambda s: s.number)
        household = self.current.claims.household if self.current else "?"
        self.ctx.indicator.show("busy")
        self._show(choose_prompt(household, [(s.number, s.category) for s in doors]))

    def on_enter_weighing_before(self) -> None:
        """Tell the resident to wait while the platform settles."""
        self.ctx.indicator.show("busy")
        self._show(PROMPTS["weighing_before"])

    def on_enter_door_unlocked(self) -> None:
        """Invite the resident to open the unlocked door."""
        slot = self.active_door()
        self._show(PROMPTS["door_unlocked"].format(door=slot.number, category=slot.category))

    def on_enter_door_open(self) -> None:
        """Ask for the door to be closed."""
        self._show(PROMPTS["door_open"])

    def on_enter_weighing_after(self) -> None:
        """Weigh afresh: the weight after must come from samples taken after the door shut."""
        self.ctx.readings.restart_weighing()
        self._show(PROMPTS["weighing_after"])

    def on_enter_showing_result(self) -> None:
        """Show the net weight and the estimate until the backend answers."""
        self.ctx.indicator.show("ok")
        self.ctx.indicator.beep("short")
        self._show(self.result_text(), tone="ok")
        self._upload_wanted = bool(self.current.net_g and self.current.net_g > 0)

    def on_enter_recovering(self) -> None:
        """Lock every door, weigh afresh and explain the wait."""
        self.lock_all_doors()
        self.ctx.readings.restart_weighing()
        self.ctx.indicator.show("busy")
        self._show(PROMPTS["recovering"])

    def on_enter_fault(self) -> None:
        """Lock every door, raise the alarm and say why."""
        problems = self.lock_all_doors()
        if problems and self.fault_kind not in ("door_jammed", "internal"):
            self.fault_kind = "door_jammed"
            self.fault_reason = f"{self.fault_reason}; {'; '.join(problems)}"
        self.ctx.indicator.show("error")
        self.ctx.indicator.beep("long" if self.fault_kind == "door_left_open" else "error")
        log.error("fault (%s): %s", self.fault_kind, self.fault_reason)
        self.ctx.screen.show(PROMPTS["fault"].format(reason=self.fault_reason), tone="error")

    # -- guards ----------------------------------------------------------------

    def single_door(self) -> bool:
        """True on a kiosk with one door: there is nothing to choose."""
        return len(self.ctx.doors) == 1

    def label_ok(self, payload: str) -> bool:
        """Verify the label offline (cached per payload: guards run more than once)."""
        cached = self._pending_claims
        if cached is None or cached[0] != payload:
            try:
                claims, reason = self.ctx.verifier().verify(payload), None
            except LabelError as exc:
                claims, reason = None, label_refusal(exc)
                log.info("label refused: %s (%s)", reason, exc)
            self._pending_claims = (payload, claims, reason)
        return self._pending_claims[1] is not None

    def choice_ok(self, choice: str | int) -> bool:
        """True when the choice names a door that takes that category."""
        try:
            resolve_choice(self.ctx.doors, choice)
        except ValueError:
            return False
        return True

    def doors_closed(self) -> bool:
        """True when every door's sensor reads shut."""
        return all(slot.door.is_closed() for slot in self.ctx.doors.values())

    def has_open_deposits(self) -> bool:
        """True when the journal holds a deposit that was never finished."""
        return bool(self.ctx.journal.open_deposits())

    def scales_settled(self) -> bool:
        """True when every scale answers and is stable (a scale fault's cause is gone)."""
        return self.ctx.readings.scales_settled()

    def scanner_ok(self) -> bool:
        """True when the scanner can be read."""
        return self.ctx.readings.scanner_error() is None

    def label_key_loaded(self) -> bool:
        """True when the kiosk has a community key to verify labels with."""
        return self._label_key_error() is None

    def outbox_has_room(self) -> bool:
        """True when the journal's outbox is below its limit again."""
        journal = self.ctx.journal
        return journal.outbox_depth() + len(journal.open_deposits()) < journal.outbox_limit

    # -- transition actions ----------------------------------------------------

    def take_label(self, payload: str) -> None:
        """Start a deposit for the verified label."""
        _, claims, _ = self._pending_claims
        self._pending_claims = None
        # the backend credits a label once: the kiosk knows the serials it has sent
        used = self.ctx.journal.serial_used(claims.serial)
        # recorded and uploaded as verified: without a reader's line end (docs/protocol.md)
        self.current = Deposit(payload=label_text(payload), claims=claims, label_used=used)

    def take_label_single_door(self, payload: str) -> None:
        """Start a deposit at the only door."""
        self.take_label(payload)
        self.current.slot = next(iter(self.ctx.doors.values()))

    def refuse_label(self, payload: str) -> None:
        """Say why the label was refused; the chart stays in (or returns to) idle."""
        reason = self._pending_claims[2] if self._pending_claims else LABEL_UNUSABLE
        self._pending_claims = None
        self.ctx.indicator.beep("error")
        self.notice = NOTICES["label_refused"].format(reason=reason)

    def take_choice(self, choice: str | int) -> None:
        """Attach the chosen door to the deposit."""
        self.current.slot = resolve_choice(self.ctx.doors, choice)

    def refuse_choice(self, choice: str | int) -> None:
        """Say why the choice was refused; the resident chooses again."""
        try:
            resolve_choice(self.ctx.doors, choice)
            reason = CHOICE_IMPOSSIBLE
        except ValueError as exc:
            reason = str(exc)
        self.ctx.indicator.beep("error")
        self.notice = NOTICES["choice_refused"].format(reason=reason)

    def note_cancelled(self) -> None:
        """Acknowledge a cancel."""
        self.notice = NOTICES["cancelled"]

    def note_no_choice(self) -> None:
        """Explain why the kiosk went back to idle."""
        self.notice = NOTICES["no_choice"]

    def begin_and_unlock(self, grams: int) -> None:
        """Journal the deposit (before the door unlocks), then unlock its door."""
        deposit, slot = self.current, self.current.slot
        deposit.before_g = int(grams)
        deposit.deposit_id = self.ctx.journal.begin_deposit(
            label=deposit.payload,
            household=deposit.claims.household,
            serial=deposit.claims.serial,
            door=slot.number,
            category=slot.category,
            before_g=deposit.before_g,
        )
        try:
            slot.door.unlock()
        except DoorFault:
            # the door never opened: nothing can have been deposited
            self.ctx.journal.interrupt(deposit.deposit_id, "door did not unlock")
            raise
        log.info(
            "deposit %s: door %s unlocked, before %d g",
            deposit.deposit_id,
            slot.number,
            grams,
        )

    def finish_and_lock(self, grams: int) -> None:
        """Journal the net weight (before the door locks), then lock the door."""
        deposit, settings = self.current, self.ctx.settings
        deposit.after_g = int(grams)
        measured_g = deposit.after_g - deposit.before_g
        # below the scale's resolution a "deposit" is noise: record it as empty
        deposit.net_g = measured_g if measured_g >= settings.min_deposit_g else min(measured_g, 0)
        self.ctx.journal.finish_deposit(
            deposit.deposit_id,
            after_g=deposit.after_g,
            net_g=deposit.net_g,
            occurred_at=self.ctx.now(),
        )
        deposit.estimate = self._estimate(deposit)
        deposit.answered = deposit.net_g <= 0  # nothing is uploaded: nothing to wait for
        log.info("deposit %s: after %d g, net %d g", deposit.deposit_id, grams, deposit.net_g)
        deposit.slot.door.lock()

    def _estimate(self, deposit: Deposit) -> int | None:
        rule = self.ctx.rules().get(deposit.slot.category)
        if rule is None or deposit.net_g <= 0:
            return None if deposit.net_g > 0 else 0
        return points_estimate(deposit.net_g, *rule)

    def abandon_deposit(self) -> None:
        """Relock an unlocked door that was never opened; record nothing."""
        deposit = self.current
        deposit.slot.door.lock()
        self.ctx.journal.interrupt(deposit.deposit_id, "door never opened")
        self.notice = NOTICES["door_not_opened"]

    def take_answer(self, result: dict) -> None:
        """Show the backend's answer (points, balance) for this deposit."""
        self.current.answer, self.current.answered = result, True
        self.ctx.screen.show(self.result_text(), tone="ok")

    def mark_pending(self) -> None:
        """The backend did not answer in time: the balance shows as pending."""
        self.current.answered = True
        self.ctx.screen.show(self.result_text(), tone="ok")

    def resolve_open_deposits(self, grams: int, weights: dict | None = None) -> None:
        """Resolve every open journal deposit with the stable weight now on its scale.

        ``weights`` maps scale names to stable grams where doors stand on several scales;
        a deposit whose door or scale is not in it is resolved with ``grams``.
        """
        for row in self.ctx.journal.open_deposits():
            slot = self.ctx.doors.get(row.door)
            after_g = (weights or {}).get(slot.scale if slot else None, grams)
            outcome = resolve_open_deposit(
                self.ctx.journal, row, after_g, self.ctx.settings, self.ctx.now()
            )
            log.warning("recovered deposit %s: %s", row.id, outcome)
        self.notice = NOTICES["recovered"]

    def ask_to_close_doors(self, grams: int, weights: dict | None = None) -> None:
        """Recovery waits for every door to be shut before it weighs."""
        open_doors = [str(s.number) for s in self.ctx.doors.values() if not s.door.is_closed()]
        self.ctx.screen.show(
            PROMPTS["close_doors"].format(doors=", ".join(open_doors)), tone="warn"
        )

    def secure_doors(self) -> None:
        """Lock every door; a door that stands open or will not lock keeps the kiosk in fault."""
        problems = self.lock_all_doors()
        problems += [
            f"door {slot.number} stands open: close it first"
            for slot in self.ctx.doors.values()
            if not slot.door.is_closed()
        ]
        if problems:
            raise DoorFault("; ".join(problems))

    def set_fault(self, kind: str, reason: str) -> None:
        """Record why the kiosk is out of order."""
        self.fault_kind, self.fault_reason = kind, reason

    def fault_never_settled(self) -> None:
        """The scale never gave a stable weight in time."""
        self.set_fault("scale", "the weight never settled")

    def fault_left_open(self) -> None:
        """The door stayed open past its limit: alarm and fault until it is shut."""
        slot = self.active_door()
        self.set_fault("door_left_open", f"door {slot.number} was left open, please close it")

    def fault_from_error(self, error: Exception | None = None) -> None:
        """Classify an action error into a fault kind and a reason."""
        kind = next((k for cls, k in ERROR_FAULTS if isinstance(error, cls)), None)
        if kind in FAULT_REASONS:
            self.set_fault(kind, FAULT_REASONS[kind].format(error))
        elif kind == "outbox_full":
            self.set_fault(kind, "the deposit journal is full until the kiosk syncs")
        else:
            log.error("unexpected error in the deposit flow", exc_info=error)
            self.set_fault("internal", f"internal error: {error!r}")

    # -- helpers ---------------------------------------------------------------

    def lock_all_doors(self) -> list[str]:
        """Lock every door (fail-secure); return the problems with shut doors, never raise."""
        return self.ctx.locker.lock_all(self.ctx.doors.values())

    def result_text(self) -> str:
        """Return the result screen: what was weighed, the points and why fewer, the balance."""
        deposit = self.current
        min_net_g = self._min_net_g(deposit) if deposit.slot else None
        return result_text(deposit, self.outcome(), min_net_g)

    def outcome(self) -> tuple[str, str | None] | None:
        """Return the answered deposit's (status, why) as ``answer_outcome`` words it (None: no answer)."""
        deposit = self.current
        if deposit is None or deposit.answer is None:
            return None
        return answer_outcome(
            deposit.answer,
            category=deposit.slot.category if deposit.slot else None,
            net_g=deposit.net_g,
            min_net_g=self._min_net_g(deposit) if deposit.slot else None,
        )

    def _min_net_g(self, deposit: Deposit) -> int | None:
        rule = self.ctx.rules().get(deposit.slot.category)
        return rule[1] if rule else None


def resolve_open_deposit(journal, row, after_g: int, settings: FlowSettings, now) -> str:
    """Record an open deposit with the weight now on its scale, or mark it interrupted."""
    net_g = int(after_g) - int(row.before_g)
    if net_g >= settings.min_deposit_g:
        journal.finish_deposit(row.id, after_g=int(after_g), net_g=net_g, occurred_at=now)
        return f"recorded, net {net_g} g"
    journal.interrupt(row.id, f"interrupted: weight changed by {net_g} g")
    return "interrupted"

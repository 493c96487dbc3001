"""What the kiosk says to residents: prompts, hints, and plain words for the backend's answers.

Text only, no state logic: ``kiosk.flow`` (the state chart) decides which of these to show
and when; the touch page (``kiosk.ui``) words answers with ``answer_outcome`` too.
"""

from __future__ import annotations

from typing import Any

from protocol.labels import LabelFormatError, LabelSignatureError

#: the backend's reasons for fewer points than the weight is worth (docs/protocol.md,
#: "Reasons"), as a resident reads them; ``reason_text`` makes them more precise
REASONS = {
    "below_minimum": "too light to earn points",
    "daily_cap": "your household reached today's points limit for this kind of waste",
    "no_rule": "this kind of waste earns no points at the moment",
    "label_reused": "this label was already used for an earlier bag",
    "implausible_weight": "the weight is unusually high for this bin",
}

#: the backend's rejection codes (docs/protocol.md): why a deposit was not credited at all
REJECTIONS = {
    "label_revoked": "this label has been revoked",
    "label_unknown": "this label is not registered here",
    "label_bad_signature": "this label is not genuine (forged or damaged)",
    "label_wrong_community": "this label belongs to another community",
    "label_malformed": "this is not a sortpoint label",
    "occurred_at_too_old": "it reached the server too late",
    "net_g_out_of_range": "the weight is outside what this bin takes",
}
#: what to say for a rejection that is the kiosk's fault (set-up, clock): nothing the resident did
KIOSK_PROBLEM = "a problem with this kiosk, please tell the staff"

#: what the screen asks for on entering a state ({placeholders} filled by the flow)
PROMPTS = {
    "idle": "Scan the label on your bag",
    "choosing": "Household {household}: choose a bin: {options}",
    "weighing_before": "Please wait: weighing",
    "door_unlocked": "Door {door} ({category}) is open: put the bag in and close the door",
    "door_open": "Put the bag in and close the door",
    "weighing_after": "Please wait: weighing your deposit",
    "recovering": "Please wait: finishing an interrupted deposit",
    "fault": "Out of order: {reason}. Doors are locked",
    "close_doors": "Please close door {doors}",
}

#: what to tell a resident whose action is not possible in a state
BUSY_HINTS = {
    "idle": "That is not possible now: scan the label on your bag first",
    "showing_result": "That is not possible now: scan the label on your bag first",
    "choosing": "Choose a bin first (or cancel)",
    "weighing_before": "Please wait: weighing",
    "door_unlocked": "Please open the door and put the bag in",
    "door_open": "Please put the bag in and close the door first",
    "weighing_after": "Please wait: weighing your deposit",
    "recovering": "Please wait: finishing an interrupted deposit",
    "fault": "Out of order: {fault_reason}",
}
NOT_POSSIBLE = "That is not possible now"

#: one-off notices shown before the next prompt ({reason} filled by the flow)
NOTICES = {
    "label_refused": "Label refused: {reason}",
    "choice_refused": "Refused: {reason}",
    "cancelled": "Cancelled",
    "no_choice": "No bin was chosen in time",
    "door_not_opened": "The door was not opened: nothing was recorded",
    "recovered": "Ready again",
}
LABEL_UNUSABLE = "this label cannot be used"
CHOICE_IMPOSSIBLE = "that choice is not possible"


def busy_hint(state: str, fault_reason: str | None) -> str:
    """Return what to tell a resident whose action is not possible in ``state``."""
    return BUSY_HINTS.get(state, NOT_POSSIBLE).format(fault_reason=fault_reason)


def choose_prompt(household: str, doors: list[tuple[int, str]]) -> str:
    """Return the prompt offering the bins, given (door number, category) in door order."""
    options = ", ".join(f"{number} {category}" for number, category in doors)
    return PROMPTS["choosing"].format(household=household, options=options)


def reason_text(
    code: str | None,
    *,
    category: str | None = None,
    net_g: int | None = None,
    min_net_g: int | None = None,
) -> str | None:
    """Return in plain words why a deposit earned fewer points than its weight (None: it did not)."""
    if not code:
        return None
    if code == "below_minimum" and min_net_g and net_g is not None and net_g < min_net_g:
        return f"under the {min_net_g} g minimum for points"
    if code == "daily_cap" and category:
        return f"your household reached today's points limit for {category}"
    if code == "no_rule" and category:
        return f"{category} earns no points at the moment"
    # a reason newer than this release still says something rather than nothing
    return REASONS.get(code) or code.replace("_", " ")


def rejection_text(answer: dict) -> str:
    """Return in plain words why the backend did not credit a deposit (rejected or conflict)."""
    code = (answer.get("error") or {}).get("code")
    if answer.get("status") == "conflict" or code not in REJECTIONS:
        return KIOSK_PROBLEM
    return REJECTIONS[code]


def answer_outcome(
    answer: dict,
    *,
    category: str | None = None,
    net_g: int | None = None,
    min_net_g: int | None = None,
) -> tuple[str, str | None]:
    """Return (status, why in plain words) for a backend answer; a duplicate is its first outcome.

    The status is ``accepted``, ``flagged``, ``rejected`` or ``conflict``: a retried upload
    answers ``duplicate`` and is shown as what it was recorded as (``original_status``).
    ``why`` is None for full points; a flagged deposit or an uncredited one always says why.
    """
    status = answer.get("status")
    if status == "duplicate":
        status = answer.get("original_status") or "accepted"
    if status not in ("accepted", "flagged"):
        return str(status or "rejected"), rejection_text(answer)
    why = reason_text(answer.get("reason"), category=category, net_g=net_g, min_net_g=min_net_g)
    if status == "flagged":
        why = why or "it needs a check"
    return status, why


def label_refusal(error: Exception) -> str:
    """Return the resident-facing reason a label was refused."""
    code = getattr(error, "code", "")
    if "revoked" in code:
        return "this label has been revoked"
    if "community" in code:
        return "this label belongs to another community"
    if isinstance(error, LabelSignatureError):
        return "this label is not genuine (forged or damaged)"
    if isinstance(error, LabelFormatError):
        return "this is not a sortpoint label"
    return f"this label cannot be used ({error})"


def result_text(deposit: Any, outcome: tuple[str, str | None] | None, min_net_g: int | None) -> str:
    """Return the result screen: what was weighed, the points and why fewer, the balance.

    ``deposit`` is the flow's ``Deposit``; ``outcome`` is ``answer_outcome`` of its answer.
    """
    if deposit.net_g is None or deposit.net_g <= 0:
        return "No deposit was detected: nothing was recorded"
    weighed = f"{deposit.net_g} g of {deposit.slot.category}"
    answer = deposit.answer
    if answer is None:
        return _estimate_text(deposit, weighed, min_net_g)
    status, why = outcome
    if status not in ("accepted", "flagged"):
        return f"Recorded {weighed}, but not credited: {why}"
    balance = answer.get("balance")
    if status == "flagged":
        return f"Thank you: {weighed}. 0 points for now ({why}): held for staff review - balance {balance}"
    because = f" ({why})" if why else ""
    return f"Thank you: {weighed}. +{answer.get('points') or 0} points{because} - balance {balance}"


#: the result before the backend's answer, for a label already used at this kiosk
LABEL_USED_HERE = "this label was already used here: the deposit may be held for staff review"


def _estimate_text(deposit: Any, weighed: str, min_g: int | None) -> str:
    balance = "pending" if deposit.answered else "..."
    if deposit.label_used:  # the backend will most likely flag it: promise no points
        return f"Thank you: {weighed}. No points yet ({LABEL_USED_HERE}) - balance {balance}"
    if deposit.estimate is None:  # no points rules cached yet: nothing to estimate with
        return f"Thank you: {weighed}. Points pending - balance {balance}"
    if deposit.estimate == 0 and min_g and deposit.net_g < min_g:
        return (
            f"Thank you: {weighed}. +0 points (estimate: under the {min_g} g minimum"
            f" for points) - balance {balance}"
        )
    return f"Thank you: {weighed}. +{deposit.estimate} points (estimate) - balance {balance}"

"""Upload the journal's outbox to the backend, and fetch the kiosk's config.

``BackendClient`` speaks docs/protocol.md: every request is signed with the
kiosk's HMAC secret (``protocol.signing``).  Network errors and 5xx become
``BackendUnavailable`` (try again later); 4xx become ``BackendRejected``
(401: ``BackendAuthError``, whose message says whether the clocks disagree).

``Syncer`` drains the outbox oldest first in batches, stores every answer in
the journal (the journal is the only memory: nothing is dropped on a failure,
and a batch whose answer was lost is simply sent again; the backend answers
``duplicate`` and the deposit is credited once).  Failures back off
exponentially with full jitter, bounded by ``max_delay_s``.  It runs in a
background thread (``start``/``stop``/``wake``) or is driven by hand
(``sync_once``), which the tests and the scripted simulator do.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from hardware.clock import SYSTEM_CLOCK
from kiosk import BackendAuthError, BackendRejected, BackendUnavailable, SyncError
from kiosk.journal import Journal, JournalDeposit
from protocol.signing import MAX_SKEW_S, signed_headers

__all__ = [
    "BackendClient",
    "Syncer",
    "SyncReport",
    "BackendUnavailable",
    "BackendRejected",
    "BackendAuthError",
    "backoff_delay_s",
]

log = logging.getLogger(__name__)

DEPOSITS_PATH = "/api/v1/deposits"
CONFIG_PATH = "/api/v1/kiosk/config"
MAX_BATCH = 500
RESULT_STATUSES = {"accepted", "flagged", "duplicate", "rejected", "conflict"}


# -- the HTTP client ------------------------------------------------------------------


class BackendClient:
    """Signed requests to the backend's kiosk API."""

    def __init__(
        self,
        url: str,
        kiosk_id: str,
        secret: str,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
        *,
        clock=None,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"backend url {url!r} is not http(s)://host[:port][/prefix]")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path.rstrip("/")
        self.kiosk_id = kiosk_id
        self._secret = secret
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.clock = clock or SYSTEM_CLOCK

    def post_deposits(self, items: list[dict], timeout_s: float | None = None) -> list[dict]:
        """Upload 1-500 deposits; return the backend's results in the same order."""
        if not 1 <= len(items) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} deposits, not {len(items)}")
        answer = self._request("POST", DEPOSITS_PATH, {"deposits": items}, timeout_s)
        results = answer.get("results") if isinstance(answer, dict) else None
        _check_results(items, results)
        return results

    def fetch_config(self, timeout_s: float | None = None) -> dict:
        """Return this kiosk's config: doors, label key, rules, revoked serials."""
        answer = self._request("GET", CONFIG_PATH, None, timeout_s)
        if not isinstance(answer, dict):
            raise BackendUnavailable("backend config answer is not a JSON object")
        return answer

    def _request(self, method: str, path: str, payload, timeout_s: float | None):
        full_path = self.prefix + path
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        headers = signed_headers(
            self.kiosk_id, self._secret, method, full_path, body, now=self.clock.now()
        )
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method,
                self.base_url + full_path,
                data=body or None,
                headers=headers,
                timeout=timeout_s or self.timeout_s,
            )
        except requests.RequestException as exc:
            raise BackendUnavailable(f"backend unreachable: {exc}") from exc
        return self._answer(method, full_path, response)

    def _answer(self, method: str, path: str, response: requests.Response):
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if status >= 500 or status in (408, 429):
            raise BackendUnavailable(f"{method} {path}: backend answered {status}")
        if status == 401:
            raise BackendAuthError(
                self._auth_message(response, data), status=401, code=_error_code(data), body=data
            )
        if status >= 400:
            raise BackendRejected(
                f"{method} {path}: backend refused the request ({status} {_error_code(data)}:"
                f" {_error_message(data)})",
                status=status,
                code=_error_code(data),
                body=data,
            )
        if status != 200 or data is None:
            raise BackendUnavailable(f"{method} {path}: unexpected answer {status}, not JSON")
        return data

    def _auth_message(self, response: requests.Response, data) -> str:
        """Explain a 401: wrong secret, disabled kiosk, or clocks too far apart."""
        code = _error_code(data)
        text = f"backend refused kiosk {self.kiosk_id!r} (401 {code}: {_error_message(data)})"
        if code == "kiosk_disabled":
            return text + "; an operator disabled this kiosk on the backend"
        skew_s = server_skew_s(response.headers.get("Date"), self.clock.now())
        if skew_s is None:
            return text + "; check backend.kiosk_id and backend.secret"
        if abs(skew_s) > MAX_SKEW_S:
            return (
                f"{text}; the backend's clock is {skew_s:+.0f} s from this kiosk's, more"
                f" than the {MAX_SKEW_S} s a signature may be off: fix the kiosk's time (NTP)"
            )
        return (
            f"{text}; clocks agree (backend {skew_s:+.0f} s from this kiosk): check"
            " backend.kiosk_id and backend.secret, and that the kiosk is enabled"
        )


def server_skew_s(date_header: str | None, local_now: float) -> float | None:
    """Return the server's Date minus local time in seconds, or None without a Date."""
    if not date_header:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if server.tzinfo is None:
        server = server.replace(tzinfo=dt.UTC)
    return server.timestamp() - local_now


def _error_code(data) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "error"))
    return str(error or "error")


def _error_message(data) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(data.get("message", "")) if isinstance(data, dict) else ""


def _check_results(items: list[dict], results) -> None:
    """Refuse an answer that does not match the batch item by item."""
    if not isinstance(results, list) or len(results) != len(items):
        raise BackendUnavailable("backend answer does not hold one result per deposit")
    for item, result in zip(items, results, strict=True):
        if not isinstance(result, dict) or str(result.get("id")) != item["id"]:
            raise BackendUnavailable("backend results are not in the order of the batch")
        if result.get("status") not in RESULT_STATUSES:
            raise BackendUnavailable(f"backend answered unknown status {result.get('status')!r}")


# -- the uploader ---------------------------------------------------------------------


def backoff_delay_s(failures: int, base_s: float, max_s: float, rng) -> float:
    """Return a full-jitter delay: uniform in [0, min(max_s, base_s * 2**(failures-1))]."""
    if failures <= 0:
        return 0.0
    ceiling = min(max_s, base_s * 2 ** min(failures - 1, 40))
    return rng.uniform(0.0, ceiling)


@dataclass
class SyncReport:
    """What one ``sync_once`` did."""

    sent: int = 0
    batches: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    remaining: int = 0
    #: deposits the backend could not parse (400/413), held back for staff
    held: int = 0
    error: str | None = None
    #: seconds until the next attempt should start (0: more to send now)
    next_delay_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Return True when nothing failed."""
        return self.error is None


class Syncer:
    """Drain the outbox to the backend with batches, retries and backoff."""

    def __init__(
        self,
        journal: Journal,
        client: BackendClient,
        *,
        batch_size: int = 100,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        interval_s: float = 30.0,
        config_refresh_s: float = 300.0,
        max_batches: int = 50,
        clock=None,
        wall_clock=None,
        rng: random.Random | None = None,
    ):
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        if base_delay_s <= 0 or max_delay_s < base_delay_s:
            raise ValueError("need 0 < base_delay_s <= max_delay_s")
        self.journal = journal
        self.client = client
        self.batch_size = batch_size
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.interval_s = interval_s
        self.config_refresh_s = config_refresh_s
        self.max_batches = max_batches
        self.clock = clock or SYSTEM_CLOCK
        # the journal's sync stamps are read by people (`kiosk status`) and other processes,
        # so they are wall-clock times even when ``clock`` is virtual (a scripted simulator)
        self.wall_clock = wall_clock or SYSTEM_CLOCK
        self.rng = rng or random.Random()
        self.failures = 0
        self._held_in_pass = 0
        self.next_attempt_s = self.clock.monotonic()
        self._config_due_s = self.clock.monotonic()
        self._sync_lock = threading.Lock()
        self._answered = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass ----------------------------------------------------------------

    def sync_once(self, *, deadline_s: float | None = None) -> SyncReport:
        """Upload the outbox (up to ``max_batches`` batches, or until ``deadline_s``)."""
        report = SyncReport()
        with self._sync_lock:
            self._held_in_pass = 0
            try:
                self._drain(report, deadline_s)
            except SyncError as exc:
                report.held = self._held_in_pass
                self._failed(report, exc)
            else:
                report.held = self._held_in_pass
                self._succeeded(report)
            report.remaining = self.journal.outbox_depth(include_held=False)
            if report.ok and report.remaining and report.batches >= self.max_batches:
                report.next_delay_s = 0.0  # more to send: go again at once
            self.journal.set_meta("last_sync_at", self.wall_clock.now())
        with self._answered:
            self._answered.notify_all()
        return report

    def _drain(self, report: SyncReport, deadline_s: float | None) -> None:
        while report.batches < self.max_batches:
            timeout_s = None
            if deadline_s is not None:
                timeout_s = deadline_s - self.clock.monotonic()
                if timeout_s <= 0:
                    return
            batch = self.journal.outbox(self.batch_size)
            if not batch:
                return
            results = self._upload(batch, timeout_s)
            counts = self.journal.record_results(results)
            report.batches += 1
            report.sent += len(results)
            for status, n in counts.items():
                report.counts[status] = report.counts.get(status, 0) + n
            if counts.get("conflict"):
                log.error(
                    "backend reports %d conflicting deposits (faults raised)", counts["conflict"]
                )
            if counts.get("rejected"):
                log.warning(
                    "backend rejected %d deposits (kept in the journal)", counts["rejected"]
                )

    def _upload(self, batch: list[JournalDeposit], timeout_s: float | None) -> list[dict]:
        """Send one batch; isolate a malformed item, shrink a batch the server finds too big."""
        items = [deposit.to_upload() for deposit in batch]
        try:
            if timeout_s is None:  # the contract's call; a deadline is an extra
                return self.client.post_deposits(items)
            return self.client.post_deposits(items, timeout_s=timeout_s)
        except BackendAuthError:
            raise
        except BackendRejected as exc:
            if exc.status == 413 and len(batch) > 1:
                # the backend (or a proxy) takes smaller batches: halving deals with it, no fault
                self.batch_size = max(1, len(batch) // 2)
                log.warning(
                    "backend refused a batch of %d as too large (%s); now %d",
                    len(batch),
                    exc,
                    self.batch_size,
                )
                return self._upload(batch[: self.batch_size], timeout_s)
            # a 400, or a 413 for one deposit: this kiosk sent what the protocol forbids
            self.journal.raise_fault("sync_protocol", str(exc))
            if exc.status in (400, 413):
                return self._isolate(batch, exc, timeout_s)
            raise

    def _isolate(self, batch: list[JournalDeposit], exc: BackendRejected, timeout_s) -> list[dict]:
        """Find the items the backend cannot parse and hold them, so the rest still goes up.

        A held deposit stays in the journal, unanswered and out of the queue,
        with a fault, until staff requeue it: nothing is lost, and one bad row
        cannot stop every deposit behind it.
        """
        if len(batch) > 1:
            results: list[dict] = []
            for deposit in batch:
                results += self._upload([deposit], timeout_s)
            return results
        deposit = batch[0]
        message = f"backend cannot take deposit {deposit.id}: {exc}"
        self.journal.hold(deposit.id, message)
        self._held_in_pass += 1
        log.error("%s (held for staff)", message)
        return []

    def _failed(self, report: SyncReport, exc: SyncError) -> None:
        self.failures += 1
        report.error = str(exc)
        report.next_delay_s = backoff_delay_s(
            self.failures, self.base_delay_s, self.max_delay_s, self.rng
        )
        self.next_attempt_s = self.clock.monotonic() + report.next_delay_s
        self.journal.set_meta("last_sync_error", report.error)
        if isinstance(exc, BackendAuthError):
            self.journal.raise_fault("sync_auth", str(exc))
        log.warning(
            "sync failed (%d in a row, next try in %.1f s): %s",
            self.failures,
            report.next_delay_s,
            exc,
        )

    def _succeeded(self, report: SyncReport) -> None:
        if self.failures:
            log.info("sync works again after %d failures", self.failures)
        self.failures = 0
        report.next_delay_s = self.interval_s
        self.next_attempt_s = self.clock.monotonic() + self.interval_s
        self.journal.set_meta("last_sync_ok_at", self.wall_clock.now())
        self.journal.set_meta("last_sync_error", None)
        self.journal.clear_fault("sync_auth")
        if not report.held:
            self.journal.clear_fault("sync_protocol")

    # -- config -------------------------------------------------------------------

    def refresh_config(self) -> dict:
        """Fetch the backend config and keep it in the journal (used offline after a restart)."""
        try:
            config = self.client.fetch_config()
        except BackendAuthError as exc:
            self.journal.raise_fault("sync_auth", str(exc))
            raise
        self.journal.set_meta("backend_config", config)
        self.journal.set_meta("backend_config_at", self.wall_clock.now())
        self._config_due_s = self.clock.monotonic() + self.config_refresh_s
        return config

    def cached_config(self) -> dict | None:
        """Return the last backend config fetched (survives restarts), or None."""
        return self.journal.get_meta("backend_config")

    # -- waiting for one answer ---------------------------------------------------------

    def wait_result(self, deposit_id: str, timeout_s: float) -> dict | None:
        """Return the backend's answer for a deposit if it comes within ``timeout_s``, else None.

        With the background thread running this wakes it and waits; without it,
        it uploads inline, bounded by ``timeout_s``.  The answer is kept in the
        journal either way.
        """
        if (answer := self._answer_of(deposit_id)) is not None:
            return answer
        if self.running:
            self.wake()
            with self._answered:
                self._answered.wait_for(
                    lambda: self._answer_of(deposit_id) is not None, timeout=timeout_s
                )
        else:
            self.sync_once(deadline_s=self.clock.monotonic() + timeout_s)
        return self._answer_of(deposit_id)

    def _answer_of(self, deposit_id: str) -> dict | None:
        return self.journal.get(deposit_id).answer()

    # -- the background thread ------------------------------------------------------

    @property
    def running(self) -> bool:
        """Return True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the background thread (uploads, retries, config refresh)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kiosk-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background thread, waiting for a request in flight to end."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def wake(self) -> None:
        """Attempt an upload now, ignoring the backoff (a new deposit was recorded)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait_s = self.next_attempt_s - self.clock.monotonic()
            if wait_s > 0:
                self._wake.wait(wait_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._step()
            except Exception:  # never let the uploader die silently; retry later
                log.exception("sync thread step failed")
                self.next_attempt_s = self.clock.monotonic() + self.max_delay_s

    def _step(self) -> None:
        if self.clock.monotonic() >= self._config_due_s:
            try:
                self.refresh_config()
            except SyncError as exc:
                log.warning("config refresh failed: %s", exc)
                self._config_due_s = self.clock.monotonic() + min(
                    self.config_refresh_s, self.max_delay_s
                )
        report = self.sync_once()
        self.next_attempt_s = self.clock.monotonic() + report.next_delay_s

    def status(self) -> dict[str, Any]:
        """Return the uploader's own state: failures in a row, next attempt, thread."""
        return {
            "running": self.running,
            "failures": self.failures,
            "next_attempt_in_s": max(0.0, self.next_attempt_s - self.clock.monotonic()),
            "batch_size": self.batch_size,
        }

"""PayloadQueue: the bounded queue both scanners hand payloads to read() through."""

from __future__ import annotations

import threading

import pytest

from hardware import ScannerFault
from hardware.payload_queue import PayloadQueue

JOIN_S = 10.0  # only a broken wake-up waits this long; the reads below wait far longer


def test_payloads_come_out_in_order_and_an_empty_queue_times_out():
    queue = PayloadQueue(4)
    assert queue.put("A") and queue.put("B")
    assert len(queue) == 2
    assert (queue.read(0), queue.read(0), queue.read(0)) == ("A", "B", None)


def test_a_full_queue_drops_the_oldest_and_says_so():
    queue = PayloadQueue(2)
    assert queue.put("A") and queue.put("B")
    assert queue.put("C") is False
    assert [queue.read(0), queue.read(0)] == ["B", "C"]


def test_a_fault_raises_only_once_the_queued_payloads_are_read():
    queue = PayloadQueue(4)
    queue.put("A")
    assert queue.set_fault("unplugged") is True
    assert queue.set_fault("still unplugged") is False  # not a new fault: no second log
    assert queue.read(0) == "A"
    with pytest.raises(ScannerFault, match="still unplugged"):
        queue.read(0)
    assert str(queue.fault) == "still unplugged"
    assert queue.clear_fault() is True and queue.clear_fault() is False
    assert queue.fault is None and queue.read(0) is None


def test_clear_discards_and_counts():
    queue = PayloadQueue(4)
    queue.put("A")
    queue.put("B")
    assert queue.clear() == 2 and queue.read(0) is None


def test_close_makes_reads_raise_even_with_payloads_queued():
    queue = PayloadQueue(4, closed_message="camera reader is closed")
    queue.put("A")
    queue.close()
    with pytest.raises(ScannerFault, match="camera reader is closed"):
        queue.read(0)


def blocked_read(queue: PayloadQueue) -> tuple[threading.Thread, list]:
    """Start a read(300 s) on a thread; return it and the list its outcome goes to."""
    outcome: list = []
    started = threading.Event()

    def run():
        started.set()
        try:
            outcome.append(queue.read(300))
        except ScannerFault as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(JOIN_S)
    return thread, outcome


@pytest.mark.parametrize(
    ("wake", "expected"),
    [
        (lambda q: q.put("LABEL"), "LABEL"),
        (lambda q: q.set_fault("unplugged"), "unplugged"),
        (lambda q: q.close(), "scanner is closed"),
    ],
)
def test_a_waiting_read_wakes_at_once(wake, expected):
    queue = PayloadQueue(4)
    thread, outcome = blocked_read(queue)
    wake(queue)  # before or during the wait: either way the read ends without its timeout
    thread.join(JOIN_S)
    assert not thread.is_alive()
    assert [str(item) for item in outcome] == [expected]


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        PayloadQueue(0)

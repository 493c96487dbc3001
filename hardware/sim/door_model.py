"""A simulated bin door on the fake GPIO header: lock/actuator output in, closed sensor out.

* ``kind="solenoid"``: energising the output pulls the bolt; only then can the
  resident ``open_by_hand()``.  The bolt is spring-slanted, so
  ``close_by_hand()`` shuts the door whether the coil is energised or not.
* ``kind="actuator"``: the output drives the door: energised = it travels open,
  released = it travels shut, each taking ``travel_s`` on the board's clock.
* ``block()``: a jammed bolt or an obstruction: the door does not move from
  where it is (neither by hand nor by motor) until ``unblock()``.

The closed sensor is driven on ``sensor_pin`` (``sensor_closed_level`` when
shut), so edge detection and the driver's polling both see it.  A lock pin
that is not an output (never set up, or cleaned up) counts as released: the
fail-secure hardware default.
"""

from __future__ import annotations

from typing import Any

from hardware.clock import call_later


class DoorModel:
    """One simulated door; attach with ``board.attach(DoorModel(...))``."""

    def __init__(
        self,
        lock_pin: int,
        sensor_pin: int,
        *,
        kind: str = "solenoid",
        active_low: bool = False,
        sensor_closed_level: str = "low",
        travel_s: float = 1.0,
        start_closed: bool = True,
    ):
        if kind not in ("solenoid", "actuator"):
            raise ValueError("kind is 'solenoid' or 'actuator'")
        self.lock_pin, self.sensor_pin = lock_pin, sensor_pin
        self.kind, self.active_low = kind, active_low
        self._closed_high = sensor_closed_level == "high"
        self.travel_s = travel_s
        self.closed = start_closed
        self.blocked = False
        self.energised = False
        self._motion = 0  # generation: a newer command cancels a travel in progress
        self.board: Any = None
        self.log: list[str] = []  # what happened, for test failure messages

    def attach(self, board: Any) -> None:
        """Wire the lock output and the sensor to ``board``."""
        self.board = board
        board.watch_output(self.lock_pin, self._on_lock_output)
        self._on_lock_output(board.output_state(self.lock_pin))
        self._update_sensor()

    # -- test actions ----------------------------------------------------------------

    def open_by_hand(self) -> bool:
        """Pull the door; return True if it opened (solenoid energised, not blocked)."""
        if self.kind != "solenoid" or self.blocked:
            self.log.append("open_by_hand refused")
            return False
        if self.closed and not self.energised:
            self.log.append("open_by_hand: locked")
            return False
        self._set_closed(False)
        return True

    def close_by_hand(self) -> bool:
        """Push the door shut; return True if it closed (not blocked; solenoid kind only)."""
        if self.kind != "solenoid" or self.blocked:
            self.log.append("close_by_hand refused")
            return False
        self._set_closed(True)
        return True

    def block(self) -> None:
        """Jam the door where it is (bolt stuck, or something in the doorway)."""
        self.blocked = True
        self.log.append("blocked")

    def unblock(self) -> None:
        """Clear the jam; an actuator resumes towards where its output sends it."""
        self.blocked = False
        self.log.append("unblocked")
        if self.kind == "actuator":
            self._start_travel()

    # -- wiring -------------------------------------------------------------------

    def _on_lock_output(self, level: int | None) -> None:
        energised = level is not None and bool(level) != self.active_low
        if energised == self.energised:
            return
        self.energised = energised
        self.log.append("energised" if energised else "released")
        if self.kind == "actuator":
            self._start_travel()

    def _start_travel(self) -> None:
        self._motion += 1
        motion, target_closed = self._motion, not self.energised
        if self.board is None or target_closed == self.closed:
            return

        def arrive() -> None:
            if motion == self._motion and not self.blocked:
                self._set_closed(target_closed)

        call_later(self.board.clock, self.travel_s, arrive)

    def _set_closed(self, closed: bool) -> None:
        self.closed = closed
        self.log.append("closed" if closed else "opened")
        self._update_sensor()

    def _update_sensor(self) -> None:
        if self.board is None:
            return
        high = self._closed_high if self.closed else not self._closed_high
        (self.board.drive_high if high else self.board.drive_low)(self.sensor_pin)

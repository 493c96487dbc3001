#!/usr/bin/env python3
"""Print figures for the HX711 driver running against the bit-level simulator.

1. Real time (SystemClock): how long one 25-pulse read takes from Python on
   this machine, and the distribution of PD_SCK high phases, i.e. how much
   margin below the chip's 60 us power-down limit the bit-bang loop has here.
   (On a Pi the GPIO call itself costs more; run it there with the same
   script to see the real margin.)
2. Virtual time: accuracy and cost of filtered readings with noise, spikes
   and overruns injected (the faults HARDWARE.md reports from the field).

Usage: .venv/bin/python scripts/bench_hx711.py [--reads N] [--readings N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware import ScaleFault
from hardware.clock import SystemClock, VirtualClock
from hardware.gpio import Pins
from hardware.hx711 import HX711, _Overrun
from hardware.sim.fake_rpi_gpio import FakeGPIO
from hardware.sim.hx711_model import HX711Model

DOUT, SCK = 5, 6


def high_phases_ns(history: list[tuple[int, int | None]]) -> list[int]:
    """Return each rise-to-fall interval of a pin history."""
    phases, rise = [], None
    for t_ns, level in history:
        if level == 1:
            rise = t_ns
        elif rise is not None:
            phases.append(t_ns - rise)
            rise = None
    return phases


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def real_time_timing(reads: int) -> None:
    board = FakeGPIO(SystemClock())
    model = board.attach(HX711Model(DOUT, SCK, rate_sps=80, offset_counts=12_345))
    hx = HX711(Pins(board, "sim"), DOUT, SCK, rate_sps=80, samples=3)
    for attempt in range(1, 6):  # prime and settle; a busy machine can overrun every try
        try:
            hx.read_counts()
            break
        except ScaleFault as exc:
            print(f"  priming read {attempt} failed ({exc}); trying again")
    else:
        raise SystemExit("the HX711 model never gave a reading: is the machine overloaded?")
    per_read_us = []
    overruns = 0
    for _ in range(reads):
        hx._wait_ready(time.monotonic() + 1)
        t0 = time.perf_counter_ns()
        try:
            hx._read_word(time.monotonic() + 1)
        except _Overrun:
            overruns += 1  # also counted in hx.stats; the read's time still counts below
        per_read_us.append((time.perf_counter_ns() - t0) / 1000)
    phases_us = [p / 1000 for p in high_phases_ns(board.history(SCK))]
    print(f"real time, this machine, {reads} reads through fake RPi.GPIO + model:")
    print(
        f"  one 25-pulse read: p50 {statistics.median(per_read_us):.0f} us, "
        f"p99 {pct(per_read_us, 0.99):.0f} us, max {max(per_read_us):.0f} us"
    )
    print(
        f"  PD_SCK high phase: p50 {statistics.median(phases_us):.1f} us, p99 {pct(phases_us, 0.99):.1f} us, "
        f"p99.9 {pct(phases_us, 0.999):.1f} us, max {max(phases_us):.1f} us "
        f"({sum(p > 60 for p in phases_us)} of {len(phases_us)} over 60 us)"
    )
    print(
        f"  overruns detected by the driver: {hx.stats.overruns} ({overruns} in the timed reads); "
        f"model power-downs: {model.power_downs}"
    )


def faulty_accuracy(readings: int) -> None:
    clock = VirtualClock()
    board = FakeGPIO(clock)
    model = board.attach(
        HX711Model(
            DOUT,
            SCK,
            offset_counts=8_000,
            counts_per_g=10,
            load_g=5_000,
            noise_counts=20,
            spike_fraction=0.05,
            overrun_fraction=0.05,
            seed=1,
        )
    )
    hx = HX711(Pins(board, "sim"), DOUT, SCK, samples=3, clock=clock)
    expected = model.expected_counts()
    errors, durations, faults = [], [], 0
    for _ in range(readings):
        start_s = clock.monotonic()
        try:
            errors.append(abs(hx.read_counts() - expected))
        except ScaleFault:
            faults += 1
        durations.append(clock.monotonic() - start_s)
    s = hx.stats
    print(
        f"virtual time, {readings} readings (median of 3) at 10 SPS, noise 20 counts, "
        "5 % spikes, 5 % overruns:"
    )
    print(
        f"  error vs truth: p50 {statistics.median(errors):.0f}, max {max(errors)} counts "
        f"(noise sigma 20); faults {faults}"
    )
    print(
        f"  conversions per reading: {s.conversions / readings:.2f}; time per reading: "
        f"p50 {statistics.median(durations):.2f} s, p99 {pct(durations, 0.99):.2f} s"
    )
    print(
        f"  rejected: {s.spikes} spikes, {s.overruns} overruns (each costs a re-select and "
        f"0.4 s settling), {s.outliers} outliers, {s.unsettled} unsettled"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--readings", type=int, default=1_000)
    args = parser.parse_args()
    real_time_timing(args.reads)
    faulty_accuracy(args.readings)


if __name__ == "__main__":
    main()

"""What real-time pacing needs: fixed rings of stamps, a thread that keeps time, and the
figures of what it achieved.

A real-time loop (`hil.sim.loop.ClosedLoop` against a firmware with its own clock) asks
for SCHED_FIFO and a 1 ns timer slack when it may, so that its send period holds on a
busy host; `LoopTiming` reports what it got.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

_PR_SET_TIMERSLACK = 29


class Ring:
    """The newest ``size`` samples (int64, or rows of ``width`` floats), preallocated: no
    growth in long runs.

    The buffer is written once at creation: numpy's zeros come from calloc, whose pages
    the kernel maps only when first written, which would show as memory growth while
    the ring fills."""

    def __init__(self, size: int, width: int | None = None) -> None:
        if width is None:
            self._buf = np.full(size, 0, dtype=np.int64)
        else:
            self._buf = np.full((size, width), np.nan)
        self._n = 0

    def append(self, value) -> None:
        self._buf[self._n % len(self._buf)] = value
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, len(self._buf))

    def __bool__(self) -> bool:
        return self._n > 0

    def values(self) -> np.ndarray:
        """The kept samples, oldest first (a copy)."""
        size = len(self._buf)
        if self._n <= size:
            return self._buf[: self._n].copy()
        i = self._n % size
        return np.concatenate([self._buf[i:], self._buf[:i]])


def make_realtime(priority: int | None) -> str:
    """SCHED_FIFO and 1 ns timer slack for the calling thread when permitted; returns what it got."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if priority is None:
        return "SCHED_OTHER"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError, AttributeError):
        return "SCHED_OTHER (SCHED_FIFO not permitted)"
    return f"SCHED_FIFO/{priority}"


@dataclass(frozen=True)
class LoopTiming:
    """What the real-time loop achieved: send periods and the firmware's answers."""

    rate_hz: float
    seconds: float
    sent: int
    motor_packets: int
    send_period_p50_us: float
    send_period_p99_us: float
    send_period_max_us: float
    send_jitter_p99_us: float
    missed: int
    motor_rate_hz: float
    motor_period_p99_us: float
    motor_gaps_over_5ms: int
    latency_p50_us: float
    scheduler: str

    def measurements(self) -> dict[str, object]:
        """The figures a scenario's measurements keep."""
        return {
            "state_rate_hz": self.sent / self.seconds,
            "state_jitter_p99_us": self.send_jitter_p99_us,
            "motor_rate_hz": self.motor_rate_hz,
            "motor_period_p99_us": self.motor_period_p99_us,
            "loop_scheduler": self.scheduler,
        }

    def lines(self) -> list[str]:
        return [
            f"state sent at {self.sent / self.seconds:.0f}/s for {self.seconds:.1f} s "
            f"(target {self.rate_hz:.0f} Hz, {self.scheduler}): period p50 {self.send_period_p50_us:.0f} us, "
            f"p99 {self.send_period_p99_us:.0f} us, max {self.send_period_max_us:.0f} us, "
            f"jitter p99 {self.send_jitter_p99_us:.0f} us, {self.missed} missed",
            f"motor packets {self.motor_rate_hz:.0f}/s: period p99 {self.motor_period_p99_us:.0f} us, "
            f"{self.motor_gaps_over_5ms} gaps > 5 ms, state->motor latency p50 {self.latency_p50_us:.0f} us (kernel arrival stamps)",
        ]


def loop_timing(
    send: np.ndarray, motor: np.ndarray, latency_ns: np.ndarray, rate_hz: float, scheduler: str
) -> LoopTiming | None:
    """Figures from send stamps, answer arrival stamps (host monotonic ns) and
    send->answer latencies; None with fewer than three sends."""
    if len(send) < 3:
        return None
    seconds = (send[-1] - send[0]) * 1e-9
    ps = np.diff(send) * 1e-3
    nominal = 1e6 / rate_hz
    pm = np.diff(motor) * 1e-3 if len(motor) > 2 else np.zeros(1)
    lat_ns = latency_ns[-len(motor):] if len(motor) else latency_ns[:0]
    lat = (lat_ns if len(lat_ns) else np.zeros(1)) * 1e-3
    return LoopTiming(
        rate_hz=rate_hz,
        seconds=seconds,
        sent=len(send),
        motor_packets=len(motor),
        send_period_p50_us=float(np.percentile(ps, 50)),
        send_period_p99_us=float(np.percentile(ps, 99)),
        send_period_max_us=float(ps.max()),
        send_jitter_p99_us=float(np.percentile(np.abs(ps - nominal), 99)),
        missed=int(np.sum(ps > 1.5 * nominal)),
        motor_rate_hz=len(motor) / seconds if seconds > 0 else 0.0,
        motor_period_p99_us=float(np.percentile(pm, 99)),
        motor_gaps_over_5ms=int(np.sum(pm > 5000.0)),
        latency_p50_us=float(np.percentile(lat, 50)),
        scheduler=scheduler,
    )

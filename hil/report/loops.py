"""Loop periods from a run's recorded timestamps, for the histogram and the summary.

The runners record timestamps only (a list append per loop); the periods and figures are
worked out here after the run. Figures come from `hil.timing.loop_stats` (value, unit,
uncertainty) when that module is available; without it the periods are still returned
for the histogram, and the figure list is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Series = dict[str, np.ndarray]


def _positive_diffs(stamps: np.ndarray) -> np.ndarray:
    """Differences of consecutive stamps, leaving out non-positive ones (a clock restart,
    two answers in one read)."""
    if stamps.size < 2:
        return np.empty(0)
    d = np.diff(stamps.astype(np.float64))
    return d[d > 0]


def _stamps(recorded: object) -> np.ndarray:
    """Timestamps as int64: a sequence, or a ring buffer with `values()` (oldest first)."""
    values = getattr(recorded, "values", None)
    if callable(values):
        recorded = values()
    return np.asarray(recorded, dtype=np.int64)


def _stats(periods_us: np.ndarray, name: str, nominal_hz: float | None, resolution_us: float) -> list:
    if periods_us.size < 2:
        return []
    try:
        from hil.timing import loop_stats
    except ImportError:
        return []
    try:
        stats = loop_stats(
            periods_us=periods_us, nominal_hz=nominal_hz, resolution_us=resolution_us, name=name
        )
    except (ValueError, TypeError):
        return []
    return list(stats.measurements())


def lockstep_timing(
    time_usec: Sequence[int], arrival_ns: Sequence[int], rate_hz: float | None
) -> tuple[Series, list]:
    """Periods and figures of a lockstep MAVLink loop.

    `time_usec` and `arrival_ns` are the board's stamp and the host's arrival time
    (monotonic ns) of every HIL_ACTUATOR_CONTROLS. Two series: the board's loop period
    on its own (vehicle) clock, which in lockstep is exactly one step unless the board
    skipped or repeated one; and the host's wall time between reads that brought an
    answer, which is what the lockstep speed is made of.
    """
    if len(time_usec) < 3 or len(arrival_ns) < 3:
        return {}, []
    board = _positive_diffs(np.asarray(time_usec, dtype=np.int64))
    host = _positive_diffs(np.unique(np.asarray(arrival_ns, dtype=np.int64))) * 1e-3
    series: Series = {}
    figures: list = []
    if board.size:
        series["board loop period (vehicle clock)"] = board
        figures += _stats(board, "board loop", rate_hz if rate_hz and rate_hz > 0 else None, 1.0)
    if host.size:
        series["lockstep step (host clock)"] = host
        figures += _stats(host, "lockstep step", None, 0.001)
    return series, figures


def realtime_timing(
    send_ns: object, motor_ns: object, rate_hz: float | None, *, since_ns: int = 0
) -> tuple[Series, list]:
    """Periods and figures of a real-time loop: the state packets the harness sent and the
    motor packets that came back, both on the host's monotonic clock, from `since_ns` on.
    Each is a sequence of stamps or a ring buffer with `values()`."""
    series: Series = {}
    figures: list = []
    send_arr = _stamps(send_ns)
    motor_arr = _stamps(motor_ns)
    send = _positive_diffs(send_arr[send_arr >= since_ns]) * 1e-3
    motor = _positive_diffs(motor_arr[motor_arr >= since_ns]) * 1e-3
    if send.size:
        series["state sent (host clock)"] = send
        figures += _stats(send, "state send", rate_hz if rate_hz and rate_hz > 0 else None, 0.001)
    if motor.size:
        series["motor packets (host arrival)"] = motor
        figures += _stats(motor, "motor packet", None, 0.001)
    return series, figures

"""Timing figures from recorded timestamps: loop rate and jitter, latencies, clock alignment.

Everything here works on numpy arrays recorded during a run and returns `Measurement`s:
a value with its unit, its uncertainty and optional limits. The uncertainty is about a
95 % bound; it combines the statistical spread of the figure (how far another run of
the same loop could put it) with the resolution of the timestamps. A value whose
uncertainty reaches across a limit is reported as marginal rather than passing or
failing silently.

Definitions used throughout:

- period: the difference of consecutive loop timestamps.
- nominal period: 1 / `nominal_hz` when given, else the median period.
- jitter: the 99th percentile of |period - nominal period|.
- overrun: a period longer than 1.5 nominal periods (the loop missed at least one tick).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: Two-sided 95 % point of the normal distribution.
Z95 = 1.959963984540054
#: A period longer than this many nominal periods counts as an overrun.
OVERRUN_FACTOR = 1.5
#: TIMESYNC samples with a longer round trip are dropped (PROTOCOLS.md section 8).
MAX_RTT_NS = 10_000_000


# -- measurements ----------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """A value with unit, uncertainty (about 95 %) and optional limits `minimum`/`maximum`."""

    name: str
    value: float
    unit: str
    uncertainty: float = 0.0
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        for label, number in (("value", self.value), ("uncertainty", self.uncertainty)):
            if not _is_finite_number(number):
                raise ValueError(f"measurement {self.name!r}: {label} {number!r} is not finite")
        if self.uncertainty < 0:
            raise ValueError(
                f"measurement {self.name!r}: uncertainty {self.uncertainty!r} is negative"
            )
        for label, limit in (("minimum", self.minimum), ("maximum", self.maximum)):
            if limit is not None and not _is_finite_number(limit):
                raise ValueError(f"measurement {self.name!r}: {label} {limit!r} is not finite")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"measurement {self.name!r}: minimum {self.minimum} is above maximum {self.maximum}"
            )

    def within(self, minimum: float | None = None, maximum: float | None = None) -> Measurement:
        """The same measurement judged against these limits."""
        return replace(self, minimum=minimum, maximum=maximum)

    @property
    def passed(self) -> bool:
        """True when the value lies within the limits (always, without limits)."""
        if self.minimum is not None and self.value < self.minimum:
            return False
        return not (self.maximum is not None and self.value > self.maximum)

    @property
    def marginal(self) -> bool:
        """True when a limit lies within the uncertainty of the value: the verdict could flip."""
        return any(
            limit is not None and self.uncertainty > 0 and abs(self.value - limit) <= self.uncertainty
            for limit in (self.minimum, self.maximum)
        )

    @property
    def verdict(self) -> str:
        """"pass", "fail", or "marginal" when the uncertainty reaches across a limit."""
        if self.marginal:
            return "marginal"
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields, the verdict included."""
        return {
            "name": self.name,
            "value": float(self.value),
            "unit": self.unit,
            "uncertainty": float(self.uncertainty),
            "minimum": self.minimum,
            "maximum": self.maximum,
            "passed": self.passed,
            "marginal": self.marginal,
            "verdict": self.verdict,
        }

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.name} {self.value:.6g} ± {self.uncertainty:.2g}{unit}"
        limits = []
        if self.minimum is not None:
            limits.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            limits.append(f"<= {self.maximum:g}")
        if limits:
            text += f" (limit {' and '.join(limits)}{unit}): {self.verdict}"
        return text


def _is_finite_number(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


# -- input checks ----------------------------------------------------------------------
def _as_array(values: Any, what: str, *, min_len: int = 1) -> np.ndarray:
    """`values` as a 1-D finite numeric array (integers kept as int64), or a ValueError."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: cannot be read as an array of numbers ({exc})") from None
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{what}: expected numbers, got an array of {arr.dtype} values"
            ) from None
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {arr.shape}")
    if arr.size < min_len:
        raise ValueError(f"{what}: need at least {min_len} values, got {arr.size}")
    if arr.dtype.kind == "u":
        if arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{what}: values beyond the int64 range")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(
                f"{what}: {bad.size} value(s) are NaN or infinite, the first at index {bad[0]}"
            )
    return arr


def _check_resolution(resolution: float, what: str = "resolution") -> float:
    if not _is_finite_number(resolution) or float(resolution) < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {resolution!r}")
    return float(resolution)


#: Wider spans than this (about 146 years in us) are not one run's timestamps.
_MAX_SPAN = 2**62


def _periods_from_timestamps(timestamps: np.ndarray) -> np.ndarray:
    span = float(timestamps.max()) - float(timestamps.min())
    if span >= _MAX_SPAN:
        raise ValueError(
            f"timestamps span {span:.3g} units, too wide to be the timestamps of one run"
        )
    steps = np.diff(timestamps)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"timestamps must increase strictly: sample {i} ({timestamps[i]}) is not after "
            f"sample {i - 1} ({timestamps[i - 1]}); {bad.size} such step(s) in all "
            "(a reboot, a wrapped counter, or messages from two clocks mixed?)"
        )
    return steps.astype(np.float64)


# -- order statistics --------------------------------------------------------------------
def _quantile(sorted_x: np.ndarray, q: float) -> tuple[float, float]:
    """The q-quantile of sorted data and the half-width of its ~95 % order-statistic interval.

    The interval runs between the order statistics at ranks q(n-1) ± 1.96 sqrt(n q (1-q)),
    the normal approximation to the binomial count of samples below the quantile. It
    needs no resampling, and it is honest in the tail: when the rank runs off the end of
    the data the interval ends at the extreme seen.
    """
    n = sorted_x.size
    est = float(np.quantile(sorted_x, q))
    if n == 1:
        return est, 0.0
    half = Z95 * math.sqrt(n * q * (1.0 - q))
    k = q * (n - 1)
    lo = min(n - 1, max(0, math.floor(k - half)))
    hi = min(n - 1, max(0, math.ceil(k + half)))
    return est, max(est - float(sorted_x[lo]), float(sorted_x[hi]) - est, 0.0)


_T95_SMALL = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _t95(dof: int) -> float:
    """Two-sided 95 % point of Student's t with `dof` degrees of freedom (Z95 for dof < 1)."""
    if dof < 1:
        return Z95
    if dof <= len(_T95_SMALL):
        return _T95_SMALL[dof - 1]
    z, v = Z95, float(dof)
    return z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v * v)


def _rss(*parts: float) -> float:
    return math.sqrt(sum(p * p for p in parts))


# -- loop timing -------------------------------------------------------------------------
@dataclass(frozen=True)
class LoopStats:
    """Rate, period statistics, jitter and overruns of one recorded loop."""

    n: int
    nominal_us: float
    nominal_from: str
    rate: Measurement
    period_mean: Measurement
    period_p50: Measurement
    period_p99: Measurement
    period_max: Measurement
    jitter_p99: Measurement
    overruns: Measurement

    def measurements(self) -> tuple[Measurement, ...]:
        """Every figure, in report order."""
        return (
            self.rate,
            self.period_mean,
            self.period_p50,
            self.period_p99,
            self.period_max,
            self.jitter_p99,
            self.overruns,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the sample count, the nominal period used and every measurement."""
        return {
            "n": self.n,
            "nominal_us": self.nominal_us,
            "nominal_from": self.nominal_from,
            "measurements": [m.to_dict() for m in self.measurements()],
        }

    def __str__(self) -> str:
        return (
            f"{self.n} periods: {self.rate}; period mean {self.period_mean.value:.1f} us, "
            f"p99 {self.period_p99.value:.1f} us, max {self.period_max.value:.1f} us; "
            f"jitter p99 {self.jitter_p99.value:.1f} ± {self.jitter_p99.uncertainty:.1g} us "
            f"(from the {self.nominal_from} period {self.nominal_us:.1f} us); "
            f"{int(self.overruns.value)} overrun(s)"
        )


@np.errstate(over="ignore", invalid="ignore")
def loop_stats(
    timestamps_us: Sequence[float] | np.ndarray | None = None,
    nominal_hz: float | None = None,
    *,
    periods_us: Sequence[float] | np.ndarray | None = None,
    resolution_us: float = 1.0,
    name: str = "loop",
) -> LoopStats:
    """Loop rate, period mean/p50/p99/max, jitter and overruns from per-loop timestamps.

    Give either `timestamps_us` (one per loop, strictly increasing, e.g. the time_usec of
    every HIL_ACTUATOR_CONTROLS) or `periods_us`. Without `nominal_hz` the median period
    stands in for the nominal one. `resolution_us` is the timestamps' resolution: a
    period can be wrong by up to one step of it, which every figure's uncertainty
    includes. Bad input (empty, NaN, non-increasing) raises ValueError saying what and where.
    """
    if (timestamps_us is None) == (periods_us is None):
        raise ValueError("give exactly one of timestamps_us and periods_us")
    res = _check_resolution(resolution_us, "resolution_us")
    if timestamps_us is not None:
        stamps = _as_array(timestamps_us, "timestamps_us", min_len=2)
        periods = _periods_from_timestamps(stamps)
    else:
        periods = _as_array(periods_us, "periods_us", min_len=1).astype(np.float64)
        bad = np.flatnonzero(periods <= 0)
        if bad.size:
            raise ValueError(
                f"periods_us: period {bad[0]} is {periods[bad[0]]}, but periods must be > 0"
            )
    if nominal_hz is not None and (not _is_finite_number(nominal_hz) or float(nominal_hz) <= 0):
        raise ValueError(f"nominal_hz must be a finite number > 0, got {nominal_hz!r}")

    n = periods.size
    if float(periods.max()) * n >= _MAX_SPAN:
        raise ValueError(
            f"periods_us: the longest period, {periods.max():.3g} us, is too long to analyse"
        )
    ordered = np.sort(periods)
    mean = float(periods.mean())
    spread = float(periods.std(ddof=1)) if n > 1 else 0.0
    # The mean period is the span over n: only the two end stamps' resolution enters it.
    u_mean = _rss(_t95(n - 1) * spread / math.sqrt(n), res / n)
    p50, u50 = _quantile(ordered, 0.5)
    p99, u99 = _quantile(ordered, 0.99)
    if nominal_hz is not None:
        nominal, nominal_from, u_nominal = 1e6 / float(nominal_hz), "given", 0.0
    else:
        nominal, nominal_from, u_nominal = p50, "median", _rss(u50, res)
    deviation = np.sort(np.abs(periods - nominal))
    jitter, u_jitter = _quantile(deviation, 0.99)
    threshold = OVERRUN_FACTOR * nominal
    overruns = int(np.count_nonzero(periods > threshold))
    # Periods this close to the threshold could fall either side of it.
    doubtful = int(np.count_nonzero(np.abs(periods - threshold) <= res))
    rate = 1e6 / mean

    def m(label: str, value: float, unit: str, u: float) -> Measurement:
        return Measurement(f"{name} {label}", value, unit, u)

    return LoopStats(
        n=n,
        nominal_us=nominal,
        nominal_from=nominal_from,
        rate=m("rate", rate, "Hz", rate * u_mean / mean),
        period_mean=m("period mean", mean, "us", u_mean),
        period_p50=m("period p50", p50, "us", _rss(u50, res)),
        period_p99=m("period p99", p99, "us", _rss(u99, res)),
        period_max=m("period max", float(ordered[-1]), "us", res),
        jitter_p99=m("jitter p99", jitter, "us", _rss(u_jitter, res, u_nominal)),
        overruns=m("overruns", float(overruns), "", float(doubtful)),
    )


# -- latency -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyStats:
    """Cause-to-effect delays: how many causes were answered, and mean/p50/p99/max delay."""

    causes: int
    paired: int
    unanswered: int
    mean: Measurement
    p50: Measurement
    p99: Measurement
    max: Measurement
    latencies: np.ndarray = field(repr=False, compare=False)

    def measurements(self) -> tuple[Measurement, ...]:
        return (self.mean, self.p50, self.p99, self.max)

    def to_dict(self) -> dict[str, Any]:
        return {
            "causes": self.causes,
            "paired": self.paired,
            "unanswered": self.unanswered,
            "measurements": [m.to_dict() for m in self.measurements()],
        }


@np.errstate(over="ignore", invalid="ignore")
def latency_stats(
    cause_times: Sequence[float] | np.ndarray,
    effect_times: Sequence[float] | np.ndarray,
    *,
    pairing: str = "next",
    unit: str = "us",
    resolution: float = 1.0,
    max_latency: float | None = None,
    name: str = "latency",
) -> LatencyStats:
    """Delays from causes (e.g. state packets sent) to their effects (motor packets received).

    Both arrays are in the same clock and `unit`. With `pairing="next"` (both sorted) a
    cause is answered by the first effect at or after it and before the next cause (or
    within `max_latency`): an effect answers the latest cause before it, and a cause with
    no effect in its window is counted as unanswered. With `pairing="index"` the arrays
    are already paired element by element. `resolution` is the clocks' resolution; a
    delay is the difference of two stamps, so it can be wrong by up to one step.
    """
    res = _check_resolution(resolution)
    causes = _as_array(cause_times, "cause_times").astype(np.float64)
    effects = _as_array(effect_times, "effect_times", min_len=0).astype(np.float64)
    for what, arr in (("cause_times", causes), ("effect_times", effects)):
        if arr.size and float(arr.max()) - float(arr.min()) >= _MAX_SPAN:
            raise ValueError(f"{what} span too wide to be the event times of one run")
    if max_latency is not None and (not _is_finite_number(max_latency) or max_latency <= 0):
        raise ValueError(f"max_latency must be a finite number > 0, got {max_latency!r}")
    if pairing == "index":
        if causes.size != effects.size:
            raise ValueError(
                f"pairing='index' needs as many effects as causes: {effects.size} effects, "
                f"{causes.size} causes"
            )
        delays = effects - causes
        if max_latency is not None:
            delays = delays[delays <= max_latency]
    elif pairing == "next":
        for what, arr in (("cause_times", causes), ("effect_times", effects)):
            down = np.flatnonzero(np.diff(arr) < 0)
            if down.size:
                i = int(down[0]) + 1
                raise ValueError(
                    f"{what} must be sorted for pairing='next': value {i} ({arr[i]}) is "
                    f"before value {i - 1} ({arr[i - 1]})"
                )
        idx = np.searchsorted(effects, causes, side="left")
        found = idx < effects.size
        answer = effects[np.minimum(idx, max(effects.size - 1, 0))] if effects.size else causes
        window_end = np.append(causes[1:], np.inf)
        if max_latency is not None:
            window_end = np.minimum(window_end, causes + max_latency)
        found &= answer < window_end
        # Equal cause times share one window: only the last of them can be answered.
        delays = (answer - causes)[found]
    else:
        raise ValueError(f"pairing must be 'next' or 'index', got {pairing!r}")
    if not np.all(np.isfinite(delays)):
        raise ValueError("cause and effect times are too far apart to subtract (overflow)")
    if delays.size == 0:
        raise ValueError(
            f"none of the {causes.size} causes was followed by an effect "
            f"({effects.size} effects; pairing {pairing!r}): nothing to measure"
        )
    ordered = np.sort(delays)
    n = ordered.size
    mean = float(ordered.mean())
    spread = float(ordered.std(ddof=1)) if n > 1 else 0.0
    p50, u50 = _quantile(ordered, 0.5)
    p99, u99 = _quantile(ordered, 0.99)

    def m(label: str, value: float, u: float) -> Measurement:
        return Measurement(f"{name} {label}", value, unit, u)

    return LatencyStats(
        causes=int(causes.size),
        paired=int(n),
        unanswered=int(causes.size - n),
        mean=m("mean", mean, _rss(_t95(n - 1) * spread / math.sqrt(n), res)),
        p50=m("p50", p50, _rss(u50, res)),
        p99=m("p99", p99, _rss(u99, res)),
        max=m("max", float(ordered[-1]), res),
        latencies=delays,
    )


# -- clock alignment ---------------------------------------------------------------------
@dataclass(frozen=True)
class ClockAlignment:
    """A linear map between the host's clock (ns) and a board's clock (us).

    board_us = board_ref_us + rate * (host_ns - host_ref_ns) / 1000. `rate` is board
    microseconds per host microsecond: 1 + drift for a board on its own crystal, the
    simulation speed for a lockstep board, 0 for a board whose clock stood still.
    `uncertainty_us` bounds (about 95 %) how far a mapped time can be off within the span
    of the samples the map was fitted to; `residual_us` is the RMS scatter of those samples.
    """

    host_ref_ns: int
    board_ref_us: float
    rate: float
    residual_us: float
    uncertainty_us: float
    n_used: int
    n_total: int

    @property
    def drift_ppm(self) -> float:
        """How much faster the board clock runs than the host's, parts per million."""
        return (self.rate - 1.0) * 1e6

    @property
    def offset_us(self) -> float:
        """Board time minus host time at the reference instant, us."""
        return self.board_ref_us - self.host_ref_ns / 1000.0

    def to_board(self, host_ns: Any) -> Any:
        """Board time (us) at host time `host_ns` (a number or an array)."""
        h = np.asarray(host_ns)
        x = (h - self.host_ref_ns if h.dtype.kind in "iu" else h - float(self.host_ref_ns)) / 1e3
        out = self.board_ref_us + self.rate * np.asarray(x, dtype=np.float64)
        return float(out) if out.ndim == 0 else out

    def to_host(self, board_us: Any) -> Any:
        """Host time (ns, float) at board time `board_us` (a number or an array)."""
        if not self.rate > 0:
            raise ValueError(
                f"the board clock did not advance while it was sampled (rate {self.rate:g}): "
                "board times cannot be mapped to host times; sync while the board runs"
            )
        b = np.asarray(board_us, dtype=np.float64)
        out = self.host_ref_ns + (b - self.board_ref_us) / self.rate * 1e3
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        return {
            "host_ref_ns": int(self.host_ref_ns),
            "board_ref_us": float(self.board_ref_us),
            "rate": float(self.rate),
            "drift_ppm": float(self.drift_ppm),
            "offset_us": float(self.offset_us),
            "residual_us": float(self.residual_us),
            "uncertainty_us": float(self.uncertainty_us),
            "n_used": self.n_used,
            "n_total": self.n_total,
        }

    @classmethod
    @np.errstate(over="ignore", invalid="ignore")
    def fit(
        cls,
        host_ns: Sequence[float] | np.ndarray,
        board_us: Sequence[float] | np.ndarray,
        rtt_ns: Sequence[float] | np.ndarray | None = None,
        *,
        max_rtt_ns: float = MAX_RTT_NS,
        keep: float = 0.5,
        fit_rate: bool = True,
        clip: float = 4.0,
        board_resolution_us: float = 1.0,
    ) -> ClockAlignment:
        """Fit offset and rate to (host_ns, board_us) pairs, rejecting outliers.

        `host_ns` is when each board reading held on the host clock (for TIMESYNC: the
        midpoint of the round trip), `rtt_ns` the round trip of each sample when known.
        Samples with a round trip above `max_rtt_ns` go; of the rest, the quickest
        fraction `keep` is used (at least three). Then a straight line is fitted and
        refitted without the samples more than `clip` robust standard deviations (from the
        median absolute deviation) off it. With `fit_rate=False`, or when every sample was
        taken at one host instant, the rate is taken as 1.

        The uncertainty is the 95 % prediction interval of the fit at the least certain
        point of the samples' span (Student t on the kept residuals), and never less than
        half their shortest round trip (a TIMESYNC midpoint cannot see how a round trip
        splits between the two directions) or the board clock's resolution.
        """
        host = _as_array(host_ns, "host_ns")
        board = _as_array(board_us, "board_us").astype(np.float64)
        if host.size != board.size:
            raise ValueError(f"host_ns has {host.size} samples but board_us has {board.size}")
        res = _check_resolution(board_resolution_us, "board_resolution_us")
        for what, arr in (("host_ns", host), ("board_us", board)):
            span = float(arr.max()) - float(arr.min())
            if span >= _MAX_SPAN:
                raise ValueError(f"{what} spans {span:.3g}: too wide to be one run's clock readings")
        if not (_is_finite_number(keep) and 0 < keep <= 1):
            raise ValueError(f"keep must be in (0, 1], got {keep!r}")
        if not (_is_finite_number(clip) and clip > 0):
            raise ValueError(f"clip must be a finite number > 0, got {clip!r}")
        use = np.ones(host.size, dtype=bool)
        rtt = None
        if rtt_ns is not None:
            rtt = _as_array(rtt_ns, "rtt_ns").astype(np.float64)
            if rtt.size != host.size:
                raise ValueError(f"rtt_ns has {rtt.size} samples but host_ns has {host.size}")
            if np.any(rtt < 0):
                raise ValueError(f"rtt_ns: round trip {rtt[rtt < 0][0]} is negative")
            use &= rtt <= max_rtt_ns
            if not use.any():
                raise ValueError(
                    f"all {host.size} samples took longer than {max_rtt_ns / 1e6:g} ms for the "
                    f"round trip (quickest {rtt.min() / 1e6:.3g} ms): the link is too slow or "
                    "busy to align clocks"
                )
            candidates = np.flatnonzero(use)
            count = min(candidates.size, max(3, math.ceil(keep * candidates.size)))
            quickest = candidates[np.argsort(rtt[candidates], kind="stable")[:count]]
            use = np.zeros(host.size, dtype=bool)
            use[quickest] = True

        h = host[use]
        host_ref = int(np.sort(h)[h.size // 2])  # a sample's own time: always in range
        x = (h - host_ref if h.dtype.kind in "iu" else h - float(host_ref)) / 1e3
        x = np.asarray(x, dtype=np.float64)
        y_all = board[use]
        board_ref0 = float(np.median(y_all))
        y = y_all - board_ref0

        can_fit_rate = fit_rate and x.size >= 2 and np.ptp(x) > 0
        rate = _theil_sen(x, y) if can_fit_rate else 1.0
        intercept = float(np.median(y - rate * x))
        inliers = np.ones(x.size, dtype=bool)
        for _ in range(10):
            resid = y - (intercept + rate * x)
            mad = float(np.median(np.abs(resid[inliers] - np.median(resid[inliers]))))
            new = np.abs(resid) <= max(clip * 1.4826 * mad, res)
            if new.sum() < min(2, x.size) or np.array_equal(new, inliers):
                break
            inliers = new
            rate, intercept = _line(x[inliers], y[inliers], rate, can_fit_rate)
        rate, intercept = _line(x[inliers], y[inliers], rate, can_fit_rate)
        if can_fit_rate and abs(rate) * float(np.ptp(x[inliers])) < res:
            # The board clock moved less than one step of its resolution: it stood still.
            rate, intercept = _line(x[inliers], y[inliers], 0.0, False)
        resid = y - (intercept + rate * x)
        kept, xk = resid[inliers], x[inliers]
        m = kept.size
        rms = float(np.sqrt(np.mean(kept * kept)))
        fitted = 2 if rate != 0.0 and can_fit_rate else 1
        dof = m - fitted
        scatter = float(np.sqrt(np.sum(kept * kept) / dof)) if dof > 0 else rms
        lever = 1.0 / m
        sxx = float(np.sum((xk - xk.mean()) ** 2))
        if fitted == 2 and sxx > 0:
            lever += float(np.max((xk - xk.mean()) ** 2)) / sxx
        predicted = _t95(dof) * scatter * math.sqrt(1.0 + lever)
        floor = res
        if rtt is not None:
            floor = max(floor, float(rtt[use][inliers].min()) / 2e3)
        if not all(math.isfinite(v) for v in (rate, intercept, predicted)):
            raise ValueError("clock samples too far apart to fit a line through (overflow)")
        return cls(
            host_ref_ns=host_ref,
            board_ref_us=board_ref0 + intercept,
            rate=rate,
            residual_us=rms,
            uncertainty_us=max(predicted, floor),
            n_used=int(inliers.sum()),
            n_total=int(host.size),
        )


def _line(x: np.ndarray, y: np.ndarray, rate: float, fit_rate: bool) -> tuple[float, float]:
    """Least-squares (rate, intercept); with the rate fixed (or unfittable), the intercept only."""
    if fit_rate and x.size >= 2 and np.ptp(x) > 0:
        xm, ym = float(x.mean()), float(y.mean())
        dx = x - xm
        slope = float(np.dot(dx, y - ym) / np.dot(dx, dx))
        return slope, ym - slope * xm
    return rate, float(np.mean(y - rate * x))


def _theil_sen(x: np.ndarray, y: np.ndarray, most: int = 200) -> float:
    """Median of pairwise slopes over at most `most` evenly spread samples: a robust start."""
    order = np.argsort(x, kind="stable")
    pick = order[np.unique(np.linspace(0, x.size - 1, min(most, x.size)).round().astype(int))]
    xs, ys = x[pick], y[pick]
    i, j = np.triu_indices(xs.size, k=1)
    dx = xs[j] - xs[i]
    ok = dx > 0
    return float(np.median((ys[j] - ys[i])[ok] / dx[ok]))

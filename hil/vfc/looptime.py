"""A modelled loop clock for the virtual board: ground truth for loop-timing measurements.

In lockstep the board's clock is the simulator's, so every loop is exactly one period
after the one before and a timing analysis has nothing to find. With this model on, the
board stamps each HIL_ACTUATOR_CONTROLS with the time its loop would have run on a
flight controller with a free-running scheduler instead:

    stamp[0] = time of the first sample answered
    stamp[k] = stamp[k-1] + round(P + u[k]) + (round(P) if the loop overran else 0)

where P = 1e6 / SCHED_LOOP_RATE us, u[k] is uniform in +-SIM_LOOP_JIT us and a loop
overruns with probability SIM_LOOP_OVR (it misses the next scheduler tick, so its period
is one nominal period longer). The parameters (hil.firmware.paramdefs):

    SIM_LOOP_JIT   period jitter, us: half-width of the uniform draw (at most 45 % of P,
                   so every period stays positive and an overrun, at least 1.55 P, is
                   never confused with jitter, at most 1.45 P)
    SIM_LOOP_OVR   probability 0..1 that a loop overruns
    SIM_LOOP_SEED  seed of the draws: the same seed gives the same periods
    SIM_LOOP_US    modelled compute time of one loop, us: SYS_STATUS.load reports it
                   against P (0: the host time the loop really took, as before)

The stamps are on while SIM_LOOP_JIT or SIM_LOOP_OVR is above zero. They change nothing
else: the control law still runs once per sample on simulation time, and TIMESYNC and
telemetry keep the simulation clock. Because overruns lengthen the mean period, the loop
clock runs ahead of the simulation clock by about SIM_LOOP_OVR of it. Changing a
parameter while the model runs carries the clock on (stamps never go back); turning the
model off goes back to echoing the sample time, which may be behind the loop clock. A
reboot starts the clock again at the first sample.

The draws come from numpy in blocks, so a loop costs a list lookup and an addition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Jitter is limited to this fraction of the nominal period.
MAX_JITTER_FRACTION = 0.45
_BLOCK = 1024

#: The parameters that configure the model (a change to any of them rebuilds it).
LOOP_MODEL_PARAMS = frozenset(
    {"SCHED_LOOP_RATE", "SIM_LOOP_JIT", "SIM_LOOP_OVR", "SIM_LOOP_SEED", "SIM_LOOP_US"}
)


class LoopTimeModel:
    """The modelled loop clock: one stamp per loop, from seeded draws."""

    def __init__(
        self,
        rate_hz: float,
        jitter_us: float = 0.0,
        overrun_probability: float = 0.0,
        seed: int = 0,
        *,
        not_before_us: int | None = None,
    ) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"loop rate must be a finite number > 0 Hz, got {rate_hz!r}")
        if not (math.isfinite(jitter_us) and jitter_us >= 0):
            raise ValueError(f"loop jitter must be a finite number >= 0 us, got {jitter_us!r}")
        if not 0.0 <= overrun_probability <= 1.0:
            raise ValueError(f"overrun probability must be in 0..1, got {overrun_probability!r}")
        self.rate_hz = float(rate_hz)
        self.period_us = 1e6 / self.rate_hz
        self.jitter_us = min(float(jitter_us), MAX_JITTER_FRACTION * self.period_us)
        self.overrun_probability = float(overrun_probability)
        self.seed = int(seed)
        jitter_seq, overrun_seq = np.random.SeedSequence(self.seed).spawn(2)
        self._jitter_rng = np.random.default_rng(jitter_seq)
        self._overrun_rng = np.random.default_rng(overrun_seq)
        self._periods: list[int] = []
        self._next = 0
        self._stamp: int | None = None
        self._not_before = not_before_us
        #: Loops stamped so far.
        self.loops = 0

    @classmethod
    def from_params(cls, params: Any, *, not_before_us: int | None = None) -> LoopTimeModel | None:
        """The model the board's parameters ask for, or None when its stamps are off."""
        from hil.firmware.paramdefs import read_param

        jitter = read_param(params, "SIM_LOOP_JIT")
        overrun = read_param(params, "SIM_LOOP_OVR")
        if jitter <= 0 and overrun <= 0:
            return None
        return cls(
            read_param(params, "SCHED_LOOP_RATE"),
            max(0.0, jitter),
            min(1.0, max(0.0, overrun)),
            int(read_param(params, "SIM_LOOP_SEED")),
            not_before_us=not_before_us,
        )

    @property
    def last_stamp_us(self) -> int | None:
        """The stamp of the latest loop (None before the first)."""
        return self._stamp

    def _refill(self) -> None:
        jitter = self._jitter_rng.uniform(-self.jitter_us, self.jitter_us, _BLOCK)
        overran = self._overrun_rng.random(_BLOCK) < self.overrun_probability
        periods = np.rint(self.period_us + jitter) + overran * round(self.period_us)
        self._periods = periods.astype(np.int64).tolist()
        self._next = 0

    def stamp(self, sample_us: int) -> int:
        """The loop-clock time of the loop that answers the sample taken at `sample_us`."""
        last = self._stamp
        if last is None:
            start = sample_us
            if self._not_before is not None:
                start = max(start, self._not_before + round(self.period_us))
            self._stamp = start
        else:
            i = self._next
            if i >= len(self._periods):
                self._refill()
                i = 0
            self._stamp = last + self._periods[i]
            self._next = i + 1
        self.loops += 1
        return self._stamp

    # -- ground truth ------------------------------------------------------------------------
    def periods(self, n: int) -> np.ndarray:
        """The first `n` periods (us) a fresh model with these settings produces."""
        fresh = LoopTimeModel(self.rate_hz, self.jitter_us, self.overrun_probability, self.seed)
        out: list[int] = []
        while len(out) < n:
            fresh._refill()
            out.extend(fresh._periods)
        return np.asarray(out[:n], dtype=np.int64)

    @property
    def expected_rate_hz(self) -> float:
        """Long-run loop rate: overruns add one period each, so 1 / (P (1 + p))."""
        return 1e6 / (self.period_us * (1.0 + self.overrun_probability))

    def expected_jitter_us(self, q: float = 0.99) -> float:
        """The q-quantile of |period - P| the settings imply (continuous draws).

        A loop on time deviates by |u|, uniform on 0..J; one that overran by about P + u.
        With overrun share p, P(|d| <= x) = (1 - p) x / J below J, and the quantile lies in
        the overrun part only when q > 1 - p.
        """
        p, jit, period = self.overrun_probability, self.jitter_us, self.period_us
        if q <= 1.0 - p:
            return jit * q / (1.0 - p) if jit > 0 else 0.0
        share = (q - (1.0 - p)) / p  # how far into the overrun periods the quantile lies
        return period - jit + 2.0 * jit * share

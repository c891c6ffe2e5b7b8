"""RC link under jamming: bursty frame loss and the link figures a receiver reports.

Pure and seeded: a `numpy.random.Generator`, no clocks. One call of `RcLinkModel.step`
is one radio frame; the caller (the receiver emulator) decides when frames happen.

Loss: a Gilbert-Elliott channel
-------------------------------
A two-state Markov chain runs once per frame. In state G (good) a frame is lost with
probability h_G (`loss_good`, default 0), in state B (bad, a jamming burst) with
probability h_B (`loss_bad`, default 1). After each frame the chain moves G -> B with
probability p and B -> G with probability r.

A scenario gives the mean loss rate L (`loss`) and the mean burst length (`burst_ms`) at
the frame rate f (`rate_hz`). With b = max(1, burst_ms * f / 1000) frames:

* the time spent in B is geometric, mean 1/r frames, so r = 1 / b;
* the stationary share of B is pi_B = p / (p + r), and the long-run loss rate is
  L = (1 - pi_B) h_G + pi_B h_B, so pi_B = (L - h_G) / (h_B - h_G) and
  p = r pi_B / (1 - pi_B);
* the mean time spent in G is 1/p = b (1 - pi_B) / pi_B frames, which must be at least
  one frame (p <= 1): a scenario asking for more loss than bursts of that length can
  give is refused with a ValueError.

With the defaults h_G = 0 and h_B = 1 a run of consecutive lost frames is exactly a stay
in B, so `burst_ms` is the mean length of a loss burst and `loss` the share of lost
frames. With other h_G, h_B, `burst_ms` is the mean stay in the bad state.
L = 0 keeps the chain in G; L = h_B keeps it in B (no burst length then).
`total=True` models a jammer that overpowers the link: every frame is lost.

Link figures
------------
* LQ: the share of the last 100 frames delivered, in percent, as ExpressLRS/CRSF report
  uplink LQ. The window starts full (the link is up when the model starts).
* RSSI: the link budget's received signal S (`signal_dbm`). A jammer is given by its
  jammer-to-signal ratio J/S in dB (`js_db`, None = no jammer). The receiver's AGC holds
  the total in-band power (signal + jammer) at its set point, so the wanted signal it
  measures drops by 10 log10(1 + 10^(J/S / 10)) dB: 0.4 dB at J/S = -10, 3 dB at 0,
  10.4 dB at +10. Gaussian measurement noise of `rssi_noise_db` is added.
* SNR: signal over noise plus jammer, S - 10 log10(10^(N/10) + 10^(J/10)) with N the
  receiver noise floor (`noise_floor_dbm`), plus Gaussian noise `snr_noise_db`, capped at
  `snr_max_db` (LoRa demodulators report SNR only up to about +12 dB).

These are what the receiver would measure on the frame if it decoded it; a receiver
reports the figures of the last frame it did decode (see `hil.injectors.rc`).

Loss and the J/S figures are set independently: a scenario says how bursty the loss is
and how strong the jammer is, and `total` is the overpowering case.

Randomness: every frame consumes the same four draws (transition, loss, RSSI noise, SNR
noise) whatever the parameters, taken from blocks, so the same seed gives the same
sequence, and changing a parameter mid-run changes only what the draws mean.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

LQ_WINDOW = 100
"""Frames over which uplink LQ is counted (ExpressLRS: the last 100 packets)."""

_BLOCK = 1024


@dataclass(frozen=True)
class RcLinkState:
    """One frame of the link: was it delivered, and what the receiver measures."""

    frame: int
    """Frame index since the model was made (0, 1, 2, ...)."""
    delivered: bool
    lq: int
    """Uplink LQ in percent: delivered frames among the last 100 (this one included)."""
    rssi_dbm: float
    snr_db: float
    bad: bool
    """The Gilbert-Elliott chain was in its bad (burst) state for this frame."""


@dataclass(frozen=True)
class _Chain:
    p_gb: float
    p_bg: float
    pi_bad: float


def _chain(
    rate_hz: float, loss: float, burst_ms: float, loss_good: float, loss_bad: float
) -> _Chain:
    if not 0.0 <= loss_good < loss_bad <= 1.0:
        raise ValueError(
            f"need 0 <= loss_good < loss_bad <= 1, got loss_good={loss_good}, loss_bad={loss_bad}"
        )
    if not loss_good <= loss <= loss_bad:
        raise ValueError(
            f"loss={loss} must lie between loss_good={loss_good} and loss_bad={loss_bad}"
        )
    if burst_ms < 0 or not math.isfinite(burst_ms):
        raise ValueError(f"burst_ms must be a finite length >= 0, got {burst_ms}")
    pi_bad = (loss - loss_good) / (loss_bad - loss_good)
    if pi_bad <= 0.0:
        return _Chain(0.0, 1.0, 0.0)
    if pi_bad >= 1.0:
        return _Chain(1.0, 0.0, 1.0)
    burst_frames = max(1.0, burst_ms * rate_hz / 1000.0)
    p_bg = 1.0 / burst_frames
    p_gb = p_bg * pi_bad / (1.0 - pi_bad)
    if p_gb > 1.0 + 1e-12:
        good_ms = 1000.0 * (1.0 - pi_bad) / (pi_bad * p_bg) / rate_hz
        raise ValueError(
            f"loss={loss} with bursts of {burst_ms} ms at {rate_hz} Hz needs good stretches "
            f"of {good_ms:.2f} ms, shorter than one frame ({1000.0 / rate_hz:.2f} ms): "
            "lengthen burst_ms or lower loss"
        )
    return _Chain(min(p_gb, 1.0), p_bg, pi_bad)


class RcLinkModel:
    """Bursty RC link (Gilbert-Elliott) with LQ, RSSI and SNR; see the module docstring.

    `configure` changes the loss and jammer parameters mid-run (an injection starting or
    stopping) and keeps the random stream, the chain's state and the LQ window.
    """

    def __init__(
        self,
        rate_hz: float,
        *,
        loss: float = 0.0,
        burst_ms: float = 0.0,
        total: bool = False,
        js_db: float | None = None,
        loss_good: float = 0.0,
        loss_bad: float = 1.0,
        signal_dbm: float = -60.0,
        noise_floor_dbm: float = -108.0,
        rssi_noise_db: float = 1.0,
        snr_noise_db: float = 1.0,
        snr_max_db: float = 12.0,
        seed: int | np.random.SeedSequence | None = 0,
    ) -> None:
        if not rate_hz > 0 or not math.isfinite(rate_hz):
            raise ValueError(f"rate_hz must be a positive frame rate, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.signal_dbm = float(signal_dbm)
        self.noise_floor_dbm = float(noise_floor_dbm)
        self.rssi_noise_db = float(rssi_noise_db)
        self.snr_noise_db = float(snr_noise_db)
        self.snr_max_db = float(snr_max_db)
        self._rng = np.random.default_rng(seed)
        self._uniform = np.empty((0, 2))
        self._normal = np.empty((0, 2))
        self._i = 0
        self._frame = 0
        self._window: deque[bool] = deque([True] * LQ_WINDOW, maxlen=LQ_WINDOW)
        self._delivered_in_window = LQ_WINDOW
        self._bad = False
        self._chain = _Chain(0.0, 1.0, 0.0)
        self.loss = 0.0
        self.burst_ms = 0.0
        self.loss_good = 0.0
        self.loss_bad = 1.0
        self.total = False
        self.js_db: float | None = None
        self.configure(
            loss=loss,
            burst_ms=burst_ms,
            total=total,
            js_db=js_db,
            loss_good=loss_good,
            loss_bad=loss_bad,
        )

    # ------------------------------------------------------------------ parameters

    def configure(
        self,
        *,
        loss: float | None = None,
        burst_ms: float | None = None,
        total: bool | None = None,
        js_db: float | None | bool = False,
        loss_good: float | None = None,
        loss_bad: float | None = None,
    ) -> None:
        """Change parameters; those not given keep their values.

        `js_db`: a J/S ratio in dB, or None for no jammer; left out, it stays as it was.

        When the chain was clean (no loss) and now has some, its state is drawn from the
        stationary distribution, so loss statistics hold from the first frame on. With
        loss 0 the chain is put in its good state at once.
        """
        new_loss = self.loss if loss is None else float(loss)
        new_burst = self.burst_ms if burst_ms is None else float(burst_ms)
        new_good = self.loss_good if loss_good is None else float(loss_good)
        new_bad = self.loss_bad if loss_bad is None else float(loss_bad)
        chain = _chain(self.rate_hz, new_loss, new_burst, new_good, new_bad)
        if js_db is not False:
            if js_db is not None and (isinstance(js_db, bool) or not math.isfinite(js_db)):
                raise ValueError(f"js_db must be a J/S ratio in dB or None, got {js_db!r}")
            self.js_db = None if js_db is None else float(js_db)
        if total is not None:
            self.total = bool(total)
        was_clean = self._chain.pi_bad == 0.0
        self.loss, self.burst_ms, self.loss_good, self.loss_bad = (
            new_loss,
            new_burst,
            new_good,
            new_bad,
        )
        self._chain = chain
        if chain.pi_bad == 0.0:
            self._bad = False
        elif chain.pi_bad == 1.0:
            self._bad = True
        elif was_clean:
            self._bad = bool(self._rng.random() < chain.pi_bad)

    @property
    def p_good_to_bad(self) -> float:
        """Per-frame probability p of a burst starting (G -> B)."""
        return self._chain.p_gb

    @property
    def p_bad_to_good(self) -> float:
        """Per-frame probability r of a burst ending (B -> G)."""
        return self._chain.p_bg

    @property
    def expected_loss(self) -> float:
        """Long-run share of lost frames under the current parameters."""
        if self.total:
            return 1.0
        pi = self._chain.pi_bad
        return (1.0 - pi) * self.loss_good + pi * self.loss_bad

    # ------------------------------------------------------------------ figures

    def rssi_clean_dbm(self) -> float:
        """Mean RSSI the receiver reports under the current jammer, before noise."""
        if self.js_db is None:
            return self.signal_dbm
        return self.signal_dbm - 10.0 * math.log10(1.0 + 10.0 ** (self.js_db / 10.0))

    def sinr_db(self) -> float:
        """Mean signal to noise-plus-jammer ratio, before noise and the reporting cap."""
        interference = 10.0 ** (self.noise_floor_dbm / 10.0)
        if self.js_db is not None:
            interference += 10.0 ** ((self.signal_dbm + self.js_db) / 10.0)
        return self.signal_dbm - 10.0 * math.log10(interference)

    @property
    def lq(self) -> int:
        """Uplink LQ (percent) over the last 100 frames stepped."""
        return self._delivered_in_window * 100 // LQ_WINDOW

    # ------------------------------------------------------------------ stepping

    def _draws(self) -> tuple[float, float, float, float]:
        if self._i >= len(self._uniform):
            self._uniform = self._rng.random((_BLOCK, 2))
            self._normal = self._rng.standard_normal((_BLOCK, 2))
            self._i = 0
        u = self._uniform[self._i]
        n = self._normal[self._i]
        self._i += 1
        return float(u[0]), float(u[1]), float(n[0]), float(n[1])

    def step(self) -> RcLinkState:
        """Advance one frame and return what happened to it."""
        u_trans, u_loss, n_rssi, n_snr = self._draws()
        bad = self._bad
        p_loss = self.loss_bad if bad else self.loss_good
        delivered = not self.total and u_loss >= p_loss
        chain = self._chain
        self._bad = u_trans >= chain.p_bg if bad else u_trans < chain.p_gb

        if self._window[0]:
            self._delivered_in_window -= 1
        self._window.append(delivered)
        self._delivered_in_window += delivered

        rssi = self.rssi_clean_dbm() + self.rssi_noise_db * n_rssi
        snr = min(self.sinr_db() + self.snr_noise_db * n_snr, self.snr_max_db)
        state = RcLinkState(self._frame, delivered, self.lq, rssi, snr, bad)
        self._frame += 1
        return state

    def run(self, frames: int) -> list[RcLinkState]:
        """`frames` steps at once."""
        return [self.step() for _ in range(frames)]

"""The Gilbert-Elliott RC link model: loss statistics, LQ, RSSI/SNR, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.threats.rc_link import LQ_WINDOW, RcLinkModel


def _delivered(model: RcLinkModel, frames: int) -> np.ndarray:
    return np.array([s.delivered for s in model.run(frames)], dtype=bool)


def _loss_runs(delivered: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive lost frames."""
    edges = np.diff(np.r_[0, (~delivered).astype(np.int8), 0])
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


@pytest.mark.parametrize(
    ("rate_hz", "loss", "burst_ms"),
    [(150.0, 0.3, 200.0), (500.0, 0.1, 50.0), (1 / 0.011, 0.5, 300.0), (150.0, 0.05, 0.0)],
)
def test_long_run_loss_rate_and_burst_length_match_the_parameters(
    rate_hz: float, loss: float, burst_ms: float
) -> None:
    model = RcLinkModel(rate_hz, loss=loss, burst_ms=burst_ms, seed=7)
    frames = 100_000
    delivered = _delivered(model, frames)
    burst_frames = max(1.0, burst_ms * rate_hz / 1000)

    # Standard error of the loss rate of a two-state chain: the frame variance L(1-L)
    # inflated by (1 + lambda) / (1 - lambda), lambda = 1 - p - r the chain's memory.
    lam = 1 - model.p_good_to_bad - model.p_bad_to_good
    se = math.sqrt(loss * (1 - loss) * (1 + lam) / (1 - lam) / frames)
    assert abs((~delivered).mean() - loss) < 5 * se

    runs = _loss_runs(delivered)
    # Burst lengths are geometric with mean b: standard deviation sqrt(b (b - 1)).
    se_burst = math.sqrt(burst_frames * (burst_frames - 1) / len(runs)) + 1e-9
    assert abs(runs.mean() - burst_frames) < 5 * se_burst + 1e-9
    assert model.expected_loss == pytest.approx(loss)


def test_transition_probabilities_follow_the_documented_math() -> None:
    model = RcLinkModel(150.0, loss=0.3, burst_ms=200.0)
    b = 200.0 * 150.0 / 1000  # 30 frames
    assert model.p_bad_to_good == pytest.approx(1 / b)
    assert model.p_good_to_bad == pytest.approx((1 / b) * 0.3 / 0.7)


def test_impossible_loss_for_the_burst_length_is_refused() -> None:
    # Single-frame bursts cannot lose more than half the frames (good runs >= 1 frame).
    with pytest.raises(ValueError, match="shorter than one frame"):
        RcLinkModel(150.0, loss=0.8, burst_ms=1.0)
    with pytest.raises(ValueError):
        RcLinkModel(150.0, loss=1.5)
    with pytest.raises(ValueError):
        RcLinkModel(0.0)


def test_total_loss_delivers_nothing_and_lq_falls_to_zero() -> None:
    model = RcLinkModel(150.0, total=True, seed=3)
    states = model.run(300)
    assert not any(s.delivered for s in states)
    assert states[-1].lq == 0
    assert model.expected_loss == 1.0


def test_no_loss_delivers_everything() -> None:
    states = RcLinkModel(150.0, seed=3).run(1000)
    assert all(s.delivered for s in states)
    assert {s.lq for s in states} == {100}


def test_lq_is_the_delivered_share_of_the_last_100_frames() -> None:
    model = RcLinkModel(150.0, loss=0.4, burst_ms=60.0, seed=11)
    states = model.run(2000)
    history = [True] * LQ_WINDOW + [s.delivered for s in states]
    for i, s in enumerate(states):
        window = history[i + 1 : i + 1 + LQ_WINDOW]
        assert s.lq == sum(window) * 100 // LQ_WINDOW


def test_same_seed_same_sequence_other_seed_other_sequence() -> None:
    def seq(seed: int) -> list[tuple[bool, int, float, float]]:
        m = RcLinkModel(150.0, loss=0.3, burst_ms=200.0, js_db=5.0, seed=seed)
        return [(s.delivered, s.lq, s.rssi_dbm, s.snr_db) for s in m.run(3000)]

    assert seq(42) == seq(42)
    assert seq(42) != seq(43)


def test_jammer_lowers_rssi_and_snr_as_documented() -> None:
    clean = RcLinkModel(150.0, signal_dbm=-70.0, rssi_noise_db=0.0, snr_noise_db=0.0)
    jammed = RcLinkModel(150.0, signal_dbm=-70.0, js_db=10.0, rssi_noise_db=0.0, snr_noise_db=0.0)
    c, j = clean.step(), jammed.step()
    assert c.rssi_dbm == pytest.approx(-70.0)
    assert j.rssi_dbm == pytest.approx(-70.0 - 10 * math.log10(11))
    assert c.snr_db == pytest.approx(clean.snr_max_db)  # clean link: reported SNR saturates
    assert j.snr_db == pytest.approx(-10.0, abs=0.01)  # jammer dominates: SINR = -J/S


def test_rssi_noise_has_the_configured_spread() -> None:
    model = RcLinkModel(150.0, signal_dbm=-80.0, js_db=0.0, rssi_noise_db=2.0, seed=5)
    rssi = np.array([s.rssi_dbm for s in model.run(20_000)])
    assert rssi.mean() == pytest.approx(-83.0103, abs=0.1)
    assert rssi.std() == pytest.approx(2.0, rel=0.05)


def test_configure_mid_run_starts_and_stops_jamming() -> None:
    model = RcLinkModel(150.0, seed=9)
    assert all(s.delivered for s in model.run(500))
    model.configure(loss=0.5, burst_ms=100.0, js_db=6.0)
    jammed = _delivered(model, 20_000)
    assert 0.4 < (~jammed).mean() < 0.6
    assert model.js_db == 6.0
    model.configure(loss=0.0, js_db=None)
    assert all(s.delivered for s in model.run(500))
    assert model.js_db is None
    model.configure(total=True)
    assert not any(s.delivered for s in model.run(10))

"""The RC receiver emulator: frame timing, loss, link statistics, SBUS flags, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import crsf, sbus
from hil.injectors.rc import RcReceiverEmulator
from hil.threats.rc_link import RcLinkModel
from hil.vfc.rc_uart import RcUartInput

STICKS = (1500, 1500, 1000, 1500, 1800, 1200) + (1500,) * 10


def _run(rx: RcReceiverEmulator, link: RcLinkModel, until_us: int, step_us: int = 1000):
    """(t_us, bytes) for every non-empty produce() call from 0 to until_us."""
    out = []
    for t in range(0, until_us + 1, step_us):
        data = rx.produce(t, STICKS, link)
        if data:
            out.append((t, data))
    return out


def _crsf_messages(chunks) -> list[tuple[int, crsf.CrsfMessage]]:
    parser = crsf.CrsfParser()
    return [(t, m) for t, data in chunks for m in parser.feed(data)]


def _sbus_frames(chunks) -> list[tuple[int, sbus.SbusFrame]]:
    out = []
    for t, data in chunks:
        assert len(data) % sbus.FRAME_LEN == 0
        for i in range(0, len(data), sbus.FRAME_LEN):
            out.append((t, sbus.decode(data[i : i + sbus.FRAME_LEN])))
    return out


# ---------------------------------------------------------------------- CRSF


def test_crsf_frames_come_at_the_rate_with_the_sticks() -> None:
    rx = RcReceiverEmulator("crsf")
    assert rx.rate_hz == 150.0
    link = RcLinkModel(150.0)
    msgs = _crsf_messages(_run(rx, link, 2_000_000, step_us=100))
    rc = [(t, m) for t, m in msgs if isinstance(m, crsf.RcChannelsPacked)]
    assert len(rc) == 301  # t = 0 .. 2 s inclusive at 150 Hz
    times = [t for t, _ in rc]
    gaps = {b - a for a, b in zip(times, times[1:], strict=False)}
    assert gaps <= {6600, 6700}  # 6666.7 us, seen on a 100 us call grid
    assert all(abs(a - b) <= 1 for a, b in zip(rc[0][1].to_us(), STICKS, strict=True))


def test_crsf_calls_slower_than_the_rate_still_get_every_frame() -> None:
    rx = RcReceiverEmulator("crsf")
    msgs = _crsf_messages(_run(rx, RcLinkModel(150.0), 1_000_000, step_us=50_000))
    assert sum(isinstance(m, crsf.RcChannelsPacked) for _, m in msgs) == 151
    assert rx.produce(1_000_000, STICKS, RcLinkModel(150.0)) == b""  # nothing new due


def test_crsf_lost_frames_are_absent() -> None:
    link = RcLinkModel(150.0, loss=0.3, burst_ms=100.0, seed=4)
    rx = RcReceiverEmulator("crsf")
    delivered = 0
    for k in range(3000):
        data = rx.produce(rx.slot_time_us(k), STICKS, link)
        assert rx.last_state is not None
        rc = [m for m in crsf.CrsfParser().feed(data) if isinstance(m, crsf.RcChannelsPacked)]
        assert len(rc) == int(rx.last_state.delivered)
        delivered += len(rc)
    assert 0.6 < delivered / 3000 < 0.8


def test_crsf_link_statistics_at_10_hz_carry_lq_rssi_snr() -> None:
    link = RcLinkModel(150.0, signal_dbm=-72.0, js_db=3.0, rssi_noise_db=0.0, snr_noise_db=0.0)
    rx = RcReceiverEmulator("crsf", tx_power=4, rf_mode=5)
    msgs = _crsf_messages(_run(rx, link, 2_000_000, step_us=500))
    stats = [(t, m) for t, m in msgs if isinstance(m, crsf.LinkStatistics)]
    assert len(stats) == 21  # 0, 0.1, ... 2.0 s
    times = [t for t, _ in stats]
    assert all(
        99_000 <= b - a <= 107_000 for a, b in zip(times, times[1:], strict=False)
    )  # 100 ms on the 6.67 ms frame grid
    s = stats[-1][1]
    assert s.uplink_link_quality == 100
    assert s.uplink_rssi_ant1_dbm == round(link.rssi_clean_dbm())  # -72 - 4.8 dB
    assert s.uplink_rssi_ant1_dbm == -77
    assert s.uplink_snr_db == round(link.sinr_db()) == -3
    assert (s.uplink_tx_power, s.rf_mode) == (4, 5)


def test_crsf_link_statistics_continue_through_loss_then_stop_at_link_loss() -> None:
    link = RcLinkModel(150.0, seed=1)
    rx = RcReceiverEmulator("crsf", failsafe_timeout_s=1.0)
    _run(rx, link, 1_000_000)
    link.configure(total=True)  # jammer overpowers the link at t = 1 s
    msgs = _crsf_messages(
        [(t, rx.produce(t, STICKS, link)) for t in range(1_001_000, 3_000_001, 1000)]
    )
    assert not any(isinstance(m, crsf.RcChannelsPacked) for _, m in msgs)
    stats = [(t, m) for t, m in msgs if isinstance(m, crsf.LinkStatistics)]
    assert stats and all(t < 2_000_000 for t, _ in stats)  # link declared lost after 1 s
    lqs = [m.uplink_link_quality for _, m in stats]
    assert lqs == sorted(lqs, reverse=True) and lqs[-1] == 0  # 100 frames = 0.67 s
    # RSSI is the last decoded frame's: the receiver hears nothing new
    assert len({m.uplink_rssi_ant1_dbm for _, m in stats}) == 1

    link.configure(total=False)  # link comes back: frames and statistics resume
    msgs = _crsf_messages(
        [(t, rx.produce(t, STICKS, link)) for t in range(3_001_000, 3_500_001, 1000)]
    )
    assert any(isinstance(m, crsf.RcChannelsPacked) for _, m in msgs)
    assert any(isinstance(m, crsf.LinkStatistics) for _, m in msgs)


def test_crsf_failsafe_set_sends_failsafe_channels_after_the_timeout() -> None:
    failsafe = (1500, 1500, 900, 1500)
    rx = RcReceiverEmulator("crsf", failsafe="set", failsafe_us=failsafe, failsafe_timeout_s=0.5)
    link = RcLinkModel(150.0, total=True)
    msgs = _crsf_messages(_run(rx, link, 1_000_000))
    rc = [(t, m) for t, m in msgs if isinstance(m, crsf.RcChannelsPacked)]
    assert rc and all(t >= 500_000 for t, _ in rc)
    assert all(abs(a - b) <= 1 for a, b in zip(rc[0][1].to_us()[:4], failsafe, strict=True))


def test_link_rate_must_match_the_receiver() -> None:
    rx = RcReceiverEmulator("crsf", rate_hz=500)
    with pytest.raises(ValueError, match="150"):
        rx.produce(0, STICKS, RcLinkModel(150.0))
    with pytest.raises(ValueError):
        RcReceiverEmulator("ppm")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RcReceiverEmulator("crsf", failsafe="set")


# ---------------------------------------------------------------------- SBUS


def test_sbus_sends_a_frame_every_11_ms_whatever_the_link() -> None:
    rx = RcReceiverEmulator("sbus")
    link = RcLinkModel(rx.rate_hz, total=True)
    frames = _sbus_frames(_run(rx, link, 1_100_000, step_us=100))
    assert len(frames) == 101
    times = [t for t, _ in frames]
    assert {b - a for a, b in zip(times, times[1:], strict=False)} == {11_000}


def test_sbus_flags_frame_lost_then_failsafe_after_the_timeout() -> None:
    rx = RcReceiverEmulator("sbus", failsafe_timeout_s=1.0, failsafe_us=[1500, 1500, 950, 1500])
    link = RcLinkModel(rx.rate_hz, seed=2)
    _run(rx, link, 500_000)
    link.configure(total=True)  # from t = 0.5 s
    frames = _sbus_frames(
        [(t, rx.produce(t, STICKS, link)) for t in range(501_000, 2_000_001, 1000)]
    )
    for t, f in frames:
        assert f.frame_lost
        assert f.failsafe == (t - 495_000 >= 1_000_000)  # last decoded frame at 0.495 s
        if not f.failsafe:  # lost frames repeat the last decoded sticks
            assert abs(f.to_us()[2] - STICKS[2]) <= 1
        else:  # failsafe frames carry the receiver's failsafe values
            assert abs(f.to_us()[2] - 950) <= 1
    assert any(f.failsafe for _, f in frames)


def test_sbus_lost_frames_in_bursts_keep_the_period() -> None:
    rx = RcReceiverEmulator("sbus")
    link = RcLinkModel(rx.rate_hz, loss=0.3, burst_ms=100.0, seed=8)
    frames = _sbus_frames(_run(rx, link, 3_000_000))
    lost = sum(f.frame_lost for _, f in frames)
    assert len(frames) == 273
    assert 0.1 < lost / len(frames) < 0.5
    assert not any(f.failsafe for _, f in frames)


def test_sbus_failsafe_after_the_timeout_gives_valid_false_at_the_fc() -> None:
    rx = RcReceiverEmulator("sbus", failsafe_timeout_s=0.3)
    fc = RcUartInput("sbus")
    link = RcLinkModel(rx.rate_hz)
    reports = []
    for t in range(0, 1_000_001, 1000):
        if t == 200_000:
            link.configure(total=True)
        data = rx.produce(t, STICKS, link)
        if data:
            reports += [(t, r) for r in fc.feed(data, t)]
    valid_times = [t for t, r in reports if r.valid]
    invalid_times = [t for t, r in reports if not r.valid]
    assert max(valid_times) < 200_000  # frame-lost frames make no report
    assert invalid_times and min(invalid_times) >= 190_000 + 300_000
    assert fc.lost_frames > 0 and fc.failsafe_frames == len(invalid_times)


# ---------------------------------------------------------------------- round trips

_channel = st.integers(min_value=988, max_value=2012)


@settings(max_examples=150, deadline=None)
@given(
    protocol=st.sampled_from(["crsf", "sbus"]),
    frames=st.lists(st.lists(_channel, min_size=16, max_size=16), min_size=1, max_size=5),
)
def test_round_trip_gives_back_the_channels_within_codec_resolution(
    protocol: str, frames: list[list[int]]
) -> None:
    rx = RcReceiverEmulator(protocol)  # type: ignore[arg-type]
    link = RcLinkModel(rx.rate_hz)
    fc = RcUartInput(protocol)  # type: ignore[arg-type]
    got = []
    for k, sticks in enumerate(frames):
        t = rx.slot_time_us(k) if k else 0
        got += [r for r in fc.feed(rx.produce(t, sticks, link), t) if not r.link_stats_only]
    assert len(got) == len(frames)
    for report, sticks in zip(got, frames, strict=True):
        assert report.valid
        assert len(report.channels_us) == 16
        assert all(abs(a - b) <= 1 for a, b in zip(report.channels_us, sticks, strict=True))


def test_round_trip_crsf_carries_lq_and_rssi_to_the_fc() -> None:
    rx = RcReceiverEmulator("crsf")
    link = RcLinkModel(150.0, loss=0.2, burst_ms=50.0, js_db=0.0, seed=3)
    fc = RcUartInput("crsf")
    reports = []
    for t in range(0, 2_000_001, 1000):
        reports += fc.feed(rx.produce(t, STICKS, link), t)
    stats = [r for r in reports if r.link_stats_only]
    assert len(stats) == 21
    assert all(r.lq is not None and 0 <= r.lq <= 100 for r in stats)
    assert all(r.rssi_dbm is not None and -70 <= r.rssi_dbm <= -56 for r in stats)
    assert fc.lq == stats[-1].lq and fc.snr_db is not None
    latest = None  # each channel report carries the LQ of the statistics before it
    for r in reports:
        if r.link_stats_only:
            latest = r.lq
        else:
            assert r.valid and r.lq == latest

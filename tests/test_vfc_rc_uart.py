"""The board's RC UART driver: reports from frames, and never an exception on bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import crsf, sbus
from hil.vfc.rc_uart import RcReport, RcUartInput

STICKS = (1100, 1900, 1000, 1500) + (1500,) * 12
_PROPS = settings(max_examples=200, deadline=None)


def _crsf_rc(sticks=STICKS) -> bytes:
    return crsf.encode(crsf.RcChannelsPacked.from_us(sticks))


def _crsf_stats(lq: int = 87, rssi: int = -71) -> bytes:
    return crsf.encode(crsf.LinkStatistics(rssi, rssi - 3, lq, 5, 0, 0, 3, -60, 100, 10))


def _sbus(sticks=STICKS, **flags: bool) -> bytes:
    return sbus.encode(sbus.SbusFrame.from_us(sticks, **flags))


def _close(report: RcReport, sticks=STICKS) -> bool:
    return all(abs(a - b) <= 1 for a, b in zip(report.channels_us, sticks, strict=True))


# ---------------------------------------------------------------------- CRSF


def test_crsf_channels_and_link_statistics() -> None:
    fc = RcUartInput("crsf")
    [first] = fc.feed(_crsf_rc(), 0)
    assert first.valid and _close(first) and first.lq is None and first.rssi_dbm is None
    [stats] = fc.feed(_crsf_stats(), 5000)
    assert stats.link_stats_only and not stats.valid
    assert (stats.lq, stats.rssi_dbm) == (87, -71)  # the better antenna
    assert (fc.lq, fc.rssi_dbm, fc.snr_db, fc.stats_t_us) == (87, -71, 5, 5000)
    [nxt] = fc.feed(_crsf_rc(), 6667)
    assert nxt.valid and (nxt.lq, nxt.rssi_dbm) == (87, -71)


def test_crsf_other_frame_types_are_ignored() -> None:
    fc = RcUartInput("crsf")
    battery = crsf.encode(crsf.CrsfFrame(0x08, bytes(8)))
    assert fc.feed(battery + _crsf_rc(), 0)[0].valid


def test_crsf_byte_by_byte() -> None:
    fc = RcUartInput("crsf")
    reports = [r for i, b in enumerate(_crsf_rc() * 3) for r in fc.feed(bytes([b]), i * 24)]
    assert len(reports) == 3 and all(_close(r) for r in reports)


def test_crsf_recovers_after_garbage_truncation_and_a_bad_crc() -> None:
    fc = RcUartInput("crsf")
    frame = _crsf_rc()
    bad_crc = frame[:-1] + bytes([frame[-1] ^ 0xFF])
    stream = b"\xc8\x18\x16\x00" + b"\x55" * 40 + frame[:10] + bad_crc + frame + frame
    reports = fc.feed(stream, 0)
    assert len(reports) == 2 and all(r.valid and _close(r) for r in reports)
    assert fc.discarded > 0


# ---------------------------------------------------------------------- SBUS


def test_sbus_flags() -> None:
    fc = RcUartInput("sbus")
    [ok] = fc.feed(_sbus(), 0)
    assert ok.valid and _close(ok) and (ok.lq, ok.rssi_dbm) == (None, None)
    assert fc.feed(_sbus(frame_lost=True), 11_000) == []  # dropped, as ArduPilot does
    [fs] = fc.feed(_sbus(frame_lost=True, failsafe=True), 22_000)
    assert not fs.valid and _close(fs)
    [fs_only] = fc.feed(_sbus(failsafe=True), 33_000)
    assert not fs_only.valid
    assert (fc.lost_frames, fc.failsafe_frames, fc.frames) == (1, 2, 3)


def test_sbus_recovers_after_garbage() -> None:
    fc = RcUartInput("sbus")
    assert fc.feed(b"\x0f\x00\x0f" + bytes(range(30)), 0) == []
    # a partial frame, then a quiet line, then frames: the partial one is dropped
    assert fc.feed(_sbus()[:12], 11_000) == []
    reports = fc.feed(_sbus() + _sbus(), 22_000)
    assert len(reports) == 2 and all(r.valid and _close(r) for r in reports)


def test_sbus_recovers_after_garbage_without_gaps() -> None:
    fc = RcUartInput("sbus", sbus_idle_gap_us=None)
    reports = fc.feed(b"\x0f\x00\x0f" + bytes(range(30)) + _sbus()[:7] + _sbus() * 3, 0)
    assert len(reports) >= 2 and all(r.valid and _close(r) for r in reports[-2:])


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError):
        RcUartInput("ppm")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- never raises

_protocols = st.sampled_from(["crsf", "sbus"])


@_PROPS
@given(protocol=_protocols, chunks=st.lists(st.binary(max_size=80), max_size=20))
def test_random_bytes_never_raise(protocol: str, chunks: list[bytes]) -> None:
    fc = RcUartInput(protocol)  # type: ignore[arg-type]
    for i, chunk in enumerate(chunks):
        for r in fc.feed(chunk, i * 3000):
            assert len(r.channels_us) in (0, 16)


def _frames(protocol: str) -> bytes:
    if protocol == "crsf":
        return _crsf_rc() + _crsf_stats() + _crsf_rc((1600,) * 16)
    return _sbus() + _sbus(frame_lost=True) + _sbus((1600,) * 16)


@_PROPS
@given(protocol=_protocols, data=st.data())
def test_truncation_and_bit_flips_never_raise_and_the_stream_recovers(
    protocol: str, data: st.DataObject
) -> None:
    stream = bytearray(_frames(protocol))
    flips = data.draw(st.lists(st.integers(0, len(stream) * 8 - 1), max_size=8))
    for bit in flips:
        stream[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(0, len(stream)))
    splits = sorted(data.draw(st.lists(st.integers(0, cut), max_size=4)))
    fc = RcUartInput(protocol, sbus_idle_gap_us=None)  # type: ignore[arg-type]
    pieces = [bytes(stream[a:b]) for a, b in zip([0, *splits], [*splits, cut], strict=True)]
    for piece in pieces:
        fc.feed(piece, 0)
    # after the damage, clean frames come through again
    clean = _crsf_rc() * 3 if protocol == "crsf" else _sbus() * 3
    reports = [r for r in fc.feed(clean, 0) if not r.link_stats_only]
    assert reports and reports[-1].valid and _close(reports[-1])

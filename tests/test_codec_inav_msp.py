"""INAV's MSP2_INAV_STATUS and MSP_ALTITUDE replies (INAV 9.1 fc_msp.c)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs.inav_msp import BLOCKERS, Altitude, ArmingFlag, InavStatus
from hil.codecs.msp import MspError

_PROPS = settings(max_examples=200, deadline=None)


def test_arming_flags_follow_runtime_config() -> None:
    assert ArmingFlag.ARMED == 4 and ArmingFlag.SIMULATOR_MODE_HITL == 16
    assert ArmingFlag.SENSORS_CALIBRATING == 1 << 9 and ArmingFlag.RC_LINK == 1 << 18
    assert ArmingFlag.LANDING_DETECTED == 1 << 30
    assert not BLOCKERS & (ArmingFlag.ARMED | ArmingFlag.SIMULATOR_MODE_HITL | (1 << 17))


def test_status_seen_on_the_sitl() -> None:
    # INAV 9.1 SITL before HITL: calibrating, accelerometer not calibrated, no RC link.
    payload = bytes.fromhex("0b02000087000a000000220400000000020000000000")
    st_ = InavStatus.decode(payload)
    assert st_.cycle_time_us == 523 and st_.box_bytes == 8
    assert st_.blockers == ("SENSORS_CALIBRATING", "ACCELEROMETER_NOT_CALIBRATED", "RC_LINK")
    assert not st_.armed and not st_.hitl
    assert st_.encode() == payload
    armed = InavStatus.decode(payload[:9] + struct.pack("<I", 0x1C) + payload[13:])
    assert armed.armed and armed.hitl and armed.blockers == ()


def test_altitude() -> None:
    alt = Altitude.decode(struct.pack("<ihi", -120, -5, 17))
    assert (alt.estimated_cm, alt.climb_cms, alt.baro_cm) == (-120, -5, 17)
    with pytest.raises(MspError):
        Altitude.decode(b"\x00" * 9)


_status = st.builds(
    lambda c, i, s, lo, p, a, words, bits, m: InavStatus(c, i, s, lo, p, a, bits % (1 << (32 * words)) if words else 0, 4 * words, m),
    st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
    st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 4), st.integers(0, 2**128 - 1),
    st.integers(0, 255),
)


@_PROPS
@given(_status)
def test_status_round_trip(status: InavStatus) -> None:
    assert InavStatus.decode(status.encode()) == status


@_PROPS
@given(st.binary(max_size=60))
def test_random_bytes_raise_only_the_codec_error(data: bytes) -> None:
    for decode in (InavStatus.decode, Altitude.decode):
        try:
            value = decode(data)
        except MspError:
            continue
        assert value.encode() == data

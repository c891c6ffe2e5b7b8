"""MSP codec additions for the adapter: flag names, mode ranges, boxes, features, debug."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.codecs import msp
from hil.codecs.msp import ArmingDisable, FailsafeConfig, Feature, ModeRange, MspError


def test_arming_disable_names_follow_the_cli_spelling():
    # 4868 = RXLOSS | ANGLE | BOOTGRACE | CALIB: a fresh SITL's flags (CLI `status` prints these)
    assert msp.arming_disable_names(4868) == ["RXLOSS", "ANGLE", "BOOTGRACE", "CALIB"]
    assert msp.arming_disable_names(1 << 28 | 1 << 30) == ["ARM_SWITCH", "BIT30"]
    assert len(msp.ARMING_DISABLE_NAMES) == 29


@given(st.integers(0, 2**32 - 1))
def test_names_and_bits_round_trip(flags):
    back = 0
    for name in msp.arming_disable_names(flags):
        back |= msp.arming_disable_bit(name)
    assert back == flags


def test_unknown_flag_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="RXLOSS"):
        msp.arming_disable_bit("RX_LOST")
    assert msp.arming_disable_bit("rxloss") == ArmingDisable.RX_FAILSAFE


def test_betaflight_46_aliases_keep_the_old_names():
    assert ArmingDisable.NOT_DISARMED == ArmingDisable.BAD_RX_RECOVERY == 1 << 3
    assert ArmingDisable.POSHOLD == 1 << 27


def test_mode_ranges_decode_per_slot():
    payload = bytes([0, 0, 32, 48, 1, 0, 0, 48]) + bytes(4)
    ranges = msp.decode_mode_ranges(payload)
    assert ranges[0] == ModeRange(0, 0, 0, 32, 48)
    assert ranges[1] == ModeRange(1, 1, 0, 0, 48)
    assert ranges[2].start_step == ranges[2].end_step  # unused slot
    with pytest.raises(MspError, match="4-byte"):
        msp.decode_mode_ranges(b"\x00\x01\x02")


def test_boxes_decode():
    assert msp.decode_box_names(b"ARM;ANGLE;FAILSAFE;") == ["ARM", "ANGLE", "FAILSAFE"]
    assert msp.decode_box_ids(bytes([0, 1, 27])) == [0, 1, 27]


def test_feature_config_round_trip():
    mask = Feature.RX_MSP | Feature.AIRMODE | Feature.ANTI_GRAVITY
    assert msp.decode_feature_config(msp.encode_feature_config(mask)) == 0x10404000
    assert Feature.RX_MSP in msp.RX_FEATURES and Feature.AIRMODE not in msp.RX_FEATURES


def test_debug_values_are_signed():
    assert msp.decode_debug(bytes.fromhex("0000 0100 ffff 0400")) == (0, 1, -1, 4)


def test_failsafe_config_in_seconds():
    fs = FailsafeConfig.decode(bytes.fromhex("0f 3c e803 00 6400 01"))  # the SITL's defaults
    assert (fs.delay_s, fs.landing_time_s, fs.off_delay_s, fs.throttle_low_delay_s) == (
        1.5, 60.0, 60.0, 10.0,
    )


@given(
    st.integers(0, 255), st.integers(0, 255), st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1),
    st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535), st.none() | st.integers(0, 65535),
)
def test_raw_gps_round_trip(fix, sats, lat, lon, alt, speed, course, pdop):
    g = msp.RawGps(fix, sats, lat, lon, alt, speed, course, pdop)
    assert msp.RawGps.decode(g.encode()) == g


@given(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 255))
def test_comp_gps_round_trip(dist, direction, update):
    c = msp.CompGps(dist, direction, update)
    assert msp.CompGps.decode(c.encode()) == c


@given(st.binary(max_size=40))
def test_gps_replies_of_any_length_decode_or_raise_msp_error(payload):
    for cls in (msp.RawGps, msp.CompGps):
        try:
            cls.decode(payload)
        except MspError:
            pass


def test_raw_gps_latitude_is_signed_degrees():
    # Betaflight writes the signed i32 with sbufWriteU32 (msp.c): the south is negative.
    g = msp.RawGps.decode(bytes([2, 20]) + (-353632620).to_bytes(4, "little", signed=True) + bytes(12))
    assert round(g.lat_deg, 6) == -35.363262 and g.pdop_x100 == 0

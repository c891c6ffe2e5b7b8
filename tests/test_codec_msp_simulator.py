"""INAV MSP_SIMULATOR (HITL): layouts, units and signs from INAV 9.1's fc_msp.c; round
trips and garbage."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import msp
from hil.codecs.msp_simulator import (
    MSP_SIMULATOR,
    RC_INPUTS,
    GpsFields,
    SensorBlock,
    SimFlag,
    SimulatorReply,
    SimulatorRequest,
    hitl_request,
    stop_request,
)

_PROPS = settings(max_examples=200, deadline=None)
G = 9.80665


def _at_rest(**tail) -> SensorBlock:
    return SensorBlock.from_si(
        euler_rad=(0.0, 0.0, 0.0),
        specific_force_frd=(0.0, 0.0, -G),
        rates_frd=(0.0, 0.0, 0.0),
        pressure_pa=101325.0,
        mag_frd_gauss=(0.2, 0.0, 0.4),
        **tail,
    )


def test_command_and_flags_follow_inav() -> None:
    assert MSP_SIMULATOR == 0x201F
    assert SimFlag.ENABLE == 1 and SimFlag.USE_IMU == 8 and SimFlag.HAS_NEW_GPS_DATA == 16
    assert SimFlag.EXTENDED_FLAGS == 128 and SimFlag.SIM_RC_INPUT == 1 << 11
    assert SimFlag.SITL_MODE == 1 << 14


def test_v3_request_layout_byte_by_byte() -> None:
    gps = GpsFields(2, 12, 473977420, 85455940, 48800, 150, 900, (0, 150, -20))
    s = SensorBlock(
        gps=gps,
        attitude_decideg=(10, -20, 3590),
        acc_mg=(1, 2, 1000),
        gyro=(16, -32, 0),
        baro_pa=95000,
        mag=(800, 0, -400),
        rangefinder_cm=0xFFFF,
        current_da=12,
        rc=(1500,) * 8,
        rssi=1023,
    )
    flags = SimFlag.ENABLE | SimFlag.HAS_NEW_GPS_DATA
    data = SimulatorRequest(int(flags), s, 3).encode()
    assert data[:3] == bytes([3, 17, 0])
    assert struct.unpack_from("<BBiii", data, 3) == (2, 12, 473977420, 85455940, 48800)
    # 3 header + 24 GPS + 28 core + 22 version-3 tail
    assert len(data) == 3 + 24 + 28 + 22
    assert struct.unpack_from("<3h3h3hi3h", data, 27) == (10, -20, 3590, 1, 2, 1000, 16, -32, 0, 95000, 800, 0, -400)
    assert struct.unpack_from("<HH", data, 55) == (0xFFFF, 12)


def test_v2_layout_battery_airspeed_and_high_flags() -> None:
    s = replace_tail(_at_rest(), vbat_dv=111, airspeed_cms=1234)
    flags = SimFlag.ENABLE | SimFlag.EXT_BATTERY_VOLTAGE | SimFlag.AIRSPEED | SimFlag.EXTENDED_FLAGS | SimFlag.GPS_TIMEOUT
    data = SimulatorRequest(int(flags), s, 2).encode()
    assert data[0] == 2 and data[1] == int(flags) & 0xFF
    assert len(data) == 2 + 24 + 28 + 1 + 2 + 1
    assert data[54] == 111 and struct.unpack_from("<H", data, 55)[0] == 1234
    assert data[-1] == int(flags) >> 8
    assert SimulatorRequest.decode(data).flags == int(flags)


def replace_tail(s: SensorBlock, **kw) -> SensorBlock:
    from dataclasses import replace

    return replace(s, **kw)


def test_a_level_vehicle_at_rest_in_inav_units() -> None:
    s = _at_rest()
    assert s.attitude_decideg == (0, 0, 0)
    assert s.acc_mg == (0, 0, 1000)  # +1 g on z, forward-left-up
    assert s.gyro == (0, 0, 0)
    assert s.baro_pa == 101325
    assert s.mag == (3200, 0, -6400)  # north stays x; down becomes -z


def test_signs_inav_expects() -> None:
    # 10 deg right wing down, 5 deg nose up, heading 350 deg; pitching up, yawing right.
    s = SensorBlock.from_si(
        euler_rad=(math.radians(10), math.radians(5), math.radians(-10)),
        specific_force_frd=(1.0, 2.0, -G),
        rates_frd=(math.radians(1), math.radians(2), math.radians(3)),
        pressure_pa=100000.0,
        mag_frd_gauss=(0.0, 0.1, 0.0),
    )
    assert s.attitude_decideg == (100, -50, 3500)  # INAV pitch: nose up is negative
    assert s.acc_mg[1] < 0  # right is negative
    assert s.gyro == (16, -32, -48)  # pitch up and yaw right read negative
    assert s.mag[1] == -1600


def test_saturation_and_non_finite_values() -> None:
    s = SensorBlock.from_si(
        euler_rad=(0, 0, 0),
        specific_force_frd=(1e6, 0, 0),
        rates_frd=(0, 0, -1e6),
        pressure_pa=1e5,
        mag_frd_gauss=(0, 0, 0),
    )
    assert s.acc_mg[0] == 32767 and s.gyro[2] == 32767
    with pytest.raises(ValueError, match="not finite"):
        SensorBlock.from_si(
            euler_rad=(math.nan, 0, 0),
            specific_force_frd=(0, 0, 0),
            rates_frd=(0, 0, 0),
            pressure_pa=1e5,
            mag_frd_gauss=(0, 0, 0),
        )


def test_gps_from_si() -> None:
    g = GpsFields.from_si(3, 14, 47.3977419, 8.5455938, 488.2, (1.0, -1.0, 0.5))
    assert g.fix_type == 2  # INAV's GPS_FIX_3D
    assert g.lat_e7 == 473977419 and g.lon_e7 == 85455938 and g.alt_cm == 48820
    assert g.ground_speed_cms == 141
    assert g.ground_course_decideg == 3150  # heading north-west
    assert g.vel_ned_cms == (100, -100, 50)
    assert GpsFields.from_si(0, 0, 0, 0, 0, (0, 0, 0)).fix_type == 0
    assert GpsFields.from_si(2, 5, 0, 0, 0, (0, 0, 0)).fix_type == 1


def test_stop_and_reboot_requests() -> None:
    assert stop_request().encode() == bytes([3, 0, 0])
    assert stop_request(2).encode() == bytes([2, 0])
    assert stop_request().stops and not stop_request().reboots
    assert SimulatorRequest(int(SimFlag.MUTE_BEEPER)).reboots
    assert not SimulatorRequest(int(SimFlag.SITL_MODE | SimFlag.MUTE_BEEPER)).reboots


def test_hitl_request_makes_flags_agree_with_fields() -> None:
    req = hitl_request(replace_tail(_at_rest(), vbat_dv=150), new_gps=True, extra=SimFlag.MUTE_BEEPER)
    assert req.flags == SimFlag.ENABLE | SimFlag.HAS_NEW_GPS_DATA | SimFlag.EXT_BATTERY_VOLTAGE | SimFlag.MUTE_BEEPER
    assert req.sensors.rc == (1500,) * RC_INPUTS and req.sensors.rangefinder_cm == 0xFFFF
    assert SimulatorRequest.decode(req.encode()) == req


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s: SimulatorRequest(1, s, 4), "version"),
        (lambda s: SimulatorRequest(1, replace_tail(s, vbat_dv=10), 3), "EXT_BATTERY_VOLTAGE"),
        (lambda s: SimulatorRequest(1, s, 3), "version 3 sensor block carries"),
        (lambda s: SimulatorRequest(1 | 0x100, None, 2), "outside 0..255"),
        (lambda s: SimulatorRequest(1 | 0x180, None, 2), "only after a sensor block"),
        (lambda s: SimulatorRequest(1, replace_tail(s, rc=(1500,) * 8, rssi=0, current_da=0, rangefinder_cm=0), 2), "version 3 only"),
        (lambda s: SimulatorRequest(int(SimFlag.ENABLE | SimFlag.AIRSPEED), s, 2), "airspeed"),
    ],
)
def test_inconsistent_requests_are_refused(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make(_at_rest()).encode()


def test_reply_layout_and_meaning() -> None:
    osd = bytes([255, 0])
    payload = struct.pack("<4hBi3h", 1, -2, 3, -500, 3 | 64 | 32, -7, 15, -25, 3599) + osd
    r = SimulatorReply.decode(payload)
    assert (r.roll, r.pitch, r.yaw, r.throttle) == (1, -2, 3, -500)
    assert r.index == 3 and r.armed and not r.airplane and r.debug_value == -7
    assert r.osd == osd
    roll, pitch, yaw = r.est_euler_rad
    assert math.isclose(math.degrees(roll), 1.5) and math.isclose(math.degrees(pitch), 2.5)
    assert math.isclose(math.degrees(yaw), 359.9)
    assert r.encode() == payload


# -- properties ------------------------------------------------------------------------

_i16 = st.integers(-32768, 32767)
_u16 = st.integers(0, 0xFFFF)
_i32 = st.integers(-(2**31), 2**31 - 1)
_v3 = st.tuples(_i16, _i16, _i16)


@st.composite
def requests(draw) -> SimulatorRequest:
    version = draw(st.sampled_from((2, 3)))
    if draw(st.booleans()):
        flags = 0 if draw(st.booleans()) else draw(st.integers(0, 0xFF if version == 2 else 0xFFFF))
        return SimulatorRequest(flags, None, version)
    flags = draw(st.integers(0, 0xFFFF)) | SimFlag.ENABLE
    flags &= ~SimFlag.SITL_MODE
    if version == 2 and not flags & SimFlag.EXTENDED_FLAGS:
        flags &= 0xFF
    gps = GpsFields(
        draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(_i32), draw(_i32), draw(_i32),
        draw(_i16), draw(_i16), draw(_v3),
    )
    tail = {}
    if version == 3:
        tail = dict(
            rangefinder_cm=draw(_u16), current_da=draw(_u16),
            rc=tuple(draw(st.lists(_u16, min_size=8, max_size=8))), rssi=draw(_u16),
        )
    s = SensorBlock(
        gps=gps,
        attitude_decideg=draw(_v3),
        acc_mg=draw(_v3),
        gyro=draw(_v3),
        baro_pa=draw(_i32),
        mag=draw(_v3),
        vbat_dv=draw(st.integers(0, 255)) if flags & SimFlag.EXT_BATTERY_VOLTAGE else None,
        airspeed_cms=draw(_u16) if flags & (SimFlag.AIRSPEED | SimFlag.EXTENDED_FLAGS) else None,
        **tail,
    )
    return SimulatorRequest(int(flags), s, version)


@_PROPS
@given(requests())
def test_request_round_trip_through_msp_v2(req: SimulatorRequest) -> None:
    frame = msp.encode_v2(MSP_SIMULATOR, req.encode())
    (back,) = msp.MspParser().feed(frame)
    assert back.version == 2 and back.cmd == MSP_SIMULATOR
    assert SimulatorRequest.decode(back.payload) == req


_replies = st.builds(
    SimulatorReply, _i16, _i16, _i16, _i16, st.integers(0, 255), _i32, _v3, st.binary(max_size=100)
)


@_PROPS
@given(_replies)
def test_reply_round_trip_through_msp_v2(reply: SimulatorReply) -> None:
    frame = msp.encode_reply(MSP_SIMULATOR, reply.encode(), version=2)
    (back,) = msp.MspParser().feed(frame)
    assert SimulatorReply.decode(back.payload) == reply


@_PROPS
@given(requests(), st.data())
def test_a_cut_request_is_refused(req: SimulatorRequest, data) -> None:
    raw = req.encode()
    cut = data.draw(st.integers(0, len(raw) - 1))
    if cut in (2, 3) and raw[0] in (2, 3) and cut == (3 if raw[0] == 3 else 2):
        return  # the header alone is a valid request
    with pytest.raises(msp.MspError):
        SimulatorRequest.decode(raw[:cut])


@_PROPS
@given(st.binary(max_size=120))
def test_random_request_bytes_raise_only_the_codec_error(data: bytes) -> None:
    try:
        req = SimulatorRequest.decode(data)
    except msp.MspError:
        return
    assert req.encode() == data  # what decodes is exactly what encodes back


@_PROPS
@given(st.binary(max_size=80))
def test_random_reply_bytes_raise_only_the_codec_error(data: bytes) -> None:
    try:
        reply = SimulatorReply.decode(data)
    except msp.MspError:
        return
    assert reply.encode() == data


@_PROPS
@given(
    st.tuples(st.floats(-3.1, 3.1), st.floats(-1.5, 1.5), st.floats(-3.14, 3.14)),
    st.tuples(*[st.floats(-100, 100)] * 3),
    st.tuples(*[st.floats(-30, 30)] * 3),
)
def test_si_values_always_make_an_encodable_request(euler, force, rates) -> None:
    s = SensorBlock.from_si(
        euler_rad=euler, specific_force_frd=force, rates_frd=rates, pressure_pa=90000.0,
        mag_frd_gauss=(0.2, 0.0, 0.4),
    )
    req = hitl_request(s, new_gps=False)
    assert SimulatorRequest.decode(req.encode()) == req

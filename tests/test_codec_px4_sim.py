"""PX4 simulator_mavlink facts: fields_updated groups, HIL_SENSOR/HIL_GPS units, actuator checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import px4_sim
from hil.codecs.px4_sim import (
    ActuatorControls,
    Px4SimError,
    actuator_controls_from_message,
    decode_actuator_controls,
    encode_actuator_controls,
    hil_gps_fields,
    hil_sensor_fields,
)
from hil.mavlink.dialect import mavlink, new_codec

_PROPS = settings(max_examples=200, deadline=None)


def _round_trip(msg: object) -> object:
    codec = new_codec(1, 1)
    (back,) = codec.parse_buffer(bytes(msg.pack(codec)))  # type: ignore[attr-defined]
    return back


# --- fields_updated -------------------------------------------------------------------


def test_groups_follow_simulator_mavlink_hpp() -> None:
    assert px4_sim.GROUPS == {
        "accel": 0b111,
        "gyro": 0b111000,
        "mag": 0b111000000,
        "baro": 0b1101000000000,
        "diff_press": 0b10000000000,
    }


def test_a_hovering_quad_sends_0x1bff() -> None:
    assert px4_sim.HOVER_QUAD == 0x1BFF
    assert px4_sim.groups_used(0x1BFF) == {"accel", "gyro", "mag", "baro"}


def test_baro_needs_abs_pressure_pressure_alt_and_temperature() -> None:
    bits = (
        mavlink.HIL_SENSOR_UPDATED_ABS_PRESSURE
        | mavlink.HIL_SENSOR_UPDATED_PRESSURE_ALT
        | mavlink.HIL_SENSOR_UPDATED_TEMPERATURE
    )
    assert bits == px4_sim.BARO == (1 << 9) | (1 << 11) | (1 << 12)
    assert px4_sim.DIFF_PRESS == mavlink.HIL_SENSOR_UPDATED_DIFF_PRESSURE == 1 << 10
    assert px4_sim.groups_used(mavlink.HIL_SENSOR_UPDATED_ABS_PRESSURE) == frozenset()
    assert px4_sim.partial_groups(0x1FF | (1 << 9) | (1 << 12)) == {"baro": 1 << 11}


def test_partial_group_is_an_error_that_names_the_missing_bits() -> None:
    with pytest.raises(Px4SimError, match="baro lacks 0x800"):
        px4_sim.check_fields_updated(0x13FF)
    px4_sim.check_fields_updated(0x1BFF)
    px4_sim.check_fields_updated(0)


@_PROPS
@given(st.integers(0, 2**32 - 1))
def test_every_group_is_used_partial_or_absent(bits: int) -> None:
    used, partial = px4_sim.groups_used(bits), set(px4_sim.partial_groups(bits))
    assert not used & partial
    for name, group in px4_sim.GROUPS.items():
        assert (name in used) == (bits & group == group)
        assert (name in partial) == (bits & group not in (0, group))


# --- HIL_SENSOR -----------------------------------------------------------------------


def _hover_sensor(**kw: object) -> px4_sim.HilSensorFields:
    args: dict[str, object] = dict(
        accel=(0.0, 0.0, -9.81),
        gyro=(0.0, 0.0, 0.0),
        mag_tesla=(2.1e-5, 0.0, 4.3e-5),
        pressure_pa=101325.0,
        pressure_alt_m=0.0,
        temperature_c=15.0,
    )
    args.update(kw)
    return hil_sensor_fields(4000, **args)  # type: ignore[arg-type]


def test_hil_sensor_in_px4_units() -> None:
    f = _hover_sensor()
    assert f.fields_updated == 0x1BFF
    assert f.abs_pressure == pytest.approx(1013.25)  # Pa -> hPa
    assert (f.xmag, f.zmag) == pytest.approx((0.21, 0.43))  # tesla -> gauss
    assert f.zacc == -9.81 and f.temperature == 15.0


def test_groups_left_out_are_unflagged() -> None:
    f = hil_sensor_fields(8000, accel=(0, 0, -9.8), gyro=(0, 0, 0))
    assert f.fields_updated == 0x3F and f.abs_pressure == 0.0
    f = hil_sensor_fields(8000, diff_pressure_pa=250.0)
    assert f.fields_updated == 0x400 and f.diff_pressure == pytest.approx(2.5)


def test_half_a_baro_is_refused() -> None:
    with pytest.raises(Px4SimError, match="baro group only whole"):
        hil_sensor_fields(0, pressure_pa=101325.0)


def test_sensor_ids_px4_would_drop_are_refused() -> None:
    assert hil_sensor_fields(0, accel=(0, 0, -9.8), sensor_id=2).id == 2
    with pytest.raises(Px4SimError, match="mag ids 0..1; id 2"):
        hil_sensor_fields(0, mag_tesla=(0, 0, 5e-5), sensor_id=2)


def test_non_finite_sensor_values_are_refused() -> None:
    with pytest.raises(Px4SimError, match="gyro"):
        _hover_sensor(gyro=(math.nan, 0.0, 0.0))


_f = st.floats(-1e4, 1e4, allow_nan=False)


@_PROPS
@given(
    st.integers(0, 2**63),
    st.tuples(_f, _f, _f),
    st.tuples(_f, _f, _f),
    st.tuples(*[st.floats(-1e-3, 1e-3)] * 3),
    st.floats(1e3, 2e5),
    _f,
    st.floats(-60, 90),
)
def test_hil_sensor_survives_pymavlink(
    t: int, acc: tuple, gyr: tuple, mag: tuple, p: float, alt: float, temp: float
) -> None:
    f = hil_sensor_fields(
        t, accel=acc, gyro=gyr, mag_tesla=mag, pressure_pa=p, pressure_alt_m=alt, temperature_c=temp
    )
    back = _round_trip(f.to_message())
    assert back.get_type() == "HIL_SENSOR"  # type: ignore[attr-defined]
    assert back.time_usec == t and back.fields_updated == 0x1BFF  # type: ignore[attr-defined]
    for name in ("xacc", "zgyro", "ymag", "abs_pressure", "pressure_alt", "temperature"):
        assert getattr(back, name) == np.float32(getattr(f, name)), name


# --- HIL_GPS --------------------------------------------------------------------------


def test_hil_gps_in_wire_units() -> None:
    g = hil_gps_fields(
        10**6,
        lat_deg=47.3977419,
        lon_deg=8.5455938,
        alt_m=488.25,
        vel_ned=(3.0, 4.0, -0.5),
        eph_m=0.8,
        epv_m=1.2,
        cog_deg=53.13,
    )
    assert (g.lat, g.lon, g.alt) == (473977419, 85455938, 488250)
    assert (g.eph, g.epv) == (80, 120)
    assert (g.vel, g.vn, g.ve, g.vd) == (500, 300, 400, -50)
    assert g.cog == 5313 and g.fix_type == 3 and g.yaw == 0


def test_unknown_accuracy_and_course_are_65535() -> None:
    g = hil_gps_fields(0, lat_deg=0, lon_deg=0, alt_m=0, vel_ned=(0, 0, 0), eph_m=None, epv_m=None)
    assert (g.eph, g.epv, g.cog) == (65535, 65535, 65535)


def test_course_wraps_into_0_to_35999() -> None:
    kw = dict(lat_deg=0, lon_deg=0, alt_m=0, vel_ned=(0, 0, 0), eph_m=1, epv_m=1)
    assert hil_gps_fields(0, cog_deg=-90, **kw).cog == 27000  # type: ignore[arg-type]
    assert hil_gps_fields(0, cog_deg=359.999, **kw).cog == 0  # type: ignore[arg-type]


def test_jammed_accuracy_saturates_below_unknown() -> None:
    g = hil_gps_fields(0, lat_deg=0, lon_deg=0, alt_m=0, vel_ned=(0, 0, 0), eph_m=5e3, epv_m=9e9)
    assert (g.eph, g.epv) == (65534, 65534)


def test_values_outside_the_fields_are_refused() -> None:
    kw = dict(lat_deg=0, lon_deg=0, alt_m=0, eph_m=1, epv_m=1)
    with pytest.raises(Px4SimError, match="vn = 40000 cm/s"):
        hil_gps_fields(0, vel_ned=(400.0, 0, 0), **kw)  # type: ignore[arg-type]
    with pytest.raises(Px4SimError, match="latitude"):
        hil_gps_fields(0, lat_deg=91, lon_deg=0, alt_m=0, vel_ned=(0, 0, 0), eph_m=1, epv_m=1)
    with pytest.raises(Px4SimError, match="at most 3 GPS"):
        hil_gps_fields(0, vel_ned=(0, 0, 0), gps_id=3, **kw)  # type: ignore[arg-type]


@_PROPS
@given(
    st.floats(-90, 90),
    st.floats(-180, 180),
    st.floats(-400, 9000),
    st.tuples(*[st.floats(-200, 200)] * 3),
    st.none() | st.floats(0, 1e4),
    st.none() | st.floats(0, 360, exclude_max=True),
)
def test_hil_gps_survives_pymavlink(
    lat: float, lon: float, alt: float, vel: tuple, eph: float | None, cog: float | None
) -> None:
    g = hil_gps_fields(
        5, lat_deg=lat, lon_deg=lon, alt_m=alt, vel_ned=vel, eph_m=eph, epv_m=eph, cog_deg=cog
    )
    back = _round_trip(g.to_message())
    assert {k: getattr(back, k) for k in vars(g)} == vars(g)
    assert abs(back.lat / 1e7 - lat) <= 0.5e-7 + 1e-12  # type: ignore[attr-defined]


# --- HIL_ACTUATOR_CONTROLS ------------------------------------------------------------

_ARMED = px4_sim.MODE_FLAG_CUSTOM | px4_sim.MODE_FLAG_ARMED  # 129


def _msg(controls: tuple[float, ...], mode: int = _ARMED, flags: int = 1) -> object:
    return mavlink.MAVLink_hil_actuator_controls_message(1234, list(controls), mode, flags)


def test_armed_lockstep_controls_are_accepted() -> None:
    ac = actuator_controls_from_message(_msg((0.6,) * 4 + (0.0,) * 12), require_lockstep=True)
    assert ac.armed and ac.lockstep and ac.controls[:4] == (0.6,) * 4


def test_lockstep_flag_can_be_required() -> None:
    msg = _msg((0.0,) * 16, flags=0)
    assert not actuator_controls_from_message(msg).lockstep
    with pytest.raises(Px4SimError, match="lockstep"):
        actuator_controls_from_message(msg, require_lockstep=True)


def test_controls_outside_minus_one_to_one_are_refused() -> None:
    with pytest.raises(Px4SimError, match="within -1..1"):
        actuator_controls_from_message(_msg((1.5,) + (0.0,) * 15))
    with pytest.raises(Px4SimError, match="within -1..1"):
        actuator_controls_from_message(_msg((math.nan,) + (0.0,) * 15))


def test_disarmed_px4_sends_zeros() -> None:
    assert not actuator_controls_from_message(_msg((0.0,) * 16, mode=1)).armed
    with pytest.raises(Px4SimError, match="disarmed"):
        actuator_controls_from_message(_msg((0.2,) + (0.0,) * 15, mode=1))


def test_mode_without_the_custom_flag_is_refused() -> None:
    with pytest.raises(Px4SimError, match="custom-mode flag"):
        actuator_controls_from_message(_msg((0.0,) * 16, mode=128))


def test_other_messages_are_refused() -> None:
    hb = mavlink.MAVLink_heartbeat_message(2, 12, 0, 0, 0, 3)
    with pytest.raises(Px4SimError, match="expected HIL_ACTUATOR_CONTROLS, got HEARTBEAT"):
        actuator_controls_from_message(hb)


_controls = st.tuples(*[st.floats(-1, 1, width=32)] * 16)


@_PROPS
@given(st.integers(0, 2**64 - 1), _controls, st.booleans())
def test_actuator_controls_round_trip(t: int, controls: tuple[float, ...], lockstep: bool) -> None:
    ac = ActuatorControls(t, controls, _ARMED, int(lockstep))
    assert decode_actuator_controls(encode_actuator_controls(ac)) == ac


@_PROPS
@given(st.integers(0, 200), st.integers(1, 255))
def test_a_corrupted_frame_is_refused(position: int, flip: int) -> None:
    frame = bytearray(encode_actuator_controls(ActuatorControls(7, (0.5,) * 16, _ARMED, 1)))
    frame[position % len(frame)] ^= flip
    with pytest.raises(Px4SimError):
        decode_actuator_controls(bytes(frame))


@_PROPS
@given(st.binary(max_size=120))
def test_random_bytes_raise_only_the_codec_error(data: bytes) -> None:
    try:
        decode_actuator_controls(data)
    except Px4SimError:
        pass


def test_constants_from_protocols_md() -> None:
    assert px4_sim.DEFAULT_PORT == 4560
    assert px4_sim.LOCKSTEP_STEP_US == 4000
    assert px4_sim.HIL_STATE_QUATERNION_INTERVAL_US == 5000
    assert px4_sim.MAX_IDS == {"accel": 3, "gyro": 3, "mag": 2, "baro": 2}

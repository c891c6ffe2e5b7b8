"""PX4's simulator_mavlink protocol as data (PROTOCOLS.md sections 4 and 12).

PX4 SITL connects as a TCP client to 4560 + instance and runs in lockstep: the
simulator sends HIL_SENSOR (and now and then HIL_GPS), PX4 runs one step and answers
with HIL_ACTUATOR_CONTROLS. This module holds the facts of that exchange and builds
or checks the field sets, in PX4's units, with pymavlink's message classes. It does no
I/O and reads no clock.

Facts from PX4 `src/modules/simulation/simulator_mavlink/SimulatorMavlink.hpp` and
`SimulatorMavlink.cpp`:

- `fields_updated` is read in groups, each used only when all its bits are set:
  accel 0x7, gyro 0x38, mag 0x1C0, baro 0x1A00 (bits 9 abs_pressure, 11 pressure_alt
  and 12 temperature together), differential pressure 0x400. A hovering quad sends
  0x1BFF. Temperature is taken only with the baro group.
- Units PX4 reads: accel m/s^2, gyro rad/s, mag gauss, abs_pressure and diff_pressure
  hPa (it multiplies by 100), temperature degC.
- Sensor ids PX4 accepts: accel and gyro 0..2, mag and baro 0..1; a larger id makes
  PX4 drop the rest of that HIL_SENSOR. Only id 0 advances lockstep time.
- HIL_GPS: lat/lon 1e-7 deg, alt mm, eph/epv cm, vel/vn/ve/vd cm/s, cog cdeg (65535
  unknown), satellites_visible, id selects the GPS instance (at most 3).
- HIL_ACTUATOR_CONTROLS from PX4: mode = 1 (custom) + 128 when armed; controls are the
  actuator outputs when armed and all zero otherwise; flags bit 0 set by a build with
  the lockstep scheduler.
- PX4 asks for HIL_STATE_QUATERNION (ground truth) every 5000 us.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from struct import error as struct_error
from typing import Any

from hil.errors import HilError
from hil.mavlink.dialect import UINT16_MAX, mavlink, new_codec

DEFAULT_PORT = 4560
"""PX4 connects to this TCP port + its instance number."""
LOCKSTEP_STEP_US = 4000
"""One lockstep step at IMU_INTEG_RATE 250 (PROTOCOLS.md section 12)."""
HIL_STATE_QUATERNION_INTERVAL_US = 5000

# fields_updated groups (SimulatorMavlink.hpp, enum SensorSource).
ACCEL = 0x0007
GYRO = 0x0038
MAG = 0x01C0
BARO = 0x1A00
DIFF_PRESS = 0x0400
GROUPS: dict[str, int] = {
    "accel": ACCEL,
    "gyro": GYRO,
    "mag": MAG,
    "baro": BARO,
    "diff_press": DIFF_PRESS,
}
HOVER_QUAD = ACCEL | GYRO | MAG | BARO  # 0x1BFF

#: Highest sensor id + 1 per group (SimulatorMavlink.hpp *_COUNT_MAX); diff_press has no id.
MAX_IDS: dict[str, int] = {"accel": 3, "gyro": 3, "mag": 2, "baro": 2}
MAX_GPS = 3

MODE_FLAG_CUSTOM = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED  # 1
MODE_FLAG_ARMED = mavlink.MAV_MODE_FLAG_SAFETY_ARMED  # 128
FLAG_LOCKSTEP = mavlink.HIL_ACTUATOR_CONTROLS_FLAGS_LOCKSTEP  # 1

GAUSS_PER_TESLA = 1e4
PA_PER_HPA = 100.0
COG_UNKNOWN = UINT16_MAX
ACCURACY_MAX_CM = UINT16_MAX - 1
"""eph/epv saturate here: 65535 would mean "unknown", and a huge error is still huge."""
CONTROLS = 16

FLOAT32_MAX = 3.4028234663852886e38

Vec3 = tuple[float, float, float]


class Px4SimError(HilError):
    """A value PX4's simulator protocol cannot carry, or a message PX4 would not send."""


# --- fields_updated -------------------------------------------------------------------


def groups_used(fields_updated: int) -> frozenset[str]:
    """Groups PX4 reads from a HIL_SENSOR with these bits (all of a group's bits set)."""
    return frozenset(name for name, bits in GROUPS.items() if fields_updated & bits == bits)


def partial_groups(fields_updated: int) -> dict[str, int]:
    """Groups with some bits set but not all: PX4 ignores them. Name -> missing bits."""
    return {
        name: bits & ~fields_updated
        for name, bits in GROUPS.items()
        if fields_updated & bits and fields_updated & bits != bits
    }


def check_fields_updated(fields_updated: int) -> None:
    """Raise Px4SimError when a group is only partly flagged (PX4 would drop it silently)."""
    partial = partial_groups(fields_updated)
    if partial:
        detail = ", ".join(f"{name} lacks 0x{missing:x}" for name, missing in partial.items())
        raise Px4SimError(
            f"fields_updated 0x{fields_updated:x}: {detail}; PX4 reads a group only when all its bits are set"
        )


# --- value checks ---------------------------------------------------------------------


def _finite(name: str, value: float, *, limit: float = FLOAT32_MAX) -> float:
    x = float(value)
    if not math.isfinite(x) or abs(x) > limit:
        raise Px4SimError(f"{name} = {value} is not a finite value within +-{limit:g}")
    return x


def _vec3(name: str, value: Sequence[float], scale: float = 1.0) -> Vec3:
    if len(value) != 3:
        raise Px4SimError(f"{name} must have 3 components, got {len(value)}")
    x, y, z = (_finite(f"{name}[{i}]", v * scale) for i, v in enumerate(value))
    return (x, y, z)


def _int_in(name: str, value: float, lo: int, hi: int, unit: str) -> int:
    if not math.isfinite(value):
        raise Px4SimError(f"{name} must be finite, got {value}")
    n = round(value)
    if not lo <= n <= hi:
        raise Px4SimError(f"{name} = {n} {unit} is outside the field's range {lo}..{hi}")
    return n


def _time_usec(value: int) -> int:
    if not 0 <= value < 2**64:
        raise Px4SimError(f"time_usec {value} does not fit a u64")
    return int(value)


# --- HIL_SENSOR -----------------------------------------------------------------------


@dataclass(frozen=True)
class HilSensorFields:
    """HIL_SENSOR fields in PX4's units (gauss, hPa), ready for pymavlink."""

    time_usec: int
    xacc: float
    yacc: float
    zacc: float
    xgyro: float
    ygyro: float
    zgyro: float
    xmag: float
    ymag: float
    zmag: float
    abs_pressure: float
    diff_pressure: float
    pressure_alt: float
    temperature: float
    fields_updated: int
    id: int = 0

    def to_message(self) -> Any:
        return mavlink.MAVLink_hil_sensor_message(**asdict(self))


def hil_sensor_fields(
    time_usec: int,
    *,
    accel: Sequence[float] | None = None,
    gyro: Sequence[float] | None = None,
    mag_tesla: Sequence[float] | None = None,
    pressure_pa: float | None = None,
    pressure_alt_m: float | None = None,
    temperature_c: float | None = None,
    diff_pressure_pa: float | None = None,
    sensor_id: int = 0,
) -> HilSensorFields:
    """Build a HIL_SENSOR from SI values (m/s^2, rad/s, tesla, Pa, m, degC).

    Each group given sets all its bits; groups left out are zero and unflagged. The
    baro group needs pressure, pressure altitude and temperature together.
    """
    bits = 0
    acc = gyr = mag = (0.0, 0.0, 0.0)
    if accel is not None:
        acc, bits = _vec3("accel", accel), bits | ACCEL
    if gyro is not None:
        gyr, bits = _vec3("gyro", gyro), bits | GYRO
    if mag_tesla is not None:
        mag, bits = _vec3("mag", mag_tesla, GAUSS_PER_TESLA), bits | MAG
    baro = (pressure_pa, pressure_alt_m, temperature_c)
    if any(v is not None for v in baro) and not all(v is not None for v in baro):
        raise Px4SimError(
            "PX4 reads the baro group only whole: give pressure_pa, pressure_alt_m and temperature_c together"
        )
    abs_hpa = alt = temp = 0.0
    if pressure_pa is not None and pressure_alt_m is not None and temperature_c is not None:
        abs_hpa = _finite("abs_pressure", pressure_pa / PA_PER_HPA)
        alt = _finite("pressure_alt", pressure_alt_m)
        temp = _finite("temperature", temperature_c)
        bits |= BARO
    diff_hpa = 0.0
    if diff_pressure_pa is not None:
        diff_hpa, bits = _finite("diff_pressure", diff_pressure_pa / PA_PER_HPA), bits | DIFF_PRESS
    for name in groups_used(bits):
        limit = MAX_IDS.get(name)
        if limit is not None and not 0 <= sensor_id < limit:
            raise Px4SimError(
                f"PX4 simulates {name} ids 0..{limit - 1}; id {sensor_id} would be dropped"
            )
    if not 0 <= sensor_id <= 0xFF:
        raise Px4SimError(f"sensor id {sensor_id} does not fit a u8")
    return HilSensorFields(
        _time_usec(time_usec), *acc, *gyr, *mag, abs_hpa, diff_hpa, alt, temp, bits, sensor_id
    )


# --- HIL_GPS --------------------------------------------------------------------------


@dataclass(frozen=True)
class HilGpsFields:
    """HIL_GPS fields in their wire units (degE7, mm, cm, cm/s, cdeg)."""

    time_usec: int
    fix_type: int
    lat: int
    lon: int
    alt: int
    eph: int
    epv: int
    vel: int
    vn: int
    ve: int
    vd: int
    cog: int
    satellites_visible: int
    id: int = 0
    yaw: int = 0

    def to_message(self) -> Any:
        return mavlink.MAVLink_hil_gps_message(**asdict(self))


def _accuracy_cm(name: str, metres: float | None) -> int:
    if metres is None:
        return UINT16_MAX
    if not math.isfinite(metres) or metres < 0:
        raise Px4SimError(f"{name} must be a finite, non-negative number of metres, got {metres}")
    return min(round(metres * 100), ACCURACY_MAX_CM)


def hil_gps_fields(
    time_usec: int,
    *,
    lat_deg: float,
    lon_deg: float,
    alt_m: float,
    vel_ned: Sequence[float],
    eph_m: float | None,
    epv_m: float | None,
    cog_deg: float | None = None,
    fix_type: int = 3,
    satellites: int = 10,
    gps_id: int = 0,
) -> HilGpsFields:
    """Build a HIL_GPS from SI values; None accuracies and course mean "unknown" (65535)."""
    if not -90 <= lat_deg <= 90 or not -180 <= lon_deg <= 180:
        raise Px4SimError(f"position {lat_deg}, {lon_deg} is not a latitude/longitude in degrees")
    vn, ve, vd = _vec3("vel_ned", vel_ned, 100.0)
    i16 = (-0x8000, 0x7FFF)
    if cog_deg is not None and not math.isfinite(cog_deg):
        raise Px4SimError(f"cog must be finite degrees or None (unknown), got {cog_deg}")
    cog = COG_UNKNOWN if cog_deg is None else round((cog_deg % 360.0) * 100) % 36000
    if not 0 <= gps_id < MAX_GPS:
        raise Px4SimError(
            f"PX4 keeps at most {MAX_GPS} GPS instances (id 0..{MAX_GPS - 1}), got id {gps_id}"
        )
    if not 0 <= fix_type <= 0xFF or not 0 <= satellites <= 0xFF:
        raise Px4SimError(f"fix_type {fix_type} and satellites {satellites} must fit a u8")
    return HilGpsFields(
        time_usec=_time_usec(time_usec),
        fix_type=fix_type,
        lat=round(lat_deg * 1e7),
        lon=round(lon_deg * 1e7),
        alt=_int_in("alt", alt_m * 1000, -(2**31), 2**31 - 1, "mm"),
        eph=_accuracy_cm("eph", eph_m),
        epv=_accuracy_cm("epv", epv_m),
        vel=_int_in("vel", math.hypot(vn, ve), 0, UINT16_MAX - 1, "cm/s"),
        vn=_int_in("vn", vn, *i16, "cm/s"),
        ve=_int_in("ve", ve, *i16, "cm/s"),
        vd=_int_in("vd", vd, *i16, "cm/s"),
        cog=cog,
        satellites_visible=satellites,
        id=gps_id,
    )


# --- HIL_ACTUATOR_CONTROLS ------------------------------------------------------------


@dataclass(frozen=True)
class ActuatorControls:
    """A checked HIL_ACTUATOR_CONTROLS from PX4."""

    time_usec: int
    controls: tuple[float, ...]
    mode: int
    flags: int

    @property
    def armed(self) -> bool:
        return bool(self.mode & MODE_FLAG_ARMED)

    @property
    def lockstep(self) -> bool:
        return bool(self.flags & FLAG_LOCKSTEP)

    def to_message(self) -> Any:
        return mavlink.MAVLink_hil_actuator_controls_message(
            self.time_usec, list(self.controls), self.mode, self.flags
        )


def actuator_controls_from_message(msg: Any, *, require_lockstep: bool = False) -> ActuatorControls:
    """Check a decoded HIL_ACTUATOR_CONTROLS against what PX4 sends, or raise Px4SimError.

    `require_lockstep`: PX4 SITL must run with its lockstep scheduler (flags bit 0);
    HITL on hardware never sets it.
    """
    kind = msg.get_type() if hasattr(msg, "get_type") else type(msg).__name__
    if kind != "HIL_ACTUATOR_CONTROLS":
        raise Px4SimError(f"expected HIL_ACTUATOR_CONTROLS, got {kind}")
    controls = tuple(float(c) for c in msg.controls)
    if len(controls) != CONTROLS:
        raise Px4SimError(f"HIL_ACTUATOR_CONTROLS carries {CONTROLS} controls, got {len(controls)}")
    bad = [(i, c) for i, c in enumerate(controls) if not (math.isfinite(c) and -1.0 <= c <= 1.0)]
    if bad:
        raise Px4SimError(f"controls must be finite and within -1..1; index, value: {bad[:4]}")
    ac = ActuatorControls(int(msg.time_usec), controls, int(msg.mode), int(msg.flags))
    if not ac.mode & MODE_FLAG_CUSTOM:
        raise Px4SimError(
            f"mode 0x{ac.mode:02x} lacks the custom-mode flag (1) PX4 always sets: not PX4?"
        )
    if not ac.armed and any(controls):
        raise Px4SimError(
            "disarmed (mode bit 128 clear) but controls are not all zero: PX4 zeroes them when disarmed"
        )
    if require_lockstep and not ac.lockstep:
        raise Px4SimError(
            "HIL_ACTUATOR_CONTROLS flags lack the lockstep bit: this PX4 was built without the lockstep"
            " scheduler (or is HITL hardware); run it in real time instead"
        )
    return ac


def decode_actuator_controls(frame: bytes, *, require_lockstep: bool = False) -> ActuatorControls:
    """One MAVLink frame holding HIL_ACTUATOR_CONTROLS -> ActuatorControls, or Px4SimError."""
    codec = new_codec(0, 0)
    try:
        msgs = codec.parse_buffer(bytes(frame)) or []
    except (mavlink.MAVError, ValueError, IndexError, TypeError, struct_error) as e:
        raise Px4SimError(f"not a MAVLink frame: {e}") from None
    good = [m for m in msgs if m.get_type() != "BAD_DATA"]
    if len(good) != 1:
        raise Px4SimError(
            f"expected one HIL_ACTUATOR_CONTROLS frame, found {[m.get_type() for m in msgs] or 'none'}"
        )
    return actuator_controls_from_message(good[0], require_lockstep=require_lockstep)


def encode_actuator_controls(
    ac: ActuatorControls, system_id: int = 1, component_id: int = 1
) -> bytes:
    """A MAVLink 2 frame as PX4 would send it (for a fake PX4 in tests)."""
    return bytes(ac.to_message().pack(new_codec(system_id, component_id)))

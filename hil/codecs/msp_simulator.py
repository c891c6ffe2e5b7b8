"""INAV's HITL interface, MSP_SIMULATOR (MSP v2 command 0x201F), as pure data.

A simulator sends INAV the vehicle's sensors in one MSP_SIMULATOR request and INAV
answers with its control outputs, its estimated attitude and a slice of its OSD. Every
layout, unit and sign below comes from INAV 9.1's source (read, not copied):

- `src/main/fc/fc_msp.c`: `mspProcessSimulatorCommand` (header, enable/stop, the reply)
  and `readMspSimulatorValues` (the sensor block and what each field becomes);
- `src/main/fc/runtime_config.h`: `simulatorFlags_t` (HITL_* bits), `simulatorData_t`,
  `SIMULATOR_MSP_VERSION_2/3`, `SIMULATOR_BARO_TEMP`, `SIMULATOR_FULL_BATTERY`;
- `src/main/msp/msp_protocol_v2_inav.h`: `MSP_SIMULATOR 0x201F` (so MSP v2 framing);
- `src/main/flight/servos.c`: where the reply's control outputs are set (`servoMixer`);
- the signs of the body axes from the X-Plane HITL plugin's comments on what INAV expects
  (RomanLut/INAV-X-Plane-HITL `src/simData.cpp`) and INAV SITL's own X-Plane bridge
  (`src/main/target/SITL/sim/xplane.c`, which negates X-Plane's pitch the same way).

Request payload (little-endian)::

    u8  version          2 or 3 (anything else: an error reply)
    flags                u8 in version 2, u16 in version 3 (`SimFlag`)
    -- only when ENABLE is set and SITL_MODE is not; INAV reads nothing else otherwise --
    u8  GPS fix type     0 none, 1 2D, 2 3D (gpsFixType_e)      } read only with the GPS
    u8  satellites                                             } feature on and
    i32 latitude, i32 longitude    degrees x 1e7               } HAS_NEW_GPS_DATA set,
    i32 altitude                   cm AMSL                     } skipped otherwise (and
    i16 ground speed               cm/s                        } after fix type 0):
    i16 ground course              decidegrees 0..3599         } always on the wire
    i16 x3 velocity N, E, D        cm/s
    i16 x3 roll, pitch, yaw        decidegrees (INAV's signs, see `SensorBlock`);
                                   ignored when USE_IMU is set (INAV runs its AHRS)
    i16 x3 accelerometer           milli-g, INAV's body axes (1000 = 1 g)
    i16 x3 gyro                    deg/s x 16
    i32 baro                       Pa (read only while INAV has a barometer; 25 degC assumed)
    i16 x3 magnetometer            INAV divides by 20 (only the direction matters)
    u8  battery                    0.1 V, only when EXT_BATTERY_VOLTAGE is set
                                   (otherwise INAV takes 12.6 V)
    u16 airspeed                   cm/s, when AIRSPEED is set; the slot is also on the
                                   wire, unread, when only EXTENDED_FLAGS is set
    -- version 3 only, always on the wire --
    u16 rangefinder                cm; 0xFFFF = no reading (read with RANGEFINDER)
    u16 current                    0.1 A (read with CURRENT_SENSOR)
    u16 x8 RC channels, u16 RSSI   us / 0..1023 (read with SIM_RC_INPUT)
    -- version 2 only, when EXTENDED_FLAGS is set --
    u8  flags bits 8..15

A body shorter than 11 bytes (version 3) or 12 (version 2) is read as "no sensors": INAV
clears its GPS fix and reads nothing more. Its reader does not check lengths, so a
sender must send every field of the layout its flags announce.

Two requests do more than feed sensors: flags 0 (ENABLE clear) is the clean stop (HITL
off, disarm), and any other flags without ENABLE and without SITL_MODE make INAV
*reboot* with no reply (`SimulatorRequest.reboots`). The first enabled request switches
HITL on for good (arming flag SIMULATOR_MODE_HITL): the board's own IMU, baro, compass
and motor/servo outputs are then ignored until a stop or a reboot.

Reply payload::

    i16 x4 stabilized roll, pitch, yaw, throttle   -500..500 (throttle -500 while
                                                    disarmed). Set by the *servo* mixer:
                                                    on a multirotor without servos they
                                                    stay 0; its motors are MSP_MOTOR's.
    u8  bits 0-2 debug index (cycles 0..7), 16 OSD type not supported, 32 OSD feature
        off, 64 armed, 128 airplane platform
    i32 debug[index]
    i16 x3 estimated roll, pitch, yaw              decidegrees (INAV's attitude)
    OSD bytes: 255 (the format of HITL plugin 1.4), then rows, cols, y, x, run-length
        encoded characters ended by 0 0; or a single 0 when the OSD cannot be read.
        Kept raw here.

The reply is the board's state, not an answer stamped to the request: INAV keeps its own
clock, so MSP_SIMULATOR cannot lockstep (`hil.sim.inav_link`).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from enum import IntFlag

from hil.codecs.msp import MspError

#: MSP v2 command id (msp_protocol_v2_inav.h).
MSP_SIMULATOR = 0x201F
#: The two layouts INAV 9.x reads (SIMULATOR_MSP_VERSION_2 / _3).
VERSIONS = (2, 3)
#: RC channels a version 3 request carries (HITL_SIM_MAX_RC_INPUTS).
RC_INPUTS = 8
#: Rangefinder value meaning "no reading" (INAV then feeds -1 to the fake rangefinder).
RANGEFINDER_NONE = 0xFFFF
#: Battery voltage INAV assumes without EXT_BATTERY_VOLTAGE (SIMULATOR_FULL_BATTERY), 0.1 V.
DEFAULT_VBAT_DV = 126
#: Temperature INAV gives the simulated barometer (SIMULATOR_BARO_TEMP), degC.
BARO_TEMPERATURE_C = 25
#: Body below which INAV reads no sensors (fc_msp.c, minSensorBytes) by version.
MIN_SENSOR_BYTES = {2: 12, 3: 11}
#: Magnetometer counts per gauss we send (INAV divides by 20 and uses only the direction).
MAG_PER_GAUSS = 16000.0
ACC_PER_G = 1000.0
GYRO_PER_DPS = 16.0
#: Throttle INAV reports while disarmed.
THROTTLE_DISARMED = -500


class SimFlag(IntFlag):
    """simulatorFlags_t (runtime_config.h)."""

    ENABLE = 1 << 0
    SIMULATE_BATTERY = 1 << 1  # the battery voltage (and current) come from us
    MUTE_BEEPER = 1 << 2
    USE_IMU = 1 << 3  # INAV's AHRS from our accel/gyro instead of our attitude
    HAS_NEW_GPS_DATA = 1 << 4
    EXT_BATTERY_VOLTAGE = 1 << 5  # the u8 battery field is on the wire
    AIRSPEED = 1 << 6
    EXTENDED_FLAGS = 1 << 7  # version 2: a second flags byte follows the sensors
    GPS_TIMEOUT = 1 << 8
    PITOT_FAILURE = 1 << 9
    CURRENT_SENSOR = 1 << 10
    SIM_RC_INPUT = 1 << 11  # RC channels from the request (receiver type SIM)
    RANGEFINDER = 1 << 12
    FAILSAFE_TRIGGERED = 1 << 13  # the simulated receiver reports failsafe
    SITL_MODE = 1 << 14  # INAV-X-Plane-XITL against SITL: no sensors read


class ReplyFlag(IntFlag):
    """The high bits of the reply's debug-index byte (fc_msp.c)."""

    OSD_UNSUPPORTED = 16
    OSD_DISABLED = 32
    ARMED = 64
    AIRPLANE = 128


_GPS = struct.Struct("<BBiiihh3h")  # 24 bytes
_CORE = struct.Struct("<3h3h3hi3h")  # attitude, acc, gyro, baro, mag: 28 bytes
_V3_TAIL = struct.Struct(f"<HH{RC_INPUTS}HH")  # rangefinder, current, rc, rssi: 22 bytes
_REPLY = struct.Struct("<4hBi3h")  # 19 bytes


def _clamp16(v: float) -> int:
    if v != v:  # NaN
        raise ValueError("a sensor value is NaN")
    return max(-32768, min(32767, int(round(v))))


def _check_int(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"MSP_SIMULATOR field {name} = {value!r} is outside {lo}..{hi}")


@dataclass(frozen=True)
class GpsFields:
    """The GPS block, in wire units (see the module docstring)."""

    fix_type: int = 0
    satellites: int = 0
    lat_e7: int = 0
    lon_e7: int = 0
    alt_cm: int = 0
    ground_speed_cms: int = 0
    ground_course_decideg: int = 0
    vel_ned_cms: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def from_si(
        cls,
        fix_type: int,
        satellites: int,
        lat_deg: float,
        lon_deg: float,
        alt_m: float,
        vel_ned: tuple[float, float, float],
    ) -> GpsFields:
        """From degrees, metres AMSL and NED m/s. `fix_type` as a receiver says it
        (0 none, 2 2D, 3 3D) becomes INAV's numbering (0 none, 1 2D, 2 3D)."""
        vn, ve, vd = vel_ned
        fix = {0: 0, 1: 0, 2: 1, 3: 2}.get(int(fix_type), 2 if fix_type > 3 else 0)
        course = math.degrees(math.atan2(ve, vn)) % 360.0
        return cls(
            fix_type=fix,
            satellites=max(0, min(255, int(satellites))),
            lat_e7=int(round(lat_deg * 1e7)),
            lon_e7=int(round(lon_deg * 1e7)),
            alt_cm=max(-(2**31), min(2**31 - 1, int(round(alt_m * 100.0)))),
            ground_speed_cms=_clamp16(math.hypot(vn, ve) * 100.0),
            ground_course_decideg=int(round(course * 10.0)) % 3600,
            vel_ned_cms=(_clamp16(vn * 100.0), _clamp16(ve * 100.0), _clamp16(vd * 100.0)),
        )


@dataclass(frozen=True)
class SensorBlock:
    """Everything after the flags, in wire units.

    INAV's axes and signs: attitude roll positive right wing down, **pitch positive nose
    down** (the opposite of the aerospace convention), yaw 0..3599 clockwise from north;
    accelerometer, gyro and magnetometer in a forward-left-up body frame (a level
    vehicle at rest reads acc z = +1000; pitching up reads gyro y negative; yawing right
    reads gyro z negative). `from_si` converts from the harness's NED/FRD conventions.

    `vbat_dv` is on the wire only with EXT_BATTERY_VOLTAGE, `airspeed_cms` only with
    AIRSPEED or EXTENDED_FLAGS; the version-3 tail (`rangefinder_cm`, `current_da`,
    `rc`, `rssi`) only in version 3. `SimulatorRequest` checks that the flags and
    these fields agree.
    """

    gps: GpsFields = GpsFields()
    attitude_decideg: tuple[int, int, int] = (0, 0, 0)
    acc_mg: tuple[int, int, int] = (0, 0, 1000)
    gyro: tuple[int, int, int] = (0, 0, 0)  # deg/s x 16
    baro_pa: int = 101325
    mag: tuple[int, int, int] = (0, 0, 0)
    vbat_dv: int | None = None
    airspeed_cms: int | None = None
    rangefinder_cm: int | None = None
    current_da: int | None = None
    rc: tuple[int, ...] | None = None
    rssi: int | None = None

    @classmethod
    def from_si(
        cls,
        *,
        euler_rad: tuple[float, float, float],
        specific_force_frd: tuple[float, float, float],
        rates_frd: tuple[float, float, float],
        pressure_pa: float,
        mag_frd_gauss: tuple[float, float, float],
        gps: GpsFields | None = None,
        **tail: int | tuple[int, ...] | None,
    ) -> SensorBlock:
        """From the plant's units: (roll, pitch, yaw) rad of a FRD body in NED, specific
        force m/s^2 and rates rad/s in FRD, pressure Pa, field gauss in FRD. Values past
        an i16 field saturate, as a real sensor clips. `tail` sets the optional fields."""
        g = 9.80665
        roll, pitch, yaw = euler_rad
        fx, fy, fz = specific_force_frd
        p, q, r = rates_frd
        mx, my, mz = mag_frd_gauss
        for v in (roll, pitch, yaw, fx, fy, fz, p, q, r, mx, my, mz, pressure_pa):
            if not math.isfinite(v):
                raise ValueError(f"a sensor value is not finite: {v!r}")
        yaw_d = int(round(math.degrees(yaw) * 10.0)) % 3600
        return cls(
            gps=gps if gps is not None else GpsFields(),
            attitude_decideg=(
                _clamp16(math.degrees(roll) * 10.0),
                _clamp16(-math.degrees(pitch) * 10.0),
                yaw_d,
            ),
            acc_mg=(
                _clamp16(fx / g * ACC_PER_G),
                _clamp16(-fy / g * ACC_PER_G),
                _clamp16(-fz / g * ACC_PER_G),
            ),
            gyro=(
                _clamp16(math.degrees(p) * GYRO_PER_DPS),
                _clamp16(-math.degrees(q) * GYRO_PER_DPS),
                _clamp16(-math.degrees(r) * GYRO_PER_DPS),
            ),
            baro_pa=max(0, min(2**31 - 1, int(round(pressure_pa)))),
            mag=(
                _clamp16(mx * MAG_PER_GAUSS),
                _clamp16(-my * MAG_PER_GAUSS),
                _clamp16(-mz * MAG_PER_GAUSS),
            ),
            **tail,  # type: ignore[arg-type]
        )


def _has_airspeed_slot(flags: int) -> bool:
    return bool(flags & (SimFlag.AIRSPEED | SimFlag.EXTENDED_FLAGS))


@dataclass(frozen=True)
class SimulatorRequest:
    """One MSP_SIMULATOR request. `sensors` None: the header alone (a stop, or an
    enabled request with no sensor body)."""

    flags: int
    sensors: SensorBlock | None = None
    version: int = 3

    @property
    def reboots(self) -> bool:
        """True when INAV would reboot on this request (flags without ENABLE or SITL_MODE)."""
        return bool(self.flags) and not self.flags & (SimFlag.ENABLE | SimFlag.SITL_MODE)

    @property
    def stops(self) -> bool:
        """True for the clean stop: flags 0 turns HITL off and disarms."""
        return self.flags == 0

    def _check(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"MSP_SIMULATOR version must be 2 or 3, got {self.version!r}")
        top = 0xFFFF if self.version == 3 or self.flags & SimFlag.EXTENDED_FLAGS else 0xFF
        _check_int("flags", self.flags, 0, top)
        s = self.sensors
        if s is None:
            if self.version == 2 and self.flags > 0xFF:
                raise ValueError("version 2 carries flags above bit 7 only after a sensor block")
            return
        g = s.gps
        for name, value, lo, hi in (
            ("fix_type", g.fix_type, 0, 255),
            ("satellites", g.satellites, 0, 255),
            ("lat_e7", g.lat_e7, -(2**31), 2**31 - 1),
            ("lon_e7", g.lon_e7, -(2**31), 2**31 - 1),
            ("alt_cm", g.alt_cm, -(2**31), 2**31 - 1),
            ("ground_speed_cms", g.ground_speed_cms, -32768, 32767),
            ("ground_course_decideg", g.ground_course_decideg, -32768, 32767),
            ("baro_pa", s.baro_pa, -(2**31), 2**31 - 1),
        ):
            _check_int(name, value, lo, hi)
        for name, vec in (
            ("vel_ned_cms", g.vel_ned_cms),
            ("attitude_decideg", s.attitude_decideg),
            ("acc_mg", s.acc_mg),
            ("gyro", s.gyro),
            ("mag", s.mag),
        ):
            if len(vec) != 3:
                raise ValueError(f"MSP_SIMULATOR field {name} needs 3 values, got {vec!r}")
            for v in vec:
                _check_int(name, v, -32768, 32767)
        want_vbat = bool(self.flags & SimFlag.EXT_BATTERY_VOLTAGE)
        if want_vbat != (s.vbat_dv is not None):
            raise ValueError("vbat_dv is sent exactly when EXT_BATTERY_VOLTAGE is set")
        if s.vbat_dv is not None:
            _check_int("vbat_dv", s.vbat_dv, 0, 255)
        if _has_airspeed_slot(self.flags) != (s.airspeed_cms is not None):
            raise ValueError("airspeed_cms is sent exactly when AIRSPEED or EXTENDED_FLAGS is set")
        if s.airspeed_cms is not None:
            _check_int("airspeed_cms", s.airspeed_cms, 0, 0xFFFF)
        tail = (s.rangefinder_cm, s.current_da, s.rc, s.rssi)
        if self.version == 2:
            if any(v is not None for v in tail):
                raise ValueError("rangefinder, current, RC and RSSI exist in version 3 only")
        else:
            if any(v is None for v in tail):
                raise ValueError("a version 3 sensor block carries rangefinder_cm, current_da, rc and rssi")
            _check_int("rangefinder_cm", s.rangefinder_cm, 0, 0xFFFF)  # type: ignore[arg-type]
            _check_int("current_da", s.current_da, 0, 0xFFFF)  # type: ignore[arg-type]
            _check_int("rssi", s.rssi, 0, 0xFFFF)  # type: ignore[arg-type]
            if len(s.rc) != RC_INPUTS:  # type: ignore[arg-type]
                raise ValueError(f"rc needs {RC_INPUTS} channels, got {len(s.rc)}")  # type: ignore[arg-type]
            for v in s.rc:  # type: ignore[union-attr]
                _check_int("rc", v, 0, 0xFFFF)

    def encode(self) -> bytes:
        """The MSP payload (frame it with `hil.codecs.msp.encode_v2`)."""
        self._check()
        low = self.flags if self.version == 3 else self.flags & 0xFF
        out = struct.pack("<BH" if self.version == 3 else "<BB", self.version, low)
        s = self.sensors
        if s is None:
            return out
        g = s.gps
        out += _GPS.pack(
            g.fix_type, g.satellites, g.lat_e7, g.lon_e7, g.alt_cm,
            g.ground_speed_cms, g.ground_course_decideg, *g.vel_ned_cms,
        )
        out += _CORE.pack(*s.attitude_decideg, *s.acc_mg, *s.gyro, s.baro_pa, *s.mag)
        if s.vbat_dv is not None:
            out += struct.pack("<B", s.vbat_dv)
        if s.airspeed_cms is not None:
            out += struct.pack("<H", s.airspeed_cms)
        if self.version == 3:
            out += _V3_TAIL.pack(s.rangefinder_cm, s.current_da, *s.rc, s.rssi)  # type: ignore[misc]
        elif self.flags & SimFlag.EXTENDED_FLAGS:
            out += struct.pack("<B", self.flags >> 8)
        return out

    @classmethod
    def decode(cls, payload: bytes) -> SimulatorRequest:
        """A request as INAV would read it; MspError for anything it would not read
        whole (or would leave bytes of). A body too short for sensors must be empty."""
        data = bytes(payload)
        if len(data) < 2:
            raise MspError(f"MSP_SIMULATOR request of {len(data)} bytes: needs version and flags")
        version = data[0]
        if version not in VERSIONS:
            raise MspError(f"MSP_SIMULATOR version {version} is not one INAV reads (2, 3)")
        if version == 3:
            if len(data) < 3:
                raise MspError("MSP_SIMULATOR version 3 request cut inside its u16 flags")
            (flags,) = struct.unpack_from("<H", data, 1)
            pos = 3
        else:
            flags = data[1]
            pos = 2
        if len(data) == pos:
            return cls(flags, None, version)
        if not flags & SimFlag.ENABLE or flags & SimFlag.SITL_MODE:
            raise MspError(
                f"MSP_SIMULATOR flags 0x{flags:x} make INAV read no sensors, "
                f"but {len(data) - pos} bytes follow"
            )
        need = _GPS.size + _CORE.size
        need += 1 if flags & SimFlag.EXT_BATTERY_VOLTAGE else 0
        need += 2 if _has_airspeed_slot(flags) else 0
        need += _V3_TAIL.size if version == 3 else (1 if flags & SimFlag.EXTENDED_FLAGS else 0)
        if len(data) - pos != need:
            raise MspError(
                f"MSP_SIMULATOR v{version} flags 0x{flags:x}: sensor block must be {need} bytes, "
                f"got {len(data) - pos}"
            )
        gps = _GPS.unpack_from(data, pos)
        pos += _GPS.size
        core = _CORE.unpack_from(data, pos)
        pos += _CORE.size
        vbat = airspeed = None
        if flags & SimFlag.EXT_BATTERY_VOLTAGE:
            vbat = data[pos]
            pos += 1
        if _has_airspeed_slot(flags):
            (airspeed,) = struct.unpack_from("<H", data, pos)
            pos += 2
        tail: dict = {}
        if version == 3:
            t = _V3_TAIL.unpack_from(data, pos)
            tail = dict(rangefinder_cm=t[0], current_da=t[1], rc=tuple(t[2 : 2 + RC_INPUTS]), rssi=t[-1])
        elif flags & SimFlag.EXTENDED_FLAGS:
            flags |= data[pos] << 8
        sensors = SensorBlock(
            gps=GpsFields(*gps[:7], vel_ned_cms=tuple(gps[7:10])),  # type: ignore[arg-type]
            attitude_decideg=tuple(core[0:3]),  # type: ignore[arg-type]
            acc_mg=tuple(core[3:6]),  # type: ignore[arg-type]
            gyro=tuple(core[6:9]),  # type: ignore[arg-type]
            baro_pa=core[9],
            mag=tuple(core[10:13]),  # type: ignore[arg-type]
            vbat_dv=vbat,
            airspeed_cms=airspeed,
            **tail,
        )
        return cls(flags, sensors, version)


def stop_request(version: int = 3) -> SimulatorRequest:
    """The clean stop: flags 0 (HITL off, the board disarms)."""
    return SimulatorRequest(0, None, version)


def hitl_request(
    sensors: SensorBlock,
    *,
    new_gps: bool,
    extra: int = 0,
    version: int = 3,
) -> SimulatorRequest:
    """An enabled request for `sensors`, its flags made to agree with the fields given:
    ENABLE, HAS_NEW_GPS_DATA when `new_gps`, EXT_BATTERY_VOLTAGE with `vbat_dv`,
    AIRSPEED with `airspeed_cms`; `extra` adds flags (MUTE_BEEPER, SIMULATE_BATTERY...).
    A version-3 block missing its tail gets the neutral one (no rangefinder reading, no
    current, RC centred, RSSI 0)."""
    flags = SimFlag.ENABLE | extra
    if new_gps:
        flags |= SimFlag.HAS_NEW_GPS_DATA
    if sensors.vbat_dv is not None:
        flags |= SimFlag.EXT_BATTERY_VOLTAGE
    if sensors.airspeed_cms is not None:
        flags |= SimFlag.AIRSPEED
    if version == 3 and sensors.rc is None:
        sensors = replace(
            sensors,
            rangefinder_cm=RANGEFINDER_NONE if sensors.rangefinder_cm is None else sensors.rangefinder_cm,
            current_da=0 if sensors.current_da is None else sensors.current_da,
            rc=(1500,) * RC_INPUTS,
            rssi=0 if sensors.rssi is None else sensors.rssi,
        )
    return SimulatorRequest(int(flags), sensors, version)


@dataclass(frozen=True)
class SimulatorReply:
    """INAV's answer to MSP_SIMULATOR (see the module docstring); `osd` kept raw."""

    roll: int
    pitch: int
    yaw: int
    throttle: int
    debug_index: int
    debug_value: int
    est_attitude_decideg: tuple[int, int, int]
    osd: bytes = b""

    @property
    def index(self) -> int:
        """Which debug[] value `debug_value` is (0..7)."""
        return self.debug_index & 7

    @property
    def flags(self) -> ReplyFlag:
        return ReplyFlag(self.debug_index & 0xF0)

    @property
    def armed(self) -> bool:
        return bool(self.debug_index & ReplyFlag.ARMED)

    @property
    def airplane(self) -> bool:
        return bool(self.debug_index & ReplyFlag.AIRPLANE)

    @property
    def est_euler_rad(self) -> tuple[float, float, float]:
        """INAV's estimated attitude in the harness's convention (roll right wing down,
        pitch nose up, yaw clockwise from north; radians, yaw 0..2pi)."""
        r, p, y = self.est_attitude_decideg
        return math.radians(r / 10.0), math.radians(-p / 10.0), math.radians((y % 3600) / 10.0)

    def encode(self) -> bytes:
        for name, v in (("roll", self.roll), ("pitch", self.pitch), ("yaw", self.yaw), ("throttle", self.throttle)):
            _check_int(name, v, -32768, 32767)
        _check_int("debug_index", self.debug_index, 0, 255)
        _check_int("debug_value", self.debug_value, -(2**31), 2**31 - 1)
        for v in self.est_attitude_decideg:
            _check_int("est_attitude_decideg", v, -32768, 32767)
        return (
            _REPLY.pack(
                self.roll, self.pitch, self.yaw, self.throttle,
                self.debug_index, self.debug_value, *self.est_attitude_decideg,
            )
            + self.osd
        )

    @classmethod
    def decode(cls, payload: bytes) -> SimulatorReply:
        data = bytes(payload)
        if len(data) < _REPLY.size:
            raise MspError(
                f"MSP_SIMULATOR reply of {len(data)} bytes: needs at least {_REPLY.size}: {data.hex(' ')}"
            )
        v = _REPLY.unpack_from(data)
        return cls(*v[:6], est_attitude_decideg=tuple(v[6:9]), osd=data[_REPLY.size :])  # type: ignore[arg-type]

"""INAV's own MSP replies the harness reads on an INAV board (INAV 9.1 `fc_msp.c`).

Betaflight's MSP_STATUS_EX does not carry INAV's arming state: INAV's arming blockers
are its `armingFlags` word (`fc/runtime_config.h`, `armingFlag_e`), which also holds
ARMED and the simulator modes, and which MSP2_INAV_STATUS (0x2000) sends whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

from hil.codecs.msp import MspError

MSP2_INAV_STATUS = 0x2000
MSP_ALTITUDE = 109


class ArmingFlag(IntFlag):
    """armingFlag_e (runtime_config.h): state bits 2..5, arming blockers 6..30."""

    ARMED = 1 << 2
    WAS_EVER_ARMED = 1 << 3
    SIMULATOR_MODE_HITL = 1 << 4
    SIMULATOR_MODE_SITL = 1 << 5
    GEOZONE = 1 << 6
    FAILSAFE_SYSTEM = 1 << 7
    NOT_LEVEL = 1 << 8
    SENSORS_CALIBRATING = 1 << 9
    SYSTEM_OVERLOADED = 1 << 10
    NAVIGATION_UNSAFE = 1 << 11
    COMPASS_NOT_CALIBRATED = 1 << 12
    ACCELEROMETER_NOT_CALIBRATED = 1 << 13
    ARM_SWITCH = 1 << 14
    HARDWARE_FAILURE = 1 << 15
    BOXFAILSAFE = 1 << 16
    RC_LINK = 1 << 18
    THROTTLE = 1 << 19
    CLI = 1 << 20
    CMS_MENU = 1 << 21
    OSD_MENU = 1 << 22
    ROLLPITCH_NOT_CENTERED = 1 << 23
    SERVO_AUTOTRIM = 1 << 24
    OOM = 1 << 25
    INVALID_SETTING = 1 << 26
    PWM_OUTPUT_ERROR = 1 << 27
    NO_PREARM = 1 << 28
    DSHOT_BEEPER = 1 << 29
    LANDING_DETECTED = 1 << 30


#: The blockers (ARMING_DISABLED_ALL_FLAGS): any of them set, the board does not arm.
BLOCKERS = ArmingFlag(sum(1 << b for b in range(6, 31) if b != 17))

_HEAD = struct.Struct("<HHHHBI")  # cycle, i2c errors, sensors, load, profiles, arming


@dataclass(frozen=True)
class InavStatus:
    """MSP2_INAV_STATUS reply: u16 cycle time (us), u16 I2C errors, u16 sensor status,
    u16 average system load (percent), u8 battery profile << 4 | control profile,
    u32 arming flags, the active boxes as a bitmask (one bit per box in MSP_BOXIDS
    order, whole u32 words: `boxBitmask_t`), u8 mixer profile."""

    cycle_time_us: int
    i2c_errors: int
    sensors: int
    system_load: int
    profiles: int
    arming_flags: int
    box_bits: int
    box_bytes: int
    mixer_profile: int

    @property
    def flags(self) -> ArmingFlag:
        return ArmingFlag(self.arming_flags & sum(ArmingFlag))

    @property
    def armed(self) -> bool:
        return bool(self.arming_flags & ArmingFlag.ARMED)

    @property
    def hitl(self) -> bool:
        return bool(self.arming_flags & ArmingFlag.SIMULATOR_MODE_HITL)

    @property
    def blockers(self) -> tuple[str, ...]:
        """Names of the arming blockers set (empty: nothing stops arming)."""
        return tuple(f.name for f in ArmingFlag if f & BLOCKERS and self.arming_flags & f)  # type: ignore[misc]

    def box_active(self, index: int) -> bool:
        """Whether the box at `index` of MSP_BOXIDS is on."""
        return bool(self.box_bits >> index & 1)

    @classmethod
    def decode(cls, payload: bytes) -> InavStatus:
        data = bytes(payload)
        n = len(data) - _HEAD.size - 1
        if n < 0 or n % 4:
            raise MspError(
                f"MSP2_INAV_STATUS payload of {len(data)} bytes: needs {_HEAD.size} + whole u32 "
                f"box words + 1: {data.hex(' ')}"
            )
        head = _HEAD.unpack_from(data)
        bits = int.from_bytes(data[_HEAD.size : _HEAD.size + n], "little")
        return cls(*head, box_bits=bits, box_bytes=n, mixer_profile=data[-1])

    def encode(self) -> bytes:
        if self.box_bytes % 4 or self.box_bits >> (8 * self.box_bytes):
            raise ValueError(f"box bits 0x{self.box_bits:x} do not fit {self.box_bytes} bytes of u32 words")
        try:
            head = _HEAD.pack(
                self.cycle_time_us, self.i2c_errors, self.sensors, self.system_load,
                self.profiles, self.arming_flags,
            )
            tail = struct.pack("<B", self.mixer_profile)
        except struct.error as exc:
            raise ValueError(f"MSP2_INAV_STATUS field out of range: {exc}") from None
        return head + self.box_bits.to_bytes(self.box_bytes, "little") + tail


@dataclass(frozen=True)
class Altitude:
    """MSP_ALTITUDE (109) reply on INAV: i32 estimated altitude (cm, above the point
    where it was zeroed at boot or arming), i16 estimated climb rate (cm/s), i32 the
    barometer's latest altitude (cm)."""

    estimated_cm: int
    climb_cms: int
    baro_cm: int

    @classmethod
    def decode(cls, payload: bytes) -> Altitude:
        data = bytes(payload)
        if len(data) != 10:
            raise MspError(f"MSP_ALTITUDE payload must be 10 bytes on INAV, got {len(data)}")
        return cls(*struct.unpack("<ihi", data))

    def encode(self) -> bytes:
        try:
            return struct.pack("<ihi", self.estimated_cm, self.climb_cms, self.baro_cm)
        except struct.error as exc:
            raise ValueError(f"MSP_ALTITUDE field out of range: {exc}") from None

"""ArduPilot SITL's JSON physics interface as pure data (PROTOCOLS.md section 11).

With `--model JSON` ArduPilot SITL sends one binary servo packet per physics frame to
UDP 9002 (+10 per instance) and waits for one JSON state line back (lockstep). This
module turns those bytes into messages and back; it opens no socket and reads no clock.

Facts taken from ArduPilot `libraries/SITL/SIM_JSON.h`, `SIM_JSON.cpp` and
`libraries/SITL/examples/JSON/readme.md`:

- Servo packet, little-endian, packed: u16 magic, u16 frame_rate (Hz, SIM_RATE_HZ),
  u32 frame_count, u16 pwm[] in microseconds. Magic 18458 carries 16 channels (40
  bytes); 29569 carries 32 (72 bytes, parameter SERVO_32_ENABLE = 1).
- State line: a JSON object with a newline before and after it. SITL turns every
  newline into a string end and parses the text between the last two, so the leading
  newline is what frames the first line of a datagram.
- SITL finds each key by plain substring search and then skips exactly `key":`, and
  reads vectors with `sscanf("[%f, %f, %f]")`: the line must be compact (no space
  after a colon), a key must not be preceded by a longer key that contains it
  (`velocity` is written before `velocity_wind`), and booleans are read as integers.
- Required: `timestamp` (s, physics time, a double), `imu.gyro` (rad/s, body FRD),
  `imu.accel_body` (m/s^2, body FRD, specific force: about -9.8 on z at rest),
  `position` (m, NED from the origin, doubles), `velocity` (m/s, NED), and at least one
  of `attitude` (roll, pitch, yaw in rad) or `quaternion` (w, x, y, z); when both are
  present SITL uses the quaternion. Everything but timestamp and position is read
  into 32-bit floats.
- Optional: `rng_1`..`rng_6` (m), `windvane` {direction rad, speed m/s}, `airspeed`
  (m/s), `velocity_wind` (m/s NED), `rc` {rc_1..rc_12 in us}, `battery` {voltage V,
  current A}, `no_time_sync` (integer flag).
- frame_count goes up by one each time SITL takes a state line. The same count again
  means the last line was not taken (a required key missing, say) or nothing came
  back: after 1000 ms of silence (SIM_JSON.cpp waits in 100 ms slices) SITL resends
  the packet. A count that goes backwards means SITL restarted.
"""

from __future__ import annotations

import enum
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hil.errors import HilError

MAGIC_16 = 18458
MAGIC_32 = 29569
CHANNELS_BY_MAGIC: dict[int, int] = {MAGIC_16: 16, MAGIC_32: 32}

_HEADER = struct.Struct("<HHI")
HEADER_LEN = _HEADER.size  # 8
PACKET_LEN: dict[int, int] = {m: HEADER_LEN + 2 * n for m, n in CHANNELS_BY_MAGIC.items()}

DEFAULT_PORT = 9002
PORT_STEP_PER_INSTANCE = 10
RESEND_AFTER_S = 1.0
"""SITL sends the same servo packet again after this long without an accepted reply."""

MAX_RANGEFINDERS = 6
MAX_RC_CHANNELS = 12

FLOAT32_MAX = 3.4028234663852886e38

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


class ArduPilotJsonError(HilError):
    """Bytes or values that ArduPilot's JSON physics interface cannot carry."""


def port_for_instance(instance: int) -> int:
    """UDP port the physics listens on for SITL instance `instance` (`-I N`)."""
    return DEFAULT_PORT + PORT_STEP_PER_INSTANCE * instance


# --- servo packet (SITL -> physics) ---------------------------------------------------


@dataclass(frozen=True)
class ServoPacket:
    """One servo packet: the step rate SITL asks for, its frame counter, 16 or 32 PWMs."""

    frame_rate: int
    frame_count: int
    pwm: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "pwm", tuple(self.pwm))
        if len(self.pwm) not in (16, 32):
            raise ArduPilotJsonError(
                f"a servo packet carries 16 or 32 PWM values, not {len(self.pwm)}"
            )
        if not 0 <= self.frame_rate <= 0xFFFF:
            raise ArduPilotJsonError(f"frame_rate {self.frame_rate} does not fit a u16")
        if not 0 <= self.frame_count <= 0xFFFFFFFF:
            raise ArduPilotJsonError(f"frame_count {self.frame_count} does not fit a u32")
        bad = [(i + 1, v) for i, v in enumerate(self.pwm) if not 0 <= v <= 0xFFFF]
        if bad:
            raise ArduPilotJsonError(f"PWM values must fit a u16; channel, value: {bad[:4]}")

    @property
    def magic(self) -> int:
        return MAGIC_16 if len(self.pwm) == 16 else MAGIC_32

    @property
    def step_s(self) -> float | None:
        """Physics step SITL asks for (1 / frame_rate), None when frame_rate is 0."""
        return 1.0 / self.frame_rate if self.frame_rate else None


def encode_servo_packet(packet: ServoPacket) -> bytes:
    n = len(packet.pwm)
    return _HEADER.pack(packet.magic, packet.frame_rate, packet.frame_count) + struct.pack(
        f"<{n}H", *packet.pwm
    )


def decode_servo_packet(data: bytes) -> ServoPacket:
    """Exactly one servo packet (one UDP datagram) -> ServoPacket, or ArduPilotJsonError."""
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise ArduPilotJsonError(
            f"servo packet of {len(data)} bytes is shorter than its {HEADER_LEN}-byte header: {data.hex(' ')}"
        )
    magic, frame_rate, frame_count = _HEADER.unpack_from(data)
    channels = CHANNELS_BY_MAGIC.get(magic)
    if channels is None:
        raise ArduPilotJsonError(
            f"servo packet magic {magic} (0x{magic:04x}) is neither {MAGIC_16} (16 channels) nor"
            f" {MAGIC_32} (32 channels): not ArduPilot's JSON interface, or a newer protocol version"
        )
    if len(data) != PACKET_LEN[magic]:
        raise ArduPilotJsonError(
            f"servo packet with magic {magic} must be {PACKET_LEN[magic]} bytes"
            f" ({channels} channels), got {len(data)}"
        )
    pwm = struct.unpack_from(f"<{channels}H", data, HEADER_LEN)
    return ServoPacket(frame_rate, frame_count, pwm)


# --- frame bookkeeping ------------------------------------------------------------------


class FrameKind(enum.Enum):
    FIRST = "first"
    """The first packet seen: step the physics."""
    NEW = "new"
    """A higher frame_count: step the physics (`missed` counts skipped numbers)."""
    REPEAT = "repeat"
    """The same frame_count again: SITL did not accept the last reply. Answer, do not step."""
    RESTART = "restart"
    """frame_count went backwards: SITL restarted. Reset the vehicle, then step."""


@dataclass(frozen=True)
class FrameVerdict:
    kind: FrameKind
    missed: int = 0

    @property
    def steps(self) -> bool:
        """Whether the physics should advance one step for this packet."""
        return self.kind is not FrameKind.REPEAT


@dataclass
class FrameTracker:
    """Tells new servo packets from repeated ones and spots SITL restarts by frame_count.

    A restart straight after the very first packet (count 0 seen twice) looks like a
    repeat; a u32 wrap (after 2^32 frames) looks like a restart.
    """

    last: int | None = None
    repeats: int = 0
    """Repeats in a row: a growing number means SITL keeps rejecting our state lines."""
    restarts: int = 0
    missed: int = 0
    _counts: dict[FrameKind, int] = field(default_factory=dict, repr=False)

    def observe(self, frame_count: int) -> FrameVerdict:
        last = self.last
        if last is None:
            verdict = FrameVerdict(FrameKind.FIRST)
        elif frame_count == last:
            verdict = FrameVerdict(FrameKind.REPEAT)
        elif frame_count < last:
            verdict = FrameVerdict(FrameKind.RESTART)
            self.restarts += 1
        else:
            verdict = FrameVerdict(FrameKind.NEW, missed=frame_count - last - 1)
            self.missed += verdict.missed
        self.repeats = self.repeats + 1 if verdict.kind is FrameKind.REPEAT else 0
        self._counts[verdict.kind] = self._counts.get(verdict.kind, 0) + 1
        self.last = frame_count
        return verdict

    def count(self, kind: FrameKind) -> int:
        return self._counts.get(kind, 0)


# --- state line (physics -> SITL) -------------------------------------------------------


def _check_number(name: str, value: Any, *, double: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArduPilotJsonError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        raise ArduPilotJsonError(f"{name} = {value} is too large for a float") from None
    if not math.isfinite(x):
        raise ArduPilotJsonError(f"{name} must be finite, got {x}")
    if not double and abs(x) > FLOAT32_MAX:
        raise ArduPilotJsonError(f"{name} = {x} overflows the 32-bit float SITL reads it into")
    return x


def _check_vector(name: str, value: Any, n: int, *, double: bool = False) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ArduPilotJsonError(f"{name} must be {n} numbers, got {value!r}")
    return tuple(_check_number(f"{name}[{i}]", v, double=double) for i, v in enumerate(value))


@dataclass(frozen=True)
class JsonState:
    """One physics frame in SIM_JSON's units and frames (see the module docstring).

    `rng` holds rangefinders 1..6 in metres (None: not sent); `rc` holds RC channels
    1..12 in microseconds; `windvane` is (direction rad, speed m/s); `battery` is
    (voltage V, current A).
    """

    timestamp_s: float
    gyro: Vec3
    accel_body: Vec3
    position: Vec3
    velocity: Vec3
    attitude: Vec3 | None = None
    quaternion: Quat | None = None
    rng: tuple[float | None, ...] = ()
    windvane: tuple[float, float] | None = None
    airspeed: float | None = None
    velocity_wind: Vec3 | None = None
    rc: tuple[float, ...] = ()
    battery: tuple[float, float] | None = None
    no_time_sync: bool = False

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "timestamp_s", _check_number("timestamp", self.timestamp_s, double=True))
        put(self, "gyro", _check_vector("imu.gyro", self.gyro, 3))
        put(self, "accel_body", _check_vector("imu.accel_body", self.accel_body, 3))
        put(self, "position", _check_vector("position", self.position, 3, double=True))
        put(self, "velocity", _check_vector("velocity", self.velocity, 3))
        if self.attitude is None and self.quaternion is None:
            raise ArduPilotJsonError(
                "a state needs attitude (roll, pitch, yaw) or quaternion (w, x, y, z)"
            )
        if self.attitude is not None:
            put(self, "attitude", _check_vector("attitude", self.attitude, 3))
        if self.quaternion is not None:
            put(self, "quaternion", _check_vector("quaternion", self.quaternion, 4))
        rng = list(self.rng)
        if len(rng) > MAX_RANGEFINDERS:
            raise ArduPilotJsonError(
                f"SITL reads at most {MAX_RANGEFINDERS} rangefinders, got {len(rng)}"
            )
        while rng and rng[-1] is None:
            rng.pop()
        put(
            self,
            "rng",
            tuple(
                None if r is None else _check_number(f"rng_{i + 1}", r, double=False)
                for i, r in enumerate(rng)
            ),
        )
        if self.windvane is not None:
            put(self, "windvane", _check_vector("windvane", self.windvane, 2))
        if self.airspeed is not None:
            put(self, "airspeed", _check_number("airspeed", self.airspeed, double=False))
        if self.velocity_wind is not None:
            put(self, "velocity_wind", _check_vector("velocity_wind", self.velocity_wind, 3))
        if len(self.rc) > MAX_RC_CHANNELS:
            raise ArduPilotJsonError(
                f"SITL reads at most {MAX_RC_CHANNELS} RC channels, got {len(self.rc)}"
            )
        put(
            self,
            "rc",
            tuple(_check_number(f"rc_{i + 1}", v, double=False) for i, v in enumerate(self.rc)),
        )
        if self.battery is not None:
            put(self, "battery", _check_vector("battery", self.battery, 2))
        put(self, "no_time_sync", bool(self.no_time_sync))


def _state_object(state: JsonState) -> dict[str, Any]:
    # Key order matters to SITL's substring search: "velocity" before "velocity_wind",
    # the windvane object (with its "speed") before "airspeed", rc_1 before rc_10.
    obj: dict[str, Any] = {
        "timestamp": state.timestamp_s,
        "imu": {"gyro": list(state.gyro), "accel_body": list(state.accel_body)},
        "position": list(state.position),
    }
    if state.attitude is not None:
        obj["attitude"] = list(state.attitude)
    if state.quaternion is not None:
        obj["quaternion"] = list(state.quaternion)
    obj["velocity"] = list(state.velocity)
    if state.velocity_wind is not None:
        obj["velocity_wind"] = list(state.velocity_wind)
    for i, r in enumerate(state.rng):
        if r is not None:
            obj[f"rng_{i + 1}"] = r
    if state.windvane is not None:
        obj["windvane"] = {"direction": state.windvane[0], "speed": state.windvane[1]}
    if state.airspeed is not None:
        obj["airspeed"] = state.airspeed
    if state.rc:
        obj["rc"] = {f"rc_{i + 1}": v for i, v in enumerate(state.rc)}
    if state.battery is not None:
        obj["battery"] = {"voltage": state.battery[0], "current": state.battery[1]}
    if state.no_time_sync:
        obj["no_time_sync"] = 1  # SITL reads it with strtoull: `true` would be 0
    return obj


def encode_state_line(state: JsonState) -> bytes:
    """The state as SITL wants it: compact JSON with a newline before and after."""
    text = json.dumps(_state_object(state), separators=(",", ":"), allow_nan=False)
    return b"\n" + text.encode("ascii") + b"\n"


_TOP_KEYS = frozenset(
    {
        "timestamp", "imu", "position", "velocity", "attitude", "quaternion", "velocity_wind",
        "windvane", "airspeed", "rc", "battery", "no_time_sync",
        *(f"rng_{i}" for i in range(1, MAX_RANGEFINDERS + 1)),
    }
)  # fmt: skip


def _section(
    obj: dict[str, Any], name: str, keys: Sequence[str], *, required: bool
) -> dict[str, Any]:
    sub = obj.get(name)
    if not isinstance(sub, dict):
        raise ArduPilotJsonError(f"{name} must be an object, got {sub!r}")
    missing = [k for k in keys if k not in sub] if required else []
    unknown = sorted(set(sub) - set(keys))
    if missing or unknown:
        raise ArduPilotJsonError(
            f"{name}: missing keys {missing}, unknown keys {unknown}; allowed: {list(keys)}"
        )
    return sub


def _state_from_object(obj: Any) -> JsonState:
    if not isinstance(obj, dict):
        raise ArduPilotJsonError(f"a state line must hold a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _TOP_KEYS)
    if unknown:
        raise ArduPilotJsonError(f"unknown keys {unknown}; allowed: {sorted(_TOP_KEYS)}")
    missing = [k for k in ("timestamp", "imu", "position", "velocity") if k not in obj]
    if missing:
        raise ArduPilotJsonError(f"state line lacks required keys {missing}")
    imu = _section(obj, "imu", ("gyro", "accel_body"), required=True)
    rng_keys = [int(k[4:]) for k in obj if k.startswith("rng_")]
    rng = [obj.get(f"rng_{i}") for i in range(1, max(rng_keys, default=0) + 1)]
    if any(r is None for r in (obj[f"rng_{i}"] for i in rng_keys)):
        raise ArduPilotJsonError("rng_N values must be numbers, not null")
    windvane = battery = None
    if "windvane" in obj:
        wv = _section(obj, "windvane", ("direction", "speed"), required=True)
        windvane = (wv["direction"], wv["speed"])
    rc: list[Any] = []
    if "rc" in obj:
        rc_obj = _section(
            obj, "rc", [f"rc_{i}" for i in range(1, MAX_RC_CHANNELS + 1)], required=False
        )
        n = len(rc_obj)
        if sorted(rc_obj) != sorted(f"rc_{i}" for i in range(1, n + 1)):
            raise ArduPilotJsonError(
                f"rc channels must run rc_1..rc_{n} without gaps, got {sorted(rc_obj)}"
            )
        rc = [rc_obj[f"rc_{i}"] for i in range(1, n + 1)]
    if "battery" in obj:
        b = _section(obj, "battery", ("voltage", "current"), required=True)
        battery = (b["voltage"], b["current"])
    no_time_sync = obj.get("no_time_sync", 0)
    if isinstance(no_time_sync, bool) or not isinstance(no_time_sync, int):
        raise ArduPilotJsonError(
            f"no_time_sync must be an integer (SITL reads it with strtoull), got {no_time_sync!r}"
        )
    try:
        return JsonState(
            timestamp_s=obj["timestamp"],
            gyro=imu["gyro"],
            accel_body=imu["accel_body"],
            position=obj["position"],
            velocity=obj["velocity"],
            attitude=obj.get("attitude"),
            quaternion=obj.get("quaternion"),
            rng=tuple(rng),
            windvane=windvane,
            airspeed=obj.get("airspeed"),
            velocity_wind=obj.get("velocity_wind"),
            rc=tuple(rc),
            battery=battery,
            no_time_sync=no_time_sync != 0,
        )
    except (TypeError, ValueError) as e:  # a wrongly shaped field the checks above let through
        raise ArduPilotJsonError(f"bad state line: {e}") from None


def _reject_constant(name: str) -> Any:
    raise ArduPilotJsonError(f"{name} is not a number SITL can read")


def decode_state_line(data: bytes | str) -> JsonState:
    """One state line (surrounding newlines and spaces allowed) -> JsonState.

    Stricter than SITL on purpose (it is the fake SITL's ear in tests): unknown keys,
    nulls, NaN and values that overflow SITL's floats are errors.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("ascii")
        except UnicodeDecodeError as e:
            raise ArduPilotJsonError(
                f"state line is not ASCII text: byte 0x{data[e.start]:02x} at {e.start}"
            ) from None
    else:
        text = data
    text = text.strip()
    if "\n" in text:
        raise ArduPilotJsonError("more than one line given: split datagrams into lines first")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ArduPilotJsonError(f"state line is not JSON ({e}): {text[:80]!r}") from None
    return _state_from_object(obj)


def split_state_lines(data: bytes) -> list[bytes]:
    """The non-empty lines of a datagram (SITL itself uses only the last complete one)."""
    return [line for line in bytes(data).split(b"\n") if line.strip()]

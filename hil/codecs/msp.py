"""MSP (MultiWii Serial Protocol, Betaflight / INAV flavour) as pure data.

Framing (PROTOCOLS.md section 3):
- v1: `$M` dir len cmd payload xor(len, cmd, payload); dir `<` request, `>` reply,
  `!` error. A payload of 255 bytes or more travels as a "jumbo" frame: len byte 255,
  cmd, the real length as u16 LE, payload, and the xor then covers the two length
  bytes too (Betaflight `src/main/msp/msp_serial.c`, `mspSerialEncode`).
- v2: `$X` dir flags cmd(u16 LE) len(u16 LE) payload crc8_dvb_s2(flags..payload).

`MspParser` picks frames out of a byte stream that may also carry CLI text or noise.
Payload layouts follow Betaflight 4.x `src/main/msp/msp.c` (API 1.4x, the 4.6 SITL in
PROTOCOLS.md section 10 reports API 1.47); fields marked "unsure" were not confirmed on a
board.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from hil.codecs.bits import crc8_dvb_s2
from hil.errors import HilError

MAX_V1_PAYLOAD = 254
"""Largest payload a plain v1 frame carries; longer ones need a jumbo frame (or v2)."""
JUMBO_SIZE_MARK = 255
"""A v1 size byte of 255 announces a jumbo frame (Betaflight `JUMBO_FRAME_SIZE_LIMIT`)."""
MAX_JUMBO_PAYLOAD = 0xFFFF
"""A jumbo frame's real length is a u16."""
MAX_V2_PAYLOAD = 8192
"""Parser bound: longer v2 or jumbo lengths are taken as noise. Betaflight's largest
reply buffer is 4112 bytes (`MSP_PORT_OUTBUF_SIZE` with flash logging, msp_serial.h)."""


class MspError(HilError):
    """Bytes do not form the MSP frame or payload the protocol allows."""


class Direction(IntEnum):
    REQUEST = ord("<")  # to the flight controller
    REPLY = ord(">")  # from the flight controller
    ERROR = ord("!")  # the flight controller refused or does not know the command


class MspCommand(IntEnum):
    API_VERSION = 1
    FC_VARIANT = 2
    FC_VERSION = 3
    BOARD_INFO = 4
    BUILD_INFO = 5
    MODE_RANGES = 34
    SET_MODE_RANGE = 35
    FEATURE_CONFIG = 36
    SET_FEATURE_CONFIG = 37
    REBOOT = 68
    FAILSAFE_CONFIG = 75
    SET_FAILSAFE_CONFIG = 76
    STATUS = 101
    RAW_IMU = 102
    MOTOR = 104
    RC = 105
    RAW_GPS = 106
    COMP_GPS = 107
    ATTITUDE = 108
    ANALOG = 110
    BOXNAMES = 116
    BOXIDS = 119
    STATUS_EX = 150
    UID = 160
    SET_RAW_RC = 200
    EEPROM_WRITE = 250
    DEBUG = 254


@dataclass(frozen=True)
class MspFrame:
    """One MSP frame of either version. `flags` exists on the wire only in v2."""

    direction: Direction
    version: int
    cmd: int
    payload: bytes = b""
    flags: int = 0

    @property
    def is_error(self) -> bool:
        return self.direction == Direction.ERROR


# ------------------------------------------------------------------------- framing


def _xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def _v1_header(cmd: int, size: int) -> bytes:
    """The checksummed v1 header: size and command, plus the u16 size of a jumbo frame."""
    if size < JUMBO_SIZE_MARK:
        return bytes([size, cmd])
    return bytes([JUMBO_SIZE_MARK, cmd]) + struct.pack("<H", size)


def encode_v1(cmd: int, payload: bytes = b"", direction: Direction = Direction.REQUEST) -> bytes:
    """One v1 frame; a payload of 255 bytes or more becomes a jumbo frame.

    Betaflight sends jumbo replies (MSP_BOXNAMES is about 300 bytes) but its parser drops
    jumbo requests (a v1 size above its 192-byte input buffer), so send long requests as v2.
    """
    if not 0 <= cmd <= 0xFF:
        raise ValueError(f"MSP v1 command must be 0..255, got {cmd}; use v2")
    if len(payload) > MAX_JUMBO_PAYLOAD:
        raise ValueError(
            f"MSP v1 payload of {len(payload)} bytes exceeds a jumbo frame's "
            f"{MAX_JUMBO_PAYLOAD}; use v2"
        )
    body = _v1_header(cmd, len(payload)) + payload
    return b"$M" + bytes([direction]) + body + bytes([_xor(body)])


def encode_v2(
    cmd: int, payload: bytes = b"", direction: Direction = Direction.REQUEST, flags: int = 0
) -> bytes:
    if not 0 <= cmd <= 0xFFFF or not 0 <= flags <= 0xFF:
        raise ValueError(f"MSP v2 command must be 0..65535 and flags a byte, got {cmd}, {flags}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"MSP v2 payload of {len(payload)} bytes exceeds 65535")
    body = struct.pack("<BHH", flags, cmd, len(payload)) + payload
    return b"$X" + bytes([direction]) + body + bytes([crc8_dvb_s2(body)])


def encode_frame(frame: MspFrame) -> bytes:
    if frame.version == 1:
        if frame.flags:
            raise ValueError("MSP v1 frames have no flags byte")
        return encode_v1(frame.cmd, frame.payload, frame.direction)
    if frame.version == 2:
        return encode_v2(frame.cmd, frame.payload, frame.direction, frame.flags)
    raise ValueError(f"MSP version must be 1 or 2, got {frame.version}")


def encode_request(cmd: int, payload: bytes = b"", version: int = 1) -> bytes:
    """A request to the flight controller; v1 unless asked (or the command needs v2)."""
    return encode_frame(MspFrame(Direction.REQUEST, version, cmd, payload))


def encode_reply(cmd: int, payload: bytes = b"", version: int = 1, error: bool = False) -> bytes:
    """A reply as a flight controller sends it (for simulators and tests)."""
    direction = Direction.ERROR if error else Direction.REPLY
    return encode_frame(MspFrame(direction, version, cmd, payload))


_NEED_MORE = None
_NOT_A_FRAME = -1


def _try_frame(buf: bytes | bytearray, i: int) -> tuple[MspFrame, int] | int | None:
    """Frame starting at buf[i] == '$': (frame, end), None (need bytes) or -1 (not one)."""
    n = len(buf) - i
    if n < 2:
        return _NEED_MORE
    version = {ord("M"): 1, ord("X"): 2}.get(buf[i + 1])
    if version is None:
        return _NOT_A_FRAME
    if n < 3:
        return _NEED_MORE
    try:
        direction = Direction(buf[i + 2])
    except ValueError:
        return _NOT_A_FRAME
    if version == 1:
        if n < 5:
            return _NEED_MORE
        size, cmd = buf[i + 3], buf[i + 4]
        header = 2  # checksummed header bytes after the direction
        if size == JUMBO_SIZE_MARK:
            if n < 7:
                return _NEED_MORE
            (size,) = struct.unpack_from("<H", buf, i + 5)
            # Betaflight goes jumbo only from 255 bytes on; anything else is noise.
            if not JUMBO_SIZE_MARK <= size <= MAX_V2_PAYLOAD:
                return _NOT_A_FRAME
            header = 4
        end = i + 3 + header + size + 1
        if len(buf) < end:
            return _NEED_MORE
        body = bytes(buf[i + 3 : end - 1])
        if _xor(body) != buf[end - 1]:
            return _NOT_A_FRAME
        return MspFrame(direction, 1, cmd, body[header:]), end
    if n < 8:
        return _NEED_MORE
    flags, cmd, size = struct.unpack_from("<BHH", buf, i + 3)
    if size > MAX_V2_PAYLOAD:
        return _NOT_A_FRAME
    end = i + 9 + size
    if len(buf) < end:
        return _NEED_MORE
    body = bytes(buf[i + 3 : end - 1])
    if crc8_dvb_s2(body) != buf[end - 1]:
        return _NOT_A_FRAME
    return MspFrame(direction, 2, cmd, body[5:], flags), end


def decode_frame(data: bytes) -> MspFrame:
    """Exactly one frame (v1 or v2) -> MspFrame. Raises MspError for anything else."""
    if data[:1] != b"$":
        raise MspError(f"MSP frame must start with '$', got {data[:8]!r}")
    result = _try_frame(data, 0)
    if result is _NEED_MORE:
        raise MspError(f"MSP frame truncated after {len(data)} bytes: {data.hex(' ')}")
    if not isinstance(result, tuple):
        raise MspError(f"not a valid MSP frame (header, length or checksum): {data.hex(' ')}")
    frame, end = result
    if end != len(data):
        raise MspError(f"{len(data) - end} bytes after the MSP frame: {data.hex(' ')}")
    return frame


class MspParser:
    """Streaming MSP parser for a port that may also carry CLI text and noise.

    Bytes outside frames are skipped (and counted in `discarded`). After a bad checksum
    the search restarts one byte after the false '$', so frames it covered are found.
    While an incomplete candidate waits for bytes, a complete valid frame further on
    means the candidate was noise: it is dropped rather than stalling the stream. A
    checksum-valid frame with a complete frame starting inside it is likewise taken as a
    collision in noise (v1's xor is weak: one noise header in 256 "checks out") and
    skipped; a real payload holding a whole valid frame is far less likely than that.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    def _complete_frame_after(self, start: int, stop: int | None = None) -> int | None:
        i = self._buf.find(b"$", start, stop)
        while i >= 0:
            if isinstance(_try_frame(self._buf, i), tuple):
                return i
            i = self._buf.find(b"$", i + 1, stop)
        return None

    def feed(self, data: bytes) -> list[MspFrame]:
        self._buf += data
        buf = self._buf
        out: list[MspFrame] = []
        pos = 0
        while True:
            i = buf.find(b"$", pos)
            if i < 0:
                self.discarded += len(buf) - pos
                pos = len(buf)
                break
            self.discarded += i - pos
            pos = i
            result = _try_frame(buf, i)
            if isinstance(result, tuple):
                frame, end = result
                if buf.find(b"$", i + 1, end) >= 0:
                    inner = self._complete_frame_after(i + 1, end)
                    if inner is not None:  # checksum collision in noise covering real frames
                        self.discarded += inner - i
                        pos = inner
                        continue
                pos = end
                out.append(frame)
            elif result is _NEED_MORE:
                later = self._complete_frame_after(i + 1)
                if later is None:
                    break
                self.discarded += later - i
                pos = later
            else:
                pos = i + 1
                self.discarded += 1
        del buf[:pos]
        return out


# ------------------------------------------------------------------ payload helpers


class _Reader:
    """Little-endian reader that raises MspError (naming the command) when short."""

    def __init__(self, payload: bytes, what: str) -> None:
        self.data = bytes(payload)
        self.pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.remaining() < size:
            raise MspError(
                f"{self.what} payload too short: needed {self.pos + size} bytes, "
                f"got {len(self.data)}: {self.data.hex(' ')}"
            )
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def one(self, fmt: str) -> int:
        return self.take(fmt)[0]

    def raw(self, n: int) -> bytes:
        return self.take(f"{n}s")[0]

    def rest(self) -> bytes:
        data = self.data[self.pos :]
        self.pos = len(self.data)
        return data

    def end(self) -> None:
        if self.remaining():
            raise MspError(f"{self.what} payload has {self.remaining()} unexpected extra bytes")


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MspError(f"{what} is not ASCII: {raw!r}") from exc


def _pack(fmt: str, *values: int) -> bytes:
    try:
        return struct.pack("<" + fmt, *values)
    except struct.error as exc:
        raise ValueError(f"value out of range for MSP field(s) {fmt}: {values}") from exc


def _u16_list(payload: bytes, what: str) -> tuple[int, ...]:
    if len(payload) % 2:
        raise MspError(f"{what} payload must be whole u16 values, got {len(payload)} bytes")
    return struct.unpack(f"<{len(payload) // 2}H", payload)


# ----------------------------------------------------------------- identification


@dataclass(frozen=True)
class ApiVersion:
    """MSP_API_VERSION (1) reply: MSP protocol version, API major.minor (BF 4.6: 1.47)."""

    protocol: int
    major: int
    minor: int

    @classmethod
    def decode(cls, payload: bytes) -> ApiVersion:
        # Trailing bytes tolerated: later firmware may append fields.
        return cls(*_Reader(payload, "API_VERSION").take("BBB"))

    def encode(self) -> bytes:
        return _pack("BBB", self.protocol, self.major, self.minor)


@dataclass(frozen=True)
class FcVariant:
    """MSP_FC_VARIANT (2) reply: four upper-case letters, e.g. BTFL, INAV."""

    identifier: str

    @classmethod
    def decode(cls, payload: bytes) -> FcVariant:
        r = _Reader(payload, "FC_VARIANT")
        return cls(_ascii(r.raw(4), "FC_VARIANT"))

    def encode(self) -> bytes:
        raw = self.identifier.encode("ascii")
        if len(raw) != 4:
            raise ValueError(f"FC variant must be 4 ASCII characters, got {self.identifier!r}")
        return raw


@dataclass(frozen=True)
class FcVersion:
    """MSP_FC_VERSION (3) reply: firmware major.minor.patch (trailing bytes ignored)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def decode(cls, payload: bytes) -> FcVersion:
        return cls(*_Reader(payload, "FC_VERSION").take("BBB"))

    def encode(self) -> bytes:
        return _pack("BBB", self.major, self.minor, self.patch)


@dataclass(frozen=True)
class BoardInfo:
    """MSP_BOARD_INFO (4) reply, leading fields.

    Betaflight sends: board identifier (4 chars), hardware revision u16, board type u8
    (0 FC, 2 FC with MAX7456), target capabilities u8, target name (u8 length + chars),
    then board name, manufacturer id, signature, MCU type, ... (kept raw in `rest`).
    Older firmware stops after the hardware revision: the optional fields are then None.
    """

    identifier: str
    hardware_revision: int
    board_type: int | None = None
    capabilities: int | None = None
    target_name: str | None = None
    rest: bytes = b""

    @classmethod
    def decode(cls, payload: bytes) -> BoardInfo:
        r = _Reader(payload, "BOARD_INFO")
        ident = _ascii(r.raw(4), "board identifier")
        (hw,) = r.take("H")
        if r.remaining() == 0:
            return cls(ident, hw)
        board_type, caps = r.take("BB")
        if r.remaining() == 0:
            return cls(ident, hw, board_type, caps)
        name = _ascii(r.raw(r.one("B")), "target name")
        return cls(ident, hw, board_type, caps, name, r.rest())

    def encode(self) -> bytes:
        out = self.identifier.encode("ascii")
        if len(out) != 4:
            raise ValueError(f"board identifier must be 4 ASCII characters: {self.identifier!r}")
        out += _pack("H", self.hardware_revision)
        if self.board_type is None or self.capabilities is None:
            if self.board_type is not None or self.capabilities is not None or self.target_name:
                raise ValueError("board_type and capabilities come together, before target_name")
            return out
        out += _pack("BB", self.board_type, self.capabilities)
        if self.target_name is None:
            if self.rest:
                raise ValueError("BOARD_INFO rest bytes need a target_name before them")
            return out
        name = self.target_name.encode("ascii")
        return out + _pack("B", len(name)) + name + self.rest


SIGNATURE_LENGTH = 32
"""MSP_BOARD_INFO's signature field (Betaflight src/main/config/config.h SIGNATURE_LENGTH)."""


@dataclass(frozen=True)
class BoardDetails:
    """The fields of MSP_BOARD_INFO after the target name (Betaflight 4.x msp.c): board
    name and manufacturer id (empty without USE_BOARD_INFO), the 32-byte signature, the
    MCU type id (API 1.41+) and the rest (configuration state, gyro rate, problems, bus
    device counts) raw. Fields a shorter reply lacks are None."""

    board_name: str
    manufacturer_id: str
    signature: bytes | None = None
    mcu_type_id: int | None = None
    rest: bytes = b""

    @classmethod
    def decode(cls, payload: bytes) -> BoardDetails:
        r = _Reader(payload, "BOARD_INFO details")
        board = _ascii(r.raw(r.one("B")), "board name")
        maker = _ascii(r.raw(r.one("B")), "manufacturer id")
        if r.remaining() < SIGNATURE_LENGTH:
            return cls(board, maker, None, None, r.rest())
        signature = r.raw(SIGNATURE_LENGTH)
        mcu = r.one("B") if r.remaining() else None
        return cls(board, maker, signature, mcu, r.rest())

    def encode(self) -> bytes:
        out = bytearray()
        for text, what in ((self.board_name, "board name"), (self.manufacturer_id, "manufacturer id")):
            raw = text.encode("ascii")
            if len(raw) > 255:
                raise ValueError(f"{what} longer than 255 characters")
            out += _pack("B", len(raw)) + raw
        if self.signature is None:  # a reply cut short after the names: the rest is raw
            if self.mcu_type_id is not None or len(self.rest) >= SIGNATURE_LENGTH:
                raise ValueError("BOARD_INFO fields after the names need the signature first")
            return bytes(out + self.rest)
        if len(self.signature) != SIGNATURE_LENGTH:
            raise ValueError(f"signature must be {SIGNATURE_LENGTH} bytes")
        out += self.signature
        if self.mcu_type_id is None:
            if self.rest:
                raise ValueError("BOARD_INFO rest bytes need the MCU type before them")
            return bytes(out)
        return bytes(out + _pack("B", self.mcu_type_id) + self.rest)


BUILD_DATE_LENGTH = 11
BUILD_TIME_LENGTH = 8
GIT_SHORT_REVISION_LENGTH = 7
"""MSP_BUILD_INFO's fixed fields (Betaflight src/main/build/version.h)."""


@dataclass(frozen=True)
class BuildInfo:
    """MSP_BUILD_INFO (5) reply: __DATE__ ("Dec  4 2026"), __TIME__, the short git
    revision, then (API 1.46+) build option flags, kept raw. The revision is whatever
    bytes the firmware sent (a build outside git sends what follows an empty string)."""

    date: str
    time: str
    revision: bytes
    rest: bytes = b""

    @classmethod
    def decode(cls, payload: bytes) -> BuildInfo:
        r = _Reader(payload, "BUILD_INFO")
        date = _ascii(r.raw(BUILD_DATE_LENGTH), "build date")
        when = _ascii(r.raw(BUILD_TIME_LENGTH), "build time")
        return cls(date, when, r.raw(GIT_SHORT_REVISION_LENGTH), r.rest())

    def encode(self) -> bytes:
        date, when = self.date.encode("ascii"), self.time.encode("ascii")
        if len(date) != BUILD_DATE_LENGTH or len(when) != BUILD_TIME_LENGTH:
            raise ValueError("build date is 11 characters and build time 8")
        if len(self.revision) != GIT_SHORT_REVISION_LENGTH:
            raise ValueError("the revision field is 7 bytes")
        return date + when + self.revision + self.rest


@dataclass(frozen=True)
class Uid:
    """MSP_UID (160) reply: the MCU's 96-bit unique id as U_ID_0, U_ID_1, U_ID_2."""

    words: tuple[int, int, int]

    @classmethod
    def decode(cls, payload: bytes) -> Uid:
        r = _Reader(payload, "UID")
        return cls(r.take("III"))

    def encode(self) -> bytes:
        return _pack("III", *self.words)


# ----------------------------------------------------------------------- status


class Sensor(IntFlag):
    """Sensor bits of MSP_STATUS / MSP_STATUS_EX (Betaflight msp.c)."""

    ACC = 1 << 0
    BARO = 1 << 1
    MAG = 1 << 2
    GPS = 1 << 3
    RANGEFINDER = 1 << 4
    GYRO = 1 << 5


class ArmingDisable(IntFlag):
    """Arming-disable flag bits in MSP_STATUS(_EX).

    Observed on Betaflight 4.6 SITL (PROTOCOLS.md section 10): NO_GYRO, FAILSAFE,
    RX_FAILSAFE, BOXFAILSAFE, THROTTLE, ANGLE, BOOT_GRACE_TIME, CALIBRATING, CLI, MSP,
    ARM_SWITCH (bit 28 on 4.6). The other names come from the Betaflight 4.x enum where
    ARM_SWITCH was still bit 25; the 4.6 source names bits 3, 20 and 25..27 differently
    (aliases below; `ARMING_DISABLE_NAMES` has the CLI's spelling of every bit).
    Unknown bits are kept as numbers.
    """

    NO_GYRO = 1 << 0
    FAILSAFE = 1 << 1
    RX_FAILSAFE = 1 << 2  # "RXLOSS" in the CLI
    BAD_RX_RECOVERY = 1 << 3  # unsure on 4.6
    BOXFAILSAFE = 1 << 4
    RUNAWAY_TAKEOFF = 1 << 5  # unsure on 4.6
    CRASH_DETECTED = 1 << 6  # unsure on 4.6
    THROTTLE = 1 << 7
    ANGLE = 1 << 8
    BOOT_GRACE_TIME = 1 << 9
    NOPREARM = 1 << 10  # unsure on 4.6
    LOAD = 1 << 11  # unsure on 4.6
    CALIBRATING = 1 << 12
    CLI = 1 << 13
    CMS_MENU = 1 << 14  # unsure on 4.6
    BST = 1 << 15  # unsure on 4.6
    MSP = 1 << 16
    PARALYZE = 1 << 17  # unsure on 4.6
    GPS = 1 << 18  # unsure on 4.6
    RESC = 1 << 19  # unsure on 4.6
    RPMFILTER = 1 << 20  # unsure on 4.6
    REBOOT_REQUIRED = 1 << 21  # unsure on 4.6
    DSHOT_BITBANG = 1 << 22  # unsure on 4.6
    ACC_CALIBRATION = 1 << 23  # unsure on 4.6
    MOTOR_PROTOCOL = 1 << 24  # unsure on 4.6
    ARM_SWITCH = 1 << 28  # observed on 4.6; always set when anything else blocks arming
    # Names Betaflight 4.6 gives bits that older firmware used differently
    # (runtime_config.h of the 4.6 source): aliases, so the older names keep working.
    NOT_DISARMED = 1 << 3
    DSHOT_TELEM = 1 << 20
    CRASHFLIP = 1 << 25
    ALTHOLD = 1 << 26
    POSHOLD = 1 << 27


ARMING_DISABLE_NAMES: tuple[str, ...] = (
    "NOGYRO", "FAILSAFE", "RXLOSS", "NOT_DISARMED", "BOXFAILSAFE", "RUNAWAY", "CRASH",
    "THROTTLE", "ANGLE", "BOOTGRACE", "NOPREARM", "LOAD", "CALIB", "CLI", "CMS", "BST", "MSP",
    "PARALYZE", "GPS", "RESCUE_SW", "DSHOT_TELEM", "REBOOT_REQD", "DSHOT_BBANG", "NO_ACC_CAL",
    "MOTOR_PROTO", "FLIP_SWITCH", "ALT_HOLD_SW", "POS_HOLD_SW", "ARM_SWITCH",
)
"""The CLI's names of arming-disable bits 0..28 (`status` prints them), Betaflight 4.6."""


def arming_disable_names(flags: int) -> list[str]:
    """Arming-disable bits -> CLI names, lowest bit first; unknown bits become `BIT<n>`."""
    out = []
    for bit in range(32):
        if flags >> bit & 1:
            out.append(ARMING_DISABLE_NAMES[bit] if bit < len(ARMING_DISABLE_NAMES) else f"BIT{bit}")
    return out


def arming_disable_bit(name: str) -> int:
    """CLI name (case-insensitive, or `BIT<n>`) -> bit mask. Raises ValueError naming the known."""
    key = name.strip().upper()
    if key in ARMING_DISABLE_NAMES:
        return 1 << ARMING_DISABLE_NAMES.index(key)
    if key.startswith("BIT") and key[3:].isdigit() and int(key[3:]) < 32:
        return 1 << int(key[3:])
    raise ValueError(
        f"unknown arming-disable flag {name!r}; known: {', '.join(ARMING_DISABLE_NAMES)}"
    )


MODE_ARM_BIT = 0
MODE_FAILSAFE_BIT = 4
"""Flight-mode bits follow the order of MSP_BOXIDS; these are the 4.6 SITL's (section 10)."""


@dataclass(frozen=True)
class Status:
    """MSP_STATUS (101) or MSP_STATUS_EX (150) reply (`extended` says which).

    Betaflight 4.x layout, little-endian:
      u16 cycle time (us, PID task period)   u16 I2C error count   u16 sensors (Sensor)
      u32 flight modes, bits 0..31            u8 PID profile index  u16 average system load
      STATUS:    u16 gyro cycle time (Betaflight sends 0)
      STATUS_EX: u8 PID profile count, u8 rate profile index
      u8 count N of further flight-mode bytes (low 4 bits), N bytes (bits 32..)
      u8 number of arming-disable flags, u32 arming-disable flags (ArmingDisable)
      u8 configuration state (bit0 reboot required)
      then, API >= 1.46, u16 CPU temperature (unsure; kept raw in `rest`)
    Firmware that stops after the load field (old Betaflight, other forks) decodes with
    `arming_flag_count` None. Units of the load field are unsure (percent on 4.x).
    """

    extended: bool
    cycle_time_us: int
    i2c_errors: int
    sensors: int
    flight_modes: int
    pid_profile: int
    system_load: int
    gyro_cycle_time: int = 0  # STATUS only
    pid_profile_count: int = 0  # STATUS_EX only
    rate_profile: int = 0  # STATUS_EX only
    extra_mode_bytes: int = 0  # how many flight-mode bytes beyond the first four
    arming_flag_count: int | None = None
    arming_disable_flags: int = 0
    config_state: int | None = None
    rest: bytes = b""

    @property
    def armed(self) -> bool:
        return bool(self.flight_modes >> MODE_ARM_BIT & 1)

    @property
    def failsafe_mode(self) -> bool:
        return bool(self.flight_modes >> MODE_FAILSAFE_BIT & 1)

    @property
    def arming_disabled(self) -> ArmingDisable:
        return ArmingDisable(self.arming_disable_flags)

    @property
    def reboot_required(self) -> bool:
        return bool((self.config_state or 0) & 1)

    @property
    def sensor_flags(self) -> Sensor:
        return Sensor(self.sensors)

    @classmethod
    def decode(cls, payload: bytes, *, extended: bool) -> Status:
        what = "STATUS_EX" if extended else "STATUS"
        r = _Reader(payload, what)
        cycle, i2c, sensors, modes, profile, load = r.take("HHHIBH")
        head: dict = dict(
            extended=extended,
            cycle_time_us=cycle,
            i2c_errors=i2c,
            sensors=sensors,
            flight_modes=modes,
            pid_profile=profile,
            system_load=load,
        )
        if extended:
            head["pid_profile_count"], head["rate_profile"] = r.take("BB")
        else:
            head["gyro_cycle_time"] = r.one("H")
        if r.remaining() == 0:
            return cls(**head)
        n_extra = r.one("B") & 0x0F
        extra = r.raw(n_extra)
        modes |= int.from_bytes(extra, "little") << 32
        count, flags = r.take("BI")
        config = r.one("B") if r.remaining() else None
        return cls(
            **{**head, "flight_modes": modes},
            extra_mode_bytes=n_extra,
            arming_flag_count=count,
            arming_disable_flags=flags,
            config_state=config,
            rest=r.rest(),
        )

    def encode(self) -> bytes:
        out = _pack(
            "HHHIBH",
            self.cycle_time_us,
            self.i2c_errors,
            self.sensors,
            self.flight_modes & 0xFFFFFFFF,
            self.pid_profile,
            self.system_load,
        )
        if self.extended:
            out += _pack("BB", self.pid_profile_count, self.rate_profile)
        else:
            out += _pack("H", self.gyro_cycle_time)
        if self.arming_flag_count is None:
            return out
        high = self.flight_modes >> 32
        if not 0 <= self.extra_mode_bytes <= 15 or high >> (8 * self.extra_mode_bytes):
            raise ValueError(f"flight modes 0x{self.flight_modes:x} need more than 4+15 bytes")
        out += _pack("B", self.extra_mode_bytes) + high.to_bytes(self.extra_mode_bytes, "little")
        out += _pack("BI", self.arming_flag_count, self.arming_disable_flags)
        if self.config_state is None:
            if self.rest:
                raise ValueError("STATUS rest bytes need a config_state before them")
            return out
        return out + _pack("B", self.config_state) + self.rest


def decode_status(payload: bytes) -> Status:
    return Status.decode(payload, extended=False)


def decode_status_ex(payload: bytes) -> Status:
    return Status.decode(payload, extended=True)


# ------------------------------------------------------------------- telemetry


@dataclass(frozen=True)
class RawImu:
    """MSP_RAW_IMU (102) reply: 9 x i16. Acc scaled so 1 g = 256 (BF SITL), gyro deg/s."""

    acc: tuple[int, int, int]
    gyro: tuple[int, int, int]
    mag: tuple[int, int, int]

    @classmethod
    def decode(cls, payload: bytes) -> RawImu:
        r = _Reader(payload, "RAW_IMU")
        v = r.take("9h")
        r.end()
        return cls(v[0:3], v[3:6], v[6:9])

    def encode(self) -> bytes:
        return _pack("9h", *self.acc, *self.gyro, *self.mag)


@dataclass(frozen=True)
class Motors:
    """MSP_MOTOR (104) reply: one u16 per output (Betaflight sends 8; 1000 disarmed, 0 unused)."""

    values: tuple[int, ...]

    @classmethod
    def decode(cls, payload: bytes) -> Motors:
        return cls(_u16_list(payload, "MOTOR"))

    def encode(self) -> bytes:
        return _pack(f"{len(self.values)}H", *self.values)


@dataclass(frozen=True)
class RcChannels:
    """MSP_RC (105) reply and MSP_SET_RAW_RC (200) request: one u16 (us) per channel.

    MSP_RC is in the firmware's internal order (roll, pitch, yaw, throttle, AUX1...);
    SET_RAW_RC is in the receiver order of `map` (AETR by default). Betaflight refuses
    SET_RAW_RC with more than 18 channels.
    """

    values: tuple[int, ...]

    @classmethod
    def decode(cls, payload: bytes) -> RcChannels:
        return cls(_u16_list(payload, "RC"))

    def encode(self) -> bytes:
        return _pack(f"{len(self.values)}H", *self.values)


@dataclass(frozen=True)
class Attitude:
    """MSP_ATTITUDE (108) reply: roll and pitch in decidegrees, yaw (heading) in degrees.

    Betaflight converts yaw to whole degrees (DECIDEGREES_TO_DEGREES) before sending it;
    only roll and pitch are decidegrees.
    """

    roll_decideg: int
    pitch_decideg: int
    yaw_deg: int

    @property
    def roll_deg(self) -> float:
        return self.roll_decideg / 10

    @property
    def pitch_deg(self) -> float:
        return self.pitch_decideg / 10

    @classmethod
    def decode(cls, payload: bytes) -> Attitude:
        r = _Reader(payload, "ATTITUDE")
        v = r.take("hhh")
        r.end()
        return cls(*v)

    def encode(self) -> bytes:
        return _pack("hhh", self.roll_decideg, self.pitch_decideg, self.yaw_deg)


@dataclass(frozen=True)
class RawGps:
    """MSP_RAW_GPS (106) reply (Betaflight msp.c): u8 fix (STATE(GPS_FIX): a valid 3D
    fix), u8 satellites, i32 latitude and longitude (1e-7 degrees), u16 altitude (whole
    metres, clamped at 0), u16 ground speed (cm/s), u16 ground course (decidegrees) and,
    from API 1.44, u16 PDOP (x100)."""

    fix: int
    num_sat: int
    lat_e7: int
    lon_e7: int
    alt_m: int
    ground_speed_cms: int
    ground_course_decideg: int
    pdop_x100: int | None = None

    @property
    def lat_deg(self) -> float:
        return self.lat_e7 * 1e-7

    @property
    def lon_deg(self) -> float:
        return self.lon_e7 * 1e-7

    @classmethod
    def decode(cls, payload: bytes) -> RawGps:
        r = _Reader(payload, "RAW_GPS")
        v = r.take("BBiiHHH")
        pdop = r.one("H") if r.remaining() >= 2 else None
        r.end()
        return cls(*v, pdop)

    def encode(self) -> bytes:
        out = _pack(
            "BBiiHHH", self.fix, self.num_sat, self.lat_e7, self.lon_e7, self.alt_m,
            self.ground_speed_cms, self.ground_course_decideg,
        )
        return out if self.pdop_x100 is None else out + _pack("H", self.pdop_x100)


@dataclass(frozen=True)
class CompGps:
    """MSP_COMP_GPS (107) reply (Betaflight msp.c): u16 distance to home (m), u16
    direction to home (degrees), u8 the GPS update toggle."""

    distance_to_home_m: int
    direction_to_home_deg: int
    update: int

    @classmethod
    def decode(cls, payload: bytes) -> CompGps:
        r = _Reader(payload, "COMP_GPS")
        v = r.take("HHB")
        r.end()
        return cls(*v)

    def encode(self) -> bytes:
        return _pack("HHB", self.distance_to_home_m, self.direction_to_home_deg, self.update)


# --------------------------------------------------------------- configuration


def step_to_us(step: int) -> int:
    """Mode-range step -> channel value: 900 + 25 * step (step 32 = 1700, 48 = 2100)."""
    return 900 + 25 * step


def us_to_step(us: int) -> int:
    """Channel value -> nearest mode-range step, clamped to 0..48 (900..2100 us)."""
    return min(max((us - 900 + 12) // 25, 0), 48)


@dataclass(frozen=True)
class ModeRange:
    """MSP_SET_MODE_RANGE (35) request.

    index of the mode-activation slot, permanent box id (0 = ARM), AUX channel index
    (0 = AUX1), start and end step (see `step_to_us`); optionally mode logic (0 OR,
    1 AND) and the permanent id of a linked mode, sent together or not at all.
    Arm on AUX1 1700-2100 is `ModeRange(0, 0, 0, 32, 48)` (PROTOCOLS.md section 10).
    """

    index: int
    box_id: int
    aux_channel: int
    start_step: int
    end_step: int
    mode_logic: int | None = None
    linked_to: int | None = None

    @classmethod
    def decode(cls, payload: bytes) -> ModeRange:
        r = _Reader(payload, "SET_MODE_RANGE")
        head = r.take("BBBBB")
        if r.remaining() == 0:
            return cls(*head)
        logic, linked = r.take("BB")
        r.end()
        return cls(*head, logic, linked)

    def encode(self) -> bytes:
        out = _pack(
            "BBBBB", self.index, self.box_id, self.aux_channel, self.start_step, self.end_step
        )
        if self.mode_logic is None and self.linked_to is None:
            return out
        if self.mode_logic is None or self.linked_to is None:
            raise ValueError("mode_logic and linked_to are sent together or not at all")
        return out + _pack("BB", self.mode_logic, self.linked_to)


def decode_mode_ranges(payload: bytes) -> list[ModeRange]:
    """MSP_MODE_RANGES (34) reply: per slot u8 permanent box id, u8 AUX channel, u8 start
    step, u8 end step (Betaflight 4.x: 20 slots). Slot i becomes `ModeRange(i, ...)`;
    a slot with start == end is unused."""
    if len(payload) % 4:
        raise MspError(f"MODE_RANGES payload must be whole 4-byte slots, got {len(payload)} bytes")
    return [
        ModeRange(i, *payload[4 * i : 4 * i + 4]) for i in range(len(payload) // 4)
    ]


def decode_box_names(payload: bytes) -> list[str]:
    """MSP_BOXNAMES (116) reply: the active boxes' names, each followed by ';'."""
    names = _ascii(bytes(payload), "BOXNAMES").split(";")
    if names[-1] == "":
        names.pop()
    return names


def decode_box_ids(payload: bytes) -> list[int]:
    """MSP_BOXIDS (119) reply: the active boxes' permanent ids, one byte each.

    Flight-mode bit i of MSP_STATUS(_EX) is the i-th box of this list (and of BOXNAMES).
    """
    return list(payload)


class Feature(IntFlag):
    """MSP_FEATURE_CONFIG (36) bits (Betaflight 4.x `config/feature.h`).

    RX_MSP has no CLI name on 4.6 (`feature` does not list it) but is the SITL's default
    receiver: RC then comes from MSP_SET_RAW_RC.
    """

    RX_PPM = 1 << 0
    INFLIGHT_ACC_CAL = 1 << 2
    RX_SERIAL = 1 << 3
    MOTOR_STOP = 1 << 4
    SERVO_TILT = 1 << 5
    SOFTSERIAL = 1 << 6
    GPS = 1 << 7
    OPTICALFLOW = 1 << 8
    RANGEFINDER = 1 << 9
    TELEMETRY = 1 << 10
    THREE_D = 1 << 12
    RX_PARALLEL_PWM = 1 << 13
    RX_MSP = 1 << 14
    RSSI_ADC = 1 << 15
    LED_STRIP = 1 << 16
    DASHBOARD = 1 << 17
    OSD = 1 << 18
    CHANNEL_FORWARDING = 1 << 20
    TRANSPONDER = 1 << 21
    AIRMODE = 1 << 22
    RX_SPI = 1 << 25
    ESC_SENSOR = 1 << 27
    ANTI_GRAVITY = 1 << 28


RX_FEATURES = Feature.RX_PPM | Feature.RX_SERIAL | Feature.RX_PARALLEL_PWM | Feature.RX_MSP | Feature.RX_SPI
"""The receiver features; Betaflight uses exactly one of them."""


def decode_feature_config(payload: bytes) -> int:
    """MSP_FEATURE_CONFIG (36) reply: u32 feature mask (see `Feature`)."""
    return _Reader(payload, "FEATURE_CONFIG").one("I")


def encode_feature_config(mask: int) -> bytes:
    """MSP_SET_FEATURE_CONFIG (37) payload."""
    return _pack("I", mask)


def decode_debug(payload: bytes) -> tuple[int, ...]:
    """MSP_DEBUG (254) reply: the firmware's debug[] values as i16 (8 on Betaflight 4.6)."""
    if len(payload) % 2:
        raise MspError(f"DEBUG payload must be whole i16 values, got {len(payload)} bytes")
    return struct.unpack(f"<{len(payload) // 2}h", payload)


#: Full scale of MSP_ANALOG's rssi field (Betaflight `rx.h` RSSI_MAX_VALUE).
RSSI_MAX = 1023
_ANALOG = struct.Struct("<BHHhH")


@dataclass(frozen=True)
class Analog:
    """MSP_ANALOG (110) reply (Betaflight `msp.c`): u8 legacy voltage (0.1 V), u16 mAh
    drawn, u16 rssi (0..1023), i16 current (0.01 A), u16 voltage (0.01 V)."""

    legacy_voltage: int
    mah_drawn: int
    rssi: int
    amperage: int
    voltage: int

    @property
    def rssi_percent(self) -> float:
        return 100.0 * self.rssi / RSSI_MAX

    def encode(self) -> bytes:
        return _ANALOG.pack(self.legacy_voltage, self.mah_drawn, self.rssi, self.amperage, self.voltage)

    @classmethod
    def decode(cls, payload: bytes) -> Analog:
        """Decode a reply; older firmware sends the first 7 bytes only (voltage 0 then)."""
        if len(payload) == _ANALOG.size - 2:
            payload = payload + b"\x00\x00"
        if len(payload) < _ANALOG.size:
            raise MspError(f"ANALOG payload must be at least {_ANALOG.size - 2} bytes, got {len(payload)}")
        return cls(*_ANALOG.unpack_from(payload))


class FailsafeProcedure(IntEnum):
    AUTO_LANDING = 0
    DROP = 1
    GPS_RESCUE = 2


class FailsafeSwitchMode(IntEnum):
    STAGE1 = 0
    KILL = 1
    STAGE2 = 2


@dataclass(frozen=True)
class FailsafeConfig:
    """MSP_FAILSAFE_CONFIG (75) reply / MSP_SET_FAILSAFE_CONFIG (76) request.

    u8 failsafe_delay (0.1 s), u8 failsafe_off_delay (landing time; 0.1 s in older
    firmware, whole seconds as `failsafe_landing_time` on 4.6: msp.c of the 4.6 source
    sends that setting here, default 60), u16 failsafe_throttle
    (us), u8 switch mode, u16 throttle_low_delay (0.1 s), u8 procedure. Bytes that newer
    firmware or forks append are kept raw in `rest`.
    """

    delay: int
    off_delay: int
    throttle: int
    switch_mode: int
    throttle_low_delay: int
    procedure: int
    rest: bytes = b""

    @property
    def delay_s(self) -> float:
        """Stage 1 length: RC loss to stage 2, in seconds (`failsafe_delay` x 0.1 s)."""
        return self.delay / 10

    @property
    def landing_time_s(self) -> float:
        """Betaflight 4.x sends `failsafe_landing_time` (whole seconds) in the second byte."""
        return float(self.off_delay)

    @property
    def off_delay_s(self) -> float:
        """The second byte in seconds, read as Betaflight 4.x means it (see landing_time_s)."""
        return self.landing_time_s

    @property
    def throttle_low_delay_s(self) -> float:
        return self.throttle_low_delay / 10

    @classmethod
    def decode(cls, payload: bytes) -> FailsafeConfig:
        r = _Reader(payload, "FAILSAFE_CONFIG")
        return cls(*r.take("BBHBHB"), rest=r.rest())

    def encode(self) -> bytes:
        fields = (self.delay, self.off_delay, self.throttle, self.switch_mode)
        return _pack("BBHBHB", *fields, self.throttle_low_delay, self.procedure) + self.rest


class RebootMode(IntEnum):
    FIRMWARE = 0
    BOOTLOADER_ROM = 1
    MSC = 2
    MSC_UTC = 3
    BOOTLOADER_FLASH = 4


def encode_reboot_request(mode: RebootMode | None = None) -> bytes:
    """MSP_REBOOT (68) payload: empty (firmware reboot) or one mode byte."""
    return b"" if mode is None else _pack("B", mode)


@dataclass(frozen=True)
class RebootReply:
    """MSP_REBOOT reply: the mode echoed; for MSC modes also u8 "filesystem ready"."""

    mode: int
    msc_ready: int | None = None

    @classmethod
    def decode(cls, payload: bytes) -> RebootReply:
        r = _Reader(payload, "REBOOT")
        mode = r.one("B")
        ready = r.one("B") if r.remaining() else None
        r.end()
        return cls(mode, ready)

    def encode(self) -> bytes:
        out = _pack("B", self.mode)
        return out if self.msc_ready is None else out + _pack("B", self.msc_ready)

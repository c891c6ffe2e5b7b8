"""CRSF (Crossfire / ExpressLRS) frames as pure data (PROTOCOLS.md section 7).

A frame is `addr len type payload crc8`: `len` counts type + payload + crc (payload + 2),
the CRC is CRC-8/DVB-S2 (poly 0xD5, init 0, MSB first) over type + payload, and a whole
frame is at most 64 bytes. The serial line is 420000 baud 8N1 (416666 in the official
spec). `CrsfParser` turns a byte stream into messages and resynchronises on bad lengths
and CRCs; it never looks at a clock.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction

from hil.codecs.bits import crc8_dvb_s2, pack_channels_11bit, unpack_channels_11bit
from hil.errors import HilError

SYNC = 0xC8
"""Address byte of frames to and from a flight controller."""

ADDRESSES = frozenset({0xC8, 0xEA, 0xEC, 0xEE})
"""First bytes the parser accepts: flight controller, radio, receiver, transmitter module."""

MAX_FRAME = 64
MAX_PAYLOAD = MAX_FRAME - 4  # addr, len, type, crc
MIN_LEN_FIELD = 2  # type + crc, empty payload

TYPE_LINK_STATISTICS = 0x14
TYPE_RC_CHANNELS_PACKED = 0x16

TICKS_MIN = 172
TICKS_MID = 992
TICKS_MAX = 1811
US_MIN = 988
US_MID = 1500
US_MAX = 2012

ELRS_FRAME_INTERVAL_US: dict[int, float] = {
    500: 2000.0,
    250: 4000.0,
    150: 1_000_000 / 150,  # 6666.67 us
    50: 20000.0,
}
"""ExpressLRS 2.4 GHz packet rate (Hz) -> interval between RC frames (microseconds)."""


class CrsfError(HilError):
    """Bytes do not form the CRSF frame or payload the protocol allows."""


def _round_div(num: int, den: int) -> int:
    """num / den rounded half up, in integers (den > 0)."""
    return (2 * num + den) // (2 * den)


def ticks_to_us(ticks: int) -> int:
    """CRSF channel ticks -> pulse width in us: the line through 172->988 and 1811->2012."""
    return US_MIN + _round_div((ticks - TICKS_MIN) * (US_MAX - US_MIN), TICKS_MAX - TICKS_MIN)


def us_to_ticks(us: float) -> int:
    """Pulse width in us -> CRSF ticks, rounded half up, clamped to 0..2047 (11 bits)."""
    if type(us) is int:  # the common case, exact in integers (it runs per channel per frame)
        ticks = _round_div((us - US_MIN) * (TICKS_MAX - TICKS_MIN), US_MAX - US_MIN) + TICKS_MIN
        return min(max(ticks, 0), 0x7FF)
    exact = TICKS_MIN + (Fraction(us) - US_MIN) * (TICKS_MAX - TICKS_MIN) / (US_MAX - US_MIN)
    return min(max(math.floor(exact + Fraction(1, 2)), 0), 0x7FF)


# ------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class CrsfFrame:
    """Any CRSF frame, undecoded: its type byte and payload."""

    frame_type: int
    payload: bytes = b""
    address: int = SYNC


@dataclass(frozen=True)
class RcChannelsPacked:
    """RC_CHANNELS_PACKED (0x16): 16 channels in CRSF ticks (172..1811 nominal)."""

    channels: tuple[int, ...]
    address: int = SYNC

    @classmethod
    def from_us(cls, us: tuple[float, ...] | list[float], address: int = SYNC) -> RcChannelsPacked:
        return cls(tuple(us_to_ticks(u) for u in us), address)

    def to_us(self) -> tuple[int, ...]:
        return tuple(ticks_to_us(t) for t in self.channels)


_LINK_STATS = struct.Struct("<BBBbBBBBBb")


@dataclass(frozen=True)
class LinkStatistics:
    """LINK_STATISTICS (0x14). RSSI in dBm (<= 0; sent on the wire as positive -dBm)."""

    uplink_rssi_ant1_dbm: int
    uplink_rssi_ant2_dbm: int
    uplink_link_quality: int  # percent
    uplink_snr_db: int
    active_antenna: int
    rf_mode: int  # index into the transmitter's rate table
    uplink_tx_power: int  # index: 0 = 0 mW, 1 = 10 mW, 2 = 25 mW, ...
    downlink_rssi_dbm: int
    downlink_link_quality: int
    downlink_snr_db: int
    address: int = SYNC


CrsfMessage = CrsfFrame | RcChannelsPacked | LinkStatistics


def _payload_of(msg: CrsfMessage) -> tuple[int, bytes]:
    if isinstance(msg, RcChannelsPacked):
        return TYPE_RC_CHANNELS_PACKED, pack_channels_11bit(msg.channels)
    if isinstance(msg, LinkStatistics):
        values = (
            -msg.uplink_rssi_ant1_dbm,
            -msg.uplink_rssi_ant2_dbm,
            msg.uplink_link_quality,
            msg.uplink_snr_db,
            msg.active_antenna,
            msg.rf_mode,
            msg.uplink_tx_power,
            -msg.downlink_rssi_dbm,
            msg.downlink_link_quality,
            msg.downlink_snr_db,
        )
        try:
            return TYPE_LINK_STATISTICS, _LINK_STATS.pack(*values)
        except struct.error as exc:
            raise ValueError(f"LINK_STATISTICS field out of range: {msg}") from exc
    return msg.frame_type, msg.payload


def encode(msg: CrsfMessage) -> bytes:
    """One message -> the bytes of one frame."""
    frame_type, payload = _payload_of(msg)
    if not 0 <= frame_type <= 0xFF or not 0 <= msg.address <= 0xFF:
        raise ValueError(f"frame type 0x{frame_type:x} or address 0x{msg.address:x} is not a byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"CRSF payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes([frame_type]) + payload
    return bytes([msg.address, len(body) + 1]) + body + bytes([crc8_dvb_s2(body)])


def decode_payload(frame: CrsfFrame) -> CrsfMessage:
    """A checked frame -> the typed message for known types, else the frame itself."""
    if frame.frame_type == TYPE_RC_CHANNELS_PACKED:
        if len(frame.payload) != 22:
            raise CrsfError(f"RC_CHANNELS_PACKED needs 22 payload bytes, got {len(frame.payload)}")
        return RcChannelsPacked(unpack_channels_11bit(frame.payload), frame.address)
    if frame.frame_type == TYPE_LINK_STATISTICS:
        if len(frame.payload) != _LINK_STATS.size:
            raise CrsfError(f"LINK_STATISTICS needs 10 payload bytes, got {len(frame.payload)}")
        f = _LINK_STATS.unpack(frame.payload)
        return LinkStatistics(
            -f[0], -f[1], f[2], f[3], f[4], f[5], f[6], -f[7], f[8], f[9], frame.address
        )
    return frame


def _check_frame(buf: bytes | bytearray, start: int) -> CrsfFrame | int | None:
    """Frame at `start`: the frame, None if more bytes are needed, -1 if it is not one."""
    if len(buf) - start < 2:
        return None
    length = buf[start + 1]
    if not MIN_LEN_FIELD <= length <= MAX_FRAME - 2:
        return -1
    end = start + 2 + length
    if len(buf) < end:
        return None
    body = bytes(buf[start + 2 : end - 1])
    if crc8_dvb_s2(body) != buf[end - 1]:
        return -1
    return CrsfFrame(body[0], body[1:], buf[start])


def decode(data: bytes) -> CrsfMessage:
    """Exactly one frame -> its message. Raises CrsfError for anything else."""
    if not data or data[0] not in ADDRESSES:
        raise CrsfError(f"CRSF frame must start with an address byte (0xC8), got {data[:1].hex()}")
    result = _check_frame(data, 0)
    if result is None:
        raise CrsfError(f"CRSF frame truncated: {len(data)} bytes: {data.hex(' ')}")
    if result == -1:
        raise CrsfError(f"bad CRSF length or CRC in {data.hex(' ')}")
    assert isinstance(result, CrsfFrame)
    if len(data) != 2 + data[1]:
        raise CrsfError(f"{len(data) - 2 - data[1]} bytes after the CRSF frame")
    return decode_payload(result)


_FIXED_SIZES = {TYPE_RC_CHANNELS_PACKED: 22, TYPE_LINK_STATISTICS: 10}


def _wrong_size(frame: CrsfFrame) -> bool:
    size = _FIXED_SIZES.get(frame.frame_type)
    return size is not None and len(frame.payload) != size


class CrsfParser:
    """Streaming CRSF parser: feed bytes as they arrive, get whole messages back.

    On a bad length or CRC it drops the first byte of the candidate and searches again,
    so a frame that garbage seemed to swallow is still found. While an incomplete
    candidate waits for bytes, a complete CRC-valid frame further on means the candidate
    was noise, so it is dropped instead of holding the stream back. Likewise a CRC-valid
    frame with a valid frame starting inside it that runs past its end (or that is
    followed by a non-address byte) is taken as a CRC-8 collision in noise (1 in 256)
    and skipped, unless it goes on as the longer stream of back-to-back frames (then the
    inner one is the collision, inside a real frame's payload), as is a CRC-valid frame
    of a known type with the wrong payload size (real ones always have their fixed size).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0
        """Bytes thrown away while looking for frames (noise on the line)."""

    def _complete_frame_after(self, start: int, stop: int | None = None) -> int | None:
        for i in range(start, len(self._buf) if stop is None else stop):
            if self._buf[i] in ADDRESSES and isinstance(_check_frame(self._buf, i), CrsfFrame):
                return i
        return None

    def _chain(self, start: int, most: int = 4) -> int:
        """How many valid frames follow one another from `start` (at most `most`): of two
        readings that overlap, the one that goes on as a stream of frames is the real one."""
        count, pos, buf = 0, start, self._buf
        while count < most and pos < len(buf) and buf[pos] in ADDRESSES:
            frame = _check_frame(buf, pos)
            if not isinstance(frame, CrsfFrame) or _wrong_size(frame):
                break
            count += 1
            pos += 2 + buf[pos + 1]
        return count

    def feed(self, data: bytes) -> list[CrsfMessage]:
        self._buf += data
        out: list[CrsfMessage] = []
        pos = 0
        buf = self._buf
        while pos < len(buf):
            if buf[pos] not in ADDRESSES:
                pos += 1
                self.discarded += 1
                continue
            result = _check_frame(buf, pos)
            if result is None:
                later = self._complete_frame_after(pos + 1)
                if later is None:
                    break
                self.discarded += later - pos
                pos = later
                continue
            if isinstance(result, int) or _wrong_size(result):
                # Not a frame, or a CRC-8 collision in noise: a real RC_CHANNELS_PACKED or
                # LINK_STATISTICS always has its fixed payload size.
                pos += 1
                self.discarded += 1
                continue
            end = pos + 2 + buf[pos + 1]
            inner = self._complete_frame_after(pos + 1, end)
            if inner is not None and (
                inner + 2 + buf[inner + 1] > end or (end < len(buf) and buf[end] not in ADDRESSES)
            ) and self._chain(inner) >= self._chain(pos):
                # Two valid frames that overlap, or one followed by noise: the outer one is a
                # CRC collision in noise swallowing a real frame.
                self.discarded += inner - pos
                pos = inner
                continue
            pos = end
            try:
                out.append(decode_payload(result))
            except CrsfError:
                out.append(result)
        del buf[:pos]
        return out

"""SBUS frames as pure data (PROTOCOLS.md section 7).

Line settings: 100000 baud, 8 data bits, even parity, 2 stop bits (8E2), logic inverted;
a frame every 11 ms (14 ms on some receivers' "slow" mode is not covered), 6 ms in fast
mode. A frame is 25 bytes: header 0x0F, 16 channels x 11 bits little-endian in 22 bytes,
a flags byte (bit0 digital ch17, bit1 digital ch18, bit2 frame lost, bit3 failsafe) and
the end byte 0x00. Channel value v maps to a pulse width of 5*v/8 + 880 us
(172 -> 987.5, 992 -> 1500, 1811 -> 2011.875).

SBUS has no checksum: receivers find frames by the idle gap between them. A parser that
sees only bytes cannot always tell a frame from data that happens to look like one, so
the link should pass `gap_before=True` when bytes arrive after a quiet line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from hil.codecs.bits import pack_channels_11bit, unpack_channels_11bit
from hil.errors import HilError

HEADER = 0x0F
END = 0x00
FRAME_LEN = 25
CHANNELS = 16

BAUD = 100_000
FRAME_PERIOD_S = 0.011
FAST_FRAME_PERIOD_S = 0.006

FLAG_CH17 = 0x01
FLAG_CH18 = 0x02
FLAG_FRAME_LOST = 0x04
FLAG_FAILSAFE = 0x08


class SbusError(HilError):
    """Bytes do not form a 25-byte SBUS frame."""


def value_to_us(value: int) -> float:
    """SBUS channel value -> pulse width in us (exact: 5*v/8 + 880)."""
    return 5 * value / 8 + 880


def us_to_value(us: float) -> int:
    """Pulse width in us -> SBUS value (8*(us-880)/5), rounded half up, clamped to 0..2047."""
    exact = (Fraction(us) - 880) * 8 / 5
    return min(max(math.floor(exact + Fraction(1, 2)), 0), 0x7FF)


@dataclass(frozen=True)
class SbusFrame:
    """One SBUS frame: 16 proportional channels (0..2047) and the four flags."""

    channels: tuple[int, ...]
    ch17: bool = False
    ch18: bool = False
    frame_lost: bool = False
    failsafe: bool = False

    @classmethod
    def from_us(cls, us: tuple[float, ...] | list[float], **flags: bool) -> SbusFrame:
        return cls(tuple(us_to_value(u) for u in us), **flags)

    def to_us(self) -> tuple[float, ...]:
        return tuple(value_to_us(v) for v in self.channels)


def encode(frame: SbusFrame) -> bytes:
    flags = (
        FLAG_CH17 * frame.ch17
        | FLAG_CH18 * frame.ch18
        | FLAG_FRAME_LOST * frame.frame_lost
        | FLAG_FAILSAFE * frame.failsafe
    )
    return bytes([HEADER]) + pack_channels_11bit(frame.channels) + bytes([flags, END])


def _decode_unchecked(data: bytes | bytearray) -> SbusFrame:
    flags = data[23]  # bits 4..7 are unused and ignored
    return SbusFrame(
        unpack_channels_11bit(bytes(data[1:23])),
        ch17=bool(flags & FLAG_CH17),
        ch18=bool(flags & FLAG_CH18),
        frame_lost=bool(flags & FLAG_FRAME_LOST),
        failsafe=bool(flags & FLAG_FAILSAFE),
    )


def decode(data: bytes) -> SbusFrame:
    """Exactly one 25-byte frame -> SbusFrame. Raises SbusError for anything else."""
    if len(data) != FRAME_LEN:
        raise SbusError(f"SBUS frame must be {FRAME_LEN} bytes, got {len(data)}: {data.hex(' ')}")
    if data[0] != HEADER or data[24] != END:
        raise SbusError(
            f"SBUS frame must start 0x0F and end 0x00, got 0x{data[0]:02x} ... 0x{data[24]:02x}"
            " (inverted line? SBUS2 end bytes are not supported)"
        )
    return _decode_unchecked(data)


class SbusParser:
    """Streaming SBUS parser.

    A candidate is a 0x0F with 0x00 24 bytes later, accepted only if the byte after it
    is the next header (0x0F) or the buffer ends there: frames arrive back to back, so
    this rejects most look-alikes inside noise without waiting for the next frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0
        """Bytes thrown away while looking for frames."""

    def feed(self, data: bytes, *, gap_before: bool = False) -> list[SbusFrame]:
        """Parse `data`; `gap_before` says the line was idle before it (drop partial bytes)."""
        if gap_before:
            self.discarded += len(self._buf)
            self._buf.clear()
        self._buf += data
        buf = self._buf
        out: list[SbusFrame] = []
        pos = 0
        while True:
            nxt = buf.find(HEADER, pos)
            if nxt < 0:
                self.discarded += len(buf) - pos
                pos = len(buf)
                break
            self.discarded += nxt - pos
            pos = nxt
            end = pos + FRAME_LEN
            if len(buf) < end:
                break
            if buf[end - 1] == END and (len(buf) == end or buf[end] == HEADER):
                out.append(_decode_unchecked(buf[pos:end]))
                pos = end
            else:
                pos += 1
                self.discarded += 1
        del buf[:pos]
        return out

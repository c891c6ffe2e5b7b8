"""Bit-level helpers shared by the RC and MSP codecs."""

from __future__ import annotations

CHANNELS = 16
"""Channels in a CRSF RC_CHANNELS_PACKED or SBUS frame."""


def _crc8_table(poly: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_DVB_S2 = _crc8_table(0xD5)


def crc8_dvb_s2(data: bytes, crc: int = 0) -> int:
    """CRC-8/DVB-S2: poly 0xD5, init 0, not reflected, no final xor (CRSF and MSP v2)."""
    table = _DVB_S2
    for byte in data:
        crc = table[crc ^ byte]
    return crc


def pack_channels_11bit(values: tuple[int, ...] | list[int]) -> bytes:
    """Pack 16 channel values of 11 bits, little-endian bit order, into 22 bytes."""
    if len(values) != CHANNELS:
        raise ValueError(f"expected {CHANNELS} channel values, got {len(values)}")
    acc = 0
    for i, v in enumerate(values):
        if not 0 <= v <= 0x7FF:
            raise ValueError(f"channel {i + 1} value {v} does not fit 11 bits (0..2047)")
        acc |= v << (11 * i)
    return acc.to_bytes(22, "little")


def unpack_channels_11bit(data: bytes) -> tuple[int, ...]:
    """The inverse of `pack_channels_11bit`; `data` must be 22 bytes."""
    acc = int.from_bytes(data, "little")
    return tuple((acc >> (11 * i)) & 0x7FF for i in range(CHANNELS))

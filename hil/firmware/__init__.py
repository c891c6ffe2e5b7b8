"""Firmware images and the wire codecs of the bootloaders that flash them."""

from __future__ import annotations

from hil.firmware.image import (
    FirmwareImage,
    ImageError,
    Segment,
    load_image,
    parse_image,
    write_apj,
    write_bin,
    write_dfu,
    write_hex,
    write_px4,
)

__all__ = [
    "FirmwareImage",
    "ImageError",
    "Segment",
    "load_image",
    "parse_image",
    "write_apj",
    "write_bin",
    "write_dfu",
    "write_hex",
    "write_px4",
]

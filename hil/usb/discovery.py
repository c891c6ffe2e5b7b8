"""Which flight controllers and bootloaders are on USB, real (libusb) and virtual (registry).

Real devices come from pyusb with the libusb shipped by `libusb-package`; when libusb is
missing or finds nothing the answer is an empty list, never an error (a machine with no
boards, or no USB permissions, is normal). Virtual boards in DFU come from
`hil.usb.virtual_backend.VirtualBackend`. Only devices whose VID:PID is a known flight
controller or bootloader are listed (`KNOWN_DEVICES`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import usb.core
import usb.util

log = logging.getLogger(__name__)

ANY_PID = -1

#: (vid, pid or ANY_PID) -> (kind, description). kind "dfu": the STM32 ROM DFU device;
#: "serial": a CDC-ACM port carrying MAVLink/MSP or a PX4/ArduPilot serial bootloader
#: (the two share VID:PID on most boards).
KNOWN_DEVICES: dict[tuple[int, int], tuple[str, str]] = {
    (0x0483, 0xDF11): ("dfu", "STM32 ROM DFU bootloader"),
    (0x0483, 0x5740): ("serial", "STM32 virtual COM port (Betaflight, INAV, many ArduPilot/PX4 boards)"),
    (0x1209, 0x5740): ("serial", "ArduPilot (ChibiOS)"),
    (0x1209, 0x5741): ("serial", "ArduPilot (ChibiOS composite / bootloader)"),
    (0x2DAE, ANY_PID): ("serial", "CubePilot (Hex/ProfiCNC) autopilot or bootloader"),
    (0x26AC, ANY_PID): ("serial", "3D Robotics / PX4 FMU (Pixhawk) autopilot or bootloader"),
    (0x3162, ANY_PID): ("serial", "Holybro autopilot or bootloader"),
}


@dataclass(frozen=True)
class UsbBoard:
    """One flight controller or bootloader seen on (real or virtual) USB."""

    vid: int
    pid: int
    usb_serial: str | None  # None when the string could not be read (permissions)
    kind: str  # "dfu" or "serial"
    description: str
    source: str  # "usb" or "virtual"
    bus: int | None = None
    address: int | None = None

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"


def identify(vid: int, pid: int) -> tuple[str, str] | None:
    """(kind, description) of a known VID:PID, else None."""
    return KNOWN_DEVICES.get((vid, pid)) or KNOWN_DEVICES.get((vid, ANY_PID))


def _serial(dev: Any) -> str | None:
    try:
        return dev.serial_number
    except (usb.core.USBError, ValueError, NotImplementedError, OSError):
        return None


def _boards(backend: Any, source: str) -> list[UsbBoard]:
    try:
        devices = list(usb.core.find(find_all=True, backend=backend))
    except (usb.core.USBError, usb.core.NoBackendError, OSError, ValueError) as exc:
        log.info("USB enumeration (%s) failed: %s", source, exc)
        return []
    found = []
    for dev in devices:
        known = identify(dev.idVendor, dev.idProduct)
        if known is None:
            continue
        kind, description = known
        found.append(
            UsbBoard(dev.idVendor, dev.idProduct, _serial(dev), kind, description, source, dev.bus, dev.address)
        )
        with contextlib.suppress(usb.core.USBError, NotImplementedError):
            usb.util.dispose_resources(dev)
    return found


def real_backend() -> Any | None:
    """pyusb's libusb1 backend over the bundled libusb, or None when unavailable."""
    try:
        import libusb_package

        return libusb_package.get_libusb1_backend()
    except Exception as exc:  # noqa: BLE001 - no libusb just means no real USB
        log.info("libusb is not available: %s", exc)
        return None


def list_usb_boards(
    registry_dir: Path | str | None = None,
    *,
    real: bool = True,
    virtual: bool = True,
    backend: Any = None,
) -> list[UsbBoard]:
    """Flight controllers and bootloaders on real USB, then virtual DFU devices."""
    found: list[UsbBoard] = []
    if real:
        chosen = backend if backend is not None else real_backend()
        if chosen is not None:
            found.extend(_boards(chosen, "usb"))
    if virtual:
        from hil.usb.virtual_backend import VirtualBackend

        found.extend(_boards(VirtualBackend(registry_dir), "virtual"))
    return found

"""What each USB port is (bootloader, application, DFU, USB-UART adapter) and where it went.

A bench sees flight controllers come and go: a reboot into the bootloader re-enumerates
the board, often with another product ID, product string or serial number. This module
turns what the host reports about a port (`UsbPortDescription`, the fields of pyserial's
`list_ports`) into a `Classification` using a table of known identities
(`IDENTITIES`, each row naming the upstream file it comes from), and finds a board again
after a reboot (`find_again`): by USB serial number where that identifies the board, by
USB location (bus and hub ports) where it does not, as with PX4's bootloader serial "0".

Everything here up to `list_usb_boards` is pure: descriptions in, answers out. Real
devices come from pyusb with the libusb shipped by `libusb-package`; when libusb is
missing or finds nothing the answer is an empty list, never an error (a machine with no
boards, or no USB permissions, is normal). Virtual boards in DFU come from the backend
a caller passes (`hil.boards.virtual_usb.VirtualBackend`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import usb.core
import usb.util

log = logging.getLogger(__name__)

# Port states. "bootloader", "app" and "dfu" are also board lifecycle states
# (hil.links.ports); "usb-uart" is an adapter wired to a board's UART; "unknown" is
# anything the table does not know.
BOOTLOADER: Final = "bootloader"
APP: Final = "app"
DFU: Final = "dfu"
USB_UART: Final = "usb-uart"
UNKNOWN: Final = "unknown"
STATES: Final = (BOOTLOADER, APP, DFU, USB_UART, UNKNOWN)

FAMILIES: Final = ("ardupilot", "px4", "betaflight", "inav")

# Roles of the two ttys of an ArduPilot dual-CDC board (usbcfg_dualcdc.c): interface 0
# is SDU1 = OTG1 = SERIAL0, MAVLink; interface 2 is SDU2 = OTG2, the second port
# (MAVLink2 or SLCAN, HAL_OTG2_PROTOCOL in chibios_hwdef.py).
MAVLINK_PORT: Final = "mavlink"
SECOND_PORT: Final = "second"

_AP_HWDEF = "ArduPilot libraries/AP_HAL_ChibiOS/hwdef/scripts/chibios_hwdef.py"
_PX4_BL = "PX4/PX4-Bootloader hw_config.h"


# ----------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class UsbPortDescription:
    """What the host reports about one USB port: pyserial's `ListPortInfo` fields as data.

    `location` is pyserial's: bus and hub ports, then `:config.interface` for devices
    with several interfaces (Linux "1-1.4:1.0", Windows "1-1.4:x.0"). A DFU device has
    no tty; its description comes from pyusb with `device` None.
    """

    device: str | None
    vid: int | None
    pid: int | None
    manufacturer: str | None = None
    product: str | None = None
    serial_number: str | None = None
    location: str | None = None
    interface: int | None = None  # bInterfaceNumber; parsed from `location` when None

    @property
    def usb_path(self) -> str | None:
        """Bus and hub ports ("1-1.4"): where the device is plugged, whatever it runs."""
        if not self.location:
            return None
        return self.location.split(":", 1)[0] or None

    @property
    def interface_number(self) -> int | None:
        if self.interface is not None:
            return self.interface
        match = re.search(r":[^.:]*\.(\d+)$", self.location or "")
        return int(match.group(1)) if match else None

    @property
    def usb_id(self) -> str:
        if self.vid is None or self.pid is None:
            return "-"
        return f"{self.vid:04x}:{self.pid:04x}"

    def __str__(self) -> str:
        where = self.device or f"usb {self.usb_path or '?'}"
        return f"{where} [{self.usb_id} {self.product or '?'} sn {self.serial_number!r}]"

    @classmethod
    def from_list_port_info(cls, info: Any) -> UsbPortDescription:
        """From a pyserial `ListPortInfo` (its `interface` is a name, not a number)."""
        return cls(
            device=info.device,
            vid=info.vid,
            pid=info.pid,
            manufacturer=info.manufacturer,
            product=info.product,
            serial_number=info.serial_number,
            location=info.location,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsbPortDescription:
        """From recorded data; `vid`/`pid` may be ints or hex strings ("0x1209")."""

        def number(value: Any) -> int | None:
            if value is None or isinstance(value, int):
                return value
            return int(str(value), 0)

        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown USB port description keys: {sorted(unknown)}")
        return cls(
            device=data.get("device"),
            vid=number(data.get("vid")),
            pid=number(data.get("pid")),
            manufacturer=data.get("manufacturer"),
            product=data.get("product"),
            serial_number=data.get("serial_number"),
            location=data.get("location"),
            interface=data.get("interface"),
        )


# ------------------------------------------------------------------- identity table

ANY_PID: Final = None


@dataclass(frozen=True)
class UsbIdentity:
    """One row of the table: a VID:PID (or a whole vendor) and what it usually means."""

    vid: int
    pid: int | None  # ANY_PID: every product of this vendor
    state: str  # when no product string says otherwise
    family: str | None
    what: str
    source: str


IDENTITIES: Final[tuple[UsbIdentity, ...]] = (
    UsbIdentity(0x0483, 0xDF11, DFU, None, "STM32 ROM DFU bootloader",
                "PROTOCOLS.md section 13; ST AN3156 (STM32 USB DFU bootloader)"),
    UsbIdentity(0x0483, 0x5740, APP, None,
                "STM32 virtual COM port: Betaflight / INAV (MSP), family from manufacturer",
                "betaflight src/main/vcpf4/usbd_desc.c; inav src/main/vcpf4/usbd_desc.c"),
    UsbIdentity(0x1209, 0x5740, APP, "ardupilot",
                "ArduPilot ChibiOS, two CDC ports (MAVLink on interface 0, second on 2)",
                f"{_AP_HWDEF} get_USB_IDs; AP_HAL_ChibiOS/hwdef/common/usbcfg_dualcdc.c"),
    UsbIdentity(0x1209, 0x5741, APP, "ardupilot",
                "ArduPilot ChibiOS, one CDC port; its bootloader too (product '<board>-BL')",
                f"{_AP_HWDEF} get_USB_IDs"),
    UsbIdentity(0x2DAE, ANY_PID, APP, None,
                "CubePilot (Hex/ProfiCNC) board, ArduPilot or PX4 (CubeOrange 0x1016)",
                "ArduPilot hwdef/CubeOrange/hwdef.dat; PX4 boards/cubepilot/cubeorange "
                "nuttx-config/nsh/defconfig"),
    UsbIdentity(0x26AC, ANY_PID, APP, "px4",
                "3D Robotics VID: PX4 NuttX application (fmu-v5 0x0032) and PX4 bootloader",
                "PX4 boards/px4/fmu-v5/nuttx-config/nsh/defconfig; "
                f"{_PX4_BL} (USBVENDORID default)"),
    UsbIdentity(0x3162, ANY_PID, APP, None, "Holybro board, ArduPilot or PX4",
                f"{_PX4_BL} TARGET_HW_HOLYBRO_PIX32_V5"),
    UsbIdentity(0x3185, ANY_PID, APP, None, "Auterion board (fmu-v5x), PX4 or ArduPilot",
                f"{_PX4_BL} TARGET_HW_PX4_FMU_V5X"),
    # USB-UART adapters that carry RC and GPS to a board's UARTs (PROTOCOLS.md section 13).
    UsbIdentity(0x10C4, 0xEA60, USB_UART, None, "Silicon Labs CP210x USB-UART",
                "Linux drivers/usb/serial/cp210x.c"),
    UsbIdentity(0x0403, 0x6001, USB_UART, None, "FTDI FT232R USB-UART",
                "Linux drivers/usb/serial/ftdi_sio_ids.h (FTDI_8U232AM_PID)"),
    UsbIdentity(0x0403, 0x6015, USB_UART, None, "FTDI FT-X USB-UART",
                "Linux drivers/usb/serial/ftdi_sio_ids.h (FTDI_FTX_PID)"),
    UsbIdentity(0x1A86, 0x7523, USB_UART, None, "WCH CH340 USB-UART",
                "Linux drivers/usb/serial/ch341.c"),
    UsbIdentity(0x067B, 0x2303, USB_UART, None, "Prolific PL2303 USB-UART",
                "Linux drivers/usb/serial/pl2303.h"),
)  # fmt: skip

# Manufacturer strings that name the firmware (exact match).
MANUFACTURER_FAMILIES: Final[Mapping[str, tuple[str, str]]] = {
    "ArduPilot": ("ardupilot", f"{_AP_HWDEF} write_USB_config (default manufacturer)"),
    "Hex/ProfiCNC": ("ardupilot", "ArduPilot hwdef/CubeOrange/hwdef.dat USB_STRING_MANUFACTURER"),
    "CubePilot": ("px4", "PX4 boards/cubepilot/cubeorange/nuttx-config/nsh/defconfig"),
    "Betaflight": ("betaflight", "betaflight src/main/vcpf4/usbd_desc.c (FC_FIRMWARE_NAME)"),
}

# ArduPilot bootloaders append "-BL" to the board name; signed ones "-Secure-BL-v10"
# (chibios_hwdef.py write_USB_config). PX4's bootloader names itself "PX4 BL <board>"
# (hw_config.h USBDEVICESTRING). Other vendors' bootloaders mostly say "BL" somewhere.
_ARDUPILOT_BL = re.compile(r"-(Secure-)?BL(-v\d+)?$")
_PX4_BL_PRODUCT = re.compile(r"^PX4 BL\b")
_SOME_BL = re.compile(r"(^|[\s_-])BL($|[\s_-])|bootloader", re.IGNORECASE)

# Serial numbers that do not tell boards apart: PX4-Bootloader stm32/cdcacm.c sends "0";
# Betaflight's and INAV's F4 VCP send a constant (vcpf4/usbd_desc.c in either tree).
USELESS_SERIALS: Final = frozenset({"", "0", "0x8000000", "00000000050B", "00000000050C"})


def lookup(vid: int | None, pid: int | None) -> UsbIdentity | None:
    """The table row for VID:PID: an exact row first, else the vendor-wide one."""
    if vid is None:
        return None
    vendor_wide = None
    for row in IDENTITIES:
        if row.vid == vid and row.pid == pid:
            return row
        if row.vid == vid and row.pid is ANY_PID:
            vendor_wide = row
    return vendor_wide


# -------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Classification:
    """What a port is, which firmware family talks on it (if known) and why we think so."""

    state: str
    family: str | None = None
    role: str | None = None  # MAVLINK_PORT / SECOND_PORT on ArduPilot dual-CDC boards
    identity: UsbIdentity | None = None
    reason: str = ""


def classify(port: UsbPortDescription) -> Classification:
    """Classify one port from its VID:PID, product and manufacturer strings and interface."""
    row = lookup(port.vid, port.pid)
    if row is None and port.vid is None:
        return Classification(UNKNOWN, reason="not a USB device")
    if row is not None and row.state in (DFU, USB_UART):
        return Classification(row.state, row.family, identity=row, reason=row.what)
    product = (port.product or "").strip()
    maker = MANUFACTURER_FAMILIES.get((port.manufacturer or "").strip())
    family = row.family if row is not None else None
    said = ""
    if family is None and maker is not None:
        family = maker[0]
        said = f"; manufacturer {port.manufacturer!r} means {family}"
    if _ARDUPILOT_BL.search(product):
        why = f"product {product!r} ends in -BL (ArduPilot bootloader)"
        return Classification(BOOTLOADER, "ardupilot", identity=row, reason=why)
    if _PX4_BL_PRODUCT.search(product):
        why = f"product {product!r} starts with 'PX4 BL' (PX4 bootloader)"
        return Classification(BOOTLOADER, "px4", identity=row, reason=why)
    if row is not None and _SOME_BL.search(product):
        why = f"product {product!r} names a bootloader"
        return Classification(BOOTLOADER, family, identity=row, reason=why)
    if row is None:
        return Classification(UNKNOWN, family, reason=f"{port.usb_id} is not in the table")
    role = None
    number = port.interface_number
    if family == "ardupilot" and number is not None:
        role = {0: MAVLINK_PORT, 2: SECOND_PORT}.get(number)
    return Classification(APP, family, role, row, row.what + said)


# ------------------------------------------------------------------ finding again


def serial_identifies(serial: str | None, ports: Iterable[UsbPortDescription]) -> bool:
    """True when `serial` tells one board apart: not a known constant and not seen at two
    different USB locations among `ports` (two ttys of one board share one location)."""
    if serial is None or serial.strip() in USELESS_SERIALS:
        return False
    paths = {p.usb_path for p in ports if p.serial_number == serial}
    return len(paths) <= 1


def _first_port(candidates: list[UsbPortDescription]) -> UsbPortDescription:
    """The port to talk to: not a second CDC port, lowest interface, then device name."""

    def key(port: UsbPortDescription) -> tuple:
        second = classify(port).role == SECOND_PORT
        number = port.interface_number
        return (second, number if number is not None else -1, port.device or "")

    return min(candidates, key=key)


def find_again(
    previous: UsbPortDescription, now_ports: Iterable[UsbPortDescription]
) -> UsbPortDescription | None:
    """The port in `now_ports` that is the board `previous` described, or None.

    By serial number when it identifies the board (ArduPilot keeps its chip-UID serial
    across the reboot into its bootloader); otherwise by USB location, as PX4's
    bootloader answers serial "0" (PX4-Bootloader stm32/cdcacm.c). A board whose good
    serial is not back is looked for at its location too, but only among ports whose
    own serial identifies nothing, so another board plugged in there is not taken for it.
    A flight controller is never matched to a USB-UART adapter, nor the other way round.
    Of a board's several ttys the first one (MAVLink on ArduPilot) is returned.
    """
    ports = list(now_ports)
    serial = previous.serial_number
    good_serial = serial_identifies(serial, ports)
    if good_serial:
        same = [p for p in ports if p.serial_number == serial]
        if same:
            return _first_port(same)
    path = previous.usb_path
    if path is None:
        return None
    adapter = classify(previous).state == USB_UART
    same_place = [
        p
        for p in ports
        if p.usb_path == path
        and (classify(p).state == USB_UART) == adapter
        and not (good_serial and serial_identifies(p.serial_number, ports))
    ]
    return _first_port(same_place) if same_place else None


# ------------------------------------------------------------------ pyusb listing


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
    product: str | None = None
    location: str | None = None  # "1-1.4", as pyserial's location without the interface
    state: str = UNKNOWN
    family: str | None = None

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"


def identify(vid: int, pid: int) -> tuple[str, str] | None:
    """(kind, description) of a flight controller or bootloader VID:PID, else None.

    kind is "dfu" for the STM32 ROM DFU device and "serial" for a CDC-ACM port (an
    application or a serial bootloader: the two share VID:PID on most boards). USB-UART
    adapters are not flight controllers and give None.
    """
    row = lookup(vid, pid)
    if row is None or row.state in (USB_UART, UNKNOWN):
        return None
    return ("dfu" if row.state == DFU else "serial", row.what)


def _string(dev: Any, name: str) -> str | None:
    try:
        return getattr(dev, name)
    except (usb.core.USBError, ValueError, NotImplementedError, OSError):
        return None


def _location(dev: Any) -> str | None:
    with contextlib.suppress(usb.core.USBError, NotImplementedError, AttributeError):
        ports = dev.port_numbers
        if ports:
            return f"{dev.bus}-{'.'.join(str(p) for p in ports)}"
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
        port = UsbPortDescription(
            device=None,
            vid=dev.idVendor,
            pid=dev.idProduct,
            manufacturer=_string(dev, "manufacturer"),
            product=_string(dev, "product"),
            serial_number=_string(dev, "serial_number"),
            location=_location(dev),
        )
        verdict = classify(port)
        found.append(
            UsbBoard(
                vid=dev.idVendor,
                pid=dev.idProduct,
                usb_serial=port.serial_number,
                kind=kind,
                description=description,
                source=source,
                bus=dev.bus,
                address=dev.address,
                product=port.product,
                location=port.location,
                state=verdict.state,
                family=verdict.family,
            )
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
    *,
    real: bool = True,
    backend: Any = None,
    virtual_backend: Any = None,
) -> list[UsbBoard]:
    """Flight controllers and bootloaders on real USB (`backend`, default libusb), then
    the devices of `virtual_backend` when one is given (the virtual rig's DFU devices:
    hil.boards.virtual_usb.VirtualBackend)."""
    found: list[UsbBoard] = []
    if real:
        chosen = backend if backend is not None else real_backend()
        if chosen is not None:
            found.extend(_boards(chosen, "usb"))
    if virtual_backend is not None:
        found.extend(_boards(virtual_backend, "virtual"))
    return found

"""Receivers wired to a board's UARTs: the `[[board.receiver]]` tables of a rig file.

A bench feeds a flight controller's GPS and RC ports from the harness's receiver
emulators through USB-UART adapters. Each receiver says its role (gps or rc), its wire
protocol, where the harness opens it (a device path, or the USB serial number of an
adapter) and how the wire is framed. Framing defaults come from the protocol
(PROTOCOLS.md sections 6, 7 and 14): CRSF 420000 8N1, SBUS 100000 8E2 inverted,
UBX and NMEA 115200 8N1. What cannot work is refused when the rig is loaded.

Inversion is the one setting the host cannot make: a USB-UART adapter sends idle-high
(upright) UART. It is recorded here, with where the inversion happens (`inverter`), and
checked: SBUS is inverted on the wire, so an adapter needs a hardware inverter, an
adapter programmed to invert its TX, or an FC that inverts in its UART (F7/H7; an F4
cannot) told to expect upright SBUS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hil.errors import ConfigError, PortNotFound
from hil.names import SAFE_NAME, SAFE_NAME_RULE

ROLES = ("gps", "rc")
PROTOCOLS: Mapping[str, tuple[str, ...]] = {"gps": ("ubx", "nmea"), "rc": ("crsf", "sbus")}
PARITIES = ("N", "E", "O")
STOP_BITS = (1, 2)
#: Where an inverted signal is made: nowhere, by a hardware inverter between the adapter
#: and the FC (or an FC pad wired through one), or by the adapter itself (an FT232R whose
#: EEPROM inverts TXD). The host cannot invert a UART.
INVERTERS = ("none", "external", "adapter")
#: A virtual board's receiver UART is its own pty, announced in the registry.
VIRTUAL_DEVICE = "virtual"

#: u-blox UART rates (u-blox 8 / M8 receiver description, CFG-PRT baudRate); ArduPilot
#: moves a u-blox to 230400 (PROTOCOLS.md section 14).
_GNSS_BAUDS = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


@dataclass(frozen=True)
class Framing:
    """What a protocol runs at on the wire, and the rates it can run at."""

    baud: int
    parity: str
    stop_bits: int
    inverted: bool
    bauds: tuple[int, ...]
    source: str


#: Per protocol (PROTOCOLS.md section 7 for CRSF and SBUS, sections 6 and 14 for GPS).
FRAMING: Mapping[str, Framing] = {
    "crsf": Framing(420000, "N", 1, False, (416666, 420000),
                    "CRSF runs 420000 8N1, 416666 in the official spec (PROTOCOLS.md section 7)"),
    "sbus": Framing(100000, "E", 2, True, (100000,),
                    "SBUS runs 100000 8E2 inverted (PROTOCOLS.md section 7)"),
    "ubx": Framing(115200, "N", 1, False, _GNSS_BAUDS,
                   "a u-blox UART runs 8N1 at a CFG-PRT rate (PROTOCOLS.md sections 6, 14)"),
    "nmea": Framing(115200, "N", 1, False, _GNSS_BAUDS,
                    "an NMEA GPS UART runs 8N1 at a CFG-PRT rate (PROTOCOLS.md sections 6, 14)"),
}  # fmt: skip

_FC_PORT = re.compile(r"[A-Za-z]{2,8}[0-9]{1,2}")
_URL = re.compile(r"(socket|rfc2217)://[A-Za-z0-9.\-]+:[0-9]{1,5}(\?[A-Za-z0-9_=&.]*)?")
_KEYS = (
    "role", "protocol", "device", "usb_serial", "baud", "parity", "stop_bits", "inverted", "inverter", "fc_port",
)
#: pyserial URL schemes a receiver `device` may be (a network serial server, or a SITL's
#: TCP UART standing in for a board); the host's framing settings do not reach the far end.
URL_SCHEMES = ("socket://", "rfc2217://")


@dataclass(frozen=True)
class Receiver:
    """One receiver UART of a board: what the harness sends there and how it is framed.

    `device` is a path (/dev/ttyUSB0), VIRTUAL_DEVICE for a virtual board's own pty, or
    "" when the adapter is found by `usb_serial`.
    """

    role: str
    protocol: str
    device: str = ""
    usb_serial: str = ""
    baud: int = 115200
    parity: str = "N"
    stop_bits: int = 1
    inverted: bool = False
    inverter: str = "none"
    #: The flight controller's port it is wired to ("UART2", "SERIAL4"); "" if unsaid.
    fc_port: str = ""

    @property
    def virtual(self) -> bool:
        return self.device == VIRTUAL_DEVICE

    @property
    def where(self) -> str:
        """Where it is wired, in words."""
        if self.virtual:
            return "the virtual board's pty"
        return self.device or f"USB-UART adapter with serial {self.usb_serial!r}"

    @property
    def framing(self) -> str:
        """E.g. "100000 8E2 inverted (external inverter)"."""
        text = f"{self.baud} 8{self.parity}{self.stop_bits}"
        if self.inverted:
            text += " inverted" + (f" ({self.inverter} inverter)" if self.inverter != "none" else "")
        return text


def virtual_receiver(role: str, protocol: str) -> Receiver:
    """The receiver a virtual board's `gps = "uart:ubx"` / `rc = "uart:crsf"` key means."""
    f = FRAMING[protocol]
    return Receiver(role, protocol, VIRTUAL_DEVICE, "", f.baud, f.parity, f.stop_bits, f.inverted)


def parse_receivers(where: str, tables: Any, *, virtual: bool) -> tuple[Receiver, ...]:
    """The `[[board.receiver]]` tables of one board; ConfigError names the table and key.

    `virtual`: the board is a virtual one, whose receiver UARTs are its own ptys (a table
    then names no device); a real board's tables name a device or an adapter's serial.
    """
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: receiver must be an array of tables ([[board.receiver]])")
    out = [_parse_one(f"{where}: [[board.receiver]][{i}]", t, virtual=virtual) for i, t in enumerate(tables)]
    roles = [r.role for r in out]
    for role in ROLES:
        if roles.count(role) > 1:
            raise ConfigError(f"{where}: {roles.count(role)} receivers have role {role!r}; a board takes one per role")
    return tuple(out)


def _parse_one(where: str, table: Any, *, virtual: bool) -> Receiver:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table with role, protocol and device or usb_serial")
    unknown = sorted(str(k) for k in set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {', '.join(_KEYS)}")
    role = table.get("role")
    if role not in ROLES:
        raise ConfigError(f"{where}.role = {_show(role)}: must be one of: {', '.join(ROLES)}")
    protocol = table.get("protocol")
    if protocol not in PROTOCOLS[role]:
        raise ConfigError(f"{where}.protocol = {_show(protocol)}: for role {role} one of: {', '.join(PROTOCOLS[role])}")
    f = FRAMING[protocol]
    device, usb_serial = _wiring(where, table, virtual=virtual)
    baud = table.get("baud", f.baud)
    if isinstance(baud, bool) or not isinstance(baud, int) or baud not in f.bauds:
        rates = ", ".join(str(b) for b in f.bauds)
        raise ConfigError(f"{where}.baud = {_show(baud)}: {protocol.upper()} cannot run at it; one of: {rates} ({f.source})")
    parity = table.get("parity", f.parity)
    if parity not in PARITIES:
        raise ConfigError(f"{where}.parity = {_show(parity)}: must be one of: {', '.join(PARITIES)}")
    stop_bits = table.get("stop_bits", f.stop_bits)
    if isinstance(stop_bits, bool) or not isinstance(stop_bits, int) or stop_bits not in STOP_BITS:
        raise ConfigError(f"{where}.stop_bits = {_show(stop_bits)}: must be 1 or 2")
    if (parity, stop_bits) != (f.parity, f.stop_bits):
        raise ConfigError(
            f"{where}: 8{parity}{stop_bits} framing: the FC reads {protocol.upper()} as 8{f.parity}{f.stop_bits} "
            f"and drops every other frame ({f.source}); leave parity and stop_bits out"
        )
    inverted = table.get("inverted", f.inverted)
    if not isinstance(inverted, bool):
        raise ConfigError(f"{where}.inverted = {_show(inverted)}: must be true or false (a TOML boolean)")
    inverter = table.get("inverter", "none")
    if inverter not in INVERTERS:
        raise ConfigError(f"{where}.inverter = {_show(inverter)}: must be one of: {', '.join(INVERTERS)}")
    _check_inversion(where, protocol, inverted, inverter, virtual=virtual)
    fc_port = table.get("fc_port", "")
    if not isinstance(fc_port, str) or (fc_port and not _FC_PORT.fullmatch(fc_port)):
        raise ConfigError(
            f"{where}.fc_port = {_show(fc_port)}: must name the flight controller's port, e.g. \"UART2\" or \"SERIAL4\""
        )
    return Receiver(role, protocol, device, usb_serial, baud, parity, stop_bits, inverted, inverter, fc_port.upper())


def _wiring(where: str, table: Mapping[str, Any], *, virtual: bool) -> tuple[str, str]:
    device, usb_serial = table.get("device"), table.get("usb_serial")
    if virtual:
        if device is not None or usb_serial is not None:
            raise ConfigError(
                f"{where}: a virtual board's receiver UART is its own pty; leave device and usb_serial out"
            )
        return VIRTUAL_DEVICE, ""
    if (device is None) == (usb_serial is None):
        raise ConfigError(
            f"{where}: give exactly one of device (a path such as \"/dev/ttyUSB0\") or usb_serial "
            "(the USB serial number of a USB-UART adapter; `hil doctor` lists them)"
        )
    if device is not None and not _is_device_path(device):
        raise ConfigError(
            f"{where}.device = {_show(device)}: must be an absolute device path such as \"/dev/ttyUSB0\", "
            "or a network serial URL (socket://host:port, rfc2217://host:port)"
        )
    if usb_serial is not None:
        if not isinstance(usb_serial, str) or SAFE_NAME.fullmatch(usb_serial) is None:
            raise ConfigError(f"{where}.usb_serial = {_show(usb_serial)}: must be a string of {SAFE_NAME_RULE}")
    return str(device or ""), str(usb_serial or "")


def _is_device_path(value: Any) -> bool:
    return (
        isinstance(value, str)
        and (value.startswith("/") or _URL.fullmatch(value) is not None)
        and len(value) < 4096
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)
    )


def _check_inversion(where: str, protocol: str, inverted: bool, inverter: str, *, virtual: bool) -> None:
    name = protocol.upper()
    if inverted and protocol != "sbus":
        raise ConfigError(f"{where}.inverted = true: {name} is never inverted on the wire; leave inverted out")
    if not inverted and inverter != "none":
        raise ConfigError(f"{where}.inverter = {inverter!r} with inverted = false: an upright signal needs no inverter")
    if inverted and inverter == "none" and not virtual:
        raise ConfigError(
            f"{where}: SBUS is inverted on the wire and a USB-UART adapter sends it upright: put a hardware "
            "inverter between adapter TX and the FC's RX and say inverter = \"external\" (an F4 needs one: "
            "its UARTs cannot invert, unless a pad marked SBUS has it built in), or program the adapter to "
            "invert TX (inverter = \"adapter\"), or on an F7/H7 send it upright (inverted = false) and set "
            "Betaflight serialrx_inverted = ON"
        )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------- finding them


def find_adapter(receiver: Receiver, ports: Iterable[Any] | None = None) -> str:
    """The device of the USB-UART adapter a receiver names by `usb_serial`.

    `ports` are `hil.usb.discovery.UsbPortDescription`s (default: the host's,
    `hil.links.ports.usb_ports()`). Raises PortNotFound when no port carries the serial,
    or when the port that does is not a USB-UART adapter (a flight controller's own port
    cannot carry a receiver's frames to its UART).
    """
    from hil.links.ports import usb_ports
    from hil.usb import discovery

    listed = list(ports) if ports is not None else usb_ports()
    matches = [p for p in listed if p.serial_number == receiver.usb_serial]
    if not matches:
        seen = ", ".join(f"{p.serial_number or '?'}@{p.device}" for p in listed) or "none"
        raise PortNotFound(
            f"no USB-UART adapter with serial {receiver.usb_serial!r} for the {receiver.role} receiver; "
            f"ports seen: {seen}. Is the adapter plugged in?"
        )
    port = matches[0]
    verdict = discovery.classify(port)
    if verdict.state != discovery.USB_UART:
        raise PortNotFound(
            f"the port with serial {receiver.usb_serial!r} ({port.device}, {port.usb_id}) is {verdict.state} "
            f"({verdict.reason}), not a USB-UART adapter; the {receiver.role} receiver needs an adapter "
            "(CP210x, FTDI, CH340, PL2303) wired to the FC's UART"
        )
    return str(port.device)


def receiver_device(receiver: Receiver, ports: Iterable[Any] | None = None) -> str:
    """Where the harness opens a real receiver now: its path, or its adapter's device."""
    if receiver.device:
        return receiver.device
    return find_adapter(receiver, ports)


__all__ = [
    "FRAMING",
    "INVERTERS",
    "PROTOCOLS",
    "ROLES",
    "Framing",
    "Receiver",
    "find_adapter",
    "parse_receivers",
    "receiver_device",
    "virtual_receiver",
]

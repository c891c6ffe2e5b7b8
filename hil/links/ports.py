"""Find a board's port, as boards re-enumerate after every reboot.

Real ports are classified (`hil.usb.discovery.classify`): a board's port says whether
its application, its bootloader or a USB-UART adapter answers there. Virtual boards say
their state in the registry. A board is found by USB serial number (`find_port`), or,
after a reboot that changed or blanked its serial number (PX4's bootloader says "0"),
from its port as last seen (`find_port_again`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from serial.tools import list_ports

from hil.errors import PortNotFound
from hil.links import registry
from hil.usb import discovery
from hil.usb.discovery import UsbPortDescription


@dataclass(frozen=True)
class PortInfo:
    """One port a board is reachable on.

    `state` is "app", "bootloader" or "dfu" for a flight controller (virtual boards also
    report their other lifecycle states), "usb-uart" for an adapter, "unknown" for a
    real port the identity table does not know. `usb` is the host's description of a
    real port (None for virtual ones), kept so the board can be found again by location.
    """

    device: str
    usb_serial: str
    vid: int | None
    pid: int | None
    description: str
    source: str  # "usb" for real ports, "virtual" for the virtual rig's registry
    state: str = "app"
    family: str | None = None
    role: str | None = None
    usb: UsbPortDescription | None = None


def usb_ports() -> list[UsbPortDescription]:
    """Every real USB serial port the host lists, with or without a serial number."""
    return [
        UsbPortDescription.from_list_port_info(info)
        for info in list_ports.comports()
        if info.vid is not None
    ]


def _real(port: UsbPortDescription, description: str = "") -> PortInfo:
    verdict = discovery.classify(port)
    return PortInfo(
        device=port.device or "",
        usb_serial=port.serial_number or "",
        vid=port.vid,
        pid=port.pid,
        description=description or port.product or "",
        source="usb",
        state=verdict.state,
        family=verdict.family,
        role=verdict.role,
        usb=port,
    )


def _virtual(registry_dir: Path | str | None) -> list[PortInfo]:
    directory = registry_dir if registry_dir is not None else registry.default_registry_dir()
    found = []
    for entry in registry.read_entries(directory):
        try:
            found.append(
                PortInfo(
                    device=str(entry["port"]),
                    usb_serial=str(entry["usb_serial"]),
                    vid=entry.get("usb_vid"),
                    pid=entry.get("usb_pid"),
                    description=f"virtual board {entry.get('board_id', '?')}",
                    source="virtual",
                    state=str(entry.get("state", "app")),
                )
            )
        except KeyError:
            continue
    return found


def list_all(registry_dir: Path | str | None = None) -> list[PortInfo]:
    """Every port with a USB serial number: real ones first, then virtual boards."""
    found = [
        _real(UsbPortDescription.from_list_port_info(info), info.description or "")
        for info in list_ports.comports()
        if info.serial_number
    ]
    return found + _virtual(registry_dir)


def _state_matches(port: PortInfo, state: str | None) -> bool:
    """A real port the table does not know counts as an application port, as every
    real port did before ports were classified, so boards with their own VID:PID work."""
    if state is None or port.state == state:
        return True
    return state == discovery.APP and port.source == "usb" and port.state == discovery.UNKNOWN


def find_port(
    usb_serial: str,
    registry_dir: Path | str | None = None,
    *,
    timeout: float = 0.0,
    state: str | None = None,
    poll: float = 0.05,
) -> PortInfo:
    """The port carrying `usb_serial` (in `state`, when given), waiting up to `timeout` s.

    Raises PortNotFound listing what was seen instead.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        ports = list_all(registry_dir)
        matches = [p for p in ports if p.usb_serial == usb_serial and _state_matches(p, state)]
        if matches:
            # An ArduPilot dual-CDC board shows its serial on two ttys: MAVLink first.
            return min(matches, key=lambda p: p.role == discovery.SECOND_PORT)
        if time.monotonic() >= deadline:
            seen = ", ".join(f"{p.usb_serial}@{p.device}({p.state})" for p in ports) or "none"
            wanted = f" in state {state!r}" if state else ""
            raise PortNotFound(
                f"no port with USB serial {usb_serial!r}{wanted} after {timeout:.1f} s; "
                f"ports seen: {seen}. Is the board plugged in and powered?"
            )
        time.sleep(poll)


def find_port_again(
    previous: PortInfo,
    registry_dir: Path | str | None = None,
    *,
    timeout: float = 0.0,
    state: str | None = None,
    poll: float = 0.05,
) -> PortInfo:
    """The port of the board last seen on `previous`, after a reboot, waiting up to
    `timeout` s: by serial number where it identifies the board, else by USB location
    (`hil.usb.discovery.find_again`). Virtual boards keep their serial: `find_port`.

    Raises PortNotFound saying what was looked for and what was seen.
    """
    if previous.usb is None:
        return find_port(previous.usb_serial, registry_dir, timeout=timeout, state=state, poll=poll)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        now = usb_ports()
        match = discovery.find_again(previous.usb, now)
        if match is not None:
            port = _real(match)
            if _state_matches(port, state):
                return port
        if time.monotonic() >= deadline:
            seen = ", ".join(f"{p} ({discovery.classify(p).state})" for p in now) or "none"
            wanted = f" in state {state!r}" if state else ""
            raise PortNotFound(
                f"board last seen on {previous.usb} not back{wanted} after {timeout:.1f} s "
                f"(looked for serial {previous.usb.serial_number!r}, else USB location "
                f"{previous.usb.usb_path!r}); ports seen: {seen}. Is it still plugged in "
                "to the same hub port?"
            )
        time.sleep(poll)

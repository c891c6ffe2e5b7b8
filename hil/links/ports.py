"""Find a board's port by USB serial number, as boards re-enumerate after every reboot."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from serial.tools import list_ports

from hil.errors import PortNotFound
from hil.links import registry


@dataclass(frozen=True)
class PortInfo:
    """One port a board is reachable on."""

    device: str
    usb_serial: str
    vid: int | None
    pid: int | None
    description: str
    source: str  # "usb" for real ports, "virtual" for the virtual rig's registry
    state: str = "app"


def list_all(registry_dir: Path | str | None = None) -> list[PortInfo]:
    """Every port with a USB serial number: real ones first, then virtual boards."""
    found: list[PortInfo] = []
    for info in list_ports.comports():
        if info.serial_number:
            found.append(
                PortInfo(
                    device=info.device,
                    usb_serial=info.serial_number,
                    vid=info.vid,
                    pid=info.pid,
                    description=info.description or "",
                    source="usb",
                )
            )
    directory = registry_dir if registry_dir is not None else registry.default_registry_dir()
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
        for port in ports:
            if port.usb_serial == usb_serial and (state is None or port.state == state):
                return port
        if time.monotonic() >= deadline:
            seen = ", ".join(f"{p.usb_serial}@{p.device}({p.state})" for p in ports) or "none"
            wanted = f" in state {state!r}" if state else ""
            raise PortNotFound(
                f"no port with USB serial {usb_serial!r}{wanted} after {timeout:.1f} s; "
                f"ports seen: {seen}. Is the board plugged in and powered?"
            )
        time.sleep(poll)

"""Lockstep sequencing of a board's receiver UARTs against its sensor samples.

In lockstep the harness writes a step's GPS and RC bytes to the board's UARTs and then
the step's HIL_SENSOR to its MAVLink port. Each port is a separate pty, and the kernel
hands bytes over asynchronously, so without help the board may see a UART's bytes a
step late, or (with the pipelined loop, which writes step N+1 while the board computes
step N) a step early. A flight then depends on the host's scheduling.

The fix ties every UART byte to a position in the one ordered stream the board reads
its samples from. Before a step's HIL_SENSOR the harness sends one marker per UART it
wrote to in that step: a NAMED_VALUE_INT whose name is the UART's marker name and
whose value is the number of bytes it wrote there since the previous marker. Before the
board runs a step, it feeds its UART drivers exactly the bytes the markers announced so
far, waiting (bounded) for any still on their way, and holds back any that belong to a
later step. Marker names are ``HILU_`` plus the UART's name (``HILU_GPS``, ``HILU_RC``).

This module is pure: it packs and recognises markers; the loop and the board do the I/O.
"""

from __future__ import annotations

from typing import Any

from hil.mavlink.dialect import mavlink
from hil.mavlink.framing import HotCodec

#: NAMED_VALUE_INT on the fast path: a marker goes out with a third of the steps (CRSF).
NAMED_VALUE_INT = HotCodec(mavlink.MAVLink_named_value_int_message)
PREFIX = "HILU_"
#: UART names that fit the 10-character name field behind the prefix.
MAX_NAME = 10 - len(PREFIX)
MAX_COUNT = 0x7FFFFFFF


class MarkerError(ValueError):
    """A marker that cannot be built (bad UART name or byte count)."""


def marker_name(uart: str) -> bytes:
    """The NAMED_VALUE_INT name of `uart`'s markers (`gps` -> b"HILU_GPS")."""
    if not uart or len(uart) > MAX_NAME or not uart.isascii() or not uart.isalnum():
        raise MarkerError(f"UART name {uart!r}: 1 to {MAX_NAME} ASCII letters or digits")
    return (PREFIX + uart.upper()).encode("ascii")


def pack_marker(seq: int, system: int, component: int, t_us: int, uart: str, count: int) -> bytes:
    """One marker frame: `count` bytes were written to `uart` since its previous marker."""
    if not 0 < count <= MAX_COUNT:
        raise MarkerError(f"marker byte count {count} is not in 1..{MAX_COUNT}")
    name = marker_name(uart)
    return NAMED_VALUE_INT.pack(seq, system, component, (t_us // 1000) & 0xFFFFFFFF, count, name)


def parse_marker(msg: Any) -> tuple[str, int] | None:
    """(uart, count) when `msg` is a marker, else None (any other NAMED_VALUE_INT too)."""
    if msg.get_type() != "NAMED_VALUE_INT":
        return None
    name = msg.name
    if isinstance(name, bytes | bytearray):
        name = bytes(name).rstrip(b"\x00").decode("ascii", errors="replace")
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        return None
    count = int(msg.value)
    if count <= 0:
        return None
    return name[len(PREFIX):].lower(), count

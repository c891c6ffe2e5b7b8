"""USB control transfers over a Unix socket: how the virtual board's DFU device is reached.

A virtual board in DFU has no USB bus to sit on; its device (hil.vfc.dfu_device) listens
on a Unix socket instead, and the harness's pyusb backend (hil.boards.virtual_usb)
carries control transfers to it. Both ends speak this, one request, one response, any
number per connection::

    frame    = u32 LE length, then `length` bytes
    request  = setup packet (8 bytes: u8 bmRequestType, u8 bRequest, u16 LE wValue,
               u16 LE wIndex, u16 LE wLength), then for OUT requests the data stage
               (exactly wLength bytes; nothing for IN requests)
    response = u8 handshake (0 ACK, 1 STALL), then for an ACKed IN request the data
               stage (at most wLength bytes)

A device that "drops off the bus" closes its connections.
"""

from __future__ import annotations

import socket
import struct

SETUP = struct.Struct("<BBHHH")
FRAME_HEADER = struct.Struct("<I")
HANDSHAKE_ACK = 0
HANDSHAKE_STALL = 1
MAX_FRAME = SETUP.size + 0xFFFF


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """`n` bytes from `sock`, or None when the peer closed first."""
    parts: list[bytes] = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def recv_frame(sock: socket.socket) -> bytes | None:
    """One length-prefixed frame, or None at end of stream; garbage raises ValueError."""
    head = recv_exact(sock, FRAME_HEADER.size)
    if head is None:
        return None
    (length,) = FRAME_HEADER.unpack(head)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is larger than any control transfer")
    return recv_exact(sock, length) if length else b""


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(FRAME_HEADER.pack(len(payload)) + payload)


__all__ = [
    "FRAME_HEADER",
    "HANDSHAKE_ACK",
    "HANDSHAKE_STALL",
    "MAX_FRAME",
    "SETUP",
    "recv_exact",
    "recv_frame",
    "send_frame",
]

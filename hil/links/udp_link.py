"""A UDP link with the SerialLink interface, for SITLs and companion links that speak UDP.

`udpin:HOST:PORT` binds and answers whoever sent the last datagram (what a ground
station does on 14550); `udpout:HOST:PORT` sends to that address from an ephemeral port
(what a ground station does to reach PX4 SITL on 14580). Each datagram is stamped with
`time.monotonic_ns()` on arrival.
"""

from __future__ import annotations

import select
import socket
import time

from hil.errors import LinkError
from hil.links.serial_link import Chunk, SerialLink


def _address(url: str, scheme: str) -> tuple[str, int]:
    rest = url[len(scheme) :]
    host, _, port = rest.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise LinkError(f"{url!r}: expected {scheme}HOST:PORT, e.g. {scheme}127.0.0.1:14550") from None


class UdpLink:
    """One UDP endpoint; `read()` returns one datagram as a stamped chunk."""

    def __init__(self, url: str, *, raw_log=None) -> None:
        self.url = url
        self.raw_log = raw_log
        self.bytes_in = 0
        self.bytes_out = 0
        self._sock: socket.socket | None = None
        self._peer: tuple[str, int] | None = None
        if url.startswith("udpin:"):
            self._bind = _address(url, "udpin:")
        elif url.startswith("udpout:"):
            self._bind = None
            self._peer = _address(url, "udpout:")
        else:
            raise LinkError(f"{url!r} is not a UDP URL (udpin:HOST:PORT or udpout:HOST:PORT)")

    def open(self) -> UdpLink:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self._bind is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(self._bind)
            else:
                sock.bind(("127.0.0.1" if self._peer and self._peer[0].startswith("127.") else "", 0))
        except OSError as exc:
            sock.close()
            raise LinkError(f"cannot open {self.url}: {exc}") from exc
        sock.setblocking(False)
        self._sock = sock
        return self

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    @property
    def local_address(self) -> tuple[str, int]:
        if self._sock is None:
            raise LinkError(f"{self.url} is not open")
        return self._sock.getsockname()

    def read(self, timeout: float) -> Chunk | None:
        sock = self._sock
        if sock is None:
            raise LinkError(f"{self.url} is not open")
        try:
            if not select.select((sock,), (), (), max(0.0, timeout))[0]:
                return None
            data, peer = sock.recvfrom(65535)
        except OSError as exc:
            raise LinkError(f"read from {self.url} failed: {exc}") from exc
        t_ns = time.monotonic_ns()
        if self._bind is not None:
            self._peer = peer  # answer whoever spoke last
        self.bytes_in += len(data)
        if self.raw_log is not None:
            self.raw_log.record(t_ns, "rx", data)
        return Chunk(t_ns, data)

    def write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise LinkError(f"{self.url} is not open")
        if self._peer is None:
            return  # udpin: nobody has spoken yet, so there is nobody to answer
        try:
            sock.sendto(data, self._peer)
        except OSError as exc:
            raise LinkError(f"write to {self.url} ({self._peer[0]}:{self._peer[1]}) failed: {exc}") from exc
        self.bytes_out += len(data)
        if self.raw_log is not None:
            self.raw_log.record(time.monotonic_ns(), "tx", data)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> UdpLink:
        return self.open() if not self.is_open else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"UdpLink({self.url!r})"


def open_link(url: str, baudrate: int = 115200, *, parity: str = "N", stop_bits: int = 1):
    """Open the link a URL names: UDP (`udpin:`/`udpout:`), else any pyserial URL, framed
    8 data bits, `parity` ("N", "E", "O") and `stop_bits` (ignored by UDP, sockets, USB CDC)."""
    if url.startswith(("udpin:", "udpout:")):
        return UdpLink(url).open()
    return SerialLink(url, baudrate, parity=parity, stop_bits=stop_bits).open()

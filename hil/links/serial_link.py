"""A serial link over any pyserial URL that stamps every received chunk on arrival.

`/dev/ttyACM0`, a pty path and `socket://127.0.0.1:5760` all open the same way.
Reads and writes are bounded: nothing here can block forever.
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import NamedTuple

import serial
import serial.rfc2217

from hil.errors import LinkError


class Chunk(NamedTuple):
    """Bytes as they arrived, with the host's monotonic clock (ns) at arrival.

    A named tuple rather than a frozen dataclass: one is made per read, and a tuple costs
    a fraction of a dataclass's `object.__setattr__` construction.
    """

    t_ns: int
    data: bytes


class SerialLink:
    """One open port. `read()` returns a stamped chunk or None when nothing came in time.

    `raw_log` is a tap, None by default: an object with ``record(t_ns, direction, data)``
    (`hil.report.rawlog.RawLog`) called with every chunk read ("rx", stamped as the chunk
    returned by `read()`) and written ("tx", stamped after the write). It may be set and
    cleared while the link is in use; unset, it costs one attribute test per chunk.
    """

    def __init__(
        self,
        url: str,
        baudrate: int = 115200,
        *,
        parity: str = "N",
        stop_bits: int = 1,
        write_timeout: float = 1.0,
        max_chunk: int = 65536,
        raw_log=None,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.parity = parity  # "N", "E" or "O" (pyserial's PARITY_* letters); 8 data bits
        self.stop_bits = stop_bits
        self.write_timeout = write_timeout
        self.max_chunk = max_chunk
        self.raw_log = raw_log
        self._port: serial.SerialBase | None = None
        self._os_fd: int | None = None  # the port's descriptor when it has one (see _fd)
        self._poller = select.poll()  # waits on _os_fd; cheaper per wait than select()
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def network(self) -> bool:
        """True for an RFC 2217 port (a labgrid exporter's ser2net): pyserial's own thread
        reads its socket, so there is no descriptor for us to read."""
        return self.url.startswith("rfc2217://")

    def open(self) -> SerialLink:
        url = self.url
        write_timeout: float | None = self.write_timeout
        read_timeout: float | None = 0
        if self.network:
            # pyserial's RFC 2217 client refuses write_timeout (NotImplementedError); its
            # socket's own 5 s timeout bounds a write instead (rfc2217.py, open()).
            write_timeout = None
            # Its reader thread queues the bytes one by one, and a read with timeout 0
            # returns after the first: one byte per read. With no timeout, a read of what
            # `in_waiting` counts returns all of it at once (see read()).
            read_timeout = None
            url = rfc2217_url(url)
        try:
            if self.network:
                port = _Rfc2217Port(None, baudrate=self.baudrate, parity=self.parity, stopbits=self.stop_bits,
                                    timeout=None, write_timeout=None)
                port.port = url
                port.open()
                self._port = port
                self._os_fd = None
                return self
            port = serial.serial_for_url(
                url,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stop_bits,
                timeout=read_timeout,
                write_timeout=write_timeout,
                do_not_open=True,
            )
            if hasattr(port, "exclusive") and self.url.startswith("/"):
                port.exclusive = True
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url}: {exc}") from exc
        self._port = port
        self._os_fd = fd = self._fd(port)
        self._poller = select.poll()
        if fd is not None:
            self._poller.register(fd, select.POLLIN)
        return self

    def set_baudrate(self, baudrate: int) -> None:
        """Move the line to another rate, as a GPS receiver does when the flight controller
        tells it to (a pty or a network port takes the setting and ignores it)."""
        self.baudrate = baudrate
        port = self._port
        if port is None:
            return  # taken at the next open
        try:
            port.baudrate = baudrate
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"{self.url}: cannot set {baudrate} baud: {exc}") from exc

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    def fileno(self) -> int | None:
        """The OS handle for select(), when the port has one (ttys do, sockets do)."""
        port = self._port
        if port is None:
            return None
        try:
            return port.fileno()  # a tty's, or a socket:// port's socket (pyserial >= 3.5)
        except Exception:  # closed, or a port with no handle of its own (loop://, rfc2217://)
            return None


    def read(self, timeout: float) -> Chunk | None:
        """Wait up to `timeout` s for bytes; return what is there at once when they come."""
        port = self._port
        if port is None or not port.is_open:
            raise LinkError(f"{self.url} is not open")
        fd = self._os_fd
        if fd is not None:
            # The tty path, inline: one select and one read per chunk, nothing in between.
            try:
                if timeout >= _POLL_MIN_S:
                    try:
                        ready = self._poller.poll(timeout * 1000.0)
                    except RuntimeError:  # another thread is polling this link (a misuse)
                        ready = _select((fd,), (), (), timeout)[0]
                else:
                    ready = _select((fd,), (), (), timeout if timeout > 0.0 else 0.0)[0]
                if not ready:
                    return None
                data = _os_read(fd, self.max_chunk)
            except OSError as exc:
                raise LinkError(
                    f"read from {self.url} failed: {exc} (did the board go away?)"
                ) from exc
            if not data:
                raise LinkError(
                    f"read from {self.url} failed: the port closed (did the board go away?)"
                )
            t_ns = _monotonic_ns()
            self.bytes_in += len(data)
            if self.raw_log is not None:
                self.raw_log.record(t_ns, "rx", data)
            return Chunk(t_ns, data)
        deadline = time.monotonic() + max(0.0, timeout)
        network = self.network
        sock_fd = None if network else self.fileno()
        nap = 0.0002
        try:
            while True:
                if network:
                    # What the reader thread has queued, all of it (never blocks: the
                    # port has no read timeout, and only queued bytes are asked for).
                    waiting = port.in_waiting
                    data = port.read(min(waiting, self.max_chunk)) if waiting else b""
                else:
                    # With timeout 0 pyserial returns what is there now (ttys and sockets).
                    data = port.read(self.max_chunk)
                if data:
                    return self._stamp(data)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if sock_fd is not None:
                    _wait_readable(sock_fd, remaining)
                else:
                    # Nothing to wait on: short naps, longer while the line stays quiet
                    # (0.2 ms, doubling to 1 ms: well under a network round trip).
                    time.sleep(min(remaining, nap))
                    nap = min(nap * 2.0, 0.001)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(
                f"read from {self.url} failed: {exc}" + (" (did the exporter drop the connection?)" if self.network else "")
            ) from exc

    def _fd(self, port: serial.SerialBase) -> int | None:
        """The OS descriptor behind a tty or socket:// port (read(2)/write(2) work on both);
        None for a network port whose socket pyserial's reader thread owns."""
        if self.network:
            return None
        fd = getattr(port, "fd", None)
        if isinstance(fd, int):
            return fd
        try:
            return port.fileno()  # a socket:// port's socket (pyserial >= 3.5)
        except Exception:  # loop://, rfc2217:// (its own thread reads the socket): none
            return None

    def _stamp(self, data: bytes) -> Chunk:
        t_ns = time.monotonic_ns()
        self.bytes_in += len(data)
        if self.raw_log is not None:
            self.raw_log.record(t_ns, "rx", data)
        return Chunk(t_ns, data)

    def write(self, data: bytes) -> None:
        """Write all of `data` within the link's write timeout."""
        port = self._port
        if port is None or not port.is_open:
            raise LinkError(f"{self.url} is not open")
        fd = self._os_fd
        if fd is not None:
            try:
                sent = _os_write(fd, data)  # a pty or socket takes a step's bytes at once
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise LinkError(f"write to {self.url} failed: {exc} (did the board go away?)") from exc
            if sent != len(data):
                self._write_fd(fd, memoryview(data)[sent:], len(data))
        else:
            self._write_port(port, data)
        self.bytes_out += len(data)
        if self.raw_log is not None:
            self.raw_log.record(time.monotonic_ns(), "tx", data)

    def _write_fd(self, fd: int, view: memoryview, total: int) -> None:
        """Write the rest of a write that did not go out at once."""
        deadline = None
        try:
            while view:
                try:
                    sent = os.write(fd, view)
                except BlockingIOError:
                    sent = 0
                view = view[sent:]
                if view:
                    if deadline is None:
                        deadline = time.monotonic() + self.write_timeout
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise LinkError(
                            f"write to {self.url} timed out after {self.write_timeout} s "
                            f"({len(view)} of {total} bytes left): is the other side reading?"
                        )
                    select.select((), (fd,), (), remaining)
        except OSError as exc:
            raise LinkError(f"write to {self.url} failed: {exc} (did the board go away?)") from exc

    def _write_port(self, port: serial.SerialBase, data: bytes) -> None:
        try:
            written = port.write(data)
        except serial.SerialTimeoutException as exc:
            raise LinkError(
                f"write to {self.url} timed out after {self.write_timeout} s "
                f"({len(data)} bytes): is the other side reading?"
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"write to {self.url} failed: {exc}") from exc
        if written is not None and written != len(data):
            raise LinkError(f"short write to {self.url}: {written} of {len(data)} bytes")

    def close(self) -> None:
        port, self._port = self._port, None
        self._os_fd = None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass

    def __enter__(self) -> SerialLink:
        return self.open() if not self.is_open else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SerialLink({self.url!r})"


class _QuickAck:
    """A socket whose every receive is acknowledged at once (TCP_QUICKACK, Linux).

    ser2net, which serves labgrid's network serial ports, turns Nagle's algorithm on for
    its connections (it sets TCP_NODELAY to 0: seen with strace, ser2net 4.3). A board
    that answers a lockstep step in two writes then has its second write held until our
    ACK of the first, and Linux delays that ACK: a lockstep virtual board in flight ran
    at 0.13x through a place on loopback, and at 2.6x with ser2net's Nagle off. Quick
    ACKs from our side free the held write at once; Linux clears the mode on its own, so
    it is set again after every receive."""

    def __init__(self, sock) -> None:
        self._sock = sock

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            pass
        return data

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _Rfc2217Port(serial.rfc2217.Serial):
    """pyserial's RFC 2217 client, acknowledging every receive at once (see _QuickAck)."""

    def open(self) -> None:
        super().open()
        # Its reader thread looks the socket up at every receive, so from here on it
        # receives through the wrapper.
        if _TCP_QUICKACK and self._socket is not None:
            self._socket = _QuickAck(self._socket)


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)


def rfc2217_url(url: str) -> str:
    """`url` with `ign_set_control` added: a port behind ser2net that cannot set modem
    lines (a pty, many USB-UART bridges) never answers SET_CONTROL, and pyserial would
    give up opening it (labgrid's SerialDriver adds the same option)."""
    base, _, query = url.partition("?")
    options = [o for o in query.split("&") if o]
    if not any(o.split("=")[0] == "ign_set_control" for o in options):
        options.append("ign_set_control")
    return base + "?" + "&".join(options)


_select = select.select
#: poll() counts whole milliseconds (rounding up): shorter waits use select().
_POLL_MIN_S = 0.01
_os_read = os.read
_os_write = os.write
_monotonic_ns = time.monotonic_ns


def _wait_readable(fd: int, timeout: float) -> None:
    select.select([fd], [], [], timeout)

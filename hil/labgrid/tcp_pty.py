"""A serial port on TCP, as a pty that labgrid's exporter can serve.

labgrid's exporter serves a serial port only as a device path under /dev/ (it starts
ser2net on it); a board whose UARTs are TCP ports (the bench Betaflight SITL: UART n on
TCP 5760 + n; a serial server on the bench) has no such path. `TcpPty` makes one: a pty
whose slave is linked at a stable path under /dev/shm, and a thread that copies bytes
between its master and a TCP connection to the port. The connection is made when there
is something to send and again after the far end went away (a SITL that rebooted, a UART
that listens only once configured); bytes with nowhere to go are dropped, as on a UART
with nothing wired to it. We keep the slave open ourselves, in raw mode, so ser2net
opening and closing it per client never hangs the pty up.

    python -m hil.labgrid.tcp_pty --link-dir /dev/shm/bench control=127.0.0.1:5761 rc=127.0.0.1:5762
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time
import tty
from pathlib import Path

from hil.errors import HilError
from hil.labgrid.virtual_host import replace_link

#: How often a missing connection is tried again while bytes wait (seconds).
RETRY_S = 0.5
#: The longest a single wait in the copy loop lasts (the thread checks for stop).
TICK_S = 0.1


class TcpPty:
    """`TcpPty(link, host, port).start()`; `stop()` ends the thread and removes the link."""

    def __init__(self, link: Path | str, host: str, port: int) -> None:
        self.link = Path(link)
        if not str(self.link).startswith("/dev/"):
            raise HilError(f"{self.link}: labgrid's exporter serves only paths under /dev/")
        self.host = host
        self.port = int(port)
        self._master: int | None = None
        self._slave: int | None = None
        self._sock: socket.socket | None = None
        self._next_try = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Bytes copied each way, and connections made (for tests and the log).
        self.to_tcp = 0
        self.from_tcp = 0
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def start(self) -> TcpPty:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.link.parent.mkdir(parents=True, exist_ok=True)
        replace_link(self.link, os.ttyname(slave))
        self._thread = threading.Thread(target=self._run, name=f"hil-tcp-pty-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self._drop()
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        try:
            self.link.unlink()
        except FileNotFoundError:
            pass
        try:
            self.link.parent.rmdir()  # once no other port's link is left in it
        except OSError:
            pass

    def __enter__(self) -> TcpPty:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the copy loop -----------------------------------------------------------------------
    def _connect(self) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        now = time.monotonic()
        if now < self._next_try:
            return None
        self._next_try = now + RETRY_S
        try:
            sock = socket.create_connection((self.host, self.port), timeout=1.0)
        except OSError:
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock
        self.connects += 1
        return sock

    def _drop(self) -> None:
        """The far end went: the next attempt may come at once (only failed ones wait)."""
        self._next_try = 0.0
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _run(self) -> None:
        master = self._master
        assert master is not None
        while not self._stop.is_set():
            sock = self._connect()
            watch = [master] + ([sock] if sock is not None else [])
            try:
                ready, _, _ = select.select(watch, [], [], TICK_S)
            except (OSError, ValueError):
                return
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    data = b""
                except OSError:
                    data = b""
                    time.sleep(TICK_S)
                if data:
                    sock = self._connect()
                    if sock is not None:
                        try:
                            sock.sendall(data)
                            self.to_tcp += len(data)
                        except OSError:
                            self._drop()
            if sock is not None and sock in ready:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._drop()
                    continue
                self.from_tcp += len(data)
                try:
                    os.write(master, data)
                except OSError:
                    pass  # nobody reading the slave and its buffer full: dropped, as on a wire


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.labgrid.tcp_pty")
    parser.add_argument("--link-dir", required=True, help="where the stable pty links go (under /dev/)")
    parser.add_argument("--group", default="board", help="the exporter configuration's resource group")
    parser.add_argument("ports", nargs="+", help="NAME=HOST:PORT, one per serial port")
    args = parser.parse_args(argv)
    bridges = []
    try:
        for item in args.ports:
            name, _, where = item.partition("=")
            host, _, port = where.rpartition(":")
            if not name or not host or not port.isdigit():
                print(f"hil.labgrid.tcp_pty: {item!r}: give NAME=HOST:PORT", file=sys.stderr)
                return 2
            bridges.append((name, TcpPty(Path(args.link_dir) / name, host, int(port)).start()))
    except HilError as exc:
        print(f"hil.labgrid.tcp_pty: {exc}", file=sys.stderr)
        return 2
    print(f"{args.group}:")
    for name, bridge in bridges:
        print(f"  {name}:\n    cls: RawSerialPort\n    port: {bridge.link}\n    speed: 115200")
    sys.stdout.flush()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        for _, bridge in bridges:
            bridge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The virtual board's "USB CDC" port: a pseudo-terminal pair.

The harness opens the slave path like any serial port. The board keeps its own slave
fd open for the pty's whole life, so the master never reads EIO (the "all slaves
closed" condition) when the harness closes and reopens the port, and the slave is put
in raw mode so bytes pass untouched (no echo, no line discipline, no CR/LF mapping).
"""

from __future__ import annotations

import errno
import os
import termios
import tty
from dataclasses import dataclass, field


@dataclass
class Pty:
    """One pty pair owned by the board; `path` is what the harness opens."""

    master_fd: int
    slave_fd: int
    path: str
    closed: bool = field(default=False)

    @classmethod
    def open(cls) -> Pty:
        """Open a raw pty pair with a non-blocking master."""
        master_fd, slave_fd = os.openpty()
        try:
            tty.setraw(slave_fd, termios.TCSANOW)
            attrs = termios.tcgetattr(slave_fd)
            attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG)
            termios.tcsetattr(slave_fd, termios.TCSANOW, attrs)
            os.set_blocking(master_fd, False)
            path = os.ttyname(slave_fd)
        except BaseException:
            os.close(master_fd)
            os.close(slave_fd)
            raise
        return cls(master_fd, slave_fd, path)

    def read(self, size: int = 65536) -> bytes:
        """Whatever the harness has written (b"" when nothing is waiting)."""
        try:
            return os.read(self.master_fd, size)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: cannot happen while we hold one
                return b""
            raise

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write what fits without blocking; return the byte count written."""
        try:
            return os.write(self.master_fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN):
                return 0
            raise

    def close(self) -> None:
        """Close both ends: to the harness this looks like the device being unplugged."""
        if self.closed:
            return
        self.closed = True
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass

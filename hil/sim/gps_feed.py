"""GPS on a flight controller's UART from our receiver emulator, driven by a real-time loop.

A board whose GPS driver runs for real (Betaflight's ``src/main/io/gps.c`` in the bench
SITL variant, a real board on a bench) reads a u-blox receiver on one of its UARTs and
writes its configuration back to it. `GpsFeed` is the harness's end of that wire: once
per loop step the loop calls ``step(t, plant)``, and the feed

- reads what the firmware sent since the last look (never waiting) and hands it to the
  emulator (`hil.injectors.gps.GpsReceiverEmulator.on_bytes`), which queues the answers
  a receiver gives (MON-VER, ACK/NAK, polled CFG contents);
- writes those answers, and at the receiver's solution rate (CFG-RATE, as the firmware
  set it) the solution built from ``plant.gnss_observation(t)``: the GNSS sky with the
  threats (``gps_jamming``, ``gps_loss``, ``gps_spoofing``) that act on the plant;
- follows a baud change the firmware asked for (PUBX,41, CFG-PRT, VALSET) once the
  answer that asked for it has left, as a u-blox does (``port.set_baudrate``).

The port is anything with ``read_nowait() -> bytes``, ``write(data)``,
``set_baudrate(baud)`` and ``close()``: `TcpUart` is a SITL UART (its TCP port), and a
test can pass a fake. The feed looks at the port every `READ_PERIOD_S` (a u-blox
answers within milliseconds; Betaflight waits 150 ms for an ACK, ``UBLOX_ACK_TIMEOUT_MS``
in gps.c), so a 1 kHz loop spends one non-blocking read per few steps on it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from hil.errors import LinkError
from hil.injectors.gps import GpsReceiverEmulator

log = logging.getLogger(__name__)

#: How often the feed reads the firmware's bytes (s of loop time).
READ_PERIOD_S = 0.005
#: At most this many bytes are read from the firmware per look: a firmware that never
#: stops sending cannot hold a loop step.
MAX_READ = 4096
#: The injection kinds a GPS feed gives a loop: they act on the plant's GNSS sky, which
#: the feed turns into the receiver's output.
GPS_INJECTIONS = frozenset({"gps_jamming", "gps_loss", "gps_spoofing"})


class GpsPort(Protocol):
    """The harness's end of the FC's GPS UART."""

    def read_nowait(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def set_baudrate(self, baud: int) -> None: ...

    def close(self) -> None: ...


class GpsFeed:
    """Our u-blox emulator on the FC's GPS port, stepped by a real-time loop.

    ``on_event(kind, text)`` (optional) hears what a report should mention: the baud
    changes, the firmware's first configuration bytes.
    """

    injections = GPS_INJECTIONS

    def __init__(
        self,
        emulator: GpsReceiverEmulator,
        port: GpsPort,
        *,
        read_period_s: float = READ_PERIOD_S,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.emulator = emulator
        self.port = port
        self.read_period_s = float(read_period_s)
        self.on_event = on_event
        #: Bytes the firmware sent the receiver, and bytes the receiver sent it.
        self.bytes_in = 0
        self.bytes_out = 0
        #: Navigation solutions written.
        self.solutions = 0
        #: Every baud the receiver moved to, in order.
        self.baud_changes: list[int] = []
        self._next_read = 0.0
        self._baud = emulator.baud

    @classmethod
    def ublox(
        cls,
        port: GpsPort,
        *,
        model: str = "M10",
        baud: int = 115200,
        rate_hz: float = 1.0,
        protocol: str = "ubx",
        on_event: Callable[[str, str], None] | None = None,
    ) -> GpsFeed:
        """A feed with a u-blox ``model`` at ``baud`` giving ``rate_hz`` solutions per
        second until the firmware configures it otherwise."""
        emulator = GpsReceiverEmulator(protocol, rate_hz=rate_hz, model=model, baud=baud)
        return cls(emulator, port, on_event=on_event)

    def step(self, t: float, plant: Any) -> None:
        """One loop step at loop time ``t`` s: listen, answer, send a due solution."""
        gps = self.emulator
        due = gps.due(t)
        if t < self._next_read and not due:
            return
        self._next_read = t + self.read_period_s
        data = self.port.read_nowait()
        if data:
            if not self.bytes_in and self.on_event is not None:
                self.on_event("note", "the flight controller talks to its GPS receiver")
            self.bytes_in += len(data)
            gps.on_bytes(data)
        obs = plant.gnss_observation(t) if due else None
        out = gps.produce(t, obs)
        if obs is not None:
            self.solutions += 1
        if out:
            self.port.write(out)
            self.bytes_out += len(out)
        gps.switch_baud()  # the answer that asked for it has left (or there is none): it moves
        if gps.baud != self._baud:  # moved now, or at the start of this produce
            self._baud = gps.baud
            self.baud_changes.append(gps.baud)
            self.port.set_baudrate(gps.baud)
            if self.on_event is not None:
                self.on_event("note", f"GPS receiver moved to {gps.baud} baud")

    def close(self) -> None:
        self.port.close()


class TcpUart:
    """A flight controller's UART behind a TCP port (a SITL's, or a network serial
    server's): non-blocking reads and writes from the loop thread, connected by a thread
    of its own so that the loop never waits for the firmware to open its port (the SITL
    opens a UART's port only once a function is configured on it, and again after every
    restart).

    The line's baud is not a thing on TCP: ``set_baudrate`` records it."""

    def __init__(self, url: str, *, retry_s: float = 0.2, give_up_s: float = 3600.0) -> None:
        if not url.startswith("socket://"):
            raise LinkError(f"GPS UART {url!r}: only socket://host:port URLs are supported here")
        host, _, port = url.removeprefix("socket://").rpartition(":")
        try:
            self._addr = (host, int(port))
        except ValueError:
            raise LinkError(f"GPS UART {url!r}: the port is not a number") from None
        self.url = url
        self.baud: int | None = None
        self.connects = 0
        self._retry_s = retry_s
        self._give_up_s = give_up_s
        self._sock: socket.socket | None = None
        self._pending = b""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._connector: threading.Thread | None = None
        self._start_connector()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _start_connector(self) -> None:
        if self._closed.is_set() or (self._connector is not None and self._connector.is_alive()):
            return
        self._connector = threading.Thread(target=self._connect_loop, name="gps-uart-connect", daemon=True)
        self._connector.start()

    def _connect_loop(self) -> None:
        deadline = time.monotonic() + self._give_up_s
        while not self._closed.is_set() and time.monotonic() < deadline:
            try:
                sock = socket.create_connection(self._addr, timeout=1.0)
            except OSError:
                self._closed.wait(self._retry_s)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            with self._lock:
                if self._closed.is_set():
                    sock.close()
                    return
                self._sock = sock
                self._pending = b""
                self.connects += 1
            return
        if not self._closed.is_set():
            log.warning("GPS UART %s: no connection within %.0f s", self.url, self._give_up_s)

    def _lost(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._start_connector()  # the firmware restarted: its port comes back with it

    def read_nowait(self) -> bytes:
        sock = self._sock
        if sock is None:
            return b""
        try:
            data = sock.recv(MAX_READ)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            self._lost()
            return b""
        if not data:  # the firmware closed the port
            self._lost()
        return data

    def write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return  # nobody on the wire: a receiver talks into the void
        buf = self._pending + data
        try:
            sent = sock.send(buf)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._lost()
            return
        # What the socket did not take waits for the next write (bounded: a firmware that
        # reads nothing loses the oldest bytes, as a UART's overrun does).
        self._pending = buf[sent:][-MAX_READ:]

    def set_baudrate(self, baud: int) -> None:
        self.baud = int(baud)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._connector is not None:
            self._connector.join(2.0)

"""One MAVLink endpoint over a link: encode, decode, and hand every message to listeners.

Exactly one thread reads the link at a time: either the connection's own reader
thread, or a caller that pumps it (the lockstep closed loop does, to keep each step a
single round trip). Listeners run in whichever thread is reading.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hil.errors import LinkError
from hil.links.serial_link import SerialLink
from hil.mavlink.dialect import (
    GCS_COMPONENT_ID,
    GCS_SYSTEM_ID,
    SIM_COMPONENT_ID,
    mavlink,
    new_codec,
)
from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, FrameReader, arrival_ns, stamp_arrival

log = logging.getLogger(__name__)

Listener = Callable[[object, int], None]


class MavConnection:
    """MAVLink 2 over a `SerialLink`, speaking as the ground station and the simulator."""

    def __init__(self, link: SerialLink, *, system_id: int = GCS_SYSTEM_ID) -> None:
        self.link = link
        self.gcs = new_codec(system_id, GCS_COMPONENT_ID)
        self.sim = new_codec(system_id, SIM_COMPONENT_ID)
        self._frames = FrameReader(new_codec(system_id, GCS_COMPONENT_ID), hot=(HIL_ACTUATOR_CONTROLS,))
        self._listeners: list[Listener] = []
        self._reader: threading.Thread | None = None
        self._stop_reader = threading.Event()
        self._write_lock = threading.Lock()
        self.messages_in = 0
        self.reader_error: BaseException | None = None
        self.idle_callbacks: list[Callable[[], None]] = []

    # -- sending -----------------------------------------------------------------------
    def send(self, msg: object, *, as_sim: bool = False) -> None:
        codec = self.sim if as_sim else self.gcs
        with self._write_lock:
            self.link.write(msg.pack(codec))

    def send_bytes(self, data: bytes) -> None:
        with self._write_lock:
            self.link.write(data)

    # -- receiving ---------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def pump(self, timeout: float) -> list:
        """Read once (waiting up to `timeout` s), decode, dispatch; return the messages."""
        msgs = self.read_messages(timeout)
        if msgs:
            listeners = self._listeners
            for msg in msgs:
                t_ns = arrival_ns(msg)
                for listener in listeners:
                    listener(msg, t_ns)
            self.messages_in += len(msgs)
        return msgs

    def read_messages(self, timeout: float) -> list:
        """Read once (waiting up to `timeout` s) and decode, without dispatching: for a
        caller that hands messages to the listeners one by one with `dispatch`. Each
        message carries its chunk's arrival stamp (hil.mavlink.framing.arrival_ns)."""
        chunk = self.link.read(timeout)
        if chunk is None:
            return []
        t_ns = chunk.t_ns
        msgs = self._frames.feed(chunk.data, t_ns * 1e-9)
        stamp_arrival(msgs, t_ns)
        return msgs

    def dispatch(self, msg) -> None:
        """Hand one message read by `read_messages` to every listener."""
        t_ns = arrival_ns(msg)
        for listener in self._listeners:
            listener(msg, t_ns)
        self.messages_in += 1

    @property
    def bad_bytes(self) -> int:
        """Bytes skipped as noise (not part of any valid frame) so far."""
        return self._frames.bad_bytes

    # -- the reader thread ---------------------------------------------------------------
    @property
    def reader_running(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def start_reader(self) -> None:
        """Pump the link from a background thread until `stop_reader()`."""
        if self.reader_running:
            return
        self._stop_reader.clear()
        self.reader_error = None
        self._reader = threading.Thread(
            target=self._read_forever, name=f"mavlink-reader {self.link.url}", daemon=True
        )
        self._reader.start()

    def stop_reader(self, timeout: float = 2.0) -> None:
        reader = self._reader
        if reader is None:
            return
        self._stop_reader.set()
        reader.join(timeout)
        if reader.is_alive():
            raise LinkError(f"reader thread of {self.link.url} did not stop within {timeout} s")
        self._reader = None

    def _read_forever(self) -> None:
        import time

        next_idle = time.monotonic()
        while not self._stop_reader.is_set():
            try:
                self.pump(0.05)
            except LinkError as exc:
                self.reader_error = exc
                log.debug("reader of %s stopped: %s", self.link.url, exc)
                return
            now = time.monotonic()
            if now >= next_idle:
                next_idle = now + 1.0
                for callback in list(self.idle_callbacks):
                    try:
                        callback()
                    except LinkError as exc:
                        self.reader_error = exc
                        return

    def close(self) -> None:
        try:
            self.stop_reader()
        finally:
            self.link.close()

    # -- helpers -----------------------------------------------------------------------
    def gcs_heartbeat(self) -> None:
        """Send the ground station's HEARTBEAT (what GCS failsafes listen for)."""
        self.send(
            mavlink.MAVLink_heartbeat_message(
                mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE, 3
            )
        )

"""The `px4_tcp` simulator link: PX4 SITL's ``simulator_mavlink`` connecting to us.

PX4 is the TCP client (PROTOCOLS.md section 12; PX4 ``src/modules/simulation/
simulator_mavlink/SimulatorMavlink.cpp``, ``run()``): it connects to 127.0.0.1:4560 +
its instance, retrying until something listens, and sets TCP_NODELAY. So the harness
listens first (`Px4SimListener`, owned by the board, opened before the firmware starts)
and each closed loop takes the newest connection (`Px4TcpLink.open`, bounded).

On that connection, per step: HIL_SENSOR (id 0: the lockstep clock; PX4 sets its clock
to ``time_usec``) with ``fields_updated`` 0x1BFF (accel, gyro, mag and the whole baro
group, each group all or nothing), mag in gauss and pressure in hPa; HIL_GPS at the GPS
rate (degE7, mm, cm, cm/s, cdeg); and RC_CHANNELS at the radio's frame rate, which
``handle_message_rc_channels`` turns into PX4's ``input_rc`` (the simulator link is how
SITL gets a radio; a frame the RC link model loses is simply not sent). PX4 answers
each sample with HIL_ACTUATOR_CONTROLS once its modules finished the step
(``px4_lockstep_wait_for_components``): ``time_usec`` is its clock (the sample's time),
flags bit 0 set by a lockstep build, mode 1 + 128 when armed, controls zero unless armed.

PX4 also sends, on connecting, a HEARTBEAT (autopilot 12) and a COMMAND_LONG asking for
HIL_STATE_QUATERNION every 5000 us (ground truth for its logs). The link notes both
(`peer_heartbeat`, `requested_intervals`) and does not send ground truth: nothing PX4
flies with depends on it.

No battery crosses this link: PX4 SITL simulates its own (``battery_simulator``), so a
battery injection cannot reach it (`supported_injections` leaves it out).

The ground station's side (PX4's MAVLink instance, a separate port): the link sends the
GCS HEARTBEATs through the plant's telemetry link (so ``gcs_loss`` and
``telemetry_jamming`` act on them) and, in lockstep, reads that port itself after each
answer and hands its messages to the adapter's listeners, so what the harness knows at
a step boundary is what the board said up to that step. The board writes a step's
MAVLink output before its answer (the PX4 personality does; real PX4's MAVLink thread
runs beside its lockstep modules, so for it this order is only nearly kept).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from hil.codecs import px4_sim
from hil.errors import BoardNotAnswering, LinkError
from hil.mavlink.dialect import GCS_SYSTEM_ID, SIM_COMPONENT_ID, UINT16_MAX, mavlink, new_codec
from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, FrameReader, HotCodec
from hil.sim.mavlink_hil_link import gnss_fields, hil_sensor_frame, period_us
from hil.sim.simlink import AnswerLog, AnswerStamps, Motors, register

if TYPE_CHECKING:
    from hil.sim.plant import Plant

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: PX4's TCP port for instance 0 (``simulator_tcp_port=$((4560+px4_instance))``).
BASE_PORT = px4_sim.DEFAULT_PORT
#: The transmitter at rest: sticks centred, throttle at mid (PX4's default RC_MAP: 1 roll,
#: 2 pitch, 3 throttle, 4 yaw; mid throttle holds altitude in its assisted modes).
RC_IDLE = (1500, 1500, 1500, 1500, 1000, 1000, 1000, 1000)
_RC_CHANNELS = HotCodec(mavlink.MAVLink_rc_channels_message)
_HIL_GPS = HotCodec(mavlink.MAVLink_hil_gps_message)
_ACTUATORS = HIL_ACTUATOR_CONTROLS.light
_READ = 65536
_STALL_S = 0.5
_monotonic = time.monotonic
_monotonic_ns = time.monotonic_ns
_GCS_HEARTBEAT = mavlink.MAVLink_heartbeat_message(
    mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE, 3
)


def port_for(instance: int) -> int:
    """The TCP port PX4 instance `instance` connects to."""
    return BASE_PORT + int(instance)


class Px4SimListener:
    """The listening socket PX4 connects to: opened before PX4 starts, kept while it runs
    (PX4 connects once per boot and never again)."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.host = host
        self.requested_port = int(port)
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the kernel's choice when asked for 0)."""
        if self._sock is None:
            return self.requested_port
        return int(self._sock.getsockname()[1])

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def open(self) -> Px4SimListener:
        if self._sock is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
            sock.listen(4)
        except OSError as exc:
            sock.close()
            hint = " (another simulator or harness holds it?)" if exc.errno == errno.EADDRINUSE else ""
            raise LinkError(
                f"cannot listen for PX4's simulator connection on {self.host}:{self.requested_port}: "
                f"{exc.strerror or exc}{hint}"
            ) from None
        sock.setblocking(False)
        self._sock = sock
        return self

    def accept_newest(self, timeout: float) -> tuple[socket.socket, bytes]:
        """The newest live connection and what it has sent so far, waiting at most
        `timeout` wall seconds for one.

        Older pending connections (a firmware that rebooted connects again) and ones
        whose peer already hung up are closed. A dead one may still hold the greeting
        its peer sent before hanging up, so what is there is read to its end.
        """
        if self._sock is None:
            raise LinkError("the PX4 simulator listener is not open")
        deadline = _monotonic() + timeout
        newest: socket.socket | None = None
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                conn = None
            if conn is not None:
                if newest is not None:
                    newest.close()
                newest = conn
                continue  # take every pending one, keep the last
            if newest is not None:
                newest.setblocking(False)
                head = _read_available(newest)
                if head is not None:
                    newest.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return newest, head
            if newest is not None:
                newest.close()
                newest = None
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise BoardNotAnswering(
                    f"PX4 did not connect to the simulator port {self.host}:{self.port} within "
                    f"{timeout:.1f} s (simulator_mavlink connects as a TCP client to 4560 + its instance)"
                )
            select.select([self._sock], [], [], min(remaining, 0.2))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _read_available(conn: socket.socket) -> bytes | None:
    """Everything the (non-blocking) connection holds now; None when its peer has hung up."""
    head = bytearray()
    while len(head) < 1 << 20:
        try:
            data = conn.recv(_READ)
        except BlockingIOError:
            return bytes(head)
        except OSError:
            return None
        if not data:
            return None
        head += data
    return bytes(head)


@register
class Px4TcpLink:
    """The plant to PX4 over its simulator connection, and PX4's motor outputs back."""

    name: ClassVar[str] = "px4_tcp"
    physics: ClassVar[bool] = True
    #: One sample in flight: PX4 answers a sample after the step it starts, and the GCS
    #: messages of that step are read before the next sample goes.
    pipeline: ClassVar[bool] = False
    rc_idle: ClassVar[tuple[int, ...]] = RC_IDLE
    #: What can act on PX4 through this link and the GCS link beside it (no battery).
    supported_injections: ClassVar[frozenset[str]] = frozenset(
        {
            "rc_loss",
            "rc_jamming",
            "gcs_loss",
            "telemetry_jamming",
            "gps_loss",
            "gps_jamming",
            "gps_spoofing",
            "compass_interference",
            "wind",
            "imu_noise",
            "imu_stuck",
            "imu_clip",
            "baro_drift",
        }
    )

    def __init__(
        self,
        listener: Px4SimListener,
        *,
        lockstep: bool = True,
        accept_timeout: float = 30.0,
        gps_rate_hz: float = 10.0,
        rc_rate_hz: float = 50.0,
        gcs_heartbeat_hz: float = 1.0,
        require_lockstep: bool = False,
        gcs: Any = None,
    ) -> None:
        self.listener = listener
        self.lockstep = lockstep
        self.accept_timeout = accept_timeout
        self.require_lockstep = require_lockstep
        #: The ground station's MAVLink connection to the board (hil.mavlink.connection.
        #: MavConnection), or None.
        self.gcs = gcs
        self.on_event: Callable[[str, str], None] | None = None
        self.codec = new_codec(GCS_SYSTEM_ID, SIM_COMPONENT_ID)
        self.reader = FrameReader(new_codec(0, 0), hot=(HIL_ACTUATOR_CONTROLS,), stall_s=_STALL_S)
        self._gps_period = period_us(gps_rate_hz)
        self._rc_period = period_us(rc_rate_hz)
        self._gcs_period = period_us(gcs_heartbeat_hz)
        self._next_gps = 0
        self._next_rc = 0
        self._next_gcs = 0
        #: The board's stamp of every answer, and the host clock (monotonic ns) of each
        #: answered sample's write and of its answer's read.
        self.answer_log = AnswerLog()
        self._conn: socket.socket | None = None
        self._latest: Motors | None = None  # the newest answer taken
        #: Answers read but not yet taken (in order): (time_usec, flags, motors, read ns).
        self._answers: list[tuple[int, int, Motors, int]] = []
        #: What PX4 said besides its answers.
        self.peer_heartbeat: object | None = None
        self.requested_intervals: dict[int, float] = {}
        self.answers = 0
        self.last_answer_mode: int | None = None
        self.samples = 0

    # -- SimulatorLink ------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> None:
        if self._conn is not None:
            return
        self.listener.open()
        self._conn, head = self.listener.accept_newest(self.accept_timeout)
        self.reader.buf.clear()
        self._answers.clear()
        for msg in self.reader.feed(head, _monotonic()):
            self._file(msg, _monotonic_ns())
        self._next_gps = self._next_rc = self._next_gcs = 0
        if self.gcs is not None and self.lockstep:
            self.gcs.stop_reader()  # the loop reads the GCS port from now on
        log.info("PX4 simulator connection on port %d from %s", self.listener.port, self._conn.getpeername())

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        gcs = self.gcs
        if gcs is not None and gcs.link.is_open and not gcs.reader_running:
            self._drain_gcs()
            gcs.start_reader()

    def motor_times_ns(self):
        """When each answer was read, host monotonic ns, oldest first."""
        return self.answer_log.read_times_ns()

    def answer_stamps(self) -> AnswerStamps:
        return self.answer_log.stamps()

    def send(self, t_us: int, plant: Plant) -> None:
        """HIL_SENSOR for `t_us`, after the RC and GPS frames that are due (and the GCS
        heartbeats due on the GCS port)."""
        out = []
        codec = self.codec
        if self.gcs is not None:
            self._gcs_heartbeats(t_us, plant)
        if t_us >= self._next_rc:
            self._next_rc = t_us + self._rc_period
            if plant.rc_frame_delivered():
                out.append(self._rc_frame(t_us, plant))
        if t_us >= self._next_gps:
            self._next_gps = t_us + self._gps_period
            out.append(self._gps_frame(t_us, plant))
        out.append(hil_sensor_frame(codec, t_us, plant, px4_sim.HOVER_QUAD))
        self._write(b"".join(out))
        self.samples += 1
        if self.lockstep:
            self.answer_log.sample_sent(t_us, _monotonic_ns())

    def outputs(self, t_us: int, timeout: float) -> Motors | None:
        """Lockstep: the answer to the sample at `t_us` (BoardNotAnswering after `timeout`
        wall seconds). Real time (`timeout` 0): the newest answer, or None."""
        if not self.lockstep or timeout <= 0:
            self._read(0.0)
            if self.gcs is not None and not self.gcs.reader_running:
                self._drain_gcs()
            answers = self._answers
            got = None
            for answer in answers:
                got = self._take(answer, None)
            answers.clear()
            return got
        deadline = _monotonic() + timeout
        while True:
            answers = self._answers
            while answers:
                answer = answers.pop(0)
                # A lockstep build stamps the sample's time; one without the bit answers
                # in order, so its next answer is the one to the sample in flight.
                if not answer[1] & px4_sim.FLAG_LOCKSTEP or answer[0] >= t_us:
                    if self.gcs is not None:
                        self._drain_gcs()
                    return self._take(answer, t_us)
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise BoardNotAnswering(
                    f"PX4 on simulator port {self.listener.port} sent no HIL_ACTUATOR_CONTROLS for "
                    f"the sensor sample at t={t_us * 1e-6:.4f} s within {timeout:.1f} s"
                )
            self._read(remaining)

    def _take(self, answer: tuple[int, int, Motors, int], sample_us: int | None) -> Motors:
        stamp, _, motors, read_ns = answer
        self.answer_log.answered(stamp, sample_us, read_ns)
        self._latest = motors
        return motors

    # -- the ground station's port --------------------------------------------------------
    def _gcs_heartbeats(self, t_us: int, plant: Plant) -> None:
        """The GCS HEARTBEATs due, through the telemetry link (its loss and delay)."""
        t = t_us * 1e-6
        telemetry = plant.telemetry_link
        if t_us >= self._next_gcs:
            self._next_gcs = t_us + self._gcs_period
            if plant.gcs_enabled:
                if telemetry is not None:
                    telemetry.offer(t, _GCS_HEARTBEAT)
                else:
                    self.gcs.send(_GCS_HEARTBEAT)
        if telemetry is not None and telemetry.pending:
            gcs = self.gcs
            data = b"".join(msg.pack(gcs.gcs) for msg in telemetry.due(t))
            if data:
                gcs.send_bytes(data)

    def _drain_gcs(self) -> None:
        """Hand the adapter's listeners what the board said on its MAVLink port so far."""
        gcs = self.gcs
        for _ in range(64):  # a step's output is a few reads; a babbling port is cut off
            msgs = gcs.read_messages(0.0)
            if not msgs:
                return
            for msg in msgs:
                gcs.dispatch(msg)

    # -- the wire -----------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            raise LinkError("the PX4 simulator link is not open")
        view = memoryview(data)
        deadline = None
        while view:
            try:
                sent = conn.send(view)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise LinkError(f"PX4's simulator connection failed: {exc.strerror or exc}") from None
            view = view[sent:]
            if view:
                if deadline is None:
                    deadline = _monotonic() + 2.0
                elif _monotonic() > deadline:
                    raise LinkError("PX4 takes no more simulator data (its socket stayed full 2 s)")
                select.select([], [conn], [], 0.05)

    def _read(self, timeout: float) -> None:
        """Read what arrived (waiting up to `timeout`) and file PX4's messages."""
        conn = self._conn
        if conn is None:
            raise LinkError("the PX4 simulator link is not open")
        if timeout > 0 and not select.select([conn], [], [], timeout)[0]:
            return
        try:
            data = conn.recv(_READ)
            read_ns = _monotonic_ns()
        except BlockingIOError:
            return
        except OSError as exc:
            raise LinkError(f"PX4's simulator connection failed: {exc.strerror or exc}") from None
        if not data:
            raise BoardNotAnswering(f"PX4 closed its simulator connection (port {self.listener.port})")
        for msg in self.reader.feed(data, _monotonic()):
            self._file(msg, read_ns)

    def _file(self, msg, read_ns: int) -> None:
        if msg.__class__ is _ACTUATORS or msg.get_type() == "HIL_ACTUATOR_CONTROLS":
            if self.require_lockstep and not msg.flags & px4_sim.FLAG_LOCKSTEP:
                raise LinkError(
                    "HIL_ACTUATOR_CONTROLS without the lockstep flag: this PX4 was built without "
                    "its lockstep scheduler; run the board in real time (lockstep = false)"
                )
            self.answers += 1
            self.last_answer_mode = int(msg.mode)  # PX4: 1 (custom) + 128 when armed
            if msg.mode & px4_sim.MODE_FLAG_ARMED:
                c = msg.controls
                motors = (_unit(c[0]), _unit(c[1]), _unit(c[2]), _unit(c[3]))
            else:
                motors = (0.0, 0.0, 0.0, 0.0)
            self._answers.append((int(msg.time_usec), int(msg.flags), motors, read_ns))
            return
        kind = msg.get_type()
        if kind == "HEARTBEAT":
            self.peer_heartbeat = msg
        elif kind == "COMMAND_LONG" and msg.command == mavlink.MAV_CMD_SET_MESSAGE_INTERVAL:
            self.requested_intervals[int(msg.param1)] = float(msg.param2)

    def _rc_frame(self, t_us: int, plant: Plant) -> bytes:
        codec = self.codec
        given = list(plant.rc_channels[:18])
        ch = given + [UINT16_MAX] * (18 - len(given))
        frame = _RC_CHANNELS.pack(
            codec.seq, codec.srcSystem, codec.srcComponent,
            (t_us // 1000) & 0xFFFFFFFF, *ch, len(given), 255,
        )
        codec.seq = (codec.seq + 1) % 256
        return frame

    def _gps_frame(self, t_us: int, plant: Plant) -> bytes:
        obs = plant.gnss_observation(t_us * 1e-6)
        lat, lon, alt, eph, epv, vel, vn, ve, vd, cog = gnss_fields(obs)
        codec = self.codec
        frame = _HIL_GPS.pack(
            codec.seq, codec.srcSystem, codec.srcComponent,
            t_us, lat, lon, alt, eph, epv, vel, vn, ve, vd, cog,
            int(obs.fix_type),
            max(0, min(255, int(obs.num_sv))),
            0,  # id: GPS instance 0
            0,  # yaw: not provided
        )
        codec.seq = (codec.seq + 1) % 256
        return frame


def _unit(x: float) -> float:
    """A motor control as the plant takes it: 0..1 (NaN: 0)."""
    return min(1.0, max(0.0, x)) if x == x else 0.0


__all__ = ["BASE_PORT", "Px4SimListener", "Px4TcpLink", "port_for", "px4_loop"]


def px4_loop(autopilot: Any, listener: Px4SimListener, config: Any, *, accept_timeout: float = 30.0) -> Any:
    """The closed loop of a board reached through PX4's simulator connection: the
    `px4_tcp` link on `listener`, the default quad's plant, the adapter's waits stepping
    it and its MAVLink port read by the link."""
    from hil.sim.loop import ClosedLoop
    from hil.sim.plant import Plant

    link = Px4TcpLink(
        listener,
        lockstep=bool(config.lockstep),
        accept_timeout=accept_timeout,
        gps_rate_hz=config.gps_rate_hz,
        rc_rate_hz=config.rc_rate_hz,
        gcs_heartbeat_hz=config.gcs_heartbeat_hz,
        gcs=autopilot.conn,
    )
    plant = Plant.for_mavlink_hil(config, rc_rate_hz=config.rc_rate_hz)
    return ClosedLoop(plant, link, config, controller=autopilot)

"""The `ardupilot_json` simulator link: ArduPilot SITL with the harness as its physics.

ArduPilot SITL started with ``--model JSON:127.0.0.1`` is the asking side of a
request/answer protocol (ArduPilot ``libraries/SITL/SIM_JSON.cpp``; the bytes are
`hil.codecs.ardupilot_json`): every physics frame it sends one binary servo packet to
UDP port 9002 (``--sim-port-out``) and then blocks until a JSON state line comes back
to the address the packet left from. It takes the line, advances its clock by the
difference of our ``timestamp`` stamps, runs its main loop, and sends the next servo
packet: that packet is its answer to the state we sent.

So, in the loop's terms (`hil.sim.simlink`):

- ``send(t_us, plant)`` answers the servo packet SITL is waiting on with the plant's
  state at ``t_us``. Before the first packet has arrived there is nobody to answer: the
  first ``send`` waits for it (at most ``first_packet_timeout`` s), since SITL sends
  servo packets from boot, before it has heard from us.
- ``outputs(t_us, timeout)`` waits for the next servo packet and turns its first four
  PWMs into motor commands 0..1 (``(pwm - 1000) / 1000``, SERVO1..4 being motors 1..4
  of ArduPilot's quad X, which is our vehicle's numbering).

Frame counts, as SIM_JSON.cpp keeps them (`hil.codecs.ardupilot_json.FrameTracker`):

- the count goes up by one each time SITL takes a state line, and a packet is sent per
  frame; when several packets are queued (a reply of ours arrived late, see below) only
  the newest is answered, so the two sides never stay a frame apart;
- the same count again means SITL did not take our line: it resends the packet after
  1 s without an accepted reply (``RESEND_AFTER_S``). We answer it with the same state
  again (same stamp: SITL's clock does not move) and keep waiting for the frame after;
- a count that goes backwards is a SITL that restarted: ``restarts`` counts them and
  ``on_restart`` (when set) is called, so the loop can put its vehicle back on the
  ground; the state line that follows carries our clock on, which SITL takes as its
  new start.

Beside the physics, ``send`` writes what else is due at ``t_us`` where the board is
wired for it (`attach`): our u-blox emulator's bytes on the GPS UART (after handing it
what ArduPilot sent there: its auto-configuration), our CRSF receiver's frames on the
RC UART (each crossing the plant's RC link), and the ground station's heartbeats through
the plant's telemetry link to the board's MAVLink port, all on simulation time. The
throttle stick follows ArduCopter's rules (`hil.profiles.ardupilot.RcSemantics`): low
while disarmed, at its middle from the moment the board is armed.

The state line carries: timestamp (s, our simulation time), IMU gyro and specific force
(FRD, from the plant's IMU model with its noise and faults), position and velocity
(NED from home, m and m/s), the attitude quaternion (body -> NED, w x y z) and the
battery (voltage, current). SITL computes its own barometer and compass from that pose
and its ``--home`` (the board launches it at `hil.geo.HOME`); GPS and RC do not go
through this link at all but through our emulators on its serial ports. The plant's
compass interference reaches SITL's compasses as a change of its ``SIM_MAGn_OFS``
parameters, sent to the board while the interference lasts (``MAG_OFFSET_PARAMS``).
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hil.codecs.ardupilot_json import (
    DEFAULT_PORT,
    ArduPilotJsonError,
    FrameKind,
    FrameTracker,
    JsonState,
    ServoPacket,
    decode_servo_packet,
    encode_state_line,
)
from hil.errors import BoardNotAnswering, LinkError
from hil.sim.simlink import AnswerLog, AnswerStamps, Motors, register

if TYPE_CHECKING:
    from hil.sim.plant import Plant

log = logging.getLogger(__name__)

#: PWM range of a motor output (ArduPilot's MOT_PWM_MIN / MOT_PWM_MAX defaults).
PWM_MIN = 1000.0
PWM_RANGE = 1000.0
#: The largest datagram we read; a servo packet is 40 or 72 bytes.
_MAX_DATAGRAM = 2048
#: Packets of other shapes we log before going quiet about them.
_BAD_PACKETS_LOGGED = 5
_ZERO: Motors = (0.0, 0.0, 0.0, 0.0)
#: Chunks of ArduPilot's GPS-bound bytes read per fix at most.
_GPS_READS = 16
#: What SITL sees of our plant: injections that act on parts it computes itself (its
#: barometer comes from our pose and its --home) cannot act through it. Its compass does
#: too, but compass_interference reaches it through SITL's own compass model (below).
SUPPORTED_INJECTIONS = frozenset(
    {
        "rc_loss", "rc_jamming", "gcs_loss", "gps_loss", "gps_jamming", "gps_spoofing",
        "battery_sag", "wind", "telemetry_jamming", "imu_noise", "imu_stuck", "imu_clip",
        "compass_interference",
    }
)  # fmt: skip
#: SITL's simulated compasses read the body-frame field it computes from our attitude,
#: less SIM_MAGn_OFS (milligauss, sensor frame, which is the body frame at SITL's default
#: orientations): ArduPilot libraries/AP_Compass/AP_Compass_SITL.cpp subtracts the
#: offset at every sample, while the compass calibration (COMPASS_OFS*) is taken from it
#: only at boot. So moving SIM_MAGn_OFS in flight by -B adds a body-fixed field B to what
#: every compass reads: the plant's `Mag.interference` (gauss, FRD), an airframe's field.
#: The JSON state line carries no magnetometer (libraries/SITL/SIM_JSON.cpp).
MAG_OFFSET_PARAMS: tuple[str, ...] = tuple(
    f"SIM_MAG{n}_OFS_{axis}" for n in (1, 2, 3) for axis in "XYZ"
)


def pwm_to_motor(pwm: int) -> float:
    """One servo PWM (us) as a motor command 0..1; 0 (channel not driven) is off."""
    x = (pwm - PWM_MIN) / PWM_RANGE
    return 0.0 if x <= 0.0 else (1.0 if x >= 1.0 else x)


def state_of(t_us: int, plant: Plant) -> JsonState:
    """The plant's state at ``t_us`` as SIM_JSON wants it (see the module docstring)."""
    v = plant.vehicle
    if v is None:
        raise LinkError("the ardupilot_json link needs a plant with a vehicle (physics)")
    ax, ay, az, gx, gy, gz = plant.imu.sample(v)
    battery = plant.battery
    return JsonState(
        timestamp_s=t_us * 1e-6,
        gyro=(gx, gy, gz),
        accel_body=(ax, ay, az),
        position=v.pos,
        velocity=v.vel,
        quaternion=v.quat,
        battery=(battery.voltage, battery.current) if battery is not None else None,
    )


@register
class ArduPilotJsonLink:
    """ArduPilot SITL's JSON physics interface over UDP on loopback (module docstring)."""

    name: ClassVar[str] = "ardupilot_json"
    physics: ClassVar[bool] = True
    pipeline: ClassVar[bool] = False
    supported_injections: ClassVar[frozenset[str] | None] = SUPPORTED_INJECTIONS

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        *,
        host: str = "127.0.0.1",
        first_packet_timeout: float = 30.0,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.first_packet_timeout = float(first_packet_timeout)
        self.on_restart = on_restart
        #: SITL always steps on our stamps (its ``no_lockstep`` key is never sent).
        self.lockstep = True
        self.frames = FrameTracker()
        #: The servo packet SITL waits on for a state line (None: none yet, or answered).
        self._pending: ServoPacket | None = None
        self._peer: tuple[str, int] | None = None
        self._last_line: bytes | None = None
        self._sock: socket.socket | None = None
        #: The newest servo packet taken (its frame_rate is the step SITL asks for).
        self.last_packet: ServoPacket | None = None
        self.restarts = 0
        self.repeats_answered = 0
        self.superseded = 0
        self.bad_packets = 0
        #: Set by the loop: told (kind, text) of what the link sees happen.
        self.on_event: Callable[[str, str], None] | None = None
        # What `attach` wires: receiver UARTs and their emulators, the GCS's way to the
        # board, whether it is armed, and the sticks' rules.
        self.uarts: dict[str, Any] = {}
        self.gps_emulator: Any = None
        self.rc_emulator: Any = None
        self.send_to_board: Callable[[object], None] | None = None
        self.armed: Callable[[], bool | None] | None = None
        self.rc: Any = None
        self.rc_idle: tuple[int, ...] = (1500, 1500, 1000, 1500, 1165, 1500, 1500, 1500)
        self.gcs_heartbeat_period_us = 1_000_000
        self._next_gcs = 0
        self._was_armed: bool | None = None
        #: SIM_MAGn_OFS_* as SITL held them when the session began (set by the board's
        #: session; None: not known, and compass interference waits for it), and the
        #: MAVLink system/component its PARAM_SETs go to.
        self.mag_offsets_base: dict[str, float] | None = None
        self.param_target: tuple[int, int] = (1, 1)
        self._mag_applied: tuple[float, float, float] = (0.0, 0.0, 0.0)
        #: Simulation time of every frame SITL answered (in lockstep its main loop runs
        #: once per frame, at our stamp), and the host clock of each exchange.
        self.answer_log = AnswerLog()
        self._sent_ns = 0

    def attach(
        self,
        *,
        uarts: Mapping[str, Any] | None = None,
        rc: Any = None,
        gcs_heartbeat_hz: float = 1.0,
    ) -> None:
        """Wire the board's receiver UARTs ("gps": our u-blox, "rc": our CRSF receiver)
        and the RC rules (`RcSemantics`) whose idle sticks the loop starts from."""
        from hil.injectors.gps import GpsReceiverEmulator
        from hil.injectors.rc import RcReceiverEmulator

        self.uarts = dict(uarts or {})
        if "gps" in self.uarts:
            self.gps_emulator = GpsReceiverEmulator("ubx", rate_hz=5.0)
        if "rc" in self.uarts:
            # CRSF at 150 Hz says so in its link statistics (rf mode 2, AP_RCProtocol_CRSF).
            self.rc_emulator = RcReceiverEmulator("crsf", rf_mode=2)
        if rc is not None:
            self.rc = rc
            self.rc_idle = tuple(rc.channels(armed=False))
        self.gcs_heartbeat_period_us = int(1e6 / gcs_heartbeat_hz) if gcs_heartbeat_hz > 0 else 1 << 62

    @property
    def rc_rate_hz(self) -> float:
        """Frames per second our radio sends (the plant's RC link runs at it)."""
        return self.rc_emulator.rate_hz if self.rc_emulator is not None else 50.0

    def motor_times_ns(self):
        return self.answer_log.read_times_ns()

    def answer_stamps(self) -> AnswerStamps:
        return self.answer_log.stamps()

    def latencies_ns(self):
        import numpy as np

        return np.zeros(0, dtype=np.int64)

    # -- opening and closing ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """Where SITL sends its servo packets (its ``--sim-port-out``)."""
        return (self.host, self.port)

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def open(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise LinkError(
                f"cannot listen for ArduPilot SITL's servo packets on UDP {self.host}:{self.port}: "
                f"{exc.strerror or exc} (another SITL's physics, or a second run on the same port?)"
            ) from None
        sock.setblocking(False)
        self.port = sock.getsockname()[1]  # port 0: the one the kernel chose
        self._sock = sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._pending = None

    def __enter__(self) -> ArduPilotJsonLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol ----------------------------------------------------------------------

    def send(self, t_us: int, plant: Plant) -> None:
        """Answer the servo packet SITL waits on with the plant's state at ``t_us``."""
        if self._pending is None:
            self._take(self._wait_packets(self.first_packet_timeout, f"its first servo packet (t={t_us * 1e-6:.4f} s)"))
        self._inputs(t_us, plant)
        try:
            line = encode_state_line(state_of(t_us, plant))
        except ArduPilotJsonError as exc:
            raise LinkError(f"the plant's state at t={t_us * 1e-6:.4f} s cannot go to ArduPilot SITL: {exc}") from None
        self._sent_ns = time.monotonic_ns()
        self._write(line)
        self._last_line = line
        self._pending = None

    def outputs(self, t_us: int, timeout: float) -> Motors | None:
        """Motor commands from SITL's next servo packet, its answer to the state at ``t_us``.

        Waits at most ``timeout`` wall seconds (raising BoardNotAnswering); a repeat of
        the packet we answered is answered again with the same line and waited past.
        """
        deadline = time.monotonic() + timeout
        what = f"a servo packet answering the state at t={t_us * 1e-6:.4f} s"
        while True:
            packet = self._take(self._wait_packets(deadline - time.monotonic(), what))
            if packet is not None:
                self.answer_log.add(t_us, self._sent_ns, time.monotonic_ns())
                return self._motors(packet)

    def _motors(self, packet: ServoPacket) -> Motors:
        p = packet.pwm
        return (pwm_to_motor(p[0]), pwm_to_motor(p[1]), pwm_to_motor(p[2]), pwm_to_motor(p[3]))

    def _take(self, packets: list[ServoPacket]) -> ServoPacket | None:
        """Book the packets read (oldest first); the newest that needs a state becomes the
        pending one and is returned, None when all were repeats we answered again."""
        newest: ServoPacket | None = None
        repeated = False
        for packet in packets:
            verdict = self.frames.observe(packet.frame_count)
            if verdict.kind is FrameKind.REPEAT:
                repeated = True
                continue
            if verdict.kind is FrameKind.RESTART:
                self.restarts += 1
                log.warning(
                    "ArduPilot SITL's frame count went back to %d: it restarted", packet.frame_count
                )
                if self.on_restart is not None:
                    self.on_restart()
            if newest is not None:
                self.superseded += 1
            newest = packet
        if newest is not None:
            self._pending = newest
            self.last_packet = newest
        elif repeated and self._pending is None and self._last_line is not None:
            # SITL did not take our line within a second: give it the same one again.
            self.repeats_answered += 1
            self._write(self._last_line)
        return newest

    # -- what else is due -----------------------------------------------------------------

    def _inputs(self, t_us: int, plant: Plant) -> None:
        """The sticks' rules, the receivers' bytes due now, the GCS heartbeat."""
        rc_rules = self.rc
        armed_now = self.armed() if self.armed is not None else None
        if rc_rules is not None and armed_now is not None and armed_now != self._was_armed:
            # ArduCopter arms only with the throttle low; once armed, the middle holds height.
            plant.rc_channels[rc_rules.throttle] = rc_rules.throttle_mid if armed_now else rc_rules.throttle_low
            self._was_armed = armed_now
        rc = self.uarts.get("rc")
        if rc is not None:
            data = self.rc_emulator.produce(t_us, plant.rc_channels, plant.rc_link)
            if data:
                rc.write(data)
        t = t_us * 1e-6
        gps = self.uarts.get("gps")
        emulator = self.gps_emulator
        if gps is not None and emulator.due(t):
            for _ in range(_GPS_READS):  # what ArduPilot sent its GPS: configuration, polls
                chunk = gps.read(0.0)
                if chunk is None:
                    break
                emulator.on_bytes(chunk.data)
            data = emulator.produce(t, plant.gnss_observation(t))
            if data:
                gps.write(data)
                baud = emulator.switch_baud()  # its answer has left: now it moves
                if baud is not None:
                    gps.set_baudrate(baud)
                    if self.on_event is not None:
                        self.on_event("note", f"GPS receiver moved to {baud} baud")
        send = self.send_to_board
        if send is not None:
            self._compass(plant, send)
        telemetry = plant.telemetry_link
        if send is None or telemetry is None:
            return
        if t_us >= self._next_gcs:
            self._next_gcs = t_us + self.gcs_heartbeat_period_us
            if plant.gcs_enabled:
                from hil.mavlink.dialect import mavlink

                telemetry.offer(
                    t,
                    mavlink.MAVLink_heartbeat_message(
                        mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE, 3
                    ),
                )
        if telemetry.pending:
            for msg in telemetry.due(t):
                try:
                    send(msg)
                except (LinkError, OSError) as exc:
                    log.debug("GCS heartbeat not sent: %s", exc)

    def _compass(self, plant: Plant, send: Callable[[object], None]) -> None:
        """The plant's compass interference as SITL's SIM_MAGn_OFS (MAG_OFFSET_PARAMS):
        set when it changes, put back to the session's values when it ends. The messages
        go straight to the board, not through the telemetry link: this is a field on the
        airframe, not a ground station's command."""
        mag = plant.mag
        want = tuple(float(v) for v in mag.interference) if mag is not None else (0.0, 0.0, 0.0)
        if want == self._mag_applied or self.mag_offsets_base is None:
            return
        from hil.mavlink.dialect import mavlink

        for name, base in self.mag_offsets_base.items():
            value = base - 1000.0 * want["XYZ".index(name[-1])]
            msg = mavlink.MAVLink_param_set_message(
                *self.param_target, name.encode(), value, mavlink.MAV_PARAM_TYPE_REAL32
            )
            try:
                send(msg)
            except (LinkError, OSError) as exc:
                log.warning("compass interference: %s not sent: %s", name, exc)
                return  # tried again on the next frame
        self._mag_applied = want  # type: ignore[assignment]
        if self.on_event is not None:
            field = ", ".join(f"{v:+.3f}" for v in want)
            self.on_event(
                "note",
                f"compass field on the airframe ({field}) gauss FRD: SITL's SIM_MAGn_OFS set"
                if any(want) else "compass field on the airframe gone: SITL's SIM_MAGn_OFS put back",
            )

    # -- the socket ------------------------------------------------------------------------

    def _wait_packets(self, timeout: float, what: str) -> list[ServoPacket]:
        """Every servo packet queued now, waiting up to ``timeout`` s for the first."""
        sock = self._sock
        if sock is None:
            raise LinkError("the ardupilot_json link is not open")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            packets = self._drain(sock)
            if packets:
                return packets
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                heard = (
                    f"last frame {self.frames.last}" if self.frames.last is not None else "it never sent one"
                )
                raise BoardNotAnswering(
                    f"ArduPilot SITL sent no servo packet to UDP {self.host}:{self.port} within "
                    f"{max(0.0, timeout):.1f} s while the harness waited for {what} ({heard})"
                )
            try:
                select.select([sock], [], [], min(remaining, 0.1))
            except (OSError, ValueError):  # closed under us: the board is stopping
                raise LinkError(f"the ardupilot_json link on UDP {self.host}:{self.port} was closed") from None
            if self._sock is None:
                raise LinkError(f"the ardupilot_json link on UDP {self.host}:{self.port} was closed")

    def _drain(self, sock: socket.socket) -> list[ServoPacket]:
        out: list[ServoPacket] = []
        while True:
            try:
                data, peer = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as exc:  # ECONNREFUSED from an earlier send to a gone SITL, say
                log.debug("ardupilot_json socket: %s", exc)
                return out
            try:
                packet = decode_servo_packet(data)
            except ArduPilotJsonError as exc:
                self.bad_packets += 1
                if self.bad_packets <= _BAD_PACKETS_LOGGED:
                    log.warning("ignored a datagram from %s:%d: %s", peer[0], peer[1], exc)
                continue
            self._peer = peer
            out.append(packet)

    def _write(self, line: bytes) -> None:
        sock, peer = self._sock, self._peer
        if sock is None or peer is None:
            raise LinkError("the ardupilot_json link has no SITL to answer (not open, or no servo packet yet)")
        try:
            sock.sendto(line, peer)
        except OSError as exc:
            raise LinkError(f"cannot send the state line to ArduPilot SITL at {peer[0]}:{peer[1]}: {exc}") from None


__all__ = ["MAG_OFFSET_PARAMS", "SUPPORTED_INJECTIONS", "ArduPilotJsonLink", "pwm_to_motor", "state_of"]

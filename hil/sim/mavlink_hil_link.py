"""The `mavlink_hil` simulator link: PX4's simulator messages over the board's MAVLink port.

HIL_SENSOR and HIL_GPS go to the board, HIL_ACTUATOR_CONTROLS come back. RC reaches the
board as RC_CHANNELS_OVERRIDE, the battery as BATTERY_STATUS from the simulator
component, and the ground station's HEARTBEAT is sent from here too, so all of them
follow simulation time. Where the rig wires receiver UARTs, RC goes as CRSF or SBUS
frames and GPS as UBX or NMEA from our emulators instead, and in lockstep a marker
before each step's sample tells the board how many UART bytes belong to that step.

Lockstep: the board stamps its answer with the sample's time (HIL_ACTUATOR_CONTROLS
flags bit 0 set) or answers in order (bit 0 clear, the virtual board's loop-time model).
Messages reach the autopilot adapter's listeners in the board's order, up to and
including the answer awaited; whatever a read brought after it waits for the next step,
so the state the harness sees at a step boundary depends on the board's output alone.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hil import geo
from hil.errors import BoardNotAnswering
from hil.mavlink.dialect import UINT16_MAX, mavlink
from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, HIL_SENSOR, HotCodec, arrival_ns
from hil.mavlink.uart_marker import pack_marker
from hil.sim.simlink import AnswerLog, AnswerStamps, Motors, register

if TYPE_CHECKING:
    from hil.autopilot.mavlink import MavlinkAutopilot
    from hil.sim.plant import Plant

_ALL_FIELDS = 0x1FFF  # accel, gyro, mag, abs/diff pressure, pressure alt, temperature
_ARMED = mavlink.MAV_MODE_FLAG_SAFETY_ARMED
_ACTUATORS = HIL_ACTUATOR_CONTROLS.light  # the class of the answers the fast path decodes
#: RC_CHANNELS_OVERRIDE at the RC rate, packed without a pymavlink object (same bytes).
_RC_OVERRIDE = HotCodec(mavlink.MAVLink_rc_channels_override_message)
_NO_EXTENSION_CHANNELS = (0,) * 10  # chan9_raw..chan18_raw: not sent
_STOPPED: Motors = (0.0, 0.0, 0.0, 0.0)
_monotonic = time.monotonic
_monotonic_ns = time.monotonic_ns
#: Chunks of the board's GPS-bound bytes read per fix at most (its configuration is a few).
_GPS_READS = 16
_INT16_MAX = 32767


@register
class MavlinkHilLink:
    """HIL_* messages to a MAVLink board, its HIL_ACTUATOR_CONTROLS back."""

    name = "mavlink_hil"
    physics = True
    pipeline = True
    #: Every injection kind acts on this board (None: no restriction).
    supported_injections = None
    #: The transmitter's sticks at rest: AETR, throttle at mid (ArduPilot's RC3 neutral).
    rc_idle = (1500, 1500, 1500, 1500, 1000, 1000, 1000, 1000)
    arm_channel = None  # armed by command, not by a switch

    def __init__(self, autopilot: MavlinkAutopilot, config: Any, uart_links: dict[str, Any] | None = None) -> None:
        self.autopilot = autopilot
        self.conn = autopilot.conn
        self.lockstep = bool(config.lockstep)
        self.step_timeout = float(config.step_timeout)
        #: Told of what the link sees happen (a GPS baud change): (kind, text).
        self.on_event: Callable[[str, str], None] | None = None
        self.gps_emulator = None
        if config.gps_uart:
            from hil.injectors.gps import GpsReceiverEmulator

            self.gps_emulator = GpsReceiverEmulator(config.gps_uart, rate_hz=5.0)
        self.uart_links = dict(uart_links or {})
        self.rc_emulator = None
        #: Frames per second the radio sends (the RC link model's rate).
        self.rc_rate_hz = float(config.rc_rate_hz)
        if config.rc_uart:
            from hil.injectors.rc import RcReceiverEmulator

            self.rc_emulator = RcReceiverEmulator(config.rc_uart)
            self.rc_rate_hz = self.rc_emulator.rate_hz
        self._next = {"rc": 0, "battery": 0, "gcs": 0, "gps": 0}
        #: The earliest of the rc/gps/battery/gcs times in `_next`: before it, a step sends
        #: nothing but its sensor sample (unless a UART emulator or the telemetry link has
        #: something), and skips looking at each of them.
        self._next_aux = 0
        self._periods = {
            "gps": period_us(config.gps_rate_hz),
            "rc": period_us(config.rc_rate_hz),
            "battery": period_us(config.battery_rate_hz),
            "gcs": period_us(config.gcs_heartbeat_hz),
        }
        self._early: dict[int, object] = {}
        #: Messages read but not yet handed to the listeners: a step hands out exactly
        #: those that came before the answer it waits for, whatever the reads' chunking.
        self._backlog: deque = deque()
        #: Bytes written to each receiver UART in this step, announced by a marker
        #: before the step's sample (lockstep only; see hil.mavlink.uart_marker).
        self._uart_written: dict[str, int] = {}
        #: Every HIL_ACTUATOR_CONTROLS taken: its time_usec, the board's own per-loop stamp
        #: (its sample times in plain lockstep, its loop clock with a loop-time model), and
        #: when its sample's bytes were written and its own bytes read (host clock).
        self.answer_log = AnswerLog()
        self._motors: Motors = _STOPPED

    # -- the loop's side ---------------------------------------------------------------
    def open(self) -> None:
        """Take the port from the adapter's reader thread: the loop reads it from now on."""
        self.conn.stop_reader()

    def close(self) -> None:
        """Hand the port back: messages read after the last answer still reach the
        listeners, in order, and the adapter's reader runs again."""
        backlog = self._backlog
        while backlog:
            self.conn.dispatch(backlog.popleft())
        if self.conn.link.is_open:
            self.conn.start_reader()

    def send(self, t_us: int, plant: Plant) -> None:
        """Write this step's input: what else is due now, then the sensor sample, at once."""
        conn = self.conn
        sim = conn.sim
        if (
            t_us >= self._next_aux
            or self.rc_emulator is not None
            or self.gps_emulator is not None
            or plant.telemetry_link.pending
        ):
            out = self._due_inputs(t_us, plant)
        else:
            out = None
        frame = hil_sensor_frame(sim, t_us, plant, _ALL_FIELDS)
        if out:
            out.append(frame)
            frame = b"".join(out)
        conn.send_bytes(frame)
        if self.lockstep:
            self.answer_log.sample_sent(t_us, _monotonic_ns())

    def outputs(self, t_us: int, timeout: float) -> Motors | None:
        if self.lockstep:
            return self._await_actuators(t_us)
        # Real time: everything the board sent since the last look, dispatched; the
        # newest answer (or None when none came).
        got = None
        for msg in self.conn.pump(timeout):
            if msg.get_type() == "HIL_ACTUATOR_CONTROLS":
                got = self._take_actuators(msg)
        return got

    def motor_times_ns(self):
        """When each answer was read, host monotonic ns, oldest first."""
        return self.answer_log.read_times_ns()

    def answer_stamps(self) -> AnswerStamps:
        return self.answer_log.stamps()

    # -- lockstep answers --------------------------------------------------------------
    def _await_actuators(self, t_us: int) -> Motors:
        """The board's answer to the sample stamped ``t_us`` (see module doc). One that
        skipped ahead is kept for its own step."""
        early = self._early
        if early:
            msg = early.pop(t_us, None)
            early.clear()
            if msg is not None:
                return self._take_actuators(msg, t_us)
        backlog = self._backlog
        conn = self.conn
        dispatch = conn.dispatch
        deadline = None
        while True:
            while backlog:
                msg = backlog.popleft()
                dispatch(msg)
                if msg.__class__ is _ACTUATORS or msg.get_type() == "HIL_ACTUATOR_CONTROLS":
                    if not msg.flags & 1 or msg.time_usec == t_us:
                        return self._take_actuators(msg, t_us)
                    if msg.time_usec > t_us:
                        early[msg.time_usec] = msg  # a board that skipped ahead
            if deadline is None:
                deadline = _monotonic() + self.step_timeout
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise BoardNotAnswering(
                    f"board on {conn.link.url} sent no HIL_ACTUATOR_CONTROLS for the sensor sample "
                    f"at t={t_us * 1e-6:.4f} s within {self.step_timeout:.1f} s; "
                    f"it stopped answering (last mode {self.autopilot.mode}, armed {self.autopilot.armed})"
                )
            backlog.extend(conn.read_messages(remaining))

    def _take_actuators(self, msg, sample_us: int | None = None) -> Motors:
        self.answer_log.answered(msg.time_usec, sample_us, arrival_ns(msg, 0) or _monotonic_ns())
        if msg.mode & _ARMED:
            c = msg.controls
            return (c[0], c[1], c[2], c[3])
        return _STOPPED

    # -- what else is due --------------------------------------------------------------
    def _due_inputs(self, t_us: int, plant: Plant) -> list[bytes]:
        """Frames due before this step's sensor sample (RC, GPS, battery, GCS heartbeats);
        UART receivers get their bytes here too."""
        conn = self.conn
        sim = conn.sim
        out: list[bytes] = []
        nxt = self._next
        written = self._uart_written
        if self.rc_emulator is not None:
            data = self.rc_emulator.produce(t_us, plant.rc_channels, plant.rc_link)
            if data:
                self.uart_links["rc"].write(data)
                written["rc"] = len(data)
        elif t_us >= nxt["rc"]:
            nxt["rc"] = t_us + self._periods["rc"]
            if plant.rc_frame_delivered():
                gcs = conn.gcs  # its seq as pymavlink's pack would use it (not advanced)
                c1, c2, c3, c4, c5, c6, c7, c8 = plant.rc_channels[:8]
                out.append(
                    _RC_OVERRIDE.pack(
                        gcs.seq, gcs.srcSystem, gcs.srcComponent,
                        c1, c2, c3, c4, c5, c6, c7, c8,
                        self.autopilot.target_system, self.autopilot.target_component,
                        *_NO_EXTENSION_CHANNELS,
                    )
                )
        t = t_us * 1e-6
        gps = self.gps_emulator
        if gps is not None:
            if gps.due(t):
                link = self.uart_links["gps"]
                self.gps_listen(gps, link)
                data = gps.produce(t, plant.gnss_observation(t))
                if data:
                    link.write(data)
                    written["gps"] = written.get("gps", 0) + len(data)
                    baud = gps.switch_baud()  # its answer has left: now it moves, as a u-blox does
                    if baud is not None:
                        link.set_baudrate(baud)
                        if self.on_event is not None:
                            self.on_event("note", f"GPS receiver moved to {baud} baud")
        elif t_us >= nxt["gps"]:
            nxt["gps"] = t_us + self._periods["gps"]
            out.append(_hil_gps(t_us, plant.gnss_observation(t)).pack(sim))
        if t_us >= nxt["battery"]:
            nxt["battery"] = t_us + self._periods["battery"]
            out.append(_battery_message(plant.battery).pack(sim))
        if t_us >= nxt["gcs"]:
            nxt["gcs"] = t_us + self._periods["gcs"]
            if plant.gcs_enabled:
                plant.telemetry_link.offer(
                    t,
                    mavlink.MAVLink_heartbeat_message(
                        mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE, 3
                    ),
                )
        telemetry = plant.telemetry_link
        if telemetry.pending:  # heartbeats that reach the board now (after any delay)
            out.extend(msg.pack(conn.gcs) for msg in telemetry.due(t))
        if written:
            if self.lockstep:
                for uart, count in written.items():
                    out.append(pack_marker(sim.seq, sim.srcSystem, sim.srcComponent, t_us, uart, count))
                    sim.seq = (sim.seq + 1) % 256
            written.clear()
        self._next_aux = min(nxt["rc"], nxt["gps"], nxt["battery"], nxt["gcs"])
        return out

    @staticmethod
    def gps_listen(gps: Any, link: Any) -> None:
        """Hand the GPS emulator what the board sent its receiver since the last fix (its
        configuration: CFG-PRT, CFG-MSG, VALSET, ...), without waiting. The answers go out
        with the next fix. A board that sends nothing (the virtual one) costs one poll; one
        that never stops sending is read at most `_GPS_READS` chunks per fix."""
        for _ in range(_GPS_READS):
            chunk = link.read(0.0)
            if chunk is None:
                return
            gps.on_bytes(chunk.data)


def hil_sensor_frame(codec, t_us: int, plant: Plant, fields: int) -> bytes:
    """One HIL_SENSOR of the plant's IMU, compass and barometer at ``t_us`` (pressure in
    hPa, field in gauss, ``fields`` the fields_updated bits), from ``codec``'s sequence."""
    v = plant.vehicle
    ax, ay, az, gx, gy, gz = plant.imu.sample(v)
    mx, my, mz = plant.mag.sample(v.quat)
    alt_amsl = geo.HOME.alt_m - v.pos[2]
    pressure_hpa, temperature = plant.baro.sample(alt_amsl)
    seq = codec.seq
    codec.seq = (seq + 1) % 256
    return HIL_SENSOR.pack(
        seq, codec.srcSystem, codec.srcComponent,
        t_us, ax, ay, az, gx, gy, gz, mx, my, mz,
        pressure_hpa, 0.0, alt_amsl, temperature, fields, 0,
    )


def gnss_fields(obs) -> tuple[int, int, int, int, int, int, int, int, int, int]:
    """A GNSS observation in HIL_GPS's units, for every link that sends one: latitude and
    longitude (1e-7 deg), altitude (mm), eph and epv (cm), ground speed (cm/s), north,
    east and down velocity (cm/s), course over ground (cdeg; 65535 when nearly still)."""
    vn, ve, vd = obs.vel_ned
    ground = math.hypot(vn, ve)
    cog = int((math.degrees(math.atan2(ve, vn)) % 360.0) * 100.0) % 36000 if ground > 0.2 else UINT16_MAX
    return (
        int(round(obs.lat_deg * 1e7)),
        int(round(obs.lon_deg * 1e7)),
        int(round(obs.alt_m * 1000.0)),
        u16(obs.eph_m * 100.0),
        u16(obs.epv_m * 100.0),
        u16(ground * 100.0),
        i16(vn * 100.0),
        i16(ve * 100.0),
        i16(vd * 100.0),
        cog,
    )


def _hil_gps(t_us: int, obs):
    lat, lon, alt, eph, epv, vel, vn, ve, vd, cog = gnss_fields(obs)
    return mavlink.MAVLink_hil_gps_message(t_us, obs.fix_type, lat, lon, alt, eph, epv, vel, vn, ve, vd, cog, obs.num_sv)


def _battery_message(b):
    cells = [UINT16_MAX] * 10
    cells[0] = u16(b.voltage * 1000.0)
    return mavlink.MAVLink_battery_status_message(
        0,
        mavlink.MAV_BATTERY_FUNCTION_ALL,
        mavlink.MAV_BATTERY_TYPE_LIPO,
        _INT16_MAX,
        cells,
        int(max(-1, min(32767, b.current * 100.0))),
        int(b.consumed_mah),
        -1,
        int(max(0, min(100, b.remaining_pct))),
    )


def period_us(rate_hz: float) -> int:
    """Microseconds between sends at `rate_hz` (a rate of 0: never)."""
    return int(round(1e6 / rate_hz)) if rate_hz > 0 else 1 << 62


def u16(x: float) -> int:
    """A u16 MAVLink field, clamped below 65535; not finite: 65535 ("unknown")."""
    if not math.isfinite(x):
        return UINT16_MAX
    return int(max(0, min(65534, round(x))))


def i16(x: float) -> int:
    """An i16 MAVLink field, clamped; not finite: 0."""
    if not math.isfinite(x):
        return 0
    return int(max(-32767, min(32767, round(x))))

"""The closed loop: physics and sensor models on one side, a board on the other.

The models (vehicle, sensors, GNSS sky, battery, wind, RC and telemetry links, and the
threats injections set on them) are the loop's plant (`hil.sim.plant.Plant`); this
module moves it in time and speaks to the board about it.

The loop speaks PX4's simulator protocol over MAVLink: HIL_SENSOR and HIL_GPS to the
board, HIL_ACTUATOR_CONTROLS back. RC reaches the board as RC_CHANNELS_OVERRIDE, the
battery as BATTERY_STATUS from the simulator component, and the ground station's
HEARTBEAT is sent from here too, so all of them follow simulation time.

Lockstep (boards that follow our clock): send one sensor sample, wait for the board's
answer to it, integrate, repeat, as fast as both sides go. Real time (boards with their
own clock): send samples at the loop rate by the wall clock and use the latest answer.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hil import geo
from hil.autopilot.mavlink import MavlinkAutopilot
from hil.errors import BoardNotAnswering, HilError, LinkError
from hil.mavlink.dialect import UINT16_MAX, mavlink
from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, HIL_SENSOR, HotCodec, arrival_ns
from hil.mavlink.uart_marker import pack_marker
from hil.sim.injections import InjectionSchedule
from hil.sim.plant import Plant
from hil.sim.vehicle import Quadrotor

log = logging.getLogger(__name__)

_MAX_STAMPS = 2_000_000  # ~80 min at 400 Hz: bounded memory in long runs
_ALL_FIELDS = 0x1FFF  # accel, gyro, mag, abs/diff pressure, pressure alt, temperature
_RC_CENTRE = [1500, 1500, 1500, 1500, 1000, 1000, 1000, 1000]
_ARMED = mavlink.MAV_MODE_FLAG_SAFETY_ARMED
_ACTUATORS = HIL_ACTUATOR_CONTROLS.light  # the class of the answers the fast path decodes
_monotonic = time.monotonic
#: RC_CHANNELS_OVERRIDE at the RC rate, packed without a pymavlink object (same bytes).
_RC_OVERRIDE = HotCodec(mavlink.MAVLink_rc_channels_override_message)
_NO_EXTENSION_CHANNELS = (0,) * 10  # chan9_raw..chan18_raw: not sent
_monotonic_ns = time.monotonic_ns

@dataclass
class SimConfig:
    """What the loop simulates and how fast it talks to the board."""

    rate_hz: float = 400.0
    lockstep: bool = True
    gps_rate_hz: float = 5.0  # a u-blox at ArduPilot's usual rate (its minimum is 5 Hz)
    rc_rate_hz: float = 50.0
    battery_rate_hz: float = 10.0
    gcs_heartbeat_hz: float = 1.0
    seed: int = 0
    step_timeout: float = 2.0
    pipeline: bool = True
    wind_speed: float = 0.0
    wind_direction: float = 0.0
    wind_gust: float = 0.0
    battery_cells: int = 3
    battery_capacity_mah: float = 5000.0
    truth_rate_hz: float = 10.0
    rc_uart: str | None = None  # "crsf" / "sbus": RC through the board's receiver UART
    gps_uart: str | None = None  # "ubx" / "nmea": GPS through the board's GPS UART


#: Chunks of the board's GPS-bound bytes read per fix at most (its configuration is a few).
_GPS_READS = 16

class ClosedLoop(InjectionSchedule):
    """Flies the simulated quadrotor with the board's motor outputs."""

    def __init__(
        self,
        autopilot: MavlinkAutopilot,
        config: SimConfig | None = None,
        uart_links: dict[str, Any] | None = None,
    ) -> None:
        self.autopilot = autopilot
        self.conn = autopilot.conn
        self.config = cfg = config or SimConfig()
        self.gps_emulator = None
        if cfg.gps_uart:
            from hil.injectors.gps import GpsReceiverEmulator

            self.gps_emulator = GpsReceiverEmulator(cfg.gps_uart, rate_hz=5.0)
        self.uart_links = dict(uart_links or {})
        self.rc_emulator = None
        rc_rate = cfg.rc_rate_hz
        if cfg.rc_uart:
            from hil.injectors.rc import RcReceiverEmulator

            self.rc_emulator = RcReceiverEmulator(cfg.rc_uart)
            rc_rate = self.rc_emulator.rate_hz
        #: Vehicle, sensors, GNSS sky, battery, wind, the RC and telemetry links and the
        #: threats set on them; every RC frame, UART or MAVLink, crosses its RC link.
        self.plant = Plant.for_mavlink_hil(cfg, rc_rate_hz=rc_rate)
        self.rc_channels = list(_RC_CENTRE)
        self.t_us = 0
        self.dt_us = int(round(1e6 / cfg.rate_hz))
        self.steps = 0
        self.motors = (0.0, 0.0, 0.0, 0.0)
        self.events: list[tuple[float, str, str]] = []
        self.event_hooks: list[Callable[[float, str, str], None]] = []
        self.truth: list[tuple[float, ...]] = []
        self.error: BaseException | None = None
        self.wall_running = 0.0
        self._init_schedule()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next = {"rc": 0, "battery": 0, "gcs": 0, "truth": 0, "gps": 0}
        #: The earliest of the rc/gps/battery/gcs times in `_next`: before it, a step sends
        #: nothing but its sensor sample (unless a UART emulator or the telemetry link has
        #: something), and skips looking at each of them.
        self._next_aux = 0
        self._periods = {
            "gps": _period_us(cfg.gps_rate_hz),
            "rc": _period_us(cfg.rc_rate_hz),
            "battery": _period_us(cfg.battery_rate_hz),
            "gcs": _period_us(cfg.gcs_heartbeat_hz),
            "truth": _period_us(cfg.truth_rate_hz),
        }
        self._missed = 0
        self._in_flight: int | None = None
        self._answered = False
        self._early: dict[int, object] = {}
        #: Messages read but not yet handed to the listeners: a step hands out exactly
        #: those that came before the answer it waits for, whatever the reads' chunking.
        self._backlog: deque = deque()
        #: Bytes written to each receiver UART in this step, announced by a marker
        #: before the step's sample (lockstep only; see hil.mavlink.uart_marker).
        self._uart_written: dict[str, int] = {}
        # Gated stepping (see `start`): the test thread's waits run the loop.
        self._gate = threading.Condition()
        self._gated = False
        self._released = False
        self._stepping = False  # the loop thread is between a release and its pause
        self._until: Callable[[], bool] | None = None
        #: time_usec of every HIL_ACTUATOR_CONTROLS taken: the board's own per-loop stamps
        #: (its sample times in plain lockstep, its loop clock with a loop-time model).
        self.actuator_time_us: list[int] = []
        #: Host clock (monotonic ns) of each answered sample: when its bytes were written,
        #: and when the answer's bytes were read; parallel arrays, one entry per answer.
        self.sample_sent_ns = array("q")
        self.answer_read_ns = array("q")
        self._sent_ns: dict[int, int] = {}

    # -- clock -------------------------------------------------------------------------
    def motor_times_ns(self) -> np.ndarray:
        """When each answer to a sample (the board's motor outputs) was read, host
        monotonic ns, oldest first (a copy). The board's own loop stamps are
        `actuator_time_us`."""
        return np.array(self.answer_read_ns, dtype=np.int64)

    @property
    def time(self) -> float:
        """Simulation time in seconds."""
        return self.t_us / 1_000_000

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second while running."""
        return self.time / self.wall_running if self.wall_running > 0 else 0.0

    @property
    def vehicle(self) -> Quadrotor:
        """The simulated vehicle (``plant.vehicle``), for tests that read its truth."""
        return self.plant.vehicle

    # -- running -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, gated: bool = False) -> None:
        """Run the loop in a background thread; it owns the link until `stop()`.

        Gated (lockstep only): the loop steps only while the autopilot's test thread
        waits, and stops at the step boundary where the wait ends, so whatever the test
        thread sends next reaches the board at the same point of the simulation on every
        run, however busy the host is. Ungated, it runs freely.
        """
        if self.running:
            return
        self.conn.stop_reader()
        self._stop.clear()
        self.error = None
        self._gated = gated and self.config.lockstep
        self._released = False
        if self._gated:
            self.autopilot.stepper = self
        self._thread = threading.Thread(target=self._run, name="closed-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        with self._gate:
            self._gate.notify_all()
        if self.autopilot.stepper is self:
            self.autopilot.stepper = None
        thread.join(timeout)
        self._thread = None
        if thread.is_alive():
            raise HilError(f"closed loop did not stop within {timeout} s")
        backlog = self._backlog
        while backlog:  # read after the last answer: the listeners still get them, in order
            self.conn.dispatch(backlog.popleft())
        if self.conn.link.is_open:
            self.conn.start_reader()

    def run_for(self, seconds: float) -> None:
        """Step in the calling thread for `seconds` of simulation time (lockstep only)."""
        end = self.t_us + int(seconds * 1e6)
        wall0 = time.monotonic()
        try:
            while self.t_us < end:
                self.step()
            self._drain()
        finally:
            self.wall_running += time.monotonic() - wall0

    def run_until(self, done: Callable[[], bool], wall_timeout: float) -> bool:
        """Step (gated loop) until `done()` holds at a step boundary; True when it did.

        `done` is called in the loop thread after every step. False when `wall_timeout`
        wall seconds ran out first; the loop is stopped at a step boundary either way
        before this returns, and a loop that failed raises nothing here (its error is
        on `error` and the autopilot's waits raise it).
        """
        gate = self._gate
        end = _monotonic() + wall_timeout
        with gate:
            self._until = done
            self._released = True
            gate.notify_all()
            while self._released and self.running:
                remaining = end - _monotonic()
                if remaining <= 0:
                    break
                gate.wait(min(remaining, 0.5))
            finished = not self._released
            if self._released:
                # Out of wall time: stop at the next step boundary before handing back.
                self._released = False
                stop_by = _monotonic() + self.config.step_timeout + 1.0
                while self._stepping and self.running and _monotonic() < stop_by:
                    gate.wait(0.05)
            self._until = None
        return finished

    def _run_gated(self) -> None:
        gate = self._gate
        stop = self._stop
        while not stop.is_set():
            with gate:
                self._stepping = False
                gate.notify_all()
                while not self._released and not stop.is_set():
                    gate.wait(0.5)
                if stop.is_set():
                    break
                self._stepping = True
                done = self._until
            wall0 = _monotonic()
            while self._released and not stop.is_set():
                self.step()
                if done is not None and done():
                    break
            self.wall_running += _monotonic() - wall0
            with gate:
                self._released = False
                self._stepping = False
                gate.notify_all()

    def _run(self) -> None:
        wall0 = time.monotonic()
        last = wall0
        try:
            if self._gated:
                try:
                    self._run_gated()
                finally:
                    last = time.monotonic()  # _run_gated counts its own stepping time
                self._drain()
            elif self.config.lockstep:
                while not self._stop.is_set():
                    for _ in range(50):
                        self.step()
                    now = time.monotonic()
                    self.wall_running += now - last
                    last = now
                self._drain()
            else:
                self._run_realtime()
        except (BoardNotAnswering, LinkError) as exc:
            self.error = exc
            self.autopilot.fail(exc)
            log.warning("closed loop stopped: %s", exc)
        except Exception as exc:  # a bug here must not leave waits hanging
            self.error = exc
            self.autopilot.fail(exc)
            log.exception("closed loop crashed")
        finally:
            self.wall_running += time.monotonic() - last
            with self._gate:
                self._released = False
                self._stepping = False
                self._gate.notify_all()

    def _run_realtime(self) -> None:
        period = self.dt_us * 1e-6
        next_tick = time.monotonic()
        while not self._stop.is_set():
            self._send_inputs()
            self._integrate()
            next_tick += period
            while True:
                remaining = next_tick - time.monotonic()
                if remaining <= 0:
                    break
                for msg in self.conn.pump(remaining):
                    if msg.get_type() == "HIL_ACTUATOR_CONTROLS":
                        self._take_actuators(msg)
            if -remaining > period:
                self._missed += 1
                next_tick = time.monotonic()

    def step(self) -> None:
        """One lockstep cycle.

        Without pipelining: send the sample for now, take the board's answer to it,
        integrate. With pipelining (the default) the answer to a sample drives the step
        after it: the harness integrates and sends the next sample while the board
        computes, so both processes work at once. That is one loop period of actuator
        latency (2.5 ms at 400 Hz, well inside the 30 ms motor lag), and still exactly
        repeatable.
        """
        if not self.config.pipeline:
            t_us = self.t_us
            self._send_inputs()
            self._await_actuators(t_us)
            self._integrate()
            return
        if self._in_flight is None:
            if self._answered:
                # Restarting after a drain: the answer to the current sample is in hand.
                self._answered = False
                self._integrate()
                self._send_inputs()
                self._in_flight = self.t_us
                return
            self._send_inputs()
            self._in_flight = self.t_us
        self._integrate()
        self._send_inputs()
        pending, self._in_flight = self._in_flight, self.t_us
        self._await_actuators(pending)

    def _drain(self) -> None:
        """Take the answer to the sample still in flight, so the link is quiet when we stop."""
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            self._await_actuators(pending)
            self._answered = True

    def _await_actuators(self, t_us: int) -> None:
        """Take the board's answer to the sample stamped ``t_us``.

        Messages reach the listeners in the board's order, up to and including this
        answer; whatever the same read brought after it waits for the next step. So the
        state the harness sees at a step boundary is a function of the board's output
        alone, not of how the kernel chunked it.

        A board stamps its answer with the sample's time (HIL_ACTUATOR_CONTROLS flags
        bit 0 set). One that stamps its own loop clock instead (bit 0 clear, e.g. the
        virtual board's loop-time model) answers in order: its next answer is the one
        to the oldest sample in flight.
        """
        early = self._early
        if early:
            msg = early.pop(t_us, None)
            early.clear()
            if msg is not None:
                self._take_actuators(msg, t_us)
                return
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
                        self._take_actuators(msg, t_us)
                        return
                    if msg.time_usec > t_us:
                        early[msg.time_usec] = msg  # a board that skipped ahead
            if deadline is None:
                deadline = _monotonic() + self.config.step_timeout
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise BoardNotAnswering(
                    f"board on {conn.link.url} sent no HIL_ACTUATOR_CONTROLS for the sensor sample "
                    f"at t={t_us * 1e-6:.4f} s within {self.config.step_timeout:.1f} s; "
                    f"it stopped answering (last mode {self.autopilot.mode}, armed {self.autopilot.armed})"
                )
            backlog.extend(conn.read_messages(remaining))

    def _take_actuators(self, msg, sample_us: int | None = None) -> None:
        stamps = self.actuator_time_us
        if len(stamps) < _MAX_STAMPS:
            stamps.append(msg.time_usec)
            if sample_us is not None:
                sent = self._sent_ns.pop(sample_us, 0)
                if sent:
                    self.sample_sent_ns.append(sent)
                    self.answer_read_ns.append(arrival_ns(msg, 0) or _monotonic_ns())
        if msg.mode & _ARMED:
            c = msg.controls
            self.motors = (c[0], c[1], c[2], c[3])
        else:
            self.motors = (0.0, 0.0, 0.0, 0.0)

    def _send_inputs(self) -> None:
        """Write this step's input: what else is due now, then the sensor sample, at once."""
        t_us = self.t_us
        conn = self.conn
        sim = conn.sim
        plant = self.plant
        if (
            t_us >= self._next_aux
            or self.rc_emulator is not None
            or self.gps_emulator is not None
            or plant.telemetry_link.pending
        ):
            out = self._due_inputs(t_us)
        else:
            out = None
        v = plant.vehicle
        ax, ay, az, gx, gy, gz = plant.imu.sample(v)
        mx, my, mz = plant.mag.sample(v.quat)
        alt_amsl = geo.HOME.alt_m - v.pos[2]
        pressure, temperature = plant.baro.sample(alt_amsl)
        seq = sim.seq
        frame = HIL_SENSOR.pack(
            seq, sim.srcSystem, sim.srcComponent,
            t_us, ax, ay, az, gx, gy, gz, mx, my, mz,
            pressure, 0.0, alt_amsl, temperature, _ALL_FIELDS, 0,
        )
        sim.seq = (seq + 1) % 256
        if out:
            out.append(frame)
            frame = b"".join(out)
        conn.send_bytes(frame)
        if self.config.lockstep:
            sent = self._sent_ns
            if len(sent) > 8:  # samples never answered (a drain, a restart) must not pile up
                sent.clear()
            sent[t_us] = _monotonic_ns()

    def _due_inputs(self, t_us: int) -> list[bytes]:
        """Frames due before this step's sensor sample (RC, GPS, battery, GCS heartbeats);
        UART receivers get their bytes here too."""
        conn = self.conn
        sim = conn.sim
        plant = self.plant
        out: list[bytes] = []
        nxt = self._next
        written = self._uart_written
        if self.rc_emulator is not None:
            data = self.rc_emulator.produce(t_us, self.rc_channels, plant.rc_link)
            if data:
                self.uart_links["rc"].write(data)
                written["rc"] = len(data)
        elif t_us >= nxt["rc"]:
            nxt["rc"] = t_us + self._periods["rc"]
            if plant.rc_frame_delivered():
                gcs = conn.gcs  # its seq as pymavlink's pack would use it (not advanced)
                c1, c2, c3, c4, c5, c6, c7, c8 = self.rc_channels[:8]
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
                self._gps_listen(gps, link)
                data = gps.produce(t, plant.gnss_observation(t))
                if data:
                    link.write(data)
                    written["gps"] = written.get("gps", 0) + len(data)
                    baud = gps.switch_baud()  # its answer has left: now it moves, as a u-blox does
                    if baud is not None:
                        link.set_baudrate(baud)
                        self._event("note", f"GPS receiver moved to {baud} baud")
        elif t_us >= nxt["gps"]:
            nxt["gps"] = t_us + self._periods["gps"]
            out.append(self._hil_gps(t_us, plant.gnss_observation(t)).pack(sim))
        if t_us >= nxt["battery"]:
            nxt["battery"] = t_us + self._periods["battery"]
            out.append(self._battery_message().pack(sim))
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
            if self.config.lockstep:
                for uart, count in written.items():
                    out.append(pack_marker(sim.seq, sim.srcSystem, sim.srcComponent, t_us, uart, count))
                    sim.seq = (sim.seq + 1) % 256
            written.clear()
        self._next_aux = min(nxt["rc"], nxt["gps"], nxt["battery"], nxt["gcs"])
        return out

    def _integrate(self) -> None:
        plant = self.plant
        plant.step(self.dt_us * 1e-6, self.motors)
        self.t_us += self.dt_us
        self.steps += 1
        if self._schedule and self._schedule[0].t_us <= self.t_us:
            self._apply_due()
        if self.t_us >= self._next["truth"]:
            self._next["truth"] = self.t_us + self._periods["truth"]
            v = plant.vehicle
            p = v.pos
            roll, pitch, yaw = v.euler()
            self.truth.append((self.time, p[0], p[1], p[2], roll, pitch, yaw))

    @staticmethod
    def _gps_listen(gps: Any, link: Any) -> None:
        """Hand the GPS emulator what the board sent its receiver since the last fix (its
        configuration: CFG-PRT, CFG-MSG, VALSET, ...), without waiting. The answers go out
        with the next fix. A board that sends nothing (the virtual one) costs one poll; one
        that never stops sending is read at most `_GPS_READS` chunks per fix."""
        for _ in range(_GPS_READS):
            chunk = link.read(0.0)
            if chunk is None:
                return
            gps.on_bytes(chunk.data)

    def _hil_gps(self, t_us: int, obs):
        vn, ve, vd = obs.vel_ned
        ground = math.hypot(vn, ve)
        cog = (math.degrees(math.atan2(ve, vn)) % 360.0) * 100.0 if ground > 0.2 else UINT16_MAX
        return mavlink.MAVLink_hil_gps_message(
            t_us,
            obs.fix_type,
            int(round(obs.lat_deg * 1e7)),
            int(round(obs.lon_deg * 1e7)),
            int(round(obs.alt_m * 1000.0)),
            _u16(obs.eph_m * 100.0),
            _u16(obs.epv_m * 100.0),
            _u16(ground * 100.0),
            _i16(vn * 100.0),
            _i16(ve * 100.0),
            _i16(vd * 100.0),
            int(cog),
            obs.num_sv,
        )

    def _battery_message(self):
        b = self.plant.battery
        cells = [UINT16_MAX] * 10
        cells[0] = _u16(b.voltage * 1000.0)
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


_INT16_MAX = 32767


def _period_us(rate_hz: float) -> int:
    return int(round(1e6 / rate_hz)) if rate_hz > 0 else 1 << 62


def _u16(x: float) -> int:
    return int(max(0, min(65534, round(x))))


def _i16(x: float) -> int:
    return int(max(-32767, min(32767, round(x))))

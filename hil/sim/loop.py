"""The closed loop: a plant on one side, a firmware on the other, through a simulator link.

The models (vehicle, sensors, GNSS sky, battery, wind, RC and telemetry links, and the
threats injections set on them) are the loop's plant (`hil.sim.plant.Plant`); this
module moves it in time. How the plant's state reaches the firmware and its motor
outputs come back is the simulator link's business (`hil.sim.simlink`): PX4's HIL_*
messages for MAVLink boards (`hil.sim.mavlink_hil_link`), Betaflight's UDP packets, ...

Pacing. Lockstep (boards that follow our clock): send one sample, wait for the board's
answer to it, integrate, repeat, as fast as both sides go; gated, the loop steps only
while the test thread waits. Real time (boards with their own clock): send samples at
the loop rate by the wall clock and use the latest answer.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hil.errors import BoardNotAnswering, HilError, LinkError
from hil.sim.injections import InjectionSchedule
from hil.sim.mavlink_hil_link import MavlinkHilLink
from hil.sim.pilot import AltitudePilot
from hil.sim.plant import Plant
from hil.sim.realtime import LoopTiming, Ring, loop_timing, make_realtime
from hil.sim.simlink import AnswerStamps, Motors, SimulatorLink
from hil.sim.vehicle import Quadrotor

log = logging.getLogger(__name__)

_monotonic = time.monotonic
_STOPPED: Motors = (0.0, 0.0, 0.0, 0.0)
#: Truth rows kept: the last 10 minutes at the truth rate.
TRUTH_WINDOW_S = 600.0
#: Seconds of send stamps a real-time loop keeps for `timing()`.
TIMING_WINDOW_S = 120.0
#: Periods a real-time loop integrates to catch up after a stall (beyond: time jumps).
_MAX_CATCH_UP = 200
#: The AUX1 arm switch (channel 5), on and off.
ARM_CHANNEL = 4
ARM_US = 1900
DISARM_US = 1000


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
    #: Real-time pacing: SCHED_FIFO priority asked for the loop thread (None: none),
    #: and how long before each tick it stops sleeping and spins.
    realtime_priority: int | None = None
    spin_us: int = 0


def mavlink_loop(autopilot: Any, config: SimConfig | None = None, uart_links: dict[str, Any] | None = None) -> ClosedLoop:
    """The closed loop of a MAVLink board: the `mavlink_hil` link on its port (and its
    receiver UARTs), the default quad's plant, the adapter's waits stepping it."""
    cfg = config or SimConfig()
    link = MavlinkHilLink(autopilot, cfg, uart_links)
    #: Every RC frame, UART or MAVLink, crosses the plant's RC link at the radio's rate.
    plant = Plant.for_mavlink_hil(cfg, rc_rate_hz=link.rc_rate_hz)
    return ClosedLoop(plant, link, cfg, controller=autopilot)


class ClosedLoop(InjectionSchedule):
    """Moves a plant in time against a firmware, through a simulator link.

    ``controller`` is the flight-controller adapter whose waits step a gated lockstep
    loop (its ``stepper``) and which fails with the loop (``fail``); None when nothing
    waits on the loop.
    """

    def __init__(self, plant: Plant, link: SimulatorLink, config: Any, *, controller: Any = None) -> None:
        self.plant = plant
        self.link = link
        self.config = config
        self.controller = controller
        self.supported_injections = link.supported_injections
        plant.rc_channels[:] = link.rc_idle
        link.on_event = self._event
        self.pipeline = bool(config.pipeline) and link.pipeline
        self.step_timeout = float(config.step_timeout)
        self.t_us = 0
        self.dt_us = int(round(1e6 / config.rate_hz))
        self.steps = 0
        self.motors: Motors = _STOPPED
        #: Truth rows (t, n, e, d, roll, pitch, yaw, 4 motors), the last 10 minutes;
        #: `truth.values()` gives them oldest first.
        self.truth = Ring(int(TRUTH_WINDOW_S * config.truth_rate_hz) + 1, 11)
        #: The pilot model flying the throttle stick (`hold_altitude`), if any.
        self.pilot: AltitudePilot | None = None
        self._pilot_period_us = _period_us(config.rc_rate_hz)
        self._next_pilot = 0
        #: Real-time pacing: what the loop thread got, its send stamps, missed periods.
        self.scheduler = "not started"
        self._send_ns = Ring(int(TIMING_WINDOW_S * config.rate_hz) + 16) if not link.lockstep else None
        self._started_ns = 0
        self.error: BaseException | None = None
        self.wall_running = 0.0
        #: Called in the real-time loop thread after every send (the loop process's
        #: shared-memory exchange, `hil.sim.rt_child`); None: nothing.
        self.on_tick: Callable[[], None] | None = None
        self._init_schedule()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._truth_period_us = _period_us(config.truth_rate_hz)
        self._next_truth = 0
        self._missed = 0
        self._in_flight: int | None = None
        self._answered = False
        # Gated stepping (see `start`): the test thread's waits run the loop.
        self._gate = threading.Condition()
        self._gated = False
        self._released = False
        self._stepping = False  # the loop thread is between a release and its pause
        self._until: Callable[[], bool] | None = None

    @property
    def lockstep(self) -> bool:
        """True when the firmware steps on our samples (the link says)."""
        return self.link.lockstep

    @property
    def injection_target(self) -> str:
        return f"the {self.link.name} link"

    # -- the pilot's radio -------------------------------------------------------------
    @property
    def rc_channels(self) -> list[int]:
        """The transmitter's stick and switch positions (us), as the link sends them."""
        return self.plant.rc_channels

    @rc_channels.setter
    def rc_channels(self, values: list[int]) -> None:
        self.plant.rc_channels[:] = values

    def set_sticks(self, roll: int = 1500, pitch: int = 1500, throttle: int | None = None, yaw: int = 1500) -> None:
        """Put the sticks somewhere (us, AETR); ``throttle`` None leaves it to the pilot model."""
        ch = self.plant.rc_channels
        ch[0], ch[1], ch[3] = int(roll), int(pitch), int(yaw)
        if throttle is not None:
            self.pilot = None
            ch[2] = int(throttle)

    def arm_switch(self, on: bool) -> None:
        """The AUX1 arm switch (channel 5) on or off."""
        self.plant.rc_channels[ARM_CHANNEL] = ARM_US if on else DISARM_US

    def hold_altitude(self, target_m: float | None) -> None:
        """Let the pilot model fly the throttle to ``target_m`` (None: hands off, throttle
        low). A link without physics has nothing to fly: a height is refused."""
        if target_m is None or (target_m == 0 and not self.plant.physics):
            self.pilot = None
            self.plant.rc_channels[2] = 1000
            return
        if not self.plant.physics:
            raise HilError(f"the {self.link.name} link has no physics: there is no height to hold")
        if self.pilot is None:
            self.pilot = AltitudePilot(target_m, AltitudePilot.hover_stick(self.plant.vehicle))
        else:
            self.pilot.target_m = target_m

    @property
    def altitude(self) -> float:
        """Height of the simulated vehicle above home, m (0 without physics)."""
        v = self.plant.vehicle
        return -v.pos[2] if v is not None else 0.0

    def pose(self) -> tuple[float, float, float, float, float, float]:
        """(altitude, north, east, ground speed, roll, pitch) of the simulated vehicle now."""
        v = self.plant.vehicle
        if v is None:
            return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        pn, pe, pd = v.pos
        roll, pitch, _ = v.euler()
        return (-pd, pn, pe, float(np.hypot(v.vel[0], v.vel[1])), roll, pitch)

    @property
    def missed_periods(self) -> int:
        """Real-time ticks the host held the loop past (integrated without sending)."""
        return self._missed

    # -- what the link measured --------------------------------------------------------
    def answer_stamps(self) -> AnswerStamps | None:
        """The link's stamps of every answer so far (None: its answers name no sample)."""
        return self.link.answer_stamps()

    def motor_times_ns(self) -> np.ndarray:
        """When each answer to a sample (the board's motor outputs) was read, host
        monotonic ns, oldest first (a copy)."""
        return self.link.motor_times_ns()

    # -- clock -------------------------------------------------------------------------
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

        Gated (lockstep only): the loop steps only while the controller's test thread
        waits, and stops at the step boundary where the wait ends, so whatever the test
        thread sends next reaches the board at the same point of the simulation on every
        run, however busy the host is. Ungated, it runs freely.
        """
        if self.running:
            return
        self.link.open()
        self._stop.clear()
        self.error = None
        self._gated = gated and self.lockstep and self.controller is not None
        self._released = False
        if self._gated:
            self.controller.stepper = self
        self._thread = threading.Thread(target=self._run, name="closed-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        with self._gate:
            self._gate.notify_all()
        if self.controller is not None and self.controller.stepper is self:
            self.controller.stepper = None
        thread.join(timeout)
        self._thread = None
        if thread.is_alive():
            raise HilError(f"closed loop did not stop within {timeout} s")
        self.link.close()

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
        on `error` and the controller's waits raise it).
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
                stop_by = _monotonic() + self.step_timeout + 1.0
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
            elif self.lockstep:
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
            self._fail(exc)
            log.warning("closed loop stopped: %s", exc)
        except HilError as exc:  # a scenario's mistake (an injection that cannot be): no traceback
            self.error = exc
            self._fail(exc)
            log.error("closed loop stopped: %s", exc)
        except Exception as exc:  # a bug here must not leave waits hanging
            self.error = exc
            self._fail(exc)
            log.exception("closed loop crashed")
        finally:
            self.wall_running += time.monotonic() - last
            with self._gate:
                self._released = False
                self._stepping = False
                self._gate.notify_all()

    def _fail(self, exc: BaseException) -> None:
        if self.controller is not None:
            self.controller.fail(exc)

    def _run_realtime(self) -> None:
        """Step by the wall clock: at each tick take the newest answer, integrate, send.

        The thread sleeps to `spin_us` before the tick and spins the rest, so the send
        period holds to microseconds when the host lets it; a tick more than a period
        late is counted missed, the plant is integrated over the periods lost (nothing
        is sent for them) and the schedule moves on, so simulation time keeps the wall
        clock's pace, as the firmware's clock does."""
        self.scheduler = make_realtime(self.config.realtime_priority)
        old_switch = sys.getswitchinterval()
        sys.setswitchinterval(min(old_switch, 0.0005))
        period_ns = self.dt_us * 1000
        spin_ns = int(self.config.spin_us) * 1000
        mono = time.monotonic_ns
        sleep = time.sleep
        next_ns = mono()
        if not self._started_ns:
            self._started_ns = next_ns
        link = self.link
        plant = self.plant
        if self._send_ns is None:
            self._send_ns = Ring(int(TIMING_WINDOW_S * self.config.rate_hz) + 16)
        stamps = self._send_ns
        stop = self._stop
        on_tick = self.on_tick
        try:
            while not stop.is_set():
                wait = next_ns - mono()
                if wait > spin_ns + 50_000:
                    sleep((wait - spin_ns) * 1e-9)
                while mono() < next_ns:
                    pass
                sent = mono()
                motors = link.outputs(self.t_us, 0.0)
                if motors is not None:
                    self.motors = motors
                self._integrate()
                link.send(self.t_us, plant)
                stamps.append(sent)
                if on_tick is not None:
                    on_tick()
                next_ns += period_ns
                late = mono() - next_ns
                if late > period_ns:
                    # The host held us past whole periods: the firmware's clock ran on,
                    # so the plant catches up (without sending) and simulation time
                    # stays the wall clock's; the ticks count as missed.
                    skipped = int(late // period_ns)
                    self._missed += skipped
                    next_ns += skipped * period_ns
                    for _ in range(min(skipped, _MAX_CATCH_UP)):
                        self._integrate()
                    if skipped > _MAX_CATCH_UP:
                        self.t_us += (skipped - _MAX_CATCH_UP) * self.dt_us
        finally:
            sys.setswitchinterval(old_switch)
            self.wall_running = (mono() - self._started_ns) * 1e-9

    def step(self) -> None:
        """One lockstep cycle.

        Without pipelining: send the sample for now, take the board's answer to it,
        integrate. With pipelining (the default, where the link allows it) the answer to
        a sample drives the step after it: the harness integrates and sends the next
        sample while the board computes, so both processes work at once. That is one
        loop period of actuator latency (2.5 ms at 400 Hz, well inside the 30 ms motor
        lag), and still exactly repeatable.
        """
        link = self.link
        if not self.pipeline:
            t_us = self.t_us
            link.send(t_us, self.plant)
            self.motors = link.outputs(t_us, self.step_timeout)
            self._integrate()
            return
        if self._in_flight is None:
            if self._answered:
                # Restarting after a drain: the answer to the current sample is in hand.
                self._answered = False
                self._integrate()
                link.send(self.t_us, self.plant)
                self._in_flight = self.t_us
                return
            link.send(self.t_us, self.plant)
            self._in_flight = self.t_us
        self._integrate()
        link.send(self.t_us, self.plant)
        pending, self._in_flight = self._in_flight, self.t_us
        self.motors = link.outputs(pending, self.step_timeout)

    def _drain(self) -> None:
        """Take the answer to the sample still in flight, so the link is quiet when we stop."""
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            self.motors = self.link.outputs(pending, self.step_timeout)
            self._answered = True

    def _integrate(self) -> None:
        plant = self.plant
        if plant.physics:
            plant.step(self.dt_us * 1e-6, self.motors)
        self.t_us += self.dt_us
        self.steps += 1
        if self._schedule and self._schedule[0].t_us <= self.t_us:
            self._apply_due()
        pilot = self.pilot
        if pilot is not None and self.t_us >= self._next_pilot:
            self._next_pilot = self.t_us + self._pilot_period_us
            v = plant.vehicle
            plant.rc_channels[2] = pilot.throttle(-v.pos[2], -v.vel[2], self._pilot_period_us * 1e-6)
        if self.t_us >= self._next_truth and plant.physics:
            self._next_truth = self.t_us + self._truth_period_us
            v = plant.vehicle
            p = v.pos
            roll, pitch, yaw = v.euler()
            self.truth.append((self.time, p[0], p[1], p[2], roll, pitch, yaw, *self.motors))

    # -- what a real-time loop achieved ------------------------------------------------
    def timing(self, since_s: float = 0.0) -> LoopTiming:
        """Send-period and answer statistics (wall clock), from ``since_s`` of the run."""
        send = self._send_ns.values() if self._send_ns is not None else np.zeros(0, dtype=np.int64)
        motor = self.link.motor_times_ns()
        cut = self._started_ns + int(since_s * 1e9)
        timing = loop_timing(
            send[send >= cut], motor[motor >= cut], self.link.latencies_ns(), self.config.rate_hz, self.scheduler
        )
        if timing is None:
            raise HilError("the real-time loop has not run long enough to measure its timing")
        return timing

    def timing_series(self) -> tuple[np.ndarray, np.ndarray, float, int]:
        """(send stamps, answer arrival stamps, target rate Hz, start stamp), host
        monotonic ns, oldest first: what the report's loop-period figures are made from.
        A link without physics (the bench) has its own: the radio's frame writes."""
        if not self.link.physics:
            return self.link.timing_series()
        send = self._send_ns.values() if self._send_ns is not None else np.zeros(0, dtype=np.int64)
        return send, self.link.motor_times_ns(), self.config.rate_hz, self._started_ns

    def report(self, since_s: float = 1.0) -> tuple[list[str], dict[str, object]]:
        """Lines for a scenario's notes and its measurements, from ``since_s`` of the run."""
        if not self.link.physics:
            return self.link.report(since_s)
        timing = self.timing(since_s=since_s)
        return timing.lines(), timing.measurements()

    def close(self) -> None:
        """Stop the loop (its link closes with it)."""
        self.stop()

    def __enter__(self) -> ClosedLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _period_us(rate_hz: float) -> int:
    return int(round(1e6 / rate_hz)) if rate_hz > 0 else 1 << 62

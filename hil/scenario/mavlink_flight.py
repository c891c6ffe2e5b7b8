"""How a MAVLink board is flown through a scenario (the runner's `Flight` for it).

Everything is measured in vehicle time (the board's clock, which in lockstep is the
simulation's). Setup flies as a ground station would: GUIDED, arm, take off to the
setup altitude, fly to the start point, enter the setup mode (a setup on the ground,
armed = false, only enters the mode; `arm_attempt` injections ask the board to arm on
the timeline). The board's messages are
recorded as they arrive (`_Recorder`); a watchdog fails every wait at once when the
board stops answering. Host-clock latencies (command -> ACK, sensor -> actuator) are
measured beside the run.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from typing import Any

from hil.autopilot.mavlink import MavlinkAutopilot
from hil.errors import BoardNotAnswering, CommandRefused, HilError, LinkError
from hil.lifecycle import BoardState
from hil.mavlink.dialect import mavlink
from hil.mavlink.framing import arrival_ns
from hil.scenario.host_timing import HostTiming, heartbeat_rate_for, request_heartbeat_rate
from hil.scenario.model import Scenario
from hil.scenario.result import ScenarioResult
from hil.scenario.timeline import RecorderBase
from hil.sim import geo
from hil.sim.loop import ClosedLoop, SimConfig


class _Recorder(RecorderBase):
    """Buffers what the board says, in absolute vehicle time, for the Timeline."""

    def __init__(self, autopilot: MavlinkAutopilot) -> None:
        super().__init__()
        self.ap = autopilot
        self.roll = 0.0
        self.pitch = 0.0
        #: Host clock (monotonic ns) of the last message from the board, and vehicle time
        #: of the last state sample: what the watchdog looks at.
        self.last_message_ns = time.monotonic_ns()
        self.last_state_t: float | None = None
        #: time_usec and arrival ns of every HIL_ACTUATOR_CONTROLS: the loop's timing
        #: (arrays of machine integers: no object per message for the collector to scan).
        self.loop_usec = array("q")
        self.loop_ns = array("q")

    def on_message(self, msg) -> None:
        self.last_message_ns = time.monotonic_ns()
        mtype = msg.get_type()
        if mtype == "HIL_ACTUATOR_CONTROLS":
            self.loop_usec.append(msg.time_usec)
            self.loop_ns.append(arrival_ns(msg, 0))
            return
        t = self.ap.vehicle_time
        if mtype == "GLOBAL_POSITION_INT":
            north, east, _ = geo.lla_to_ned(msg.lat * 1e-7, msg.lon * 1e-7, msg.alt * 1e-3)
            speed = math.hypot(msg.vx, msg.vy) * 0.01
            self.states.append(
                (t, bool(self.armed), self.mode or "?", msg.relative_alt * 1e-3, north, east, speed, self.roll, self.pitch)
            )
            self.last_state_t = t
        elif mtype == "ATTITUDE":
            self.roll, self.pitch = msg.roll, msg.pitch
        elif mtype == "HEARTBEAT" and msg.get_srcComponent() == self.ap.target_component:
            mode = self.ap.profile.mode_name(msg.custom_mode)
            armed = bool(msg.base_mode & mavlink.MAV_MODE_FLAG_SAFETY_ARMED)
            self.track(t, mode, armed)
        elif mtype == "STATUSTEXT":
            self.events.append((t, "statustext", msg.text))

    def on_sim_event(self, t: float, kind: str, text: str) -> None:
        self.events.append((t, kind, text))


#: A board that sends nothing for this long (wall s) has stopped answering.
SILENCE_S = 5.0
#: A board whose vehicle time runs on this long (s) without a position report has stopped
#: reporting its state (the expectations already need one at least every second).
STATE_GAP_S = 3.0


class _Watchdog:
    """Notices a board that stopped answering mid-run (frozen, unplugged, crashed) and
    fails every wait at once with BoardNotAnswering, so the run ends as an error of the
    bench within SILENCE_S instead of running out its waits or reaching a verdict over a
    recording that stopped.

    A lockstep board speaks only when the loop steps it, and the loop already gives up
    on an unanswered step (its `step_timeout`); so for it only the state gap in vehicle
    time is watched here, never wall-clock silence (the harness may be busy between
    waits, scheduling ten thousand injections, with the board rightly quiet).
    """

    def __init__(self, ap: MavlinkAutopilot, recorder: _Recorder, board: str, *, lockstep: bool) -> None:
        self.ap = ap
        self.recorder = recorder
        self.board = board
        self.lockstep = lockstep
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # The state-gap check starts with the first position report (a board's clock may
        # jump when the lockstep loop takes it over); the silence check starts now.
        self.recorder.last_message_ns = time.monotonic_ns()
        self._thread = threading.Thread(target=self._watch, name="hil-board-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            reason = self.check()
            if reason is not None:
                self.reason = reason
                self.ap.fail(BoardNotAnswering(reason))
                return

    def check(self) -> str | None:
        """Why the board counts as stopped now, or None."""
        silent = (time.monotonic_ns() - self.recorder.last_message_ns) * 1e-9
        if silent > SILENCE_S and not self.lockstep:
            return f"nothing received for {silent:.1f} s (wall clock)"
        last = self.recorder.last_state_t
        if last is not None and self.ap.vehicle_time - last > STATE_GAP_S:
            return (
                f"its clock ran on to t={self.ap.vehicle_time:.2f} s (board time) without a "
                f"position report for {self.ap.vehicle_time - last:.1f} s"
            )
        return None

    def stopped_answering(self, exc: BaseException | None, sim: ClosedLoop | None, t0: float) -> str | None:
        """The run's error message when the board stopped answering, else None."""
        loop_error = sim.error if sim is not None else None
        lost = (
            self.reason is not None
            or isinstance(exc, BoardNotAnswering | LinkError)
            or isinstance(loop_error, BoardNotAnswering | LinkError)
        )
        if not lost:
            return None
        why = self.reason or str(exc if isinstance(exc, BoardNotAnswering | LinkError) else loop_error)
        last = self.recorder.last_state_t
        if last is None:
            return f"board {self.board} stopped answering; no state read at all ({why})"
        return f"board {self.board} stopped answering at t={last - t0:.2f} s; no state read since ({why})"


def sim_config_for(scenario: Scenario) -> SimConfig:
    setup = scenario.setup
    config = SimConfig(seed=scenario.seed)
    if setup.wind is not None:
        setup.wind.apply_to(config)
    if setup.battery is not None:
        config.battery_cells = setup.battery.cells
        config.battery_capacity_mah = setup.battery.capacity_mah
    return config


class MavlinkFlight:
    """A scenario's flight on a MAVLink board (`hil.session.BoardSession`)."""

    #: Once the vehicle is down and disarmed, the run ends this long after the last
    #: injection started (vehicle s); stops do not count (a landed vehicle is done).
    settle_s = 1.0
    settle_after_stops = False
    #: Wall seconds the end of the scenario is waited for beyond its duration.
    end_margin_s = 1.0

    def __init__(self, session: Any) -> None:
        self.session = session
        self.board = session.board
        self.ap: MavlinkAutopilot = session.autopilot
        assert self.ap is not None
        self.profile = self.ap.profile
        self.recorder = _Recorder(self.ap)
        self.loop: ClosedLoop | None = None
        self.host = HostTiming(self.ap)
        self.watchdog = _Watchdog(self.ap, self.recorder, self.board.name, lockstep=self.board.lockstep)
        self._heartbeat_hz: float | None = None
        self._asked_heartbeat = False
        self._hooked = False
        #: Arm attempts still to make: [next due (vehicle s), stop (vehicle s) or None, id].
        self._arm_attempts: list[list[Any]] = []

    # -- before flying -----------------------------------------------------------------
    def prepare(self, scenario: Scenario) -> Scenario:
        """The scenario with the board's own settings put in (its failsafe times)."""
        if scenario.board_names():
            try:
                scenario = scenario.with_board_times(self.session.param_snapshot)
            except KeyError as exc:
                raise HilError(f"cannot read the board's settings the scenario refers to: {exc}") from None
        return scenario

    def now(self) -> float:
        """The scenario's clock: the board's vehicle time."""
        return self.ap.vehicle_time

    def loop_time(self, t: float) -> float:
        """Loop time at scenario time ``t`` (the loop's clock may be offset from the board's)."""
        return t + (self.loop.time - self.ap.vehicle_time) if self.loop is not None else t

    def bring_up(self, scenario: Scenario, capture: Any = None) -> None:
        ap = self.ap
        ap.add_hook(self.recorder.on_message)
        self._hooked = True
        if capture is not None:
            capture.attach(self.session)
        for name, value in scenario.setup.params.items():
            ap.set_param(name, value)
        if self.board.simulated:
            loop = self.loop = self.session.make_sim(sim_config_for(scenario))
            self.host.loop = loop
            loop.event_hooks.append(self.recorder.on_sim_event)
            if capture is not None:
                capture.attach(self.session)  # the receiver UARTs are open now
            loop.start(gated=True)
        elif scenario.injections:
            raise HilError(
                f"board {self.board.name} flies its own physics; injections need the harness's closed loop"
            )
        self.host.start()
        self.watchdog.start()
        self._heartbeat_hz = heartbeat_rate_for(scenario)

    def setup(self, scenario: Scenario, result: ScenarioResult) -> None:
        """Arm and fly to the setup's altitude, point and mode; ask for heartbeats."""
        if scenario.setup.armed:
            _fly_setup(self.ap, scenario)
            self.board.lifecycle.mark(BoardState.ARMABLE, "arming accepted")
            self.board.lifecycle.mark(BoardState.FLYING, "took off to the setup altitude")
        else:  # on the ground in the setup's mode; the scenario arms it, if at all
            mode = scenario.setup.mode
            self.ap.until_accepted(f"enter {mode}", lambda: self.ap.set_mode(mode), within=60.0)
            self.ap.wait_mode(mode, within=5.0)
            # As a pilot waits before arming: the checks pass and the estimator has a
            # position, so what the timeline does is what refuses an arming.
            self.ap.wait_ready(within=60.0)
        if self._heartbeat_hz is not None:
            refused = request_heartbeat_rate(self.ap, self._heartbeat_hz)
            self._asked_heartbeat = refused is None
            result.notes.append(
                refused or f"HEARTBEAT requested at {self._heartbeat_hz:g} Hz to resolve the failsafe-latency limit"
            )

    def note(self, t: float, kind: str, text: str) -> None:
        self.recorder.events.append((t, kind, text))

    def schedule_action(self, inj: Any, t0: float) -> None:
        """An `arm_attempt` at scenario time ``t0 + inj.start``, made during `wait`."""
        stop = None if inj.stop is None else t0 + inj.stop
        self._arm_attempts.append([t0 + inj.start, stop, inj.id])

    def wait(self, what: str, done, within: float) -> None:
        """Until ``done()`` holds, checked at each message (gated loop: at each step);
        the arm attempts fall due meanwhile and are made between two waits."""
        t_end = self.ap.vehicle_time + within
        while self._arm_attempts:
            due = min(a[0] for a in self._arm_attempts)
            left = max(t_end - self.ap.vehicle_time, 0.0)
            self.ap.wait_for(
                f"{what} (or the arm attempt due at {due:.1f} s)",
                lambda _msg, due=due: done() or self.ap.vehicle_time >= due,
                within=left,
            )
            if done():
                return
            self._arm_now(due)
        self.ap.wait_for(what, lambda _msg: done(), within=max(t_end - self.ap.vehicle_time, 0.0))

    def _arm_now(self, due: float) -> None:
        """Make the arm attempts due by ``due``: one COMPONENT_ARM_DISARM each; an attempt
        with a stop comes again a second later until the board arms or the stop passes."""
        t = self.ap.vehicle_time
        for attempt in [a for a in self._arm_attempts if a[0] <= due]:
            ident = attempt[2]
            try:
                self.ap.arm()
                self.note(t, "note", f"arm attempt {ident}: accepted")
                accepted = True
            except CommandRefused as exc:
                self.note(t, "note", f"arm attempt {ident}: {exc}")
                accepted = False
            attempt[0] += 1.0
            if accepted or attempt[1] is None or attempt[0] > attempt[1]:
                self._arm_attempts.remove(attempt)

    def check_end(self) -> None:
        """The end came; was all of it read from the board?"""
        stopped = self.watchdog.reason or self.watchdog.check()
        if stopped is not None:
            raise BoardNotAnswering(stopped)
        if self.loop is not None and self.loop.error is not None:
            raise HilError(f"the closed loop stopped: {self.loop.error}")
        self.host.finish()

    def error_text(self, exc: HilError, t0: float) -> tuple[str, str | None]:
        """(the run's error, the board error when the board stopped answering)."""
        board_error = self.watchdog.stopped_answering(exc, self.loop, t0)
        return (board_error or str(exc)), board_error

    def sim_seconds(self) -> float:
        return self.loop.time if self.loop is not None else self.ap.vehicle_time

    def stop_watching(self) -> None:
        self.watchdog.stop()

    # -- after the run ----------------------------------------------------------------
    def after_run(self, result: ScenarioResult) -> None:
        """What the host-clock measurement has to say, and the TIMESYNC alignment."""
        result.notes.extend(self.host.notes)
        if self.host.alignment is not None:
            result.measurements["timesync"] = self.host.alignment.to_dict()

    def extra_limits(self, result: ScenarioResult) -> list:
        """Host-clock figures (latencies) for the scenario's limits."""
        try:
            return self.host.measurements()
        except ValueError as exc:  # too few samples to measure: said, not fatal
            result.notes.append(f"host-clock latencies not measured: {exc}")
            return []

    def finish(self, result: ScenarioResult) -> None:
        """Restore the heartbeat rate, land a vehicle left flying, stop the loop."""
        loop = self.loop
        if self._asked_heartbeat and (loop is None or loop.error is None) and result.board_error is None:
            note = request_heartbeat_rate(self.ap, None)
            if note:
                result.notes.append(note)
        if result.board_error is None:  # a board that stopped answering cannot be landed
            _finish(self.ap, result)
        if loop is not None:
            result.sim_seconds = loop.time
            loop.stop()
            result.loop_speed = loop.speed

    def tear_down(self, result: ScenarioResult) -> None:
        """Unhook the recorder; the loop's timing from the board's own stamps."""
        if self._hooked:
            self.ap.remove_hook(self.recorder.on_message)
            self._hooked = False
        from hil.report.loops import lockstep_timing

        result.loop_periods_us, result.timing = lockstep_timing(
            self.recorder.loop_usec, self.recorder.loop_ns, self.session.param_snapshot.get("SCHED_LOOP_RATE")
        )


def _altitude(msg) -> float | None:
    return msg.relative_alt * 1e-3 if msg.get_type() == "GLOBAL_POSITION_INT" else None


def _fly_setup(ap: MavlinkAutopilot, scenario: Scenario) -> None:
    setup = scenario.setup
    # A board just started (ArduPilot SITL with its boot checks still failing, its EKF
    # without a position yet) refuses GUIDED, arming or the takeoff: wait for it first.
    ap.wait_ready(within=90.0)
    ap.until_accepted("enter GUIDED", lambda: ap.set_mode("GUIDED"), within=60.0)
    ap.until_accepted("arm", ap.arm, within=60.0)
    ap.takeoff(setup.altitude)
    target = setup.altitude - 0.5
    ap.wait_and_maintain(
        f"altitude above {target:.1f} m after takeoff",
        _altitude,
        lambda alt: alt >= target,
        hold=1.0,
        within=setup.altitude / 1.0 + 20.0,
    )
    if setup.fly_to is not None:
        north, east = setup.fly_to
        ap.goto_ned(north, east, -setup.altitude)
        distance = math.hypot(north, east)

        # Judged in the frame the target was given in: LOCAL_POSITION_NED, the board's
        # own. Its GLOBAL_POSITION_INT against the simulator's home would add the GNSS
        # error the board had when it set its origin (1.9 m on some seeds).
        ap.set_message_interval(mavlink.MAVLINK_MSG_ID_LOCAL_POSITION_NED, 10.0)

        def error(msg) -> float | None:
            if msg.get_type() != "LOCAL_POSITION_NED":
                return None
            return math.hypot(msg.x - north, msg.y - east)

        ap.wait_and_maintain(
            f"arrival within 1.5 m of ({north:.0f} N, {east:.0f} E)",
            error,
            lambda d: d <= 1.5,
            hold=1.0,
            within=distance / 2.0 + 20.0,
        )
    if setup.mode.upper() != "GUIDED":
        ap.set_mode(setup.mode)
        ap.wait_mode(setup.mode, within=5.0)


def _finish(ap: MavlinkAutopilot, result: ScenarioResult) -> None:
    """Land and disarm a vehicle the scenario left flying, so the board is left safe."""
    if not ap.armed:
        return
    try:
        ap.set_mode("LAND")
        ap.wait_armed(False, within=90.0)
        result.notes.append("landed after the scenario")
    except HilError as exc:
        result.notes.append(f"could not land after the scenario ({exc}); disarming")
        try:
            ap.disarm(force=True)
        except HilError:
            pass

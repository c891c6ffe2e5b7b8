"""Fly one scenario on one board: set up, inject on the timeline, record, judge.

Everything is measured in vehicle time. Setup (arm, take off, fly to the start point,
enter the mode) happens before t = 0; injections are scheduled in the closed loop at
exact simulation times; expectations are judged afterwards over the recorded timeline.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from typing import Any

from hil.autopilot.mavlink import MavlinkAutopilot
from hil.errors import BoardNotAnswering, CommandRefused, HilError, LinkError, WaitTimeout
from hil.lifecycle import BoardState
from hil.mavlink.dialect import mavlink
from hil.mavlink.framing import arrival_ns
from hil.scenario.expect import evaluate
from hil.scenario.host_timing import HostTiming, heartbeat_rate_for, request_heartbeat_rate
from hil.scenario.limits import judge
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
        config.wind_speed = setup.wind.speed
        config.wind_direction = setup.wind.direction
        config.wind_gust = setup.wind.gust
    if setup.battery is not None:
        config.battery_cells = setup.battery.cells
        config.battery_capacity_mah = setup.battery.capacity_mah
    return config


def run_scenario(scenario: Scenario, session: Any, *, capture=None) -> ScenarioResult:
    """Run `scenario` on the session's board; never raises for a failing vehicle.

    The session (`hil.session`, of the kind the board type names) flies it the way its
    board is flown: `session.fly` hands it to this module's `fly_mavlink` or to
    `hil.scenario.msp_runner`. `capture` (a `hil.report.capture.ScenarioCapture`)
    records the run's frames and link bytes for the report directory.
    """
    result = ScenarioResult(scenario, session.board.name)
    return session.fly(scenario, result, capture=capture)


def fly_mavlink(scenario: Scenario, session: Any, result: ScenarioResult, *, capture=None) -> ScenarioResult:
    """Fly `scenario` on a MAVLink board (`hil.session.BoardSession`); fills `result`."""
    ap = session.autopilot
    assert ap is not None
    if scenario.board_names():
        try:
            scenario = scenario.with_board_times(session.param_snapshot)
        except KeyError as exc:
            result.error = f"cannot read the board's settings the scenario refers to: {exc}"
            return result
    lacks = scenario.lacked_by(ap.profile, session.board.capabilities)
    if lacks is not None:
        result.error = f"board {session.board.name}: {lacks}"
        return result
    scenario = scenario.for_firmware(ap.profile)  # expected modes in the names the board reports
    recorder = _Recorder(ap)
    ap.add_hook(recorder.on_message)
    watchdog = _Watchdog(ap, recorder, session.board.name, lockstep=session.board.lockstep)
    if capture is not None:
        capture.attach(session)
    sim: ClosedLoop | None = None
    host = HostTiming(ap)
    heartbeat_hz = heartbeat_rate_for(scenario)
    asked_heartbeat = False
    wall0 = time.monotonic()
    t0 = ap.vehicle_time
    try:
        for name, value in scenario.setup.params.items():
            ap.set_param(name, value)
        if session.board.simulated:
            sim = session.make_sim(sim_config_for(scenario))
            host.loop = sim
            sim.event_hooks.append(recorder.on_sim_event)
            if capture is not None:
                capture.attach(session)  # the receiver UARTs are open now
            sim.start(gated=True)
        elif scenario.injections:
            raise HilError(
                f"board {session.board.name} flies its own physics; injections need the harness's closed loop"
            )
        host.start()
        watchdog.start()
        if scenario.setup.armed:
            _fly_setup(ap, scenario)
            session.board.lifecycle.mark(BoardState.ARMABLE, "arming accepted")
            session.board.lifecycle.mark(BoardState.FLYING, "took off to the setup altitude")
        if heartbeat_hz is not None:
            refused = request_heartbeat_rate(ap, heartbeat_hz)
            asked_heartbeat = refused is None
            result.notes.append(
                refused or f"HEARTBEAT requested at {heartbeat_hz:g} Hz to resolve the failsafe-latency limit"
            )
        t0 = ap.vehicle_time
        recorder.events.append((t0, "note", "timeline start"))
        if sim is not None:
            offset = sim.time - t0
            for inj in scenario.injections:
                stop = None if inj.stop is None else t0 + inj.stop + offset
                sim.schedule(inj.kind, t0 + inj.start + offset, stop, inj.params, inj.id)
        _fly_timeline(ap, scenario, recorder, t0)
        # The end came; was all of it read from the board?
        stopped = watchdog.reason or watchdog.check()
        if stopped is not None:
            raise BoardNotAnswering(stopped)
        if sim is not None and sim.error is not None:
            raise HilError(f"the closed loop stopped: {sim.error}")
        host.finish()
    except HilError as exc:
        result.error = str(exc)
        result.board_error = watchdog.stopped_answering(exc, sim, t0)
        if result.board_error is not None:
            result.error = result.board_error
    finally:
        watchdog.stop()
        result.sim_seconds = sim.time if sim is not None else ap.vehicle_time
        result.wall_seconds = time.monotonic() - wall0
        result.timeline = recorder.timeline(t0)
        result.change_gaps = [(t - t0, gap) for t, gap in recorder.change_gaps]
    result.notes.extend(host.notes)
    if host.alignment is not None:
        result.measurements["timesync"] = host.alignment.to_dict()
    if result.error is None:
        result.verdicts = evaluate(scenario, result.timeline, scenario.nominal_anchors())
        try:
            extra = host.measurements()
        except ValueError as exc:  # too few samples to measure: said, not fatal
            result.notes.append(f"host-clock latencies not measured: {exc}")
            extra = []
        judge(scenario, result, sim, extra)
    if asked_heartbeat and (sim is None or sim.error is None) and result.board_error is None:
        note = request_heartbeat_rate(ap, None)
        if note:
            result.notes.append(note)
    if result.board_error is None:  # a board that stopped answering cannot be landed
        _finish(ap, result)
    if sim is not None:
        result.sim_seconds = sim.time
        sim.stop()
        result.loop_speed = sim.speed
    result.wall_seconds = time.monotonic() - wall0
    ap.remove_hook(recorder.on_message)
    if capture is not None:
        capture.detach()
    from hil.report.loops import lockstep_timing

    result.loop_periods_us, result.timing = lockstep_timing(
        recorder.loop_usec, recorder.loop_ns, session.param_snapshot.get("SCHED_LOOP_RATE")
    )
    result.timing = [*result.timing, *result.limit_timing]
    return result


def _retry(ap: MavlinkAutopilot, what: str, action, within: float) -> None:
    """Repeat `action` once per vehicle second until the board accepts it."""
    t_end = ap.vehicle_time + within
    last = ""
    while True:
        try:
            action()
            return
        except CommandRefused as exc:
            last = str(exc)
        if ap.vehicle_time >= t_end:
            raise HilError(f"setup: could not {what} within {within:.0f} s of vehicle time: {last}")
        target = ap.vehicle_time + 1.0
        ap.wait_for(f"1 s before retrying to {what}", lambda m, target=target: ap.vehicle_time >= target, within=2.0)


def _altitude(msg) -> float | None:
    return msg.relative_alt * 1e-3 if msg.get_type() == "GLOBAL_POSITION_INT" else None


def _fly_setup(ap: MavlinkAutopilot, scenario: Scenario) -> None:
    setup = scenario.setup
    _retry(ap, "enter GUIDED", lambda: ap.set_mode("GUIDED"), within=60.0)
    _retry(ap, "arm", ap.arm, within=60.0)
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


def _fly_timeline(ap: MavlinkAutopilot, scenario: Scenario, recorder: _Recorder, t0: float) -> None:
    t_end = t0 + scenario.duration
    last_start = max((inj.start for inj in scenario.injections), default=0.0)

    def done(_msg) -> bool:
        now = ap.vehicle_time
        if now >= t_end:
            return True
        # Nothing more can happen once the vehicle has landed and disarmed after the last injection.
        return recorder.ever_armed and recorder.armed is False and now >= t0 + last_start + 1.0

    try:
        ap.wait_for("the end of the scenario", done, within=scenario.duration + 1.0)
    except WaitTimeout as exc:
        if ap.vehicle_time < t_end - 0.5:
            raise HilError(f"the run stalled before its end: {exc}") from None


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

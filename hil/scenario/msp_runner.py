"""Fly one scenario on an MSP board (Betaflight SITL) in real time.

The harness is the pilot: the closed loop sends RC over the board's MSP UART, the pilot
model holds the setup altitude on the throttle in ANGLE mode, and injections act on the
loop at their times (``rc_loss`` stops the RC frames as a lost radio would). What the
board does is read back over MSP at ~25 Hz: armed, the FAILSAFE mode bit (stage 2 of
its failsafe), ANGLE, and the arming-disable flags. An MSP board has no STATUSTEXT; a
change of those flags is recorded as one (``"RXLOSS set"``, ``"RXLOSS cleared"``), so a
scenario can expect ``statustext contains = "RXLOSS"``.

Time is the loop's simulation time, which on this board is the wall clock since the
loop started (the firmware follows it).
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

from hil.errors import HilError, WaitTimeout
from hil.scenario.expect import evaluate
from hil.scenario.limits import judge
from hil.scenario.model import Scenario
from hil.scenario.timeline import RecorderBase, Timeline
from hil.sim.betaflight_loop import BetaflightLoop, BetaflightLoopConfig
from hil.timeout import Deadline

if TYPE_CHECKING:
    from hil.scenario.runner import ScenarioResult
    from hil.session import MspBoardSession

POLL_HZ = 25.0
#: Rows of the firmware's task table worth a line in the report.
_TASKS_SHOWN = {"GYRO", "FILTER", "PID", "RX", "SERIAL", "ACC", "ATTITUDE"}
#: Firmware modes (the board profile's names) a setup may map to: each means "hover",
#: which on an MSP board the pilot model flies in ANGLE, holding the altitude itself.
HOVER_MODES = ("ANGLE", "ALTHOLD", "POS HOLD")
#: Scenario words for the modes the recorder reports, first match first (the FAILSAFE
#: box is on over whatever flight mode is also on); none on: the profile's idle mode.
_REPORTED_WORDS = ("FAILSAFE", "RTL", "HOLD", "ALT_HOLD", "ANGLE", "HORIZON")


class _MspRecorder(RecorderBase):
    """Polls the board's status and builds the timeline, in loop time."""

    def __init__(self, session: MspBoardSession, loop: BetaflightLoop) -> None:
        super().__init__()
        self.ap = session.autopilot
        self.loop = loop
        prof = session.board.profile
        self.reported = tuple(
            dict.fromkeys(prof.resolve(w) for w in _REPORTED_WORDS if prof.supports(w))
        )
        self.idle_mode = prof.idle_mode or "ACRO"
        self.flags: frozenset[str] = frozenset()
        self.cycle_times: list[int] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="msp-recorder", daemon=True)
        self._changed = threading.Condition()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3.0)

    def _run(self) -> None:
        period = 1.0 / POLL_HZ
        failures = 0
        while not self._stop.is_set():
            t_next = time.monotonic() + period
            try:
                status = self.ap.status()
                failures = 0
            except HilError as exc:
                failures += 1
                if failures >= 10:
                    self.error = exc
                    return
                continue
            self.record(status)
            self._stop.wait(max(0.0, t_next - time.monotonic()))

    def record(self, status) -> None:
        loop = self.loop
        t = loop.time
        modes = set(status.mode_names)
        armed = bool(status.armed)
        mode = next((m for m in self.reported if m in modes), self.idle_mode)
        flags = frozenset(status.arming_disable_names)
        self.cycle_times.append(status.cycle_time_us)
        with self._changed:
            self.track(t, mode, armed)
            for name in sorted(flags - self.flags):
                self.events.append((t, "statustext", f"{name} set"))
            for name in sorted(self.flags - flags):
                self.events.append((t, "statustext", f"{name} cleared"))
            self.flags = flags
            v = loop.vehicle
            pn, pe, pd = v.pos
            roll, pitch, _ = v.euler()
            self.states.append(
                (t, armed, mode, -pd, pn, pe, math.hypot(v.vel[0], v.vel[1]), roll, pitch)
            )
            self._changed.notify_all()

    def on_sim_event(self, t: float, kind: str, text: str) -> None:
        with self._changed:
            self.events.append((t, kind, text))

    def wait(self, what: str, predicate, within: float) -> None:
        """Wait until ``predicate()`` holds (checked at each status poll), bounded."""
        deadline = Deadline(within)
        with self._changed:
            while not predicate():
                if self.error is not None:
                    raise HilError(f"lost the board while waiting for {what}: {self.error}")
                if self.loop.error is not None:
                    raise HilError(f"the closed loop stopped while waiting for {what}: {self.loop.error}")
                if deadline.expired:
                    raise WaitTimeout(
                        f"{what}: not within {within:.0f} s (armed {self.armed}, mode {self.mode}, "
                        f"arming blocked by {', '.join(sorted(self.flags)) or 'nothing'}, "
                        f"altitude {self.loop.altitude:.1f} m)"
                    )
                self._changed.wait(min(0.2, deadline.remaining))

    def timeline(self, t0: float) -> Timeline:
        with self._changed:
            return super().timeline(t0)


def loop_config_for(scenario: Scenario, rate_hz: float) -> BetaflightLoopConfig:
    setup = scenario.setup
    config = BetaflightLoopConfig(rate_hz=rate_hz, seed=scenario.seed)
    if setup.wind is not None:
        config.wind_speed = setup.wind.speed
        config.wind_direction = setup.wind.direction
        config.wind_gust = setup.wind.gust
    return config


def run_msp_scenario(
    scenario: Scenario, session: MspBoardSession, result: ScenarioResult, *, capture=None
) -> ScenarioResult:
    """Run ``scenario`` on an MSP board; fills and returns ``result``; never raises for the vehicle.

    ``capture`` (a `hil.report.capture.ScenarioCapture`) logs the MSP link's bytes."""
    ap = session.autopilot
    assert ap is not None
    wall0 = time.monotonic()
    if scenario.setup.params:
        result.error = (
            "setup.params are MAVLink parameters; an MSP board takes its settings through the "
            "CLI (autopilot.set) in a Python test"
        )
        return result
    prof = session.board.profile
    lacks = scenario.lacked_by(prof)
    if lacks is not None:
        result.error = f"{session.board.name}: {lacks}"
        return result
    if prof.resolve(scenario.setup.mode) not in HOVER_MODES:
        result.error = f"setup mode {scenario.setup.mode} has no meaning on an MSP board; use ANGLE"
        return result
    scenario = scenario.for_firmware(prof)
    try:
        facts = session.board_facts()
        scenario = scenario.with_board_times(facts)
    except (KeyError, HilError) as exc:
        result.error = f"cannot read the board's settings the scenario refers to: {exc}"
        return result
    try:
        loop, recorder = _bring_up(session, scenario)
    except HilError as exc:
        result.error = str(exc)
        result.notes.extend(session.notes)
        return result
    if capture is not None:
        capture.attach(session)
    t0 = 0.0
    try:
        if scenario.setup.armed:
            session.arm(loop, within=10.0)
            recorder.wait("the board armed by the AUX1 switch", lambda: bool(recorder.armed), within=5.0)
            target = scenario.setup.altitude
            loop.hold_altitude(target)
            _wait_altitude(recorder, loop, target - 0.5, within=target / 1.0 + 15.0)
        t0 = loop.time
        recorder.on_sim_event(t0, "note", "timeline start")
        for inj in scenario.injections:
            stop = None if inj.stop is None else t0 + inj.stop
            loop.schedule(inj.kind, t0 + inj.start, stop, inj.params, inj.id)
        # Once disarmed, wait out the last injection change (a returning link) and a bit.
        last_start = max(
            (max(inj.start, inj.stop if inj.stop is not None else 0.0) for inj in scenario.injections),
            default=0.0,
        )
        t_end = t0 + scenario.duration
        try:
            recorder.wait(
                "the end of the scenario",
                lambda: loop.time >= t_end
                or (recorder.ever_armed and recorder.armed is False and loop.time >= t0 + last_start + 2.5),
                within=scenario.duration + 5.0,
            )
        except WaitTimeout as exc:
            raise HilError(f"the run stalled before its end: {exc}") from None
    except HilError as exc:
        result.error = str(exc)
    finally:
        result.notes.extend(session.notes)
        result.sim_seconds = loop.time
        result.timeline = recorder.timeline(t0)
        result.change_gaps = [(t - t0, gap) for t, gap in recorder.change_gaps]
    if result.error is None:
        result.verdicts = evaluate(scenario, result.timeline, scenario.nominal_anchors())
        judge(scenario, result, loop)
    _finish(loop, recorder, result)
    recorder.stop()
    try:
        timing = loop.timing(since_s=1.0)
        result.notes.extend(timing.lines())
        result.measurements = {
            "state_rate_hz": timing.sent / timing.seconds,
            "state_jitter_p99_us": timing.send_jitter_p99_us,
            "motor_rate_hz": timing.motor_rate_hz,
            "motor_period_p99_us": timing.motor_period_p99_us,
            "sitl_scheduler": session.board.sitl.scheduler if session.board.sitl else "?",
            "loop_scheduler": timing.scheduler,
        }
        try:
            rows = session.autopilot.tasks()
        except HilError as exc:
            result.notes.append(f"task table not read: {exc}")
        else:
            shown = [r for r in rows if r.name.upper() in _TASKS_SHOWN]
            if shown:
                result.notes.append(
                    "firmware tasks (CLI `tasks`): "
                    + ", ".join(
                        f"{r.name} {r.rate_hz} Hz"
                        + (f" avg {r.avg_us} us max {r.max_us} us" if r.avg_us is not None else "")
                        for r in shown
                    )
                )
            result.measurements["tasks"] = {r.name: r.rate_hz for r in rows}
        if recorder.cycle_times:
            ct = sorted(recorder.cycle_times)
            result.notes.append(
                f"firmware cycle time {ct[len(ct) // 2]} us median over {len(ct)} status polls "
                f"(SITL threads {result.measurements['sitl_scheduler']})"
            )
    except HilError:
        pass
    loop.stop()
    result.wall_seconds = time.monotonic() - wall0
    result.loop_speed = 1.0
    if capture is not None:
        capture.detach()
    from hil.report.loops import realtime_timing

    result.loop_periods_us, result.timing = realtime_timing(
        getattr(loop, "_send_ns", ()),
        getattr(loop, "_motor_ns", ()),
        loop.config.rate_hz,
        since_ns=getattr(loop, "_started_ns", 0) + 1_000_000_000,  # as loop.timing(since_s=1.0)
    )
    result.timing = [*result.timing, *result.limit_timing]
    return result


def _bring_up(session: MspBoardSession, scenario: Scenario) -> tuple[BetaflightLoop, _MspRecorder]:
    """The loop running and the board armable but for its switch, and the recorder on."""
    loop = session.start_loop(loop_config_for(scenario, session.board.state_rate_hz))
    recorder = _MspRecorder(session, loop)
    loop.event_hooks.append(recorder.on_sim_event)
    recorder.start()
    return loop, recorder


def _wait_altitude(recorder: _MspRecorder, loop: BetaflightLoop, target: float, within: float) -> None:
    """The altitude above ``target`` for a steady second."""
    since: list[float | None] = [None]

    def steady() -> bool:
        if loop.altitude >= target:
            if since[0] is None:
                since[0] = loop.time
            return loop.time - since[0] >= 1.0
        since[0] = None
        return False

    recorder.wait(f"altitude above {target:.1f} m for 1 s after takeoff", steady, within=within)


def _finish(loop: BetaflightLoop, recorder: _MspRecorder, result: ScenarioResult) -> None:
    """Land a vehicle the scenario left flying and disarm it by the switch."""
    if not recorder.armed or loop.error is not None:
        loop.arm_switch(False)
        return
    try:
        if loop.rc_link.total or not loop.rc_enabled:
            loop.rc_link.configure(loss=0.0, total=False)
            loop.rc_enabled = True
        loop.hold_altitude(0.0)
        recorder.wait("touchdown after the scenario", lambda: loop.altitude < 0.05, within=30.0)
        loop.hold_altitude(None)
        loop.arm_switch(False)
        recorder.wait("disarm by the switch after the scenario", lambda: recorder.armed is False, within=5.0)
        result.notes.append("landed and disarmed after the scenario")
    except HilError as exc:
        loop.arm_switch(False)
        result.notes.append(f"could not land after the scenario: {exc}")

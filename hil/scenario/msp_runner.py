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

import threading
import time
from typing import Any

from hil.errors import HilError, WaitTimeout
from hil.scenario.expect import evaluate
from hil.scenario.limits import judge
from hil.scenario.model import Scenario
from hil.scenario.result import ScenarioResult
from hil.scenario.timeline import RecorderBase, Timeline
from hil.sim.betaflight_loop import BetaflightLoopConfig
from hil.sim.loop import ClosedLoop
from hil.timeout import Deadline

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

    def __init__(self, session: Any, loop: ClosedLoop) -> None:
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
        #: Read the firmware's view of its receiver link (RSSI, LQ) as well.
        self.link_stats = "link_statistics" in session.board.capabilities
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
            if self.link_stats:
                self._record_link()
            self._stop.wait(max(0.0, t_next - time.monotonic()))

    def _record_link(self) -> None:
        try:
            rssi, lq = self.ap.link_quality()
        except HilError:
            return  # a missed sample shows as a gap, which link_quality expectations check
        t = self.loop.time
        with self._changed:
            self.samples.append((t, "rssi", rssi))
            if lq is not None:
                self.samples.append((t, "lq", lq))

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
            alt, pn, pe, speed, roll, pitch = loop.pose()
            self.states.append((t, armed, mode, alt, pn, pe, speed, roll, pitch))
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


def loop_config_for(scenario: Scenario) -> BetaflightLoopConfig:
    """The scenario's side of the simulator link's settings (seed, weather); the board
    adds its own (the state rate) when it builds the link."""
    setup = scenario.setup
    config = BetaflightLoopConfig(seed=scenario.seed)
    if setup.wind is not None:
        config.wind_speed = setup.wind.speed
        config.wind_direction = setup.wind.direction
        config.wind_gust = setup.wind.gust
    return config


def run_msp_scenario(
    scenario: Scenario, session: Any, result: ScenarioResult, *, capture=None
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
    lacks = scenario.lacked_by(prof, session.board.capabilities)
    if lacks is not None:
        result.error = f"{session.board.name}: {lacks}"
        return result
    if scenario.setup.altitude > 0 and prof.resolve(scenario.setup.mode) not in HOVER_MODES:
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
        # The timeline must know the board's state at its start: wait for a first report.
        recorder.wait("the board's first status report", lambda: recorder.armed is not None, within=3.0)
        if scenario.setup.armed:
            session.arm(loop, within=10.0)
            recorder.wait("the board armed by the AUX1 switch", lambda: bool(recorder.armed), within=5.0)
            target = scenario.setup.altitude
            if target > 0:
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
        lines, measurements = loop.report(since_s=1.0)
        result.notes.extend(lines)
        result.measurements = {**measurements, **session.board.runtime()}
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
                f"firmware cycle time {ct[len(ct) // 2]} us median over {len(ct)} status polls"
                + (f" (SITL threads {sched})" if (sched := result.measurements.get("sitl_scheduler")) else "")
            )
    except HilError:
        pass
    loop.stop()
    result.wall_seconds = time.monotonic() - wall0
    result.loop_speed = 1.0
    if capture is not None:
        capture.detach()
    from hil.report.loops import realtime_timing

    send_ns, motor_ns, rate_hz, started_ns = loop.timing_series()
    result.loop_periods_us, result.timing = realtime_timing(
        send_ns, motor_ns, rate_hz, since_ns=started_ns + 1_000_000_000  # as loop.report(since_s=1.0)
    )
    result.timing = [*result.timing, *result.limit_timing]
    return result


def _bring_up(session: Any, scenario: Scenario) -> tuple[ClosedLoop, _MspRecorder]:
    """The loop running and the board armable but for its switch, and the recorder on."""
    loop = session.start_loop(loop_config_for(scenario))
    recorder = _MspRecorder(session, loop)
    loop.event_hooks.append(recorder.on_sim_event)
    recorder.start()
    return loop, recorder


def _wait_altitude(recorder: _MspRecorder, loop: ClosedLoop, target: float, within: float) -> None:
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


def _finish(loop: ClosedLoop, recorder: _MspRecorder, result: ScenarioResult) -> None:
    """Land a vehicle the scenario left flying and disarm it by the switch."""
    if not recorder.armed or loop.error is not None:
        loop.arm_switch(False)
        return
    try:
        plant = loop.plant
        if plant.rc_link.total or not plant.rc_enabled:
            plant.rc_link.configure(loss=0.0, total=False)
            plant.rc_enabled = True
        loop.hold_altitude(0.0)
        recorder.wait("touchdown after the scenario", lambda: loop.altitude < 0.05, within=30.0)
        loop.hold_altitude(None)
        loop.arm_switch(False)
        recorder.wait("disarm by the switch after the scenario", lambda: recorder.armed is False, within=5.0)
        result.notes.append("landed and disarmed after the scenario")
    except HilError as exc:
        loop.arm_switch(False)
        result.notes.append(f"could not land after the scenario: {exc}")

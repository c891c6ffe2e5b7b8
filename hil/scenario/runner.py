"""Fly one scenario on one board: set up, inject on the timeline, record, judge.

One runner for every board. What differs between boards (how the vehicle is set up,
which clock the scenario runs on, how the board's state is recorded, how it is landed
after) is the board session's `Flight` (`session.flight()`): `MavlinkFlight`
(hil.scenario.mavlink_flight) for MAVLink boards, `MspFlight` (hil.scenario.msp_flight)
for Betaflight. The sequence is this module's:

1. refuse what the board cannot do, with the reason (its profile and capabilities);
2. bring the board up (the closed loop, the recorder), fly the setup before t = 0;
3. schedule the injections in the closed loop at exact times from t0 (the ground
   station's own actions, `arm_attempt`, with the flight, which acts them out while it
   waits);
4. wait for the scenario's end (its duration, or the vehicle down and disarmed after
   the last injection has had time to act);
5. judge the expectations over the recorded timeline and the limits over the
   measurements, then land what is still flying and report the loop's timing.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from hil.errors import HilError, WaitTimeout
from hil.scenario.expect import evaluate
from hil.scenario.limits import judge
from hil.scenario.mavlink_flight import sim_config_for
from hil.scenario.model import GCS_ACTION_KINDS, Scenario
from hil.scenario.result import ScenarioResult
from hil.scenario.timeline import RecorderBase
from hil.sim.loop import ClosedLoop

__all__ = ["Flight", "ScenarioResult", "fly", "run_scenario", "sim_config_for"]


class Flight(Protocol):
    """How one kind of board is flown through a scenario (see the module doc)."""

    profile: Any
    loop: ClosedLoop | None
    recorder: RecorderBase | None
    settle_s: float
    settle_after_stops: bool
    end_margin_s: float

    def prepare(self, scenario: Scenario) -> Scenario: ...
    def bring_up(self, scenario: Scenario, capture: Any = None) -> None: ...
    def setup(self, scenario: Scenario, result: ScenarioResult) -> None: ...
    def now(self) -> float: ...
    def loop_time(self, t: float) -> float: ...
    def note(self, t: float, kind: str, text: str) -> None: ...
    def wait(self, what: str, done: Any, within: float) -> None: ...
    def schedule_action(self, inj: Any, t0: float) -> None: ...
    def check_end(self) -> None: ...
    def error_text(self, exc: HilError, t0: float) -> tuple[str, str | None]: ...
    def sim_seconds(self) -> float: ...
    def stop_watching(self) -> None: ...
    def after_run(self, result: ScenarioResult) -> None: ...
    def extra_limits(self, result: ScenarioResult) -> list: ...
    def finish(self, result: ScenarioResult) -> None: ...
    def tear_down(self, result: ScenarioResult) -> None: ...


def run_scenario(scenario: Scenario, session: Any, *, capture=None) -> ScenarioResult:
    """Run `scenario` on the session's board; never raises for a failing vehicle.

    `capture` (a `hil.report.capture.ScenarioCapture`) records the run's frames and
    link bytes for the report directory.
    """
    result = ScenarioResult(scenario, session.board.name)
    return fly(scenario, session, session.flight(), result, capture=capture)


def fly(scenario: Scenario, session: Any, flight: Flight, result: ScenarioResult, *, capture=None) -> ScenarioResult:
    """Fly `scenario` with `flight` (the session's way of flying its board); fills `result`."""
    board = session.board
    lacks = scenario.lacked_by(flight.profile, board.capabilities)
    if lacks is not None:
        result.error = f"board {board.name}: {lacks}"
        return result
    scenario = scenario.for_firmware(flight.profile)  # expected modes in the names the board reports
    try:
        scenario = flight.prepare(scenario)
    except HilError as exc:
        result.error = str(exc)
        return result
    wall0 = time.monotonic()
    t0 = flight.now()
    try:
        flight.bring_up(scenario, capture)
        flight.setup(scenario, result)
        t0 = flight.now()
        flight.note(t0, "note", "timeline start")
        loop = flight.loop
        for inj in scenario.injections:
            if inj.kind in GCS_ACTION_KINDS:  # the ground station's, not the loop's
                flight.schedule_action(inj, t0)
        if loop is not None:
            for inj in scenario.injections:
                if inj.kind in GCS_ACTION_KINDS:
                    continue
                stop = None if inj.stop is None else flight.loop_time(t0 + inj.stop)
                loop.schedule(inj.kind, flight.loop_time(t0 + inj.start), stop, inj.params, inj.id)
        _wait_for_the_end(flight, scenario, t0)
        flight.check_end()
    except HilError as exc:
        result.error, result.board_error = flight.error_text(exc, t0)
    finally:
        flight.stop_watching()
        result.sim_seconds = flight.sim_seconds()
        result.wall_seconds = time.monotonic() - wall0
        recorder = flight.recorder
        if recorder is not None:
            result.timeline = recorder.timeline(t0)
            result.change_gaps = [(t - t0, gap) for t, gap in recorder.change_gaps]
    flight.after_run(result)
    if result.error is None:
        result.verdicts = evaluate(scenario, result.timeline, scenario.nominal_anchors())
        judge(scenario, result, flight.loop, flight.extra_limits(result))
    flight.finish(result)
    result.wall_seconds = time.monotonic() - wall0
    if capture is not None:
        capture.detach()
    flight.tear_down(result)
    result.timing = [*result.timing, *result.limit_timing]
    return result


def _wait_for_the_end(flight: Flight, scenario: Scenario, t0: float) -> None:
    """Until the scenario's duration has passed, or the vehicle is down and disarmed and
    the last injection has had `settle_s` to act (nothing more can happen)."""
    t_end = t0 + scenario.duration
    changes = [inj.start for inj in scenario.injections]
    if flight.settle_after_stops:
        changes += [inj.stop for inj in scenario.injections if inj.stop is not None]
    quiet_from = t0 + max(changes, default=0.0) + flight.settle_s
    recorder = flight.recorder

    def done() -> bool:
        now = flight.now()
        if now >= t_end:
            return True
        return bool(recorder.ever_armed) and recorder.armed is False and now >= quiet_from

    try:
        flight.wait("the end of the scenario", done, within=scenario.duration + flight.end_margin_s)
    except WaitTimeout as exc:
        if flight.now() < t_end - 0.5:
            raise HilError(f"the run stalled before its end: {exc}") from None

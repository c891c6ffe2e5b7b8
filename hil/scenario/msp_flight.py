"""How an MSP board (Betaflight) is flown through a scenario, in real time.

The harness is the pilot: the closed loop sends RC the way the board's link does (MSP
frames to the SITL, CRSF/SBUS into a bench board's receiver UART), the pilot model holds
the setup altitude on the throttle in ANGLE mode, and injections act on the loop at
their times (``rc_loss`` stops the radio's frames as a lost radio would). What the
board does is read back over MSP at ~25 Hz: armed, the FAILSAFE mode bit (stage 2 of
its failsafe), ANGLE, and the arming-disable flags. An MSP board has no STATUSTEXT; a
change of those flags is recorded as one (``"RXLOSS set"``, ``"RXLOSS cleared"``), so a
scenario can expect ``statustext contains = "RXLOSS"``.

Time is the loop's simulation time, which on this board is the wall clock since the
loop started (the firmware follows it).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from hil.errors import HilError, WaitTimeout
from hil.scenario.model import Scenario
from hil.scenario.result import ScenarioResult
from hil.scenario.timeline import RecorderBase, Timeline
from hil.sim.betaflight_loop import BetaflightLoopConfig
from hil.sim.loop import ClosedLoop
from hil.timeout import Deadline

log = logging.getLogger(__name__)

POLL_HZ = 25.0
#: Rows of the firmware's task table worth a line in the report.
_TASKS_SHOWN = {"GYRO", "FILTER", "PID", "RX", "SERIAL", "ACC", "ATTITUDE"}
#: Firmware modes (the board profile's names) a setup may map to: each means "hover",
#: which on an MSP board the pilot model flies in ANGLE, holding the altitude itself.
HOVER_MODES = ("ANGLE", "ALTHOLD", "POS HOLD")
#: Scenario words for the modes the recorder reports, first match first (the FAILSAFE
#: box is on over whatever flight mode is also on); none on: the profile's idle mode.
_REPORTED_WORDS = ("FAILSAFE", "RTL", "HOLD", "ALT_HOLD", "ANGLE", "HORIZON")
#: Satellites a fix needs before the harness arms for a GPS flight: Betaflight's
#: gps_rescue_min_sats default (pg/gps_rescue_multirotor.c), which its home point needs.
GPS_MIN_SATS = 8
#: The roll stick (us) that takes control back from a GPS Rescue once the radio is back.
#: flight/failsafe.c failsafeUpdateState(): with the link up again, the failsafe leaves
#: its GPS_RESCUE phase only when areSticksActive(failsafe_stick_threshold) (fc/core.c:
#: roll, pitch or yaw deflected by that percent of full travel; default 30, at most 50
#: by cli/settings.c). Not yaw: while GPS_RESCUE_MODE is on, fc/rc.c processRcCommand
#: counts the roll stick as centred (the rescue flies the heading). 275 us from centre is
#: 55 %, past any setting; the sticks are centred again as soon as the rescue is off.
TAKEOVER_ROLL_US = 1775


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
        #: Every mode the last status report had on (the reported mode is one of them).
        self.modes: frozenset[str] = frozenset()
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
            self.modes = frozenset(modes)
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

    def schedule_action(self, inj: Any, t0: float) -> None:
        """MSP boards take no ground-station actions (a scenario with one is skipped first)."""
        raise HilError(f"injection {inj.id!r} ({inj.kind}) is a MAVLink ground station's; an MSP board cannot take it")

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
        setup.wind.apply_to(config)
    return config


class MspFlight:
    """A scenario's flight on an MSP board (`hil.session.MspBoardSession`)."""

    #: Once the vehicle is disarmed, the run ends this long after the last injection
    #: change, start or stop (a returning link is worth watching).
    settle_s = 2.5
    settle_after_stops = True
    #: Wall seconds the end of the scenario is waited for beyond its duration.
    end_margin_s = 5.0

    def __init__(self, session: Any) -> None:
        self.session = session
        self.board = session.board
        self.ap = session.autopilot
        assert self.ap is not None
        self.profile = self.board.profile
        self.loop: ClosedLoop | None = None
        self.recorder: _MspRecorder | None = None

    # -- before flying -----------------------------------------------------------------
    def prepare(self, scenario: Scenario) -> Scenario:
        """Refuse what an MSP board cannot take; put in the board's failsafe times."""
        if scenario.setup.params:
            raise HilError(
                "setup.params are MAVLink parameters; an MSP board takes its settings through the "
                "CLI (autopilot.set) in a Python test"
            )
        if scenario.setup.altitude > 0 and self.profile.resolve(scenario.setup.mode) not in HOVER_MODES:
            raise HilError(f"setup mode {scenario.setup.mode} has no meaning on an MSP board; use ANGLE")
        try:
            return scenario.with_board_times(self.session.board_facts())
        except (KeyError, HilError) as exc:
            raise HilError(f"cannot read the board's settings the scenario refers to: {exc}") from None

    def now(self) -> float:
        """The scenario's clock: the loop's (the wall clock since it started)."""
        return self.loop.time if self.loop is not None else 0.0

    def loop_time(self, t: float) -> float:
        return t

    def bring_up(self, scenario: Scenario, capture: Any = None) -> None:
        """The loop running and the board armable but for its switch, the recorder on,
        and a first status report in hand (the timeline must know the state at its start)."""
        first_arm = [w for w in scenario.arming_checks if (c := self.profile.arming.checks.get(w)) and c.until_first_arm]
        if first_arm:
            # The firmware makes these checks only until its first arming since boot, and
            # an earlier scenario may have armed it: start it afresh.
            self.session.restart_board(f"the {', '.join(first_arm)} arming check needs a firmware not armed since boot")
            self.session.notes.append(f"restarted before the run: the {', '.join(first_arm)} arming check is made only until the first arming since boot")
        self._read_debug_mode()
        loop = self.loop = self.session.start_loop(loop_config_for(scenario))
        left = self.leftover_failsafe()
        if left:
            # A failsafe a flight before this one left behind: flying on top of it would
            # judge the last scenario's failsafe, not this one's. Start the firmware afresh.
            what = f"board {self.board.name} was found with {left} before the flight; restarted it"
            log.warning("%s", what)
            self.session.notes.append(what)
            loop.close()
            self.session.restart_board(f"found with {left}")
            self._read_debug_mode()
            loop = self.loop = self.session.start_loop(loop_config_for(scenario))
            left = self.leftover_failsafe()
            if left:
                raise HilError(f"board {self.board.name} still shows {left} after a restart")
        recorder = self.recorder = _MspRecorder(self.session, loop)
        loop.event_hooks.append(recorder.on_sim_event)
        recorder.start()
        if capture is not None:
            capture.attach(self.session)
        recorder.wait("the board's first status report", lambda: recorder.armed is not None, within=3.0)

    def _read_debug_mode(self) -> None:
        """Read the board's debug_mode while it is disarmed (the CLI answers only then), so
        that `failsafe_phase()` knows whether MSP_DEBUG carries the failsafe's phase."""
        read = getattr(self.ap, "debug_mode", None)
        if read is None:
            return
        try:
            read()
        except HilError as exc:
            self.session.notes.append(f"debug_mode not read ({exc}): the failsafe phase is not checked")

    def failsafe_phase(self) -> str | None:
        """The firmware's failsafe phase ("IDLE", "GPS_RESCUE", ...), None if unreadable."""
        read = getattr(self.ap, "failsafe_phase", None)
        if read is None:
            return None
        try:
            return read()
        except HilError:
            return None

    def leftover_failsafe(self) -> str:
        """What of a failsafe the board shows with the loop running and only its arm
        switch blocking arming ("" for nothing): armed, the FAILSAFE or GPS RESCUE mode
        on, the FAILSAFE arming-disable flag, or a failsafe phase other than IDLE. The
        phase matters most: a disarmed board shows no GPS RESCUE mode while its failsafe
        still sits in the GPS_RESCUE phase (flight/failsafe.c leaves it, with the radio
        back, only for stick movement), and arming then starts the rescue again (fc/core.c
        processRxModes: ARMED and failsafeIsActive() turn GPS_RESCUE_MODE on)."""
        status = self.ap.status()
        prof = self.profile
        found = []
        if status.armed:
            found.append("the board armed")
        words = [prof.resolve(w) for w in ("FAILSAFE", "RTL") if prof.supports(w)]
        found += [f"mode {m} on" for m in words if m in status.mode_names]
        if "FAILSAFE" in status.arming_disable_names:
            found.append("the FAILSAFE arming-disable flag")
        phase = self.failsafe_phase()
        if phase not in (None, "IDLE"):
            found.append(f"its failsafe in phase {phase}")
        return ", ".join(found)

    def setup(self, scenario: Scenario, result: ScenarioResult) -> None:
        """Arm by the switch; climb on the pilot model to the setup altitude."""
        if not scenario.setup.armed:
            return
        loop, recorder = self.loop, self.recorder
        if "gnss" in self.board.capabilities:
            self._wait_gps_fix(recorder)
        self.session.arm(loop, within=10.0)
        recorder.wait("the board armed by the AUX1 switch", lambda: bool(recorder.armed), within=5.0)
        target = scenario.setup.altitude
        if target > 0:
            loop.hold_altitude(target)
            _wait_altitude(recorder, loop, target - 0.5, within=target / 1.0 + 15.0)
            if scenario.setup.fly_to is not None:  # on the sticks, then centred
                from hil.sim.position_pilot import fly_to

                fly_to(recorder.wait, loop, scenario.setup.fly_to)

    def _wait_gps_fix(self, recorder: _MspRecorder) -> None:
        """A pilot arms for a GPS flight once the GPS has its fix; so does the harness.

        Betaflight waits for one only at the first arming since boot (fc/core.c
        updateArmingStatus, GPS Rescue configured); later armings go ahead without, and the
        receiver of a new loop is configured afresh by the firmware (a second or three). The
        home point is taken at arming, only with a fix and gps_rescue_min_sats satellites
        (io/gps.c GPS_reset_home_position). Seen once in a shuffled run before this wait:
        bf-gps-rescue-gps-lost's rescue aborted and disarmed the moment it started (1.5 s
        after the radio went, 5 m up near home), which flight/gps_rescue_multirotor.c does
        without a home point or below the landing altitude by its own estimate; arming
        before the fix is the likely cause (not proven: later runs of that order had the
        fix in time)."""

        def fixed() -> bool:
            try:
                gps = self.ap.raw_gps()
            except HilError:
                return False
            return bool(gps.fix) and gps.num_sat >= GPS_MIN_SATS

        since = time.monotonic()
        recorder.wait(f"a GPS fix with {GPS_MIN_SATS} satellites before arming", fixed, within=20.0)
        waited = time.monotonic() - since
        if waited > 0.5:
            self.session.notes.append(f"waited {waited:.1f} s for a GPS fix with {GPS_MIN_SATS} satellites before arming")

    def note(self, t: float, kind: str, text: str) -> None:
        self.recorder.on_sim_event(t, kind, text)

    def wait(self, what: str, done, within: float) -> None:
        self.recorder.wait(what, done, within=within)

    def check_end(self) -> None:
        pass

    def error_text(self, exc: HilError, t0: float) -> tuple[str, str | None]:
        return str(exc), None

    def sim_seconds(self) -> float:
        return self.now()

    def stop_watching(self) -> None:
        pass

    # -- after the run ----------------------------------------------------------------
    def after_run(self, result: ScenarioResult) -> None:
        """What happened to the board on the way (a restart, a flipped switch)."""
        result.notes.extend(self.session.notes)

    def extra_limits(self, result: ScenarioResult) -> list:
        return []

    def finish(self, result: ScenarioResult) -> None:
        """Land a vehicle left flying and disarm it; the loop's and firmware's figures."""
        loop, recorder = self.loop, self.recorder
        if loop is None:
            return
        self._finish(loop, recorder, result)
        recorder.stop()
        try:
            lines, measurements = loop.report(since_s=1.0)
            result.notes.extend(lines)
            result.measurements = {**measurements, **self.board.runtime()}
            self._firmware_figures(result)
        except HilError:
            pass
        loop.stop()
        result.loop_speed = 1.0

    def _finish(self, loop: ClosedLoop, recorder: _MspRecorder, result: ScenarioResult) -> None:
        """Leave the board as the next flight expects it: the radio back, down, disarmed
        by the switch, and its failsafe idle.

        A GPS Rescue still running is not ended by the radio coming back: the pilot takes
        control with the sticks (`_take_back_from_rescue`), then lands it as any flight.
        A disarm does not end it either (flight/failsafe.c: in the GPS_RESCUE phase with
        the link up, only stick movement leaves it; fc/core.c: the next arming turns the
        rescue on again), so a board disarmed in that phase gets the same stick movement.
        """
        if loop.error is not None:
            loop.arm_switch(False)
            return
        plant = loop.plant
        if plant.rc_link.total or not plant.rc_enabled or plant.rc_link.loss:
            plant.rc_link.configure(loss=0.0, total=False)
            plant.rc_enabled = True
        try:
            if recorder.armed and self._rescue_on(recorder):
                self._take_back_from_rescue(loop, recorder, result)
            if recorder.armed:
                if plant.physics:
                    loop.hold_altitude(0.0)
                    # The pilot model descends at up to 1.5 m/s (hil.sim.pilot); a rescue
                    # taken back may be far up.
                    within = max(30.0, loop.altitude / 1.5 + 15.0)
                    recorder.wait("touchdown after the scenario", lambda: loop.altitude < 0.05, within=within)
                loop.hold_altitude(None)
                loop.arm_switch(False)
                recorder.wait("disarm by the switch after the scenario", lambda: recorder.armed is False, within=5.0)
                result.notes.append("landed and disarmed after the scenario")
            else:
                loop.arm_switch(False)
            self._failsafe_to_idle(loop, recorder, result)
        except HilError as exc:
            loop.hold_altitude(None)
            loop.arm_switch(False)
            result.notes.append(f"could not leave the board landed, disarmed and out of failsafe after the scenario: {exc}")

    def _rescue_on(self, recorder: _MspRecorder) -> bool:
        prof = self.profile
        return prof.supports("RTL") and prof.resolve("RTL") in recorder.modes

    def _wait_link_up(self, recorder: _MspRecorder) -> None:
        """The firmware takes the radio back failsafe_recovery_delay after frames return;
        it clears RXLOSS (ARMING_DISABLED_RX_FAILSAFE) then (flight/failsafe.c
        failsafeOnValidDataReceived), armed or not."""
        recorder.wait("the firmware taking the radio back (RXLOSS cleared) after the scenario",
                      lambda: "RXLOSS" not in recorder.flags, within=5.0)

    def _move_sticks(self, loop: ClosedLoop, recorder: _MspRecorder, done, what: str) -> None:
        """Roll to TAKEOVER_ROLL_US until ``done()`` (bounded), then centre the sticks."""
        loop.set_sticks(roll=TAKEOVER_ROLL_US)
        try:
            recorder.wait(what, done, within=3.0)
        finally:
            loop.set_sticks()

    def _take_back_from_rescue(self, loop: ClosedLoop, recorder: _MspRecorder, result: ScenarioResult) -> None:
        """A GPS Rescue flying at the end: the radio is back; roll out of it, as a pilot does."""
        self._wait_link_up(recorder)
        if recorder.armed and self._rescue_on(recorder):
            if loop.plant.physics:
                loop.hold_altitude(max(0.0, loop.altitude))  # the pilot model flies the throttle after
            self._move_sticks(loop, recorder, lambda: not (recorder.armed and self._rescue_on(recorder)),
                              "GPS Rescue ended by the roll stick after the scenario")
            result.notes.append("GPS Rescue still on at the end: ended by the roll stick with the radio back")

    def _failsafe_to_idle(self, loop: ClosedLoop, recorder: _MspRecorder, result: ScenarioResult) -> None:
        """Disarmed, radio back: the failsafe's phase back to IDLE, or say it cannot be read."""
        phase = self.failsafe_phase()
        if phase in (None, "IDLE"):
            return
        if phase == "GPS_RESCUE":
            self._wait_link_up(recorder)
            self._move_sticks(loop, recorder, lambda: self.failsafe_phase() == "IDLE",
                              "the failsafe leaving its GPS_RESCUE phase for the roll stick (disarmed)")
            result.notes.append("disarmed with the failsafe still in its GPS_RESCUE phase: ended by the roll stick")
        else:
            since = time.monotonic()
            recorder.wait(f"the failsafe back to IDLE from {phase} with the radio back",
                          lambda: self.failsafe_phase() in (None, "IDLE"), within=10.0)
            result.notes.append(
                f"disarmed with the failsafe in its {phase} phase: IDLE {time.monotonic() - since:.1f} s after the radio came back"
            )

    def _firmware_figures(self, result: ScenarioResult) -> None:
        try:
            rows = self.ap.tasks()
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
        cycle = self.recorder.cycle_times
        if cycle:
            ct = sorted(cycle)
            result.notes.append(
                f"firmware cycle time {ct[len(ct) // 2]} us median over {len(ct)} status polls"
                + (f" (SITL threads {sched})" if (sched := result.measurements.get("sitl_scheduler")) else "")
            )

    def tear_down(self, result: ScenarioResult) -> None:
        """The loop's timing from its send and answer stamps."""
        if self.loop is None:
            return
        from hil.report.loops import realtime_timing

        send_ns, motor_ns, rate_hz, started_ns = self.loop.timing_series()
        result.loop_periods_us, result.timing = realtime_timing(
            send_ns, motor_ns, rate_hz, since_ns=started_ns + 1_000_000_000  # as loop.report(since_s=1.0)
        )


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



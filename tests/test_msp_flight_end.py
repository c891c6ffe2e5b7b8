"""How an MSP flight leaves a Betaflight board between scenarios (hil.scenario.msp_flight),
against a fake firmware that keeps Betaflight's failsafe rules (flight/failsafe.c):

- in the GPS_RESCUE phase, the radio coming back does not end the failsafe: the link is
  up again after the recovery delay (RXLOSS clears), and then only a roll, pitch or yaw
  stick past failsafe_stick_threshold (30 %) ends it; while GPS_RESCUE_MODE is on the
  yaw stick counts as centred (fc/rc.c), so yaw does nothing then;
- a disarm does not end it either: disarmed, the GPS RESCUE mode bit is off but the phase
  stays, and only MSP_DEBUG (debug_mode = FAILSAFE) shows it;
- the arm switch disarms only with the link up.

The SITL runs of the GPS rig (tests/test_betaflight_gps.py) show the same on the real
firmware; these show the flight's side of it in a second, and that it can fail.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from hil.profiles.betaflight import BETAFLIGHT
from hil.scenario.load import load_scenario
from hil.scenario.msp_flight import MspFlight
from hil.scenario.result import ScenarioResult

ROOT = Path(__file__).resolve().parent.parent
RESCUE = ROOT / "scenarios" / "bf_gps_rescue_rc_loss.toml"
ARM_CHANNEL = 4
RECOVERY_S = 0.3  # failsafe_recovery_delay, shortened


class FakeRcLink:
    def __init__(self) -> None:
        self.total = True  # the scenario's rc_loss is still on at its end
        self.loss = 0.0

    def configure(self, loss=None, total=None) -> None:
        if loss is not None:
            self.loss = loss
        if total is not None:
            self.total = total


class FakeLoop:
    """The closed loop as the flight's end uses it; no physics (a vehicle on the ground)."""

    error = None

    def __init__(self) -> None:
        self.plant = SimpleNamespace(rc_link=FakeRcLink(), rc_enabled=False, physics=False)
        self.channels = [1500, 1500, 1000, 1500, 2000, 1000, 1000, 1000]
        self.sticks_seen: list[tuple[int, int, int]] = []
        self.t0 = time.monotonic()
        self.event_hooks: list = []
        self.stopped = False

    @property
    def time(self) -> float:
        return time.monotonic() - self.t0

    altitude = 0.0

    def pose(self):
        return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def set_sticks(self, roll=1500, pitch=1500, throttle=None, yaw=1500) -> None:
        self.channels[0], self.channels[1], self.channels[3] = roll, pitch, yaw
        self.sticks_seen.append((roll, pitch, yaw))

    def arm_switch(self, on: bool) -> None:
        self.channels[ARM_CHANNEL] = 2000 if on else 1000

    def hold_altitude(self, target) -> None:
        self.channels[2] = 1000

    def report(self, since_s=1.0):
        return [], {}

    def stop(self) -> None:
        self.stopped = True

    close = stop


class FakeBetaflight:
    """The failsafe rules above, advanced at every status request."""

    def __init__(self, loop: FakeLoop, *, armed: bool, phase: str) -> None:
        self.loop = loop
        self.armed = armed
        self.phase = phase
        self.radio_back_at: float | None = None
        self.lock = threading.Lock()

    def _link_up(self) -> bool:
        return self.radio_back_at is not None and time.monotonic() - self.radio_back_at >= RECOVERY_S

    def _step(self) -> None:
        plant = self.loop.plant
        radio = plant.rc_enabled and not plant.rc_link.total
        if radio and self.radio_back_at is None:
            self.radio_back_at = time.monotonic()
        if self.phase == "GPS_RESCUE" and self._link_up():
            ch = self.loop.channels
            rescue_mode = self.armed  # GPS_RESCUE_MODE needs ARMED
            axes = (ch[0], ch[1]) if rescue_mode else (ch[0], ch[1], ch[3])
            if any(abs(v - 1500) >= 0.3 * 500 for v in axes):
                self.phase = "IDLE"
        if self.armed and self.loop.channels[ARM_CHANNEL] < 1500 and self._link_up():
            self.armed = False

    def status(self):
        with self.lock:
            self._step()
            modes = ["ANGLE"]
            if self.armed:
                modes.insert(0, "ARM")
                if self.phase == "GPS_RESCUE":
                    modes.append("GPS RESCUE")
            flags = () if self._link_up() else ("RXLOSS",)
            return SimpleNamespace(
                armed=self.armed, mode_names=tuple(modes), arming_disable_names=flags, cycle_time_us=125,
            )

    def debug_mode(self) -> str:
        return "FAILSAFE"

    def failsafe_phase(self) -> str:
        with self.lock:
            return self.phase

    def tasks(self):
        return []


class FakeSession:
    def __init__(self, loop: FakeLoop, fc: FakeBetaflight) -> None:
        self.board = SimpleNamespace(name="bf-fake", profile=BETAFLIGHT, capabilities=frozenset(), runtime=dict)
        self.autopilot = fc
        self.loop = loop
        self.notes: list[str] = []
        self.restarts: list[str] = []

    def start_loop(self, config=None):
        return self.loop

    def restart_board(self, why: str) -> None:
        self.restarts.append(why)
        self.autopilot.phase = "IDLE"  # a fresh boot
        self.autopilot.armed = False


def _flight(*, armed: bool, phase: str):
    loop = FakeLoop()
    fc = FakeBetaflight(loop, armed=armed, phase=phase)
    session = FakeSession(loop, fc)
    flight = MspFlight(session)
    scenario = load_scenario(RESCUE)
    return flight, session, fc, loop, scenario, ScenarioResult(scenario, "bf-fake")


def test_a_rescue_still_flying_at_the_end_is_ended_by_the_roll_stick_then_disarmed():
    flight, session, fc, loop, scenario, result = _flight(armed=True, phase="GPS_RESCUE")
    loop.plant.rc_link.total = False  # the board came up in a clean state: no restart
    loop.plant.rc_enabled = True
    fc.phase = "IDLE"
    fc.armed = False
    flight.bring_up(scenario)
    assert session.restarts == []
    # The scenario ran: armed, its radio lost, GPS Rescue flying at its end.
    loop.plant.rc_link.total, loop.plant.rc_enabled = True, False
    fc.armed, fc.phase, fc.radio_back_at = True, "GPS_RESCUE", None
    flight.wait("the recorder seeing the rescue", lambda: flight.recorder.armed and "GPS RESCUE" in flight.recorder.modes, 2.0)
    flight.finish(result)
    assert fc.phase == "IDLE" and not fc.armed, result.notes
    assert not loop.plant.rc_link.total and loop.plant.rc_enabled
    assert any(roll != 1500 for roll, _, _ in loop.sticks_seen), "the roll stick, not yaw, ends a rescue"
    assert loop.sticks_seen[-1] == (1500, 1500, 1500), "the sticks are centred again"
    assert any("GPS Rescue still on at the end: ended by the roll stick" in n for n in result.notes)
    assert "landed and disarmed after the scenario" in result.notes


def test_a_board_disarmed_in_the_gps_rescue_phase_is_left_idle():
    flight, session, fc, loop, scenario, result = _flight(armed=False, phase="IDLE")
    loop.plant.rc_link.total, loop.plant.rc_enabled = False, True
    flight.bring_up(scenario)
    # The rescue disarmed on touchdown with the radio already back: the phase stays.
    fc.phase = "GPS_RESCUE"
    flight.finish(result)
    assert fc.phase == "IDLE", result.notes
    assert any("GPS_RESCUE phase" in n for n in result.notes)


def test_a_board_found_in_the_gps_rescue_phase_before_a_flight_is_restarted():
    flight, session, fc, loop, scenario, result = _flight(armed=False, phase="GPS_RESCUE")
    loop.plant.rc_link.total, loop.plant.rc_enabled = False, True
    flight.bring_up(scenario)
    assert len(session.restarts) == 1 and "GPS_RESCUE" in session.restarts[0]
    assert any("restarted it" in n and "phase GPS_RESCUE" in n for n in session.notes)
    flight.recorder.stop()

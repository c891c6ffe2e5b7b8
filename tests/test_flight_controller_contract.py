"""One contract over every FlightController (hil.autopilot.controller): the virtual
board (MAVLink), Betaflight SITL (MSP) and a Betaflight board on the bench (MSP, the
bench SITL standing in). The same verbs, the same checks; what differs between the
firmwares comes from the adapter's profile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hil.autopilot.controller import FlightController
from hil.errors import CommandRefused, HilError
from hil.rig import Rig
from hil.session import session_for
from tests.sitl_support import require_sitl

ROOT = Path(__file__).resolve().parent.parent
RIGS = {
    "virtual": ROOT / "fixtures" / "virtual.toml",
    "betaflight-sitl": ROOT / "fixtures" / "betaflight-sitl.toml",
    "betaflight-bench": ROOT / "fixtures" / "betaflight-bench.toml",
}


@pytest.fixture(params=sorted(RIGS), scope="module")
def controller(request, tmp_path_factory):
    """(session, its FlightController), with the board's simulator link running."""
    if request.param != "virtual":
        require_sitl()
    rig = Rig.load(RIGS[request.param], work_dir=tmp_path_factory.mktemp(request.param))
    try:
        session = session_for(rig.select(None))
        session.__enter__()
        try:
            if request.param == "virtual":
                session.make_sim().start()
            else:
                session.start_loop()
            yield session, session.autopilot
        finally:
            session.cleanup()
    finally:
        rig.stop()


def test_it_is_a_flight_controller_with_its_boards_profile(controller):
    session, fc = controller
    assert isinstance(fc, FlightController)
    assert fc.profile.name == session.board.profile.name


def test_describe_names_firmware_version_and_board(controller):
    _, fc = controller
    ident = fc.describe()
    assert ident.firmware and ident.board
    assert ident.version[:1].isdigit(), ident


def test_state_starts_disarmed_in_a_mode_it_can_wait_for(controller):
    _, fc = controller
    state = fc.state()
    assert state.armed is False and state.mode
    fc.wait_mode(state.mode, within=3.0)  # returns at once: it is in it
    fc.set_mode(state.mode)  # asking for the mode it is in is never refused


def test_a_mode_the_firmware_lacks_is_refused_with_the_reason(controller):
    _, fc = controller
    with pytest.raises(HilError, match="NOT_A_MODE"):
        fc.set_mode("NOT_A_MODE")


def test_parameters_get_set_snapshot_restore(controller):
    _, fc = controller
    name = fc.profile.failsafe("rc_loss").timeout_setting
    before = fc.get_param(name)
    snap = fc.snapshot_params([name])
    assert snap == {name: before}
    fc.set_param(name, before + 5)
    assert fc.get_param(name) == pytest.approx(before + 5)
    assert fc.restore_params(snap) == [name]
    assert fc.get_param(name) == pytest.approx(before)
    assert fc.restore_params(snap) == []


def test_arm_and_disarm(controller):
    _, fc = controller
    deadline = time.monotonic() + 30.0
    while True:  # a board just started refuses until it is ready ("Gyros still settling")
        try:
            if fc.profile.supports("GUIDED"):  # a MAVLink copter arms on the ground in GUIDED
                fc.set_mode("GUIDED")
            fc.arm()
            break
        except CommandRefused:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    fc.wait_armed(within=5.0)
    assert fc.state().armed is True
    fc.disarm()
    fc.wait_armed(False, within=5.0)
    assert fc.state().armed is False


def test_reboot_restarts_the_firmware_and_the_same_adapter_follows_it(controller):
    """Last in this module (it restarts the board). Whatever the protocol, `reboot()`
    returns once the rebooted firmware answers on the same adapter: a MAVLink board that
    came back on a new port is found again by its session, an MSP board reopened."""
    session, fc = controller
    if session.sim is not None:
        session.sim.stop()  # the closed loop holds the old firmware's link
    ident = fc.describe()
    started = time.monotonic()
    fc.reboot()
    assert time.monotonic() - started < 60.0
    assert fc.describe() == ident
    state = fc.state()
    assert state.armed is False and state.mode
    name = fc.profile.failsafe("rc_loss").timeout_setting
    assert fc.get_param(name) == fc.snapshot_params([name])[name]  # parameters answer again

"""The `betaflight` bench board: its rig keys, the bench link, the bench SITL variant's
build, and the scenario words a bench needs (armed on the ground, the arm switch, the
firmware's link quality). The Betaflight runs are in tests/test_bench_betaflight.py."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.codecs import crsf
from hil.codecs.msp import Analog, MspError
from hil.errors import ConfigError, HilError
from hil.profiles import profile
from hil.receivers import FRAMING, Receiver
from hil.rig import Rig
from hil.scenario import Timeline, evaluate, parse_scenario
from hil.sim.bench_link import BenchLink, bench_loop
from hil.sim.loop import ARM_US, DISARM_US, ClosedLoop
from hil.sitl.bench_build import BenchBuildError, Edit, apply_edits, build_key
from hil.sitl.bench_stand import GRAVITY, STATE, rest_packet

# --------------------------------------------------------------------------- rig keys

BOARD = """
[[board]]
name = "bf"
type = "betaflight"
url = "socket://127.0.0.1:5761"
"""
CRSF_RX = """
[[board.receiver]]
role = "rc"
protocol = "crsf"
device = "socket://127.0.0.1:5762"
fc_port = "UART2"
"""


def load(tmp_path: Path, text: str) -> Rig:
    path = tmp_path / "rig.toml"
    path.write_text(text)
    return Rig.load(path, work_dir=tmp_path / "state")


def test_a_bench_board_knows_its_receiver_and_what_it_can_do(tmp_path):
    board = load(tmp_path, BOARD + CRSF_RX).select(None)
    assert board.rc_receiver.fc_port == "UART2"
    assert board.rc_receiver.baud == FRAMING["crsf"].baud
    assert board.url() == "socket://127.0.0.1:5761"
    assert "physics" not in board.capabilities
    assert {"arm_switch", "link_statistics"} <= board.capabilities
    assert board.profile.name == "betaflight"
    assert board.stand_in is None and board.state in ("absent", "present")


@pytest.mark.parametrize(
    "text, message",
    [
        (BOARD, 'exactly one [[board.receiver]] with role = "rc"'),
        (BOARD + CRSF_RX.replace('fc_port = "UART2"\n', ""), "needs fc_port"),
        (BOARD + CRSF_RX.replace('"UART2"', '"UART 2; rm"'), "fc_port"),
        (BOARD + CRSF_RX.replace("socket://127.0.0.1:5762", "socket://x"), "network serial URL"),
        (BOARD + CRSF_RX + '[board.stand_in]\nkind = "px4"\n', "stand_in.kind"),
        (BOARD + CRSF_RX + '[board.stand_in]\nkind = "betaflight-sitl"\nport = 1\n', "unknown key"),
        (BOARD.replace('url = "socket://127.0.0.1:5761"\n', "") + CRSF_RX, "give url"),
        (BOARD + "stand_in = 3\n" + CRSF_RX, "must be a table"),
    ],
)
def test_a_wrong_bench_board_is_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(ConfigError, match=None) as err:
        load(tmp_path, text).select(None)
    assert message in str(err.value)


# --------------------------------------------------------------------------- bench link


class FakeUart:
    """What pyserial would be: collects what is written."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self.lock:
            self.data += data
        return len(data)

    def close(self) -> None:
        pass

    def take(self) -> list[Any]:
        with self.lock:
            data, self.data = bytes(self.data), bytearray()
        return crsf.CrsfParser().feed(data)


def bench_link(uart: FakeUart) -> ClosedLoop:
    receiver = Receiver("rc", "crsf", "socket://127.0.0.1:1", baud=420000, fc_port="UART2")
    return bench_loop(receiver, receiver.device, opener=lambda r: uart)


def _wait_for(what, predicate, within=3.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {within} s")


def test_the_bench_link_is_a_crsf_radio_with_an_arm_switch():
    uart = FakeUart()
    with bench_link(uart) as link:
        _wait_for("a few frames", lambda: len(uart.data) > 200)
        frames = uart.take()
        rc = [f for f in frames if isinstance(f, crsf.RcChannelsPacked)]
        stats = [f for f in frames if isinstance(f, crsf.LinkStatistics)]
        assert rc and all(abs(f.to_us()[4] - DISARM_US) <= 1 for f in rc)
        assert all(abs(f.to_us()[2] - 1000) <= 1 for f in rc)  # throttle low: a bench
        link.arm_switch(True)
        time.sleep(0.1)
        uart.take()
        _wait_for("more frames", lambda: len(uart.data) > 100)
        assert all(abs(f.to_us()[4] - ARM_US) <= 1 for f in uart.take() if isinstance(f, crsf.RcChannelsPacked))
    assert stats and stats[-1].uplink_link_quality == 100
    timing = link.link.timing()
    assert timing.frames > 10 and timing.write_errors == 0


def test_rc_loss_on_the_bench_link_silences_the_rc_frames():
    uart = FakeUart()
    with bench_link(uart) as link:
        _wait_for("the link running", lambda: link.time > 0.05)
        link.schedule("rc_loss", link.time + 0.1, None, {}, "rc")
        _wait_for("the loss applied", lambda: any(e[1] == "injection_start" for e in link.events))
        time.sleep(0.05)
        uart.take()
        time.sleep(0.3)
        assert not [f for f in uart.take() if isinstance(f, crsf.RcChannelsPacked)]


def test_the_bench_link_does_not_fly():
    link = bench_link(FakeUart())
    with pytest.raises(HilError, match="no physics"):
        link.hold_altitude(5.0)
    link.hold_altitude(None)
    assert link.pose() == (0.0,) * 6 and link.altitude == 0.0 and link.link.physics is False
    with pytest.raises(HilError, match="cannot act on the bench link"):
        link.schedule("gps_jamming", 1.0, None, {"js_db": 40.0})


def test_the_bench_link_drives_only_an_rc_receiver():
    gps = Receiver("gps", "ubx", "/dev/ttyUSB0")
    with pytest.raises(HilError, match="RC receiver"):
        BenchLink(gps, gps.device, opener=lambda r: FakeUart())


# --------------------------------------------------------------------------- stand-in and build


def test_a_board_at_rest_reads_gravity_and_a_level_attitude():
    fields = STATE.unpack(rest_packet(1.5))
    assert fields[0] == 1.5
    assert fields[1:4] == (0.0, 0.0, 0.0)  # no rotation
    assert fields[4:7] == (0.0, 0.0, -GRAVITY)  # specific force of a board lying still (FRD)
    assert fields[7:11] == (1.0, 0.0, 0.0, 0.0)
    assert fields[-1] == pytest.approx(101325.0)


def test_the_bench_edits_refuse_a_source_they_were_not_written_for(tmp_path):
    (tmp_path / "a.c").write_text("one\ntwo\n")
    apply_edits(tmp_path, (Edit("a.c", "one\n", "ONE\n"),))
    assert (tmp_path / "a.c").read_text() == "ONE\ntwo\n"
    with pytest.raises(BenchBuildError, match="a.c has 0 copies"):
        apply_edits(tmp_path, (Edit("a.c", "one\n", "x\n"),))
    (tmp_path / "b.c").write_text("x\nx\n")
    with pytest.raises(BenchBuildError, match="2 copies"):
        apply_edits(tmp_path, (Edit("b.c", "x\n", "y\n"),))
    assert (tmp_path / "b.c").read_text() == "x\nx\n"  # nothing half-applied


def test_the_cached_build_is_keyed_by_version_and_edits():
    assert build_key("0.0.6") == build_key("0.0.6")
    assert build_key("0.0.6") != build_key("0.0.7")


# --------------------------------------------------------------------------- MSP_ANALOG

analogs = st.builds(
    Analog,
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(-0x8000, 0x7FFF),
    st.integers(0, 0xFFFF),
)


@given(analogs)
def test_analog_round_trips(value):
    assert Analog.decode(value.encode()) == value


@given(st.binary(max_size=20))
def test_analog_garbage_decodes_or_is_refused(data):
    try:
        value = Analog.decode(data)
    except MspError:
        assert len(data) < 9 and len(data) != 7  # a reply is 9 bytes (7 from older firmware)
    else:
        assert len(data) == 7 or len(data) >= 9
        assert 0 <= value.rssi_percent <= 100 * 0xFFFF / 1023


def test_analog_of_older_firmware_has_no_voltage_field():
    assert Analog.decode(struct.pack("<BHHh", 160, 5, 512, -3)).voltage == 0
    assert Analog(0, 0, 1023, 0, 0).rssi_percent == 100.0


# --------------------------------------------------------------------------- scenario words


def bench_scenario(setup: dict[str, Any], injections: list[dict], expects: list[dict], duration=8.0):
    return parse_scenario(
        {
            "scenario": {"name": "b", "duration": duration, "applies_to": ["msp"]},
            "setup": setup,
            "injection": injections,
            "expect": expects,
        }
    )


def test_armed_on_the_ground_is_altitude_zero_and_needs_no_physics():
    sc = bench_scenario({"armed": True, "altitude": 0.0, "mode": "ANGLE"}, [{"kind": "rc_loss", "start": 1.0}],
                        [{"kind": "disarmed", "within": 3.0}])
    assert sc.setup.armed and sc.setup.altitude == 0.0
    assert sc.needs().capabilities == ()
    flying = bench_scenario({"altitude": 5.0, "mode": "ANGLE"}, [], [{"kind": "armed_throughout"}])
    assert flying.needs().capabilities == ("physics",)
    why = flying.lacked_by(profile("betaflight"), frozenset({"arm_switch"}))
    assert why is not None and "no physics" in why
    assert flying.lacked_by(profile("betaflight")) is None  # capabilities not asked


@pytest.mark.parametrize(
    "setup, message",
    [
        ({"armed": True, "altitude": 0.5, "mode": "ANGLE"}, "0 (armed on the ground) or from 1 to 100"),
        ({"armed": True, "altitude": 0.0, "mode": "ANGLE", "fly_to": [1.0, 1.0]}, "needs a hover altitude"),
    ],
)
def test_a_ground_setup_that_cannot_be_is_refused(setup, message):
    from hil.errors import ScenarioError

    with pytest.raises(ScenarioError, match=None) as err:
        bench_scenario(setup, [], [{"kind": "armed_throughout"}])
    assert message in str(err.value)


def test_the_arm_switch_and_link_quality_are_needs_a_board_must_have():
    sc = bench_scenario(
        {"armed": False},
        [{"kind": "arm_switch", "id": "arm", "start": 1.0}],
        [{"kind": "armed", "after": "arm.start", "within": 0.5},
         {"kind": "link_quality", "min": 90.0, "for": 1.0}],
    )
    assert sc.needs().capabilities == ("arm_switch", "link_statistics")
    why = sc.lacked_by(profile("betaflight"), frozenset({"physics"}))
    assert "arm switch" in why and "link quality" in why


def timeline(armed_at: list[tuple[float, bool]], lq: list[tuple[float, float]] = (), end=8.0) -> Timeline:
    tl = Timeline()
    t = -0.5
    state = armed_at[0][1]
    while t <= end:
        for when, value in armed_at:
            if when <= t:
                state = value
        tl.add_state(t, state, "ANGLE", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        t += 0.04
    for when, value in armed_at[1:]:
        tl.add_event(when, "armed" if value else "disarmed")
    for when, value in lq:
        tl.add_sample("lq", when, value)
    return tl


def verdicts(expects, tl, injections=()):
    sc = bench_scenario({"armed": False}, list(injections), expects)
    return evaluate(sc, tl, sc.nominal_anchors())


def test_armed_within_passes_on_time_and_fails_late_or_never():
    arm = [{"kind": "arm_switch", "id": "arm", "start": 2.0}]
    expect = [{"kind": "armed", "after": "arm.start", "within": 0.5}]
    assert verdicts(expect, timeline([(0, False), (2.2, True)]), arm)[0].passed
    late = verdicts(expect, timeline([(0, False), (3.0, True)]), arm)[0]
    assert not late.passed and "too late" in late.message
    never = verdicts(expect, timeline([(0, False)]), arm)[0]
    assert not never.passed and "still disarmed" in never.message


def test_disarmed_throughout_fails_when_the_board_arms():
    expect = [{"kind": "disarmed_throughout", "for": 5.0}]
    assert verdicts(expect, timeline([(0, False)]))[0].passed
    armed = verdicts(expect, timeline([(0, False), (4.0, True)]))[0]
    assert not armed.passed and "armed at t=4.00" in armed.message


def test_link_quality_reads_the_firmwares_samples():
    expect = [{"kind": "link_quality", "min": 90.0, "after": "start", "for": 3.0}]
    good = [(0.1 * i, 100.0) for i in range(80)]
    assert verdicts(expect, timeline([(0, False)], good))[0].passed
    dip = [(t, 60.0 if 2.0 <= t < 2.3 else v) for t, v in good]
    bad = verdicts(expect, timeline([(0, False)], dip))[0]
    assert not bad.passed and "read 60" in bad.message
    gap = [(t, v) for t, v in good if not 1.0 < t < 2.5]
    holed = verdicts(expect, timeline([(0, False)], gap))[0]
    assert not holed.passed and "unrecorded" in holed.message
    none = verdicts(expect, timeline([(0, False)]))[0]
    assert not none.passed and "never reported" in none.message

"""The ardupilot_json simulator link against a fake ArduPilot SITL (a UDP client speaking
SIM_JSON's protocol): first packet, answers, repeats, restarts, garbage, bounded waits."""

from __future__ import annotations

import socket

import pytest

from hil.codecs.ardupilot_json import (
    ServoPacket,
    decode_state_line,
    encode_servo_packet,
    split_state_lines,
)
from hil.errors import BoardNotAnswering, LinkError
from hil.sim.ardupilot_link import ArduPilotJsonLink, pwm_to_motor
from hil.sim.loop import SimConfig
from hil.sim.plant import Plant
from hil.sim.simlink import LINKS, SimulatorLink

WAIT = 2.0  # wall seconds any one step of these tests may take


class FakeSitl:
    """ArduPilot's side: send servo packets, read the state lines that come back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT)
        self.target = ("127.0.0.1", port)

    def servo(self, frame: int, pwm=(1000, 1000, 1000, 1000), rate: int = 400) -> None:
        pwm = tuple(pwm) + (0,) * (16 - len(pwm))
        self.sock.sendto(encode_servo_packet(ServoPacket(rate, frame, pwm)), self.target)

    def line(self) -> bytes:
        data, _ = self.sock.recvfrom(4096)
        return data

    def quiet(self) -> bool:
        self.sock.settimeout(0.05)
        try:
            self.sock.recvfrom(4096)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(WAIT)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def link():
    with ArduPilotJsonLink(0, first_packet_timeout=WAIT) as lk:
        yield lk


@pytest.fixture
def sitl(link):
    fake = FakeSitl(link.port)
    yield fake
    fake.close()


@pytest.fixture
def plant():
    return Plant.for_mavlink_hil(SimConfig())


def test_registered_as_a_simulator_link(link):
    assert LINKS["ardupilot_json"] is ArduPilotJsonLink
    assert isinstance(link, SimulatorLink)
    assert link.physics and link.lockstep and not link.pipeline


def test_pwm_maps_to_motor_commands():
    assert [pwm_to_motor(p) for p in (0, 900, 1000, 1500, 2000, 2100)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]


def test_first_packet_then_lockstep_answers(link, sitl, plant):
    sitl.servo(0)  # SITL speaks first, before it has heard from us
    link.send(0, plant)
    first = sitl.line()
    assert first.startswith(b"\n") and first.endswith(b"\n")
    state = decode_state_line(split_state_lines(first)[0])
    assert state.timestamp_s == 0.0
    assert state.quaternion == pytest.approx(plant.vehicle.quat)
    assert state.position == pytest.approx(plant.vehicle.pos)
    assert state.accel_body[2] == pytest.approx(-9.8, abs=0.5)  # specific force at rest, FRD
    assert state.battery is not None and state.battery[0] > 10.0
    sitl.servo(1, (1500, 1600, 1700, 2000))
    assert link.outputs(0, WAIT) == pytest.approx((0.5, 0.6, 0.7, 1.0))
    link.send(2500, plant)
    assert decode_state_line(split_state_lines(sitl.line())[0]).timestamp_s == pytest.approx(0.0025)


def test_no_sitl_is_a_bounded_wait_that_names_what_it_waited_for(plant):
    with ArduPilotJsonLink(0, first_packet_timeout=0.2) as lk:
        with pytest.raises(BoardNotAnswering, match="first servo packet.*never sent one"):
            lk.send(0, plant)


def test_a_repeat_gets_the_same_line_again_and_does_not_step(link, sitl, plant):
    sitl.servo(0)
    link.send(0, plant)
    answer = sitl.line()
    sitl.servo(0)  # SITL did not take it within its second: it sends the frame again
    with pytest.raises(BoardNotAnswering, match="answering the state at t=0.0000"):
        link.outputs(0, 0.2)
    assert sitl.line() == answer  # the same stamp: SITL's clock does not move
    assert link.repeats_answered == 1
    sitl.servo(1, (1250,) * 4)
    assert link.outputs(0, WAIT) == pytest.approx((0.25,) * 4)


def test_queued_packets_are_answered_once_at_the_newest(link, sitl, plant):
    sitl.servo(0)
    link.send(0, plant)
    sitl.line()
    sitl.servo(1, (1100,) * 4)
    sitl.servo(2, (1200,) * 4)  # a late reply of ours let SITL run a frame ahead
    import time

    time.sleep(0.05)
    assert link.outputs(0, WAIT) == pytest.approx((0.2,) * 4)
    assert link.superseded == 1
    link.send(2500, plant)
    sitl.line()
    assert sitl.quiet()  # one answer, not one per queued packet


def test_a_frame_count_going_back_is_a_restart(link, sitl, plant):
    restarted = []
    link.on_restart = lambda: restarted.append(True)
    sitl.servo(0)
    link.send(0, plant)
    sitl.line()
    sitl.servo(41)
    link.outputs(0, WAIT)
    link.send(2500, plant)
    sitl.line()
    sitl.servo(0)  # a new SITL process counts from zero again
    assert link.outputs(2500, WAIT) == (0.0, 0.0, 0.0, 0.0)
    assert restarted == [True] and link.restarts == 1
    link.send(5000, plant)
    assert decode_state_line(split_state_lines(sitl.line())[0]).timestamp_s == pytest.approx(0.005)


def test_garbage_datagrams_are_ignored(link, sitl, plant):
    sitl.sock.sendto(b"\x00\x01garbage", sitl.target)
    sitl.sock.sendto(b"", sitl.target)
    sitl.servo(0)
    link.send(0, plant)
    sitl.line()
    sitl.sock.sendto(b"\xff" * 40, sitl.target)
    with pytest.raises(BoardNotAnswering, match="last frame 0"):
        link.outputs(0, 0.2)
    assert link.bad_packets == 3


def test_a_port_in_use_is_a_clear_error():
    with ArduPilotJsonLink(0) as first:
        second = ArduPilotJsonLink(first.port)
        with pytest.raises(LinkError, match=f"UDP 127.0.0.1:{first.port}"):
            second.open()
        second.close()
        second.close()  # twice is fine


def test_a_plant_without_physics_is_refused(link, sitl):
    sitl.servo(0)
    with pytest.raises(LinkError, match="needs a plant with a vehicle"):
        link.send(0, Plant.radio_only(50.0))


def test_compass_interference_moves_sitls_compass_offsets_and_puts_them_back(link, sitl, plant):
    """SITL's compass is its own (no magnetometer in the JSON line): the plant's airframe
    field goes to SIM_MAGn_OFS as -1000 x gauss from the session's values, and back."""
    from hil.sim.injections import APPLIERS

    sent = []
    # The GCS heartbeats go the same way; only the PARAM_SETs count here.
    link.send_to_board = lambda m: sent.append(m) if m.get_type() == "PARAM_SET" else None
    link.param_target = (1, 1)
    sitl.servo(0)
    link.send(0, plant)  # no interference: nothing to set
    assert sent == []
    APPLIERS["compass_interference"].start(type("L", (), {"plant": plant})(), {"gauss": 0.3, "direction": 90.0})
    sitl.servo(1)
    link.outputs(0, WAIT)
    link.send(2500, plant)
    assert sent == []  # the session has not told the link SITL's values yet: it waits
    link.mag_offsets_base = {"SIM_MAG1_OFS_X": 5.0, "SIM_MAG1_OFS_Y": 0.0, "SIM_MAG2_OFS_Y": -20.0}
    sitl.servo(2)
    link.outputs(2500, WAIT)
    link.send(5000, plant)
    got = {m.param_id: m.param_value for m in sent}
    assert got == pytest.approx({"SIM_MAG1_OFS_X": 5.0, "SIM_MAG1_OFS_Y": -300.0, "SIM_MAG2_OFS_Y": -320.0}, abs=1e-6)
    sent.clear()
    sitl.servo(3)
    link.outputs(5000, WAIT)
    link.send(7500, plant)  # unchanged: nothing sent again
    assert sent == []
    APPLIERS["compass_interference"].stop(type("L", (), {"plant": plant})(), {})
    sitl.servo(4)
    link.outputs(7500, WAIT)
    link.send(10000, plant)
    assert {m.param_id: m.param_value for m in sent} == pytest.approx(
        {"SIM_MAG1_OFS_X": 5.0, "SIM_MAG1_OFS_Y": 0.0, "SIM_MAG2_OFS_Y": -20.0}
    )

"""The px4_tcp simulator link against a fake PX4: a TCP client that behaves as
simulator_mavlink does (connects to our listener, says HEARTBEAT and asks for
HIL_STATE_QUATERNION, answers each HIL_SENSOR with HIL_ACTUATOR_CONTROLS)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import px4_sim
from hil.errors import BoardNotAnswering, HilError
from hil.geo import HOME
from hil.mavlink.dialect import mavlink, new_codec
from hil.sim.plant import Plant
from hil.sim.px4_link import Px4SimListener, Px4TcpLink, port_for
from hil.sim.simlink import LINKS, SimulatorLink


@dataclass
class _Config:
    seed: int = 0
    rc_rate_hz: float = 50.0
    battery_cells: int = 3
    battery_capacity_mah: float = 5000.0
    wind_speed: float = 0.0
    wind_direction: float = 0.0
    wind_gust: float = 0.0


class FakePx4:
    """Connects to `port`, then answers every HIL_SENSOR (id 0) with its time_usec."""

    def __init__(self, port: int, *, armed: bool = True, lockstep: bool = True, garbage: bytes = b"",
                 answer: bool = True) -> None:
        self.port = port
        self.armed = armed
        self.lockstep = lockstep
        self.garbage = garbage
        self.answer = answer
        self.received: list = []
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.codec = new_codec(1, 1)
        hello = mavlink.MAVLink_heartbeat_message(mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_PX4, 0, 0, 0, 3)
        ask = mavlink.MAVLink_command_long_message(
            0, 0, mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, 0,
            mavlink.MAVLINK_MSG_ID_HIL_STATE_QUATERNION, 5000, 0, 0, 0, 0, 0,
        )
        self.sock.sendall(hello.pack(self.codec) + ask.pack(self.codec))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        parser = new_codec(0, 0)
        try:
            self.sock.settimeout(0.1)
        except OSError:  # the test hung up before this thread started
            return
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for msg in parser.parse_buffer(data) or []:
                self.received.append(msg)
                if msg.get_type() == "HIL_SENSOR" and msg.id == 0 and self.answer:
                    controls = (0.5, 0.625, 0.75, 0.875) + (0.0,) * 12 if self.armed else (0.0,) * 16
                    ac = px4_sim.ActuatorControls(
                        msg.time_usec,
                        controls,
                        px4_sim.MODE_FLAG_CUSTOM | (px4_sim.MODE_FLAG_ARMED if self.armed else 0),
                        px4_sim.FLAG_LOCKSTEP if self.lockstep else 0,
                    )
                    try:
                        self.sock.sendall(self.garbage + px4_sim.encode_actuator_controls(ac))
                    except OSError:
                        return

    def of_type(self, kind: str) -> list:
        return [m for m in self.received if m.get_type() == kind]

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self.thread.join(2.0)


@pytest.fixture
def listener():
    lst = Px4SimListener(0).open()
    yield lst
    lst.close()


@pytest.fixture
def plant():
    return Plant.for_mavlink_hil(_Config())


def _connected(listener, **fake):
    px4 = FakePx4(listener.port, **fake)
    link = Px4TcpLink(listener, accept_timeout=5.0)
    link.open()
    return px4, link


def _step(link, plant, t_us):
    link.send(t_us, plant)
    return link.outputs(t_us, 2.0)


def test_is_a_registered_simulator_link() -> None:
    assert LINKS["px4_tcp"] is Px4TcpLink
    assert isinstance(Px4TcpLink(Px4SimListener(0)), SimulatorLink)
    assert port_for(0) == 4560 and port_for(3) == 4563


def test_each_sample_is_answered_with_the_armed_motor_outputs(listener, plant) -> None:
    px4, link = _connected(listener)
    try:
        assert _step(link, plant, 4000) == (0.5, 0.625, 0.75, 0.875)
        assert _step(link, plant, 8000) == (0.5, 0.625, 0.75, 0.875)
        assert link.answers == 2
    finally:
        link.close()
        px4.close()


def test_a_disarmed_px4_gives_zero_motors(listener, plant) -> None:
    px4, link = _connected(listener, armed=False)
    try:
        assert _step(link, plant, 4000) == (0.0, 0.0, 0.0, 0.0)
    finally:
        link.close()
        px4.close()


def test_hil_sensor_carries_the_hovering_quad_groups_in_px4_units(listener, plant) -> None:
    px4, link = _connected(listener)
    try:
        _step(link, plant, 4000)
        (sensor,) = px4.of_type("HIL_SENSOR")
        assert sensor.fields_updated == 0x1BFF
        assert px4_sim.groups_used(sensor.fields_updated) == {"accel", "gyro", "mag", "baro"}
        assert sensor.id == 0 and sensor.time_usec == 4000
        assert 900.0 < sensor.abs_pressure < 1100.0  # hPa
        assert 0.1 < (sensor.xmag**2 + sensor.ymag**2 + sensor.zmag**2) ** 0.5 < 1.0  # gauss
        assert -10.5 < sensor.zacc < -9.0
    finally:
        link.close()
        px4.close()


def test_gps_goes_as_hil_gps_in_degE7_mm_and_cm(listener, plant) -> None:
    px4, link = _connected(listener)
    try:
        _step(link, plant, 4000)
        (gps,) = px4.of_type("HIL_GPS")
        assert gps.fix_type == 3 and gps.satellites_visible >= 6
        assert abs(gps.lat / 1e7 - plant.gnss_observation(0.004).lat_deg) < 1e-4
        assert 0 < gps.eph < 1000  # cm: a metre or so
        assert abs(gps.alt / 1000.0 - HOME.alt_m) < 20.0  # mm AMSL
    finally:
        link.close()
        px4.close()


def test_rc_goes_as_rc_channels_at_the_radio_rate_and_not_while_lost(listener, plant) -> None:
    px4, link = _connected(listener)
    try:
        plant.rc_channels[2] = 1234
        for step in range(1, 51):  # 0.2 s at 250 Hz: 10 frames at 50 Hz
            _step(link, plant, step * 4000)
        frames = px4.of_type("RC_CHANNELS")
        assert len(frames) == 10
        assert frames[0].chan3_raw == 1234 and frames[0].chancount == 8
        plant.rc_enabled = False
        for step in range(51, 101):
            _step(link, plant, step * 4000)
        assert len(px4.of_type("RC_CHANNELS")) == 10
    finally:
        link.close()
        px4.close()


def test_what_px4_says_on_connecting_is_noted(listener, plant) -> None:
    px4, link = _connected(listener)
    try:
        _step(link, plant, 4000)
        assert link.peer_heartbeat is not None
        assert link.peer_heartbeat.autopilot == mavlink.MAV_AUTOPILOT_PX4
        assert link.requested_intervals == {mavlink.MAVLINK_MSG_ID_HIL_STATE_QUATERNION: 5000.0}
    finally:
        link.close()
        px4.close()


def test_no_px4_connecting_is_a_bounded_wait_that_names_the_port(listener) -> None:
    link = Px4TcpLink(listener, accept_timeout=0.3)
    with pytest.raises(BoardNotAnswering, match=f"{listener.port}.*0.3 s"):
        link.open()


def test_a_connection_whose_px4_went_away_is_passed_over_for_the_newest(listener, plant) -> None:
    stale = socket.create_connection(("127.0.0.1", listener.port))
    hello = mavlink.MAVLink_heartbeat_message(mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_PX4, 0, 0, 0, 3)
    stale.sendall(hello.pack(new_codec(1, 1)))  # it greeted, then its firmware restarted
    stale.close()
    time.sleep(0.05)
    px4, link = _connected(listener)
    try:
        assert _step(link, plant, 4000) == (0.5, 0.625, 0.75, 0.875)
    finally:
        link.close()
        px4.close()


def test_a_px4_that_stops_answering_fails_the_step_within_its_timeout(listener, plant) -> None:
    px4, link = _connected(listener, answer=False)
    try:
        link.send(4000, plant)
        with pytest.raises(BoardNotAnswering, match="no HIL_ACTUATOR_CONTROLS.*0.0040 s"):
            link.outputs(4000, 0.3)
    finally:
        link.close()
        px4.close()


def test_a_px4_that_hangs_up_is_reported_not_waited_for(listener, plant) -> None:
    px4, link = _connected(listener, answer=False)
    try:
        px4.close()
        with pytest.raises(HilError, match="closed its simulator connection|connection failed"):
            link.send(4000, plant)
            link.outputs(4000, 2.0)
    finally:
        link.close()


def test_a_build_without_lockstep_is_refused_when_lockstep_is_required(listener, plant) -> None:
    px4 = FakePx4(listener.port, lockstep=False)
    link = Px4TcpLink(listener, accept_timeout=5.0, require_lockstep=True)
    link.open()
    try:
        link.send(4000, plant)
        with pytest.raises(HilError, match="lockstep"):
            link.outputs(4000, 2.0)
    finally:
        link.close()
        px4.close()


def test_real_time_takes_the_newest_answer_or_none(listener, plant) -> None:
    px4 = FakePx4(listener.port)
    link = Px4TcpLink(listener, accept_timeout=5.0, lockstep=False)
    link.open()
    try:
        assert link.outputs(0, 0.0) is None
        link.send(4000, plant)
        deadline = time.monotonic() + 2.0
        motors = None
        while motors is None and time.monotonic() < deadline:
            motors = link.outputs(4000, 0.0)
        assert motors == (0.5, 0.625, 0.75, 0.875)
    finally:
        link.close()
        px4.close()


@settings(max_examples=25, deadline=None)
@given(garbage=st.binary(max_size=300).filter(lambda b: b"\xfd" not in b and b"\xfe" not in b))
def test_noise_before_an_answer_does_not_hide_it(garbage: bytes) -> None:
    lst = Px4SimListener(0).open()
    px4 = FakePx4(lst.port, garbage=garbage)
    link = Px4TcpLink(lst, accept_timeout=5.0)
    try:
        link.open()
        plant = Plant.for_mavlink_hil(_Config())
        assert _step(link, plant, 4000) == (0.5, 0.625, 0.75, 0.875)
    finally:
        link.close()
        px4.close()
        lst.close()


@settings(max_examples=50, deadline=None)
@given(noise=st.binary(max_size=600))
def test_any_bytes_from_the_peer_give_an_answer_or_our_own_error(noise: bytes) -> None:
    lst = Px4SimListener(0).open()
    peer = socket.create_connection(("127.0.0.1", lst.port))
    link = Px4TcpLink(lst, accept_timeout=5.0)
    try:
        link.open()
        peer.sendall(noise)
        try:
            link.outputs(4000, 0.05)
        except BoardNotAnswering:
            pass  # nothing in the noise answered the sample
    finally:
        link.close()
        peer.close()
        lst.close()


def test_the_listener_refuses_a_port_in_use_with_a_clear_error(listener) -> None:
    with pytest.raises(HilError, match=f"{listener.port}.*holds it"):
        Px4SimListener(listener.port).open()

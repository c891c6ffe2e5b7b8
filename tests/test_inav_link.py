"""The inav_msp_simulator link against a scripted INAV on the other end of its port."""

from __future__ import annotations

import struct

import pytest

from hil import geo
from hil.codecs import msp
from hil.codecs.msp_simulator import (
    MSP_SIMULATOR,
    SimFlag,
    SimulatorReply,
    SimulatorRequest,
)
from hil.errors import LinkError
from hil.sim.betaflight_loop import BetaflightLoopConfig
from hil.sim.inav_link import InavMspSimulatorLink
from hil.sim.plant import Plant
from hil.sim.simlink import LINKS, SimulatorLink


class FakeInav:
    """Answers MSP as INAV 9.1 does for what the link asks, synchronously."""

    def __init__(self, variant: bytes = b"INAV", *, answer: bool = True, refuse_v3: bool = False) -> None:
        self.variant = variant
        self.answer = answer
        self.refuse_v3 = refuse_v3
        self.armed = False
        self.motor_us = (1000, 1000, 1000, 1000, 0, 0, 0, 0)
        self.requests: list[SimulatorRequest] = []
        self.commands: list[int] = []
        self.hold = False  # keep replies back (an exchange in flight)
        self._parser = msp.MspParser()
        self._out = bytearray()
        self._held = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        for frame in self._parser.feed(bytes(data)):
            self.commands.append(frame.cmd)
            if not self.answer:
                continue
            reply = self._reply(frame)
            if reply is not None:
                (self._held if self.hold else self._out).extend(reply)

    def _reply(self, frame: msp.MspFrame) -> bytes | None:
        if frame.cmd == msp.MspCommand.FC_VARIANT:
            return msp.encode_reply(frame.cmd, self.variant)
        if frame.cmd == msp.MspCommand.MOTOR:
            return msp.encode_reply(frame.cmd, struct.pack("<8H", *self.motor_us))
        if frame.cmd == MSP_SIMULATOR:
            req = SimulatorRequest.decode(frame.payload)
            self.requests.append(req)
            if self.refuse_v3 and req.version == 3:
                return msp.encode_reply(frame.cmd, b"", version=2, error=True)
            if req.stops:
                self.armed = False
            reply = SimulatorReply(0, 0, 0, 0 if self.armed else -500, 64 if self.armed else 0, 0, (0, 0, 0), b"\xff\x00")
            return msp.encode_reply(frame.cmd, reply.encode(), version=2)
        return None

    def release(self) -> None:
        self._out.extend(self._held)
        self._held.clear()
        self.hold = False

    def read(self, timeout: float) -> bytes | None:
        data, self._out = bytes(self._out), bytearray()
        return data or None

    def close(self) -> None:
        self.closed = True


def _plant() -> Plant:
    return Plant.for_betaflight(BetaflightLoopConfig())


def _link(fake: FakeInav, **kw) -> InavMspSimulatorLink:
    link = InavMspSimulatorLink(opener=lambda: fake, connect_timeout=0.3, **kw)
    link.open()
    return link


def test_registered_as_a_simulator_link() -> None:
    assert LINKS["inav_msp_simulator"] is InavMspSimulatorLink
    link = InavMspSimulatorLink("socket://127.0.0.1:1")
    assert isinstance(link, SimulatorLink)
    assert link.physics and not link.lockstep and not link.pipeline


def test_a_board_that_is_not_inav_is_refused() -> None:
    fake = FakeInav(b"BTFL")
    with pytest.raises(LinkError, match="not INAV"):
        _link(fake)
    assert fake.closed


def test_a_silent_port_fails_within_the_connect_timeout() -> None:
    with pytest.raises(LinkError, match="no answer to MSP command 2"):
        _link(FakeInav(answer=False))


def test_a_vehicle_at_rest_reaches_inav_in_its_units() -> None:
    fake = FakeInav()
    link = _link(fake)
    link.send(0, _plant())
    (req,) = fake.requests
    assert req.version == 3
    assert req.flags & SimFlag.ENABLE and req.flags & SimFlag.MUTE_BEEPER
    assert req.flags & SimFlag.HAS_NEW_GPS_DATA  # the first sample carries a fix
    assert not req.flags & SimFlag.SIM_RC_INPUT
    s = req.sensors
    assert abs(s.acc_mg[2] - 1000) < 30 and abs(s.acc_mg[0]) < 30
    assert s.attitude_decideg[:2] == (0, 0)
    expected_pa = geo.pressure_hpa(geo.HOME.alt_m) * 100
    assert abs(s.baro_pa - expected_pa) < 20  # within the baro's noise
    assert s.gps.fix_type == 2 and s.gps.satellites > 4
    assert abs(s.gps.lat_e7 - round(geo.HOME.lat_deg * 1e7)) < 1000
    assert s.vbat_dv is not None and 140 <= s.vbat_dv <= 170  # a 4S pack
    assert link.outputs(0, 0.0) == (0.0, 0.0, 0.0, 0.0)  # disarmed: all zero
    link.close()


def test_one_exchange_in_flight_and_gps_at_its_rate() -> None:
    fake = FakeInav()
    link = _link(fake, gps_rate_hz=5.0)
    plant = _plant()
    fake.hold = True
    link.send(0, plant)
    link.send(1000, plant)  # no answer yet: this sample is dropped
    assert len(fake.requests) == 1 and link.dropped == 1
    fake.release()
    link.send(2000, plant)
    assert len(fake.requests) == 2
    assert not fake.requests[1].flags & SimFlag.HAS_NEW_GPS_DATA  # 2 ms later: no new fix
    link.send(200_000, plant)
    assert fake.requests[2].flags & SimFlag.HAS_NEW_GPS_DATA


def test_a_lost_exchange_is_given_up_after_the_reply_timeout() -> None:
    fake = FakeInav()
    link = _link(fake, reply_timeout=0.0)
    fake.hold = True
    link.send(0, _plant())
    link.send(1000, _plant())
    assert len(fake.requests) == 2 and link.lost == 1


def test_armed_motors_come_from_msp_motor_in_our_order() -> None:
    fake = FakeInav()
    link = _link(fake)
    plant = _plant()
    link.send(0, plant)
    assert link.outputs(0, 0.0) == (0.0, 0.0, 0.0, 0.0)
    assert msp.MspCommand.MOTOR not in fake.commands  # not asked while disarmed
    fake.armed = True
    link.send(1000, plant)  # the reply to this one says armed
    link.outputs(1000, 0.0)
    # INAV: 1 rear-right, 2 front-right, 3 rear-left, 4 front-left.
    fake.motor_us = (1100, 1200, 1300, 1400, 0, 0, 0, 0)
    link.send(2000, plant)
    assert fake.commands[-1] == msp.MspCommand.MOTOR
    out = link.outputs(2000, 0.0)
    assert out == pytest.approx((0.2, 0.3, 0.4, 0.1))
    assert link.outputs(2000, 0.0) is None  # nothing new since


def test_version_3_refused_falls_back_to_version_2() -> None:
    fake = FakeInav(refuse_v3=True)
    link = _link(fake)
    plant = _plant()
    link.send(0, plant)
    link.outputs(0, 0.0)
    link.send(1000, plant)
    assert [r.version for r in fake.requests] == [3, 2]
    assert fake.requests[1].sensors.rc is None


def test_rc_over_the_simulator_and_rc_loss() -> None:
    fake = FakeInav()
    link = _link(fake, rc_over_simulator=True)
    plant = _plant()
    plant.rc_channels[4] = 1900
    link.send(0, plant)
    req = fake.requests[-1]
    assert req.flags & SimFlag.SIM_RC_INPUT and not req.flags & SimFlag.FAILSAFE_TRIGGERED
    assert req.sensors.rc[4] == 1900
    plant.rc_enabled = False
    link.outputs(0, 0.0)
    link.send(1000, plant)
    assert fake.requests[-1].flags & SimFlag.FAILSAFE_TRIGGERED


def test_close_stops_hitl_once() -> None:
    fake = FakeInav()
    link = _link(fake)
    link.close()
    link.close()
    assert fake.requests[-1].stops and fake.closed
    assert sum(r.stops for r in fake.requests) == 1


def test_the_one_closed_loop_flies_the_link_in_real_time() -> None:
    """The link behind `hil.sim.loop.ClosedLoop` (inav_loop): the loop paces it, the
    plant's sticks travel in the requests, the arm switch arms, motors come back."""
    import time

    from hil.sim.inav_link import inav_loop

    fake = FakeInav()
    loop = inav_loop(opener=lambda: fake, connect_timeout=0.3, rc_over_simulator=True)
    assert loop.injection_target == "the inav_msp_simulator link"
    fake.motor_us = (1300, 1300, 1300, 1300, 0, 0, 0, 0)
    with loop:
        deadline = time.monotonic() + 5.0
        while len(fake.requests) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.arm_switch(True)
        fake.armed = True
        while time.monotonic() < deadline and min(loop.motors) == 0.0:
            time.sleep(0.01)
    assert loop.error is None, loop.error
    assert len(fake.requests) >= 20 and loop.time > 0.05
    assert any(r.sensors.rc is not None and r.sensors.rc[4] == 1900 for r in fake.requests)
    assert loop.motors == pytest.approx((0.3, 0.3, 0.3, 0.3))
    assert len(loop.link.motor_times_ns()) > 0

"""GPS receiver emulator: bytes parse back, rates, config answers, round trips."""

from __future__ import annotations

import io
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pynmeagps import NMEAReader
from pyubx2 import POLL, SET, UBXMessage, UBXReader

from hil.injectors.gps import GpsReceiverEmulator
from hil.threats.gnss import GnssEnvironment, Truth
from hil.vfc.gps_uart import GpsUartParser


def obs_at(t=0.0, pos=(12.0, -7.0, -30.0), vel=(3.0, -4.0, 0.5), seed=1, js=None):
    env = GnssEnvironment(np.random.default_rng(seed))
    env.jammer_js_db = js
    return env.step(t, Truth(pos, vel))


def ubx_msgs(data: bytes):
    return [p for _raw, p in UBXReader(io.BytesIO(data), protfilter=2)]


def test_ubx_epoch_parses_back_with_pyubx2():
    o = obs_at()
    e = GpsReceiverEmulator("ubx")
    msgs = ubx_msgs(e.produce(0.0, o))
    ids = [m.identity for m in msgs]
    assert ids == ["NAV-PVT", "NAV-DOP", "NAV-TIMEGPS", "NAV-STATUS", "MON-HW", "MON-RF"]
    pvt, dop, tg, status, hw, rf = msgs
    assert pvt.fixType == 3 and pvt.gnssFixOk == 1 and pvt.numSV == o.num_sv
    assert abs(pvt.lat - o.lat_deg) < 1e-7 and abs(pvt.lon - o.lon_deg) < 1e-7
    assert abs(pvt.hMSL / 1000 - o.alt_m) < 1e-3
    assert abs(pvt.velE / 1000 - o.vel_ned[1]) < 1e-3
    assert abs(pvt.hAcc / 1000 - o.eph_m) < 1e-3
    assert pvt.iTOW == o.itow_ms and tg.week == o.week and tg.iTOW == o.itow_ms
    assert abs(dop.hDOP - o.hdop) < 0.01
    assert status.spoofDetState == o.spoof_state and status.gpsFix == 3
    assert hw.jamInd == o.jam_ind and hw.jammingState == o.jamming_state
    assert rf.jamInd_01 == o.jam_ind and rf.jammingState_01 == o.jamming_state
    utc = o.utc
    assert (pvt.year, pvt.month, pvt.day, pvt.hour) == (utc.year, utc.month, utc.day, utc.hour)


def test_jammed_monitor_values_reach_the_wire():
    o = obs_at(js=45.0)
    msgs = ubx_msgs(GpsReceiverEmulator("ubx").produce(0.0, o))
    pvt = msgs[0]
    hw = [m for m in msgs if m.identity == "MON-HW"][0]
    assert pvt.fixType == 0 and pvt.gnssFixOk == 0
    assert hw.jamInd > 200 and hw.jammingState == 3


def test_nmea_epoch_parses_back_with_pynmeagps():
    o = obs_at()
    data = GpsReceiverEmulator("nmea").produce(0.0, o)
    msgs = [p for _raw, p in NMEAReader(io.BytesIO(data))]
    by = {m.msgID: m for m in msgs}
    assert {"GGA", "RMC", "VTG", "GSA", "GSV", "GST"} <= set(by)
    gga, rmc = by["GGA"], by["RMC"]
    assert abs(gga.lat - o.lat_deg) < 2e-7 and abs(gga.lon - o.lon_deg) < 2e-7
    assert gga.quality == 1 and gga.numSV == o.num_sv
    assert abs(gga.alt - o.alt_m) < 1e-3
    assert abs(rmc.spd * 0.514444 - o.ground_speed_mps) < 1e-3
    assert abs(rmc.cog - o.course_deg) < 1e-2
    assert rmc.date == o.utc.date()


def test_rate_and_monitor_once_per_second():
    env = GnssEnvironment(np.random.default_rng(2))
    e = GpsReceiverEmulator("ubx", rate_hz=5.0)
    counts = {"NAV-PVT": 0, "MON-HW": 0}
    for k in range(1000):  # 10 s at 100 Hz
        t = k * 0.01
        obs = env.step(t, Truth((0, 0, 0), (0, 0, 0))) if e.due(t) else None
        data = e.produce(t, obs)
        assert e.produce(t, obs) == b""  # nothing more at the same instant
        for m in ubx_msgs(data):
            if m.identity in counts:
                counts[m.identity] += 1
    assert counts == {"NAV-PVT": 50, "MON-HW": 10}


def test_cfg_poll_and_set_get_ack_and_unknown_gets_nak():
    e = GpsReceiverEmulator("ubx")
    e.on_bytes(b"\x00\xffjunk$GPTXT,bad*00\r\n")
    e.on_bytes(UBXMessage("CFG", "CFG-RATE", POLL).serialize())
    e.on_bytes(UBXMessage("CFG", "CFG-MSG", SET, msgClass=1, msgID=7, rateUART1=1).serialize())
    vs = UBXMessage.config_set(1, 0, [("CFG_RATE_MEAS", 100)]).serialize()
    e.on_bytes(vs[:5])
    e.on_bytes(vs[5:])
    e.on_bytes(b"\xb5\x62\x01\x07\x00\x00\x08\x19")  # a NAV-PVT poll: not config
    msgs = ubx_msgs(e.produce(0.0, None))
    ids = [(m.identity, getattr(m, "msgID", None)) for m in msgs]
    assert ids[0][0] == "CFG-RATE"
    acks = [m for m in msgs if m.identity == "ACK-ACK"]
    naks = [m for m in msgs if m.identity == "ACK-NAK"]
    assert [(m.clsID, m.msgID) for m in acks] == [(6, 8), (6, 1), (6, 0x8A)]
    assert [(m.clsID, m.msgID) for m in naks] == [(1, 7)]
    assert e.rate_hz == 10.0
    assert e.produce(0.0, None) == b""


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_emulator_survives_any_input(data):
    e = GpsReceiverEmulator("ubx")
    e.on_bytes(data)
    e.on_bytes(b"\xb5\x62" + data)
    e.produce(0.0, None)


positions = st.tuples(st.floats(-5000, 5000), st.floats(-5000, 5000), st.floats(-2000, 0.0))
velocities = st.tuples(st.floats(-40, 40), st.floats(-40, 40), st.floats(-10, 10))


@settings(max_examples=60, deadline=None)
@given(pos=positions, vel=velocities, seed=st.integers(0, 2**16), js=st.floats(0, 45))
def test_round_trip_ubx(pos, vel, seed, js):
    o = obs_at(0.0, pos, vel, seed, js)
    [r] = GpsUartParser("ubx").feed(GpsReceiverEmulator("ubx").produce(0.0, o))
    assert r.fix_type == o.fix_type
    assert abs(r.lat_deg - o.lat_deg) <= 1e-7 and abs(r.lon_deg - o.lon_deg) <= 1e-7
    assert abs(r.alt_m - o.alt_m) <= 1e-3
    for a, b in zip(r.vel_ned, o.vel_ned, strict=True):
        assert abs(a - b) <= 1e-3
    assert abs(r.eph_m - o.eph_m) <= 1e-3 and abs(r.epv_m - o.epv_m) <= 1e-3
    assert r.satellites == o.num_sv


@settings(max_examples=60, deadline=None)
@given(pos=positions, vel=velocities, seed=st.integers(0, 2**16), js=st.floats(0, 45))
def test_round_trip_nmea(pos, vel, seed, js):
    o = obs_at(0.0, pos, vel, seed, js)
    [r] = GpsUartParser("nmea").feed(GpsReceiverEmulator("nmea").produce(0.0, o))
    assert r.fix_type == o.fix_type
    assert r.satellites == o.num_sv
    if o.fix_type:
        # 1e-5 arc-minute: 1.7e-7 deg
        assert abs(r.lat_deg - o.lat_deg) <= 2e-7 and abs(r.lon_deg - o.lon_deg) <= 2e-7
        assert abs(r.alt_m - o.alt_m) <= 1e-3
        speed = math.hypot(r.vel_ned[0], r.vel_ned[1])
        assert abs(speed - o.ground_speed_mps) <= 1e-3
        assert abs(r.vel_ned[0] - o.vel_ned[0]) <= 2e-3 + 1e-4 * o.ground_speed_mps
        assert abs(r.vel_ned[1] - o.vel_ned[1]) <= 2e-3 + 1e-4 * o.ground_speed_mps
        assert abs(r.eph_m - o.eph_m) <= 2e-4 * max(1.0, o.eph_m)

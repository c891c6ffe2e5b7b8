"""GNSS environment: jamming lowers C/N0 and the fix; spoofing lies while looking healthy."""

from __future__ import annotations

import math

import numpy as np

from hil.geo import lla_to_ned
from hil.threats.gnss import (
    FIX_2D,
    FIX_3D,
    FIX_NONE,
    JAMMING_CRITICAL,
    JAMMING_OK,
    JAMMING_WARNING,
    SPOOF_INDICATED,
    SPOOF_MULTIPLE,
    SPOOF_NONE,
    GnssEnvironment,
    Spoof,
    Truth,
)

STILL = Truth((0.0, 0.0, -10.0), (0.0, 0.0, 0.0))


def ramp(seed: int = 3, top: float = 45.0, n: int = 226):
    env = GnssEnvironment(np.random.default_rng(seed))
    out = []
    for k, js in enumerate(np.linspace(0.0, top, n)):
        env.jammer_js_db = float(js)
        out.append((float(js), env.step(k * 0.2, STILL)))
    return out


def test_no_jammer_is_a_healthy_3d_fix():
    env = GnssEnvironment(np.random.default_rng(1))
    o = env.step(0.0, STILL)
    assert o.fix_type == FIX_3D
    assert 15 <= o.num_sv <= 20
    assert 0.3 < o.eph_m < 2.0 and 0.3 < o.epv_m < 3.0
    assert o.hdop < 1.5 and o.jam_ind < 20
    assert o.jamming_state == JAMMING_OK and o.spoof_state == SPOOF_NONE
    assert all(35.0 - 2.0 <= s.cno_dbhz <= 48.0 + 2.0 for s in o.satellites)


def test_cno_loss_follows_js_above_the_knee():
    env = GnssEnvironment(np.random.default_rng(1), knee_db=20.0)
    assert env.cno_loss_db(0.0) < 0.1
    assert math.isclose(env.cno_loss_db(20.0), 10 * math.log10(2), abs_tol=1e-9)
    assert math.isclose(env.cno_loss_db(40.0), 20.0, abs_tol=0.05)
    assert math.isclose(env.cno_loss_db(50.0) - env.cno_loss_db(40.0), 10.0, abs_tol=0.05)


def test_jamming_ramp_drops_satellites_and_fix():
    seq = ramp()
    fixes = [o.fix_type for _, o in seq]
    # 3D first, then (possibly briefly) 2D, then none; never back up while J/S rises.
    assert fixes[0] == FIX_3D and fixes[-1] == FIX_NONE
    order = {FIX_3D: 2, FIX_2D: 1, FIX_NONE: 0}
    ranks = [order[f] for f in fixes]
    assert all(a >= b for a, b in zip(ranks, ranks[1:], strict=False))
    sv = np.array([o.num_sv for _, o in seq])
    assert sv[0] >= 15 and sv[-1] == 0
    mean_cno = [np.mean([s.cno_dbhz for s in o.satellites]) for _, o in seq]
    assert mean_cno[-1] < mean_cno[0] - 15.0
    # accuracy grows (on average, in blocks) while there is a fix
    with_fix = [o.eph_m for _, o in seq if o.fix_type != FIX_NONE]
    blocks = [np.mean(with_fix[i : i + 20]) for i in range(0, len(with_fix) - 19, 20)]
    assert all(b2 >= b1 * 0.97 for b1, b2 in zip(blocks, blocks[1:], strict=False))
    assert with_fix[-1] > 3 * with_fix[0]
    jam = [o.jam_ind for _, o in seq]
    assert all(b >= a for a, b in zip(jam, jam[1:], strict=False)) and jam[-1] > 200
    states = [o.jamming_state for _, o in seq]
    assert states[0] == JAMMING_OK
    assert JAMMING_WARNING in states and states[-1] == JAMMING_CRITICAL
    assert all(b >= a for a, b in zip(states, states[1:], strict=False))


def test_2d_fix_appears_with_four_satellites():
    seen_2d = False
    for seed in range(10):
        for _js, o in ramp(seed, top=42.0, n=421):
            if o.fix_type == FIX_2D:
                seen_2d = True
                assert o.num_sv == 4 and o.vel_ned[2] == 0.0
            if o.fix_type == FIX_3D:
                assert o.num_sv >= 5
    assert seen_2d


def test_spoof_walks_position_at_the_set_rate_and_looks_healthy():
    env = GnssEnvironment(np.random.default_rng(5))
    env.spoof = Spoof(start_s=10.0, rate_mps=2.0, bearing_deg=90.0, clock_drift=1e-9)
    obs = [env.step(k * 0.2, STILL) for k in range(0, 301)]
    before = [o for o in obs if o.t < 10.0]
    after = [o for o in obs if o.t >= 10.0]
    east = np.array([lla_to_ned(o.lat_deg, o.lon_deg, o.alt_m)[1] for o in after])
    t = np.array([o.t for o in after])
    slope = np.polyfit(t, east, 1)[0]
    assert abs(slope - 2.0) < 0.1
    assert abs(east[-1] - 2.0 * (t[-1] - 10.0)) < 5.0
    assert abs(np.mean([o.vel_ned[1] for o in after]) - 2.0) < 0.05
    for o in after:
        assert o.fix_type == FIX_3D and o.spoof_state == SPOOF_NONE
        assert o.eph_m < 2.0 and o.num_sv >= 15
    assert np.mean([o.eph_m for o in after]) < 1.2 * np.mean([o.eph_m for o in before])


def test_spoof_jump_and_clock_step_are_indicated():
    env = GnssEnvironment(np.random.default_rng(5))
    env.step(0.0, STILL)
    env.spoof = Spoof(start_s=1.0, jump_m=200.0)
    o1 = [env.step(0.2 * k, STILL) for k in range(1, 8)][-1]
    assert o1.spoof_state == SPOOF_INDICATED
    env.spoof = Spoof(start_s=1.0, jump_m=200.0, clock_offset_s=0.01)
    o2 = env.step(1.6, STILL)
    assert o2.spoof_state == SPOOF_MULTIPLE
    assert o2.fix_type == FIX_3D
    # clock offset shows in the receiver's time
    assert abs((o2.tow_s - o1.tow_s) - (0.2 + 0.01)) < 1e-6


def test_same_seed_same_observations():
    def run(seed):
        env = GnssEnvironment(np.random.default_rng(seed))
        env.spoof = Spoof(start_s=1.0, rate_mps=1.0, bearing_deg=30.0)
        out = []
        for k in range(60):
            env.jammer_js_db = k * 0.7
            out.append(env.step(k * 0.2, Truth((k * 0.1, 0.0, -5.0), (0.5, 0.0, 0.0))))
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_time_fields():
    env = GnssEnvironment(np.random.default_rng(1), start_gps_s=2300 * 604800 + 604799.5)
    a = env.step(0.0, STILL)
    b = env.step(1.0, STILL)
    assert a.week == 2300 and a.itow_ms == 604799500
    assert b.week == 2301 and b.itow_ms == 500
    assert (b.utc - a.utc).total_seconds() == 1.0

"""Betaflight's own GPS driver (src/main/io/gps.c) against our u-blox emulator, over a
UART of the bench SITL variant flown with our physics (fixtures/betaflight-gps.toml):
the driver configures the receiver, gets a 3D fix from our stream and loses it under
gps_jamming; `hil run` passes the GPS Rescue scenarios and the ground ones (arming
refused without a fix, a GPS lost while armed on the ground). Gated like the other Betaflight
SITL tests (tests/sitl_support.py): CI sets HIL_REQUIRE_SITL, so there they run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.rig import Rig
from hil.session import session_for
from tests.sitl_support import require_sitl, until

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "fixtures" / "betaflight-gps.toml"
RESCUE = {"bf-gps-rescue-rc-loss": "bf_gps_rescue_rc_loss.toml", "bf-gps-rescue-gps-lost": "bf_gps_rescue_gps_lost.toml"}
#: On the ground (issue 14, bench scenarios): arming refused without a fix (GPS Rescue
#: configured), and a GPS lost while armed on the ground changing nothing. After the
#: rescue scenarios, which armed the board: the first needs the firmware rebooted.
GROUND = {"bench-gps-arming-needs-fix": "bench_gps_arming_needs_fix.toml", "bench-gps-lost-armed-on-ground": "bench_gps_lost_armed_on_ground.toml"}


@pytest.fixture
def gps_rig(tmp_path):
    require_sitl()
    rig = Rig.load(RIG, work_dir=tmp_path / "gps-rig")
    yield rig
    rig.stop()


def test_betaflights_gps_driver_configures_our_receiver_gets_a_fix_and_loses_it_when_jammed(gps_rig):
    board = gps_rig.select(None)
    with session_for(board) as session:
        ap = session.autopilot
        assert ap.cli("get gps_auto_config").splitlines()[0] == "gps_auto_config = ON"
        loop = session.make_sim()
        loop.start()
        try:
            feed = loop.link.gps_feed
            gps = feed.emulator
            # gps.c: MON-VER, then PUBX,41 to the port's GPS baud, then the CONFIGURE steps
            # (one per 110 ms after 1 s), ending at gps_update_rate_hz (10) via VALSET on an M10.
            # Its last step polls CFG-GNSS, which an M10 refuses (NAK), as the real one does.
            until("Betaflight's configuration of our receiver", lambda: (0x06, 0x3E) in gps.naked, 20.0)
            assert gps.rate_hz == 10.0 and len(gps.acked) >= 10
            assert feed.baud_changes[:1] == [115200]
            fix = until("a 3D fix with 8+ satellites in MSP_RAW_GPS", lambda: (g := ap.raw_gps()).fix and g.num_sat >= 8 and g, 10.0)
            assert abs(fix.lat_deg - (-35.363262)) < 1e-4 and abs(fix.lon_deg - 149.165237) < 1e-4
            assert "GPS" not in ap.status().arming_disable_names  # GPS Rescue may arm: fix and satellites
            loop.schedule("gps_jamming", loop.time + 0.1, None, {"js_db": 60.0, "ramp": 0.0}, "jam")
            lost = until("the fix lost under jamming", lambda: (g := ap.raw_gps()).fix == 0 and g, 10.0)
            assert lost.num_sat < 4
            until("arming blocked without a fix", lambda: "GPS" in ap.status().arming_disable_names, 5.0)
        finally:
            loop.close()


# In the default run (CI sets HIL_REQUIRE_SITL): about two minutes of wall time. Between
# scenarios the flight leaves the board landed, disarmed and with its failsafe IDLE (a
# GPS Rescue still on at a scenario's end is ended by the roll stick: hil.scenario.msp_flight),
# so a rescue no longer carries into the next takeoff.
def test_hil_run_passes_the_gps_rescue_and_ground_scenarios_on_the_gps_rig(tmp_path):
    require_sitl()
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "run", "--rig", str(RIG), "--report", str(report),
         "--state-dir", str(tmp_path / "state"), *(str(ROOT / "scenarios" / f) for f in (*RESCUE.values(), *GROUND.values()))],
        capture_output=True, text=True, timeout=420, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    ran = {s["name"]: s for s in json.loads((report / "summary.json").read_text())["scenarios"]}
    assert set(RESCUE) | set(GROUND) <= set(ran), sorted(ran)
    assert all(ran[n]["passed"] for n in (*RESCUE, *GROUND)), {n: ran[n]["error"] for n in (*RESCUE, *GROUND)}
    # Each scenario left the board clean for the next one: no end that could not be made.
    unclean = {n: note for n in ran for note in ran[n]["notes"] if note.startswith("could not leave the board")}
    assert not unclean, unclean
    refused = {e["kind"]: e for e in ran["bench-gps-arming-needs-fix"]["expectations"]}
    assert refused["disarmed_throughout"]["passed"] and refused["armed"]["passed"]
    assert any("first arming since boot" in n for n in ran["bench-gps-arming-needs-fix"]["notes"])

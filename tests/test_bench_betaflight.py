"""A Betaflight board on the bench, with the bench SITL variant standing in for it:
Betaflight's own CRSF parser reads our receiver's frames, and `hil run` passes the
bench scenarios (fixtures/betaflight-bench.toml)."""

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
RIG = ROOT / "fixtures" / "betaflight-bench.toml"
BENCH = {
    "bench-arming",
    "bench-rc-loss-stages",
    "bench-rc-glitch-recovery",
    "bench-crsf-jamming-below-timeout",
    "bench-crsf-jamming-above-timeout",
    "bench-link-statistics",
}


@pytest.fixture
def bench_rig(tmp_path):
    """The bench rig, stopped after the test: its stand-in holds the host's SITL ports."""
    require_sitl()
    rig = Rig.load(RIG, work_dir=tmp_path / "bench-rig")
    yield rig
    rig.stop()


def test_betaflights_crsf_parser_reads_our_frames_and_link_statistics(bench_rig):
    board = bench_rig.select(None)
    with session_for(board) as session:
        ap = session.autopilot
        assert ap.cli("get serialrx_provider").splitlines()[0] == "serialrx_provider = CRSF"
        link = session.make_sim()
        link.start()
        try:
            link.set_sticks(roll=1234, pitch=1666, throttle=1100, yaw=1900)
            # MSP_RC is in Betaflight's AERT order; CRSF carries 11-bit ticks (about 0.62 us each).
            def sticks_arrived():
                rc = ap.rc()
                return rc if abs(rc[0] - 1234) <= 1 else None

            def link_statistics():
                # The firmware smooths RSSI (rssi_smoothing): wait for it to settle.
                rssi, lq = ap.link_quality()
                return (rssi, lq) if lq and rssi > 40.0 else None

            rc = until("our sticks in MSP_RC", sticks_arrived, 5.0)
            assert [abs(a - b) <= 1 for a, b in zip(rc[:4], (1234, 1666, 1900, 1100), strict=True)] == [True] * 4
            rssi, lq = until("LINK_STATISTICS in the firmware", link_statistics, 5.0)
            assert lq == 100 and rssi < 80.0
        finally:
            link.close()


def test_hil_run_passes_the_bench_scenarios_on_the_bench_rig(tmp_path):
    require_sitl()
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "run", "--rig", str(RIG), "--report", str(report),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=420, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((report / "summary.json").read_text())
    ran = {s["name"]: s for s in summary["scenarios"]}
    assert BENCH <= set(ran), sorted(ran)
    assert all(ran[name]["passed"] for name in BENCH), {n: ran[n]["error"] for n in BENCH}
    # Scenarios that fly need physics, which a bench board has not: skipped, not failed.
    assert "bf-rc-loss-drop" not in ran and "hover-hold" not in ran
    # The firmware's LQ dipped under jamming: read back from Betaflight, not from our model.
    stats = ran["bench-link-statistics"]["expectations"]
    assert all(e["passed"] for e in stats if e["kind"] == "link_quality")

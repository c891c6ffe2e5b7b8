"""What a run leaves behind: tlogs, raw link logs, JUnit properties, the summary, the HTML report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from hil.report import finish_scenario, scenario_dir
from hil.report.capture import ScenarioCapture
from hil.report.html import render
from hil.report.rawlog import RawLog, read_rawlog
from hil.report.summary import RunInfo, summary
from hil.report.tlog import ClockMap, frame_bytes, write_tlog

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "rc_glitch_no_failsafe.toml"
IMAGE = ROOT / "firmware_images" / "hilcopter-1.0.0.apj"
CHROMIUM = Path("/usr/bin/chromium")


def _manifest_sha256(name: str, key: str = "payload_sha256") -> str:
    """From the manifest: the sha256 of the binary (`payload_sha256`) or of the file (`sha256`)."""
    manifest = tomllib.loads((ROOT / "firmware_images" / "manifest.toml").read_text())
    return next(i[key] for i in manifest["image"] if i["file"] == name)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One short scenario on the default virtual rig, with --hil-report and --firmware."""
    base = tmp_path_factory.mktemp("report-run")
    report = base / "report"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", str(SCENARIO), "-p", "no:cacheprovider",
            f"--hil-report={report}", f"--hil-state-dir={base / 'state'}", f"--firmware={IMAGE}",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # Progress: which scenario, and its simulated and wall time when it ends.
    assert "hil: rc-glitch-no-failsafe on copter1: started" in proc.stdout
    assert "hil: rc-glitch-no-failsafe: PASS" in proc.stdout and "s wall" in proc.stdout
    return report


# -- the run directory ----------------------------------------------------------------------
def test_the_tlog_parses_with_pymavlink(run_dir):
    from pymavlink import mavutil

    path = run_dir / "rc-glitch-no-failsafe" / "flight.tlog"
    log = mavutil.mavlink_connection(str(path))
    counts: dict[str, int] = {}
    stamps = []
    while (msg := log.recv_match()) is not None:
        counts[msg.get_type()] = counts.get(msg.get_type(), 0) + 1
        stamps.append(msg._timestamp)
    assert "BAD_DATA" not in counts
    for mtype in ("HEARTBEAT", "GLOBAL_POSITION_INT", "ATTITUDE", "HIL_ACTUATOR_CONTROLS"):
        assert counts.get(mtype, 0) > 0, counts
    # Arrival times as UNIX seconds: in order, and within the last hour.
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] - path.stat().st_mtime) < 3600


def test_mavlogdump_reads_the_tlog(run_dir):
    path = run_dir / "rc-glitch-no-failsafe" / "flight.tlog"
    commands = [[sys.executable, "-m", "pymavlink.tools.mavlogdump", "--types", "HEARTBEAT", str(path)]]
    script = shutil.which("mavlogdump.py")
    if script:
        commands.append([sys.executable, script, "--types", "HEARTBEAT", str(path)])
    for command in commands:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "HEARTBEAT {" in proc.stdout


def test_every_serial_link_has_a_timestamped_raw_log(run_dir):
    from hil.mavlink.dialect import new_codec

    links = run_dir / "rc-glitch-no-failsafe" / "links"
    assert {p.name for p in links.iterdir()} == {"mavlink.log", "gps.log", "rc.log"}
    mav = read_rawlog(links / "mavlink.log")
    assert mav.header["link"] == "mavlink" and mav.unix_minus_monotonic_ns is not None
    rx = [c.t_ns for c in mav.chunks if c.direction == "rx"]
    assert len(rx) > 100 and rx == sorted(rx)
    assert any(c.direction == "tx" for c in mav.chunks)
    # The bytes are the wire: the board's HEARTBEATs decode from them.
    codec = new_codec(255, 190)
    codec.robust_parsing = True
    decoded = codec.parse_buffer(mav.bytes("rx")[:200_000]) or []
    assert any(m.get_type() == "HEARTBEAT" for m in decoded)
    # The harness writes to the receivers' UARTs: UBX sync chars, CRSF frames.
    assert b"\xb5\x62" in read_rawlog(links / "gps.log").bytes("tx")
    assert read_rawlog(links / "rc.log").bytes("tx")


def test_junit_carries_board_firmware_and_rig(run_dir):
    case = ET.parse(run_dir / "junit.xml").getroot().find(".//testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["board"] == "copter1"
    assert props["usb_serial"] == "HILVFC0001"
    assert props["rig"].endswith("virtual.toml")
    assert props["firmware_version"] == "1.0.0"
    assert props["firmware_sha256"] == _manifest_sha256(IMAGE.name)
    assert props["firmware_file_sha256"] == _manifest_sha256(IMAGE.name, "sha256")
    assert props["autopilot"] == "ArduPilot"
    assert Path(props["report_dir"]).name == "rc-glitch-no-failsafe"


def test_the_summary_has_schema_2_with_measurements(run_dir):
    doc = json.loads((run_dir / "summary.json").read_text())
    assert doc["schema"] == "hil-summary/2"
    assert doc["boards"]["copter1"]["firmware_sha256"] == _manifest_sha256(IMAGE.name)
    (s,) = doc["scenarios"]
    # The version 1 keys are still there.
    for key in ("name", "board", "passed", "sim_seconds", "wall_seconds", "lockstep_speed",
                "expectations", "notes", "measurements"):
        assert key in s
    assert s["passed"] is True
    altitude = next(e for e in s["expectations"] if e["kind"] == "altitude")
    assert altitude["spec"]["min"] == 2.0 and altitude["spec"]["max"] == 8.0
    details = {m["name"]: m for m in s["measurement_details"]}
    rate = details["board loop rate"]
    assert rate["unit"] == "Hz" and rate["value"] == pytest.approx(400.0, rel=1e-3)
    assert rate["uncertainty"] is not None and rate["uncertainty"] >= 0
    for key in ("value", "unit", "uncertainty", "minimum", "maximum", "verdict"):
        assert all(key in m for m in s["measurement_details"])
    for path in s["artifacts"].values():
        assert (run_dir / path).is_file(), path
    assert {"tlog", "plot", "loop histogram"} <= set(s["artifacts"])


def test_the_html_report_renders_in_headless_chromium(run_dir, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("HIL_REQUIRE_SITL"):
            pytest.fail(f"{CHROMIUM} is missing and HIL_REQUIRE_SITL is set (CI installs it)")
        pytest.skip(f"{CHROMIUM} is not installed")
    report = run_dir / "report.html"
    text = report.read_text()
    assert "data:image/png;base64," in text and "<script" not in text
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
            "--window-size=1280,2000", report.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file(), proc.stderr[-2000:]
    from matplotlib import image

    pixels = image.imread(str(shot))[:, :, :3]
    assert pixels.shape[:2] == (2000, 1280)
    not_white = np.any(pixels < 0.9, axis=2)
    assert not_white.mean() > 0.05
    # The header's dark band (the styles applied) and the altitude trace (the plot decoded).
    assert pixels[5:40, :400].mean() < 0.3
    blue = np.all(np.abs(pixels - np.array([0x15, 0x65, 0xC0]) / 255) < 0.12, axis=2)
    assert blue.sum() > 200


# -- the pieces, without a board ----------------------------------------------------------------
def test_tlog_frames_are_the_wire_bytes_hot_messages_included(tmp_path):
    from pymavlink import mavutil

    from hil.mavlink.dialect import mavlink, new_codec
    from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, FrameReader

    board = new_codec(1, 1)
    wire = board.heartbeat_encode(2, 3, 81, 5, 4, 3).pack(board)
    controls = [0.1 * i for i in range(16)]
    wire += board.hil_actuator_controls_encode(123456, controls, 0, 1).pack(board)
    wire += mavlink.MAVLink_statustext_message(4, b"RC failsafe", 0, 0).pack(board)
    msgs = FrameReader(new_codec(255, 190), hot=(HIL_ACTUATOR_CONTROLS,)).feed(wire, 0.0)
    assert [m.get_type() for m in msgs] == ["HEARTBEAT", "HIL_ACTUATOR_CONTROLS", "STATUSTEXT"]
    assert not hasattr(msgs[1], "get_msgbuf")  # the slim hot-path object
    assert b"".join(frame_bytes(m) for m in msgs) == wire
    for i, m in enumerate(msgs):
        m._t_ns = 1_000_000_000 + i * 2_500_000
    clock = ClockMap()
    path = tmp_path / "x.tlog"
    assert write_tlog(path, msgs, clock) == 3
    log = mavutil.mavlink_connection(str(path))
    got = []
    while (m := log.recv_match()) is not None:
        got.append(m)
    assert [m.get_type() for m in got] == ["HEARTBEAT", "HIL_ACTUATOR_CONTROLS", "STATUSTEXT"]
    assert got[1].time_usec == 123456 and got[1].controls[3] == pytest.approx(0.3)
    assert got[2]._timestamp - got[0]._timestamp == pytest.approx(0.005, abs=2e-6)


def test_a_raw_log_round_trips_and_spills_in_order(tmp_path):
    log = RawLog(tmp_path / "links" / "x.log", "x", "/dev/pts/9", spill_at=3)
    chunks = [(100 + i, "rx" if i % 2 else "tx", bytes([i, 0xFD, 0x00])) for i in range(10)]
    chunks.append((200, "rx", b""))
    for c in chunks:
        log.record(*c)
    path = log.close()
    log.record(300, "rx", b"late")  # after close: ignored
    back = read_rawlog(path)
    assert back.header["url"] == "/dev/pts/9"
    assert [(c.t_ns, c.direction, c.data) for c in back.chunks] == chunks
    assert log.chunks == 11 and log.bytes_rx + log.bytes_tx == 30
    path.write_text(path.read_text() + "12 sideways 00\n")
    with pytest.raises(ValueError, match="x.log:"):
        read_rawlog(path)


def test_a_raw_log_fed_from_two_threads_loses_nothing(tmp_path):
    import threading

    log = RawLog(tmp_path / "x.log", "x", spill_at=500)

    def feed(direction: str) -> None:
        for i in range(20_000):
            log.record(i, direction, i.to_bytes(3, "big"))

    threads = [threading.Thread(target=feed, args=(d,)) for d in ("rx", "tx")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chunks = read_rawlog(log.close()).chunks
    for direction in ("rx", "tx"):
        mine = [c for c in chunks if c.direction == direction]
        assert [c.t_ns for c in mine] == list(range(20_000))
        assert all(int.from_bytes(c.data, "big") == c.t_ns for c in mine)


def test_a_capture_taps_links_and_lets_go_of_them(tmp_path):
    class Link:
        url = "/dev/pts/1"
        raw_log = None

    class Autopilot:
        def __init__(self):
            self.conn = type("Conn", (), {"link": Link()})()
            self.hooks = []

        def add_hook(self, hook):
            self.hooks.append(hook)

        def remove_hook(self, hook):
            self.hooks.remove(hook)

    ap = Autopilot()
    uart_links = {"gps": Link()}

    class Session:
        autopilot = ap

        def links(self):
            return {"mavlink": ap.conn.link, **uart_links}

    session = Session()
    capture = ScenarioCapture(tmp_path / "s")
    capture.attach(session)
    capture.attach(session)  # again, as after the loop opened the UARTs: nothing doubles
    assert len(ap.hooks) == 1 and ap.conn.link.raw_log is capture.raw_logs["mavlink"]
    ap.conn.link.raw_log.record(5, "rx", b"\x01")
    files = capture.write()
    assert ap.hooks == [] and ap.conn.link.raw_log is None
    assert uart_links["gps"].raw_log is None
    assert set(files) == {"link mavlink", "link gps"}
    taken: set[str] = set()
    assert scenario_dir(tmp_path, "a/b c", taken).name == "a_b_c"
    assert scenario_dir(tmp_path, "a/b c", taken).name == "a_b_c-2"


def _failed_result():
    from hil.scenario.expect import evaluate
    from hil.scenario.load import parse_scenario
    from hil.scenario.runner import ScenarioResult
    from hil.scenario.timeline import Timeline

    scenario = parse_scenario(
        {
            "scenario": {"name": "rc-loss-rtl", "duration": 10.0},
            "setup": {"mode": "LOITER", "altitude": 10.0},
            "injection": [{"kind": "rc_loss", "id": "rc", "start": 2.0}],
            "expect": [{"kind": "mode", "mode": "RTL", "after": "rc.start", "within": 1.5}],
        }
    )
    timeline = Timeline()
    for i in range(-30, 101):
        t = i * 0.1
        timeline.add_state(t, True, "LOITER", 10.0 - max(0.0, t - 4.0), 20.0, 0.0, 0.0, 0.01, -0.02)
    timeline.add_event(-3.0, "mode", "LOITER")
    timeline.add_event(2.0, "injection_start", "rc")
    timeline.add_event(4.0, "mode", "LAND")
    result = ScenarioResult(scenario, "copter1", timeline=timeline, sim_seconds=13.0, wall_seconds=2.0)
    result.verdicts = evaluate(scenario, timeline, {"rc.start": 2.0})
    result.loop_periods_us = {"board loop period (vehicle clock)": np.full(500, 2500.0)}
    return result


def test_a_failed_scenario_is_explained_in_the_report(tmp_path):
    result = _failed_result()
    assert not result.passed
    capture = ScenarioCapture(tmp_path / "rc-loss-rtl")
    files = finish_scenario(result, capture)
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "loop histogram" in files
    run = RunInfo(rig="fixtures/virtual.toml", boards={"copter1": {
        "type": "virtual", "usb_serial": "HILVFC0001", "firmware_version": "1.0.1",
        "firmware_sha256": "ab" * 32}})
    page = render(run, [result], tmp_path)
    assert "Why it failed" in page and "mode RTL" in page
    assert "timeline t=" in page  # the excerpt of the timeline around the failure
    assert "HILVFC0001" in page and "ab" * 32 in page
    doc = summary(run, [result], tmp_path)
    assert doc["scenarios"][0]["passed"] is False
    assert doc["scenarios"][0]["artifacts"]["plot"] == "rc-loss-rtl/flight.png"
    json.dumps(doc)


def test_loop_periods_from_lockstep_and_real_time_stamps():
    from hil.report.loops import lockstep_timing, realtime_timing

    usec = [2500 * i for i in range(200)]
    ns = [1_000_000 * (i // 2) for i in range(200)]  # two answers per read: one period per read
    series, figures = lockstep_timing(usec, ns, 400.0)
    assert np.all(series["board loop period (vehicle clock)"] == 2500.0)
    assert np.all(series["lockstep step (host clock)"] == 1000.0)
    assert not figures or figures[0].unit == "Hz"

    class Ring:  # the real-time loop keeps its stamps in a ring with values()
        def __init__(self, values):
            self._v = np.asarray(values, dtype=np.int64)

        def values(self):
            return self._v.copy()

    send = Ring([1_000_000 * i for i in range(100)])
    series, _ = realtime_timing(send, [], 1000.0, since_ns=10_000_000)
    assert list(series) == ["state sent (host clock)"]
    assert series["state sent (host clock)"].size == 89

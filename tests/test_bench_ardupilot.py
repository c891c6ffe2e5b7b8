"""`hil bench --ardupilot`: ArduPilot SITL with the harness as its physics against its own
quad model. What needs no SITL (the options, the comparison and its report) is checked
with fake flights; the real thing runs short when HIL_ARDUPILOT_SITL points at a build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hil import bench
from hil.bench_ardupilot import (
    DEFAULT_SPEEDUPS,
    ArduPilotBench,
    SpeedRun,
    measure,
    parse_speedups,
    resolve,
)
from hil.errors import BoardNotAnswering, ConfigError

EXE_ENV = "HIL_ARDUPILOT_SITL"


@pytest.fixture
def exe(tmp_path: Path) -> Path:
    path = tmp_path / "arducopter"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_speedups_are_positive_numbers_in_the_order_given():
    assert parse_speedups("1, 10,1000,10") == (1.0, 10.0, 1000.0)
    for bad in ("", "fast", "0", "-5", "1,,2", "nan"):
        with pytest.raises(ConfigError, match="--ardupilot-speedups"):
            parse_speedups(bad)


def test_the_executable_comes_from_the_option_or_the_environment(exe, monkeypatch):
    monkeypatch.delenv(EXE_ENV, raising=False)
    with pytest.raises(ConfigError, match=EXE_ENV):
        resolve(None, seconds=None, speedups=None, instance=0)
    monkeypatch.setenv(EXE_ENV, str(exe))
    got = resolve(None, seconds=None, speedups=None, instance=3)
    assert got == ArduPilotBench(exe.resolve(), 20.0, DEFAULT_SPEEDUPS, 3)
    assert resolve(str(exe), seconds=5.0, speedups="10,100", instance=0).speedups == (10.0, 100.0)
    with pytest.raises(ConfigError, match="not an executable"):
        resolve(str(exe.parent / "missing"), seconds=None, speedups=None, instance=0)
    with pytest.raises(ConfigError, match="--ardupilot-seconds"):
        resolve(str(exe), seconds=0.0, speedups=None, instance=0)
    with pytest.raises(ConfigError, match="--ardupilot-instance"):
        resolve(str(exe), seconds=None, speedups=None, instance=51)


def test_the_report_gives_every_speed_the_highest_speedup_that_goes_and_the_ratio(exe, tmp_path):
    asked = []

    def json_run(b, log, work):
        assert work.is_dir()
        return SpeedRun(20.0, 5.0, hovering=True, cpu_s={"SITL": 1.5, "harness": 3.25})  # 4x

    def builtin(b, s, log, work):
        asked.append(s)
        if s == 50.0:
            raise BoardNotAnswering("SITL did not open its port")
        return SpeedRun(20.0, 20.0 / min(s, 80.0), hovering=s != 1000.0, note="timed on the ground: x")

    b = ArduPilotBench(exe, 20.0, (1.0, 10.0, 50.0, 100.0, 1000.0), 0)
    comparison = measure(b, lambda text: None, json_run=json_run, builtin=builtin, work_dir=tmp_path)
    assert asked == [1.0, 10.0, 50.0, 100.0, 1000.0]  # one failure does not end the bench
    assert comparison.highest_that_goes == 10.0
    assert comparison.best_speedup in (100.0, 1000.0)
    assert comparison.ratio == pytest.approx(4.0 / 80.0)
    figures = bench.ardupilot_figures(comparison)
    assert [f.name for f in figures] == [
        "ArduPilot SITL, harness as JSON physics",
        *(f"ArduPilot SITL built-in quad, --speedup {s:g}" for s in (1, 10, 50, 100, 1000)),
        bench.ARDUPILOT_RATIO,
    ]
    by_name = {f.name: f for f in figures}
    json_figure = by_name["ArduPilot SITL, harness as JSON physics"]
    assert json_figure.runs == (4.0,) and "SITL 1.50, harness 3.25" in json_figure.detail
    assert json_figure.extra["cpu_s"] == {"SITL": 1.5, "harness": 3.25}
    assert by_name["ArduPilot SITL built-in quad, --speedup 10"].passed is True
    assert by_name["ArduPilot SITL built-in quad, --speedup 100"].passed is False
    failed = by_name["ArduPilot SITL built-in quad, --speedup 50"]
    assert failed.runs == () and "did not open its port" in failed.detail
    assert "on the ground" in by_name["ArduPilot SITL built-in quad, --speedup 1000"].detail
    ratio = by_name[bench.ARDUPILOT_RATIO]
    assert ratio.runs == (pytest.approx(0.05),) and ratio.extra["highest_speedup_that_goes"] == 10.0
    data = json.loads(bench.to_json(figures))
    assert data["figures"][-1]["extra"]["builtin_speeds"]["10"] == pytest.approx(10.0)
    assert "load average" in bench.format_table(figures)


def test_no_json_physics_run_means_no_ratio_and_says_why(exe, tmp_path):
    def json_run(b, log, work):
        raise BoardNotAnswering("no servo packet")

    comparison = measure(
        ArduPilotBench(exe, 1.0, (10.0,), 0), lambda text: None,
        json_run=json_run, builtin=lambda b, s, log, work: SpeedRun(1.0, 0.1, True), work_dir=tmp_path,
    )
    figures = bench.ardupilot_figures(comparison)
    assert figures[0].runs == () and "no servo packet" in figures[0].detail
    assert figures[-1].runs == () and "JSON physics run failed" in figures[-1].detail


def test_the_command_refuses_a_missing_executable_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != EXE_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "bench", "--ardupilot-only", "--ardupilot", str(tmp_path / "none")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode != 0 and "not an executable file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.ardupilot_sitl
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(EXE_ENV), reason=f"{EXE_ENV} does not point at an arducopter SITL build")
def test_the_bench_flies_both_physics_short_on_a_real_sitl():
    # SITL instance 0 as the fixture rig's, or HIL_ARDUPILOT_INSTANCE on a host whose
    # other SITLs hold those ports.
    instance = int(os.environ.get("HIL_ARDUPILOT_INSTANCE", "0"))
    b = resolve(None, seconds=3.0, speedups="10,1000", instance=instance)
    comparison = measure(replace(b, cpu_ns=bench.process_cpu_ns), lambda text: None)
    assert not isinstance(comparison.json_physics, str), comparison.json_physics
    assert comparison.json_physics.vehicle_s >= 3.0
    assert set(comparison.json_physics.cpu_s) == {"SITL", "harness"}
    assert all(not isinstance(r, str) for r in comparison.builtin.values()), comparison.builtin
    assert comparison.ratio is not None and comparison.ratio > 0

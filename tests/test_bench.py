"""hil bench reports measured figures with their spread (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from hil.bench import Figure, format_table, step_cost


def test_step_cost_reports_median_and_p99_per_repeat():
    median, p99 = step_cost(steps=300, repeats=2)
    assert len(median.runs) == 2 and len(p99.runs) == 2
    assert all(0 < m <= p for m, p in zip(median.runs, p99.runs, strict=True))


def test_table_shows_min_median_max_and_verdict():
    text = format_table([Figure("x", "us", (1.0, 2.0, 9.0), "<= 5", True)])
    assert "1.00" in text and "2.00" in text and "9.00" in text and "ok" in text


def test_bench_command_prints_json():
    out = subprocess.run(
        [sys.executable, "-m", "hil.cli", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = [f["name"] for f in data["figures"]]
    assert any("lockstep speed" in n for n in names)
    assert all(f["runs"] for f in data["figures"])

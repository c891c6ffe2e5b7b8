"""`hil gate`: the two-sample comparison, and the verdict on the shipped images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.cli import main
from hil.gate import compare, permutation_p_value

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "firmware_images" / "hilcopter-1.0.0.apj"
PATCH = ROOT / "firmware_images" / "hilcopter-1.0.1-fieldpatch.apj"
SCENARIO = ROOT / "scenarios" / "rc_loss_land.toml"

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=6), st.lists(finite, min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_p_value_is_a_probability_and_relabelling_is_exact(a, b):
    p = permutation_p_value(a, b)
    assert 0.0 < p <= 1.0
    # One of the two one-sided tests always sees the observed split as extreme.
    assert max(p, permutation_p_value(b, a)) >= 1.0 / math.comb(len(a) + len(b), len(a)) - 1e-12


def test_a_clear_shift_reaches_the_smallest_possible_p_value():
    base = [1.00, 1.01, 0.99, 1.00, 1.02]
    worse = [3.50, 3.49, 3.51, 3.50, 3.52]
    assert permutation_p_value(base, worse) == pytest.approx(1 / math.comb(10, 5))
    assert permutation_p_value(worse, base) == pytest.approx(1.0)


def test_noise_is_not_a_regression_and_a_small_shift_is_not_either():
    noisy = compare("s", "latency", [1.0, 1.2, 0.9, 1.1, 1.0], [1.1, 0.95, 1.15, 1.0, 1.05])
    assert not noisy.regression
    tiny = compare("s", "latency", [1.0] * 5, [1.05] * 5, min_effect=0.1)
    assert not tiny.regression  # significant but below what matters
    real = compare("s", "latency", [1.0] * 5, [3.5] * 5, min_effect=0.1)
    assert real.regression and real.p_value <= 0.05


def test_for_rates_lower_is_worse():
    slower = compare("s", "loop_rate_hz", [400.0] * 5, [300.0] * 5, min_effect=0.1, relative=True, higher_is_worse=False)
    assert slower.regression


@pytest.mark.parametrize("bad", [[], [float("nan")], [float("inf"), 1.0]])
def test_garbage_samples_are_refused(bad):
    with pytest.raises(ValueError):
        permutation_p_value(bad, [1.0])


def _gate(tmp_path: Path, candidate: Path, name: str) -> tuple[int, dict]:
    report = tmp_path / name
    code = main([
        "gate", str(SCENARIO), "--baseline", str(RELEASE), "--candidate", str(candidate),
        "--repeats", "3", "--report", str(report), "--state-dir", str(tmp_path / "state"),
    ])
    return code, json.loads((report / "gate.json").read_text())


def test_gate_refuses_the_field_patch_and_ships_the_release(tmp_path, capsys):
    code, evidence = _gate(tmp_path, PATCH, "patch")
    out = capsys.readouterr().out
    assert code == 1
    assert evidence["verdict"] == "do not ship"
    assert any(r.startswith("rc-loss-land:") for r in evidence["reasons"])
    assert "DO NOT SHIP" in out and "rc-loss-land" in out
    # Both images are named by sha256, so the decision is traceable.
    assert len(evidence["baseline"]["sha256"]) == 64
    assert evidence["baseline"]["sha256"] != evidence["candidate"]["sha256"]
    assert evidence["baseline"]["sha256"] in out

    code, evidence = _gate(tmp_path, RELEASE, "same")
    assert code == 0, evidence["reasons"]
    assert evidence["verdict"] == "ship"


def test_gate_with_a_missing_image_is_a_clear_error(tmp_path, capsys):
    code = main([
        "gate", str(SCENARIO), "--baseline", str(RELEASE), "--candidate", str(tmp_path / "nope.apj"),
        "--repeats", "2", "--report", str(tmp_path / "r"), "--state-dir", str(tmp_path / "state"),
    ])
    assert code != 0 and code != 1  # an error, not a verdict
    assert "does not exist" in capsys.readouterr().err


def test_host_clock_figures_gate_only_when_the_board_ran_in_real_time():
    from types import SimpleNamespace

    from hil.gate import _figures

    figures = {"failsafe_latency_s": 1.0, "command_ack_latency_ms": 3.0, "board_clock_rate": 12.0}
    lockstep = SimpleNamespace(measurements={**figures, "timesync": {"rate": 12.0}})
    assert set(_figures(lockstep)) == {"failsafe_latency_s"}
    real_time = SimpleNamespace(measurements={**figures, "board_clock_rate": 1.00002, "timesync": {"rate": 1.00002}})
    assert set(_figures(real_time)) == {"failsafe_latency_s", "command_ack_latency_ms", "board_clock_rate"}

"""Every virtual-board scenario passes on seeds 0-19: a verdict belongs to the firmware.

A seed varies what the world does (wind, sensor noise and biases, GNSS wander, link
timing); it must not decide whether a failsafe is right. Lockstep flights repeat bit for
bit, so a seed that fails here fails the same way on the bench, and the message names
it. Slow (about twenty minutes on two cores): ``pytest --run-slow tests/test_seed_sweep.py``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from hil.rig import Rig
from hil.scenario.load import load_scenario
from hil.scenario.runner import run_scenario
from hil.session import session_for

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "fixtures" / "virtual.toml"
SEEDS = range(20)
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))


def _failures(scenario_path: Path, tmp_path: Path) -> list[str]:
    """Fly the scenario on every seed; one line per seed that did not pass."""
    scenario = load_scenario(scenario_path)
    rig = Rig.load(RIG, work_dir=tmp_path / f"rig-{time.monotonic_ns()}")
    try:
        board = rig.select(None)
        if board.board_class not in scenario.applies_to:
            pytest.skip(
                f"{scenario.name} applies to {', '.join(scenario.applies_to)} boards, "
                f"the rig's board is {board.board_class}"
            )
        failures = []
        for seed in SEEDS:
            with session_for(board) as session:
                result = run_scenario(replace(scenario, seed=seed), session)
            # What the session found wrong on the way out (the board left armed, ...).
            reasons = [v.message for v in result.verdicts if not v.passed] + list(session.problems)
            if result.error is not None:
                reasons.insert(0, result.error)
            if reasons or not result.passed:
                failures.append(f"seed {seed}: " + ("; ".join(reasons) or "did not pass"))
        return failures
    finally:
        rig.stop()


@pytest.mark.slow
@pytest.mark.parametrize("scenario_path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_passes_on_every_seed(scenario_path: Path, tmp_path: Path) -> None:
    failures = _failures(scenario_path, tmp_path)
    assert not failures, (
        f"{scenario_path.name} failed on {len(failures)} of {len(SEEDS)} seeds:\n"
        + "\n".join(failures)
    )

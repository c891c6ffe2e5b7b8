"""Property-based search for RC-loss timelines that break a board's safety properties.

Hypothesis draws RC-loss patterns (`hil.search.strategies.rc_loss_patterns`); each example is
flown as a short scenario on a fresh `BoardSession` (a virtual board reboots to a fresh
vehicle per session) and judged by `hil.search.properties.check_all`. The first failing
pattern is shrunk to a minimal one, returned with the scenario file that replays it:

    from hil.search import search
    found = search(lambda: BoardSession(board), max_examples=10)
    if found:
        print(found.report())          # the violations and the scenario TOML
        Path("found.toml").write_text(found.toml)   # `hil run found.toml` replays it

Runs are cached by pattern, so Hypothesis never flies one pattern twice. `max_runs`
and `time_budget` bound the cost: once spent, patterns not flown yet count as passing,
so shrinking stops at the smallest failing pattern flown so far (`exhausted` says so).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, find, settings
from hypothesis.errors import NoSuchExample

from hil.scenario.model import Scenario
from hil.scenario.runner import ScenarioResult, run_scenario
from hil.search.properties import Violation, check_all
from hil.search.strategies import Window, rc_loss_patterns, scenario_from_timeline, scenario_toml
from hil.session import BoardSession

__all__ = ["DEFAULT_BASE", "Example", "SearchResult", "default_base", "run_example", "search"]

DEFAULT_BASE: Mapping[str, Any] = {
    "scenario": {
        "name": "rc-loss-search",
        "duration": 15.0,
    },
    "setup": {
        "mode": "LOITER",
        "altitude": 5.0,
        # Radio failsafe on (RTL) after 1 s. RTL stays at 5 m, does not loiter over
        # home and lands fast, so a failsafe costs few simulated seconds.
        "params": {
            "FS_THR_ENABLE": 1,
            "RC_FS_TIMEOUT": 1.0,
            "RTL_ALT": 500.0,
            "RTL_LOIT_TIME": 0.0,
            "LAND_ALT_LOW": 200.0,
            "WPNAV_SPEED_DN": 250.0,
        },
    },
}
"""The default example: take off to 5 m, LOITER, RC-loss windows over 15 s."""


def default_base(duration: float = 15.0) -> dict[str, Any]:
    """A copy of `DEFAULT_BASE` with the given timeline duration."""
    base = {k: dict(v) for k, v in DEFAULT_BASE.items()}
    base["setup"]["params"] = dict(DEFAULT_BASE["setup"]["params"])
    base["scenario"]["duration"] = float(duration)
    return base


@dataclass
class Example:
    """One flown pattern."""

    windows: tuple[Window, ...]
    scenario: Scenario
    result: ScenarioResult
    violations: list[Violation]
    session_problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.violations)


@dataclass
class SearchResult:
    """The minimal failing pattern found, its run and its scenario file."""

    windows: tuple[Window, ...]
    scenario: Scenario
    toml: str
    violations: list[Violation]
    result: ScenarioResult
    runs: int
    failing_runs: int
    wall_seconds: float
    exhausted: bool
    history: list[tuple[tuple[Window, ...], bool]] = field(default_factory=list)

    def report(self) -> str:
        """The violations, the minimal timeline and the scenario file to replay it."""
        spans = ", ".join(f"[{a:g}, {b:g})" for a, b in self.windows)
        lines = [
            f"minimal failing RC-loss timeline: {spans} s"
            f" ({self.runs} runs, {self.failing_runs} failing, {self.wall_seconds:.0f} s;"
            f" {'budget spent, may not be fully shrunk' if self.exhausted else 'fully shrunk'})",
        ]
        lines += [f"  {v}" for v in self.violations]
        if self.violations and self.result.timeline is not None:
            excerpt = self.result.timeline.excerpt(self.violations[0].t, 4.0, 2.0)
            lines += ["      " + row for row in excerpt.splitlines()]
        lines += ["", "scenario file (save it and `hil run` it to replay):", "", self.toml]
        return "\n".join(lines)


def run_example(
    board_session_factory: Callable[[], AbstractContextManager[BoardSession]],
    base: Mapping[str, Any],
    windows: Any,
    *,
    tolerance: float = 0.5,
    latency: float = 0.1,
    radius: float = 50.0,
    ceiling: float = 30.0,
    airborne_alt: float = 1.0,
    scenario: Scenario | None = None,
) -> Example:
    """Fly `windows` (or `scenario`, e.g. one read back from its file) on a fresh session
    and check the properties over the recorded timeline."""
    windows = tuple((float(a), float(b)) for a, b in windows)
    if scenario is None:
        scenario = scenario_from_timeline(base, windows, tolerance=tolerance, latency=latency)
    with board_session_factory() as session:
        result = run_scenario(scenario, session)
        snapshot = dict(session.param_snapshot)
    problems = list(getattr(session, "problems", []) or [])
    params = scenario.setup.params
    timeout = float(params.get("RC_FS_TIMEOUT", snapshot.get("RC_FS_TIMEOUT", 1.0)))
    enabled = int(params.get("FS_THR_ENABLE", snapshot.get("FS_THR_ENABLE", 1))) != 0
    violations: list[Violation] = []
    if result.error is not None:
        violations.append(Violation("run", result.timeline_end, f"the run failed: {result.error}"))
    if result.timeline is not None:
        violations += check_all(
            result.timeline,
            scenario=scenario,
            rc_timeout=timeout,
            rc_failsafe=enabled,
            tolerance=tolerance,
            latency=latency,
            radius=radius,
            ceiling=ceiling,
            airborne_alt=airborne_alt,
        )
    return Example(windows, scenario, result, violations, problems)


def search(
    board_session_factory: Callable[[], AbstractContextManager[BoardSession]],
    base_scenario: Mapping[str, Any] | None = None,
    *,
    max_examples: int = 10,
    max_windows: int = 3,
    min_gap: float = 0.5,
    max_window: float = 6.0,
    start_after: float = 1.0,
    tolerance: float = 0.5,
    latency: float = 0.1,
    radius: float = 50.0,
    ceiling: float = 30.0,
    airborne_alt: float = 1.0,
    shrink: bool = True,
    max_runs: int | None = None,
    time_budget: float | None = None,
    seed: int | None = 0,
    log: Callable[[str], None] | None = None,
) -> SearchResult | None:
    """Search RC-loss patterns on the board; the minimal failing one, or None.

    `board_session_factory()` gives a fresh, not yet entered `BoardSession` (one per
    example). `base_scenario` is a scenario-shaped dict without the RC-loss windows
    (default `DEFAULT_BASE`); its `[scenario].duration` bounds the windows.
    `max_examples` patterns are generated (Hypothesis, `database=None`); the first
    failing one is shrunk unless `shrink` is False. `max_runs` / `time_budget` (wall s)
    cap the board runs of the whole search; `seed` makes it repeatable (None: random).
    """
    base = dict(base_scenario) if base_scenario is not None else default_base()
    duration = float(base.get("scenario", {}).get("duration", 15.0))
    strategy = rc_loss_patterns(
        duration=duration,
        max_windows=max_windows,
        min_gap=min_gap,
        max_window=max_window,
        start_after=start_after,
    )
    cache: dict[tuple[Window, ...], Example] = {}
    order: list[tuple[Window, ...]] = []
    state = {"exhausted": False}
    wall0 = time.monotonic()

    def budget_left() -> bool:
        if max_runs is not None and len(cache) >= max_runs:
            return False
        return not (time_budget is not None and time.monotonic() - wall0 >= time_budget)

    def fails(windows: list[Window]) -> bool:
        key = tuple(windows)
        example = cache.get(key)
        if example is None:
            if not budget_left():
                state["exhausted"] = True
                return False
            example = run_example(
                board_session_factory, base, key, tolerance=tolerance, latency=latency, radius=radius,
                ceiling=ceiling, airborne_alt=airborne_alt,
            )
            cache[key] = example
            order.append(key)
            if log is not None:
                spans = ", ".join(f"[{a:g}, {b:g})" for a, b in key) or "no loss"
                verdict = "FAIL " + "; ".join(str(v) for v in example.violations) if example.failed else "ok"
                log(f"run {len(cache)}: {spans}: {verdict}")
        return example.failed

    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    config = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    try:
        minimal = find(
            strategy,
            fails,
            settings=config,
            random=random.Random(seed) if seed is not None else None,
        )
    except NoSuchExample:
        return None
    key = tuple(minimal)
    example = cache[key]
    return SearchResult(
        windows=key,
        scenario=example.scenario,
        toml=scenario_toml(example.scenario),
        violations=example.violations,
        result=example.result,
        runs=len(cache),
        failing_runs=sum(1 for e in cache.values() if e.failed),
        wall_seconds=time.monotonic() - wall0,
        exhausted=state["exhausted"],
        history=[(k, cache[k].failed) for k in order],
    )


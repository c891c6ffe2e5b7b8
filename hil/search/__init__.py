"""Property-based search: RC-loss timelines that break a board's safety properties.

- `hil.search.strategies`: hypothesis strategies for injection timelines, and the
  scenarios built from them;
- `hil.search.properties`: the safety properties, checked over a run's timeline;
- `hil.search.engine`: the search itself, which flies each drawn timeline on a board
  and shrinks the first failing one.

    from hil.search import search
    found = search(lambda: BoardSession(board), max_examples=10)
"""

from __future__ import annotations

from hil.search.engine import (
    DEFAULT_BASE,
    Example,
    SearchResult,
    default_base,
    run_example,
    search,
)
from hil.search.properties import (
    Violation,
    check_all,
    check_bounds,
    check_no_disarm_in_air,
    check_rc_failsafe,
    failsafe_engagements,
    rc_loss_ids,
    rc_loss_intervals,
)
from hil.search.strategies import (
    GRID,
    Window,
    injection_timelines,
    rc_failsafe_expectations,
    rc_loss_patterns,
    scenario_from_timeline,
    scenario_to_dict,
    scenario_toml,
)

__all__ = [
    "DEFAULT_BASE",
    "GRID",
    "Example",
    "SearchResult",
    "Violation",
    "Window",
    "check_all",
    "check_bounds",
    "check_no_disarm_in_air",
    "check_rc_failsafe",
    "default_base",
    "failsafe_engagements",
    "injection_timelines",
    "rc_failsafe_expectations",
    "rc_loss_ids",
    "rc_loss_intervals",
    "rc_loss_patterns",
    "run_example",
    "scenario_from_timeline",
    "scenario_to_dict",
    "scenario_toml",
    "search",
]

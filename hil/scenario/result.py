"""What one scenario run produced, whichever runner flew it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hil.scenario.expect import Verdict
from hil.scenario.model import Scenario
from hil.scenario.timeline import Timeline


@dataclass
class ScenarioResult:
    """What one scenario run produced."""

    scenario: Scenario
    board: str
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None
    timeline: Timeline | None = None
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    loop_speed: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: Figures measured during the run (loop rate, jitter, scheduler), name -> value.
    measurements: dict[str, object] = field(default_factory=dict)
    #: The scenario's [limits] figures, judged (hil.scenario.limits), also in `timing`.
    limit_timing: list[Any] = field(default_factory=list)
    #: Loop periods recorded during the run (us), per loop: the report's histogram.
    loop_periods_us: dict[str, Any] = field(default_factory=dict)
    #: Timing figures with unit and uncertainty (`hil.timing.Measurement`) from those loops.
    timing: list[Any] = field(default_factory=list)
    #: Files the run left in the report directory, what -> path.
    artifacts: dict[str, Any] = field(default_factory=dict)
    #: (timeline time of a mode or arming change, gap to the report before it), s.
    change_gaps: list[tuple[float, float]] = field(default_factory=list)
    #: Set when the board stopped answering during the run: an error of the bench, with
    #: no verdict on the firmware (`error` holds the same text).
    board_error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.passed for v in self.verdicts)

    @property
    def outcome(self) -> str:
        """PASS, FAIL (a verdict on the firmware) or ERROR (the board stopped answering)."""
        if self.board_error is not None:
            return "ERROR"
        return "PASS" if self.passed else "FAIL"

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second over the whole run."""
        return self.sim_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def failure_text(self) -> str:
        if self.board_error is not None:
            return f"scenario {self.scenario.name} on {self.board}: ERROR: {self.board_error}"
        lines = [f"scenario {self.scenario.name} on {self.board}: FAILED"]
        if self.error:
            lines.append(f"  error: {self.error}")
        for verdict in self.verdicts:
            if not verdict.passed:
                lines.append(f"  - {verdict.message}")
                if verdict.excerpt:
                    lines.extend("      " + row for row in verdict.excerpt.splitlines())
        if self.error and self.timeline is not None and not any(not v.passed for v in self.verdicts):
            lines.extend("      " + row for row in self.timeline.excerpt(self.timeline_end, 10.0, 1.0).splitlines())
        return "\n".join(lines)

    @property
    def timeline_end(self) -> float:
        states = self.timeline.states() if self.timeline is not None else {}
        t = states.get("t")
        return float(t[-1]) if t is not None and len(t) else 0.0

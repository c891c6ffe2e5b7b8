"""A monotonic deadline, the one object every bounded wait uses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Deadline:
    """Expires `seconds` after creation, on the monotonic clock."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> float:
        return max(0.0, self.start + self.seconds - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.start + self.seconds

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

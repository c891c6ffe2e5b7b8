"""hil: a hardware-in-the-loop test harness for drone flight controllers."""

from __future__ import annotations

__version__ = "0.1.0"

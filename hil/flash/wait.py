"""Waiting until a monotonic deadline without sleeping past it.

A DFU host must wait bwPollTimeout before its next GETSTATUS, and no longer than it
must: a 1 ms pollTimeout per 2 KiB block is most of the time a flash takes. A plain
`time.sleep` wakes late by the kernel's timer slack and the scheduler's latency (about
80 us on a 1 ms sleep here), so this sleeps until shortly before the deadline and spins
the rest. How early it wakes follows how late this host's sleeps have been, so the spin
stays short; it is bounded by `max_margin_s`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class DeadlineWaiter:
    """Waits until `time.monotonic()` reaches a deadline; learns how late sleeps wake."""

    margin_s: float = 100e-6  # wake this long before the deadline, then spin
    min_margin_s: float = 20e-6
    max_margin_s: float = 1e-3  # the longest spin
    headroom_s: float = 20e-6  # margin above the lateness seen
    smoothing: float = 0.2

    def wait_until(self, deadline: float) -> None:
        """Return at the first moment `time.monotonic() >= deadline`."""
        clock = time.monotonic
        wake = deadline - self.margin_s
        left = wake - clock()
        if left > 0:
            time.sleep(left)
            late = clock() - wake
            target = min(self.max_margin_s, max(self.min_margin_s, late + self.headroom_s))
            self.margin_s += self.smoothing * (target - self.margin_s)
        while clock() < deadline:
            pass

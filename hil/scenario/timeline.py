"""What the runner records while a scenario flies, in vehicle seconds.

t = 0 is the start of the scenario's timeline; setup happens at negative t. States come
at about 10 Hz and are kept in growable numpy columns; events are kept sorted by time.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

EVENT_KINDS: tuple[str, ...] = (
    "mode",
    "armed",
    "disarmed",
    "statustext",
    "injection_start",
    "injection_stop",
    "note",
)

_FLOAT_COLUMNS = ("t", "alt", "north", "east", "groundspeed", "roll", "pitch")


@dataclass(frozen=True)
class Event:
    """One event. `text`: the new mode for `mode`, the message for `statustext`, the
    injection id (and kind) for `injection_*`, free text otherwise."""

    t: float
    kind: str
    text: str


class Timeline:
    """State samples (columns) and events recorded during one scenario run."""

    def __init__(self, capacity: int = 1024) -> None:
        self._n = 0
        self._cap = max(16, capacity)
        self._f = {name: np.empty(self._cap, dtype=np.float64) for name in _FLOAT_COLUMNS}
        self._armed = np.empty(self._cap, dtype=bool)
        self._mode = np.empty(self._cap, dtype=np.int16)
        self._mode_names: list[str] = []
        self._mode_codes: dict[str, int] = {}
        self._events: list[Event] = []
        self._event_times: list[float] = []
        #: Named numeric series the board reports besides its state ("lq", "rssi"): t, value.
        self._samples: dict[str, list[tuple[float, float]]] = {}

    # --- recording ---------------------------------------------------------------------

    def add_state(
        self,
        t: float,
        armed: bool,
        mode: str,
        alt: float,
        north: float,
        east: float,
        groundspeed: float,
        roll: float,
        pitch: float,
    ) -> None:
        """Record one state sample; `t` must not go backwards. Angles in rad, alt in m
        above home, north/east in m from home."""
        if not math.isfinite(t):
            raise ValueError(f"state time must be finite, got {t!r}")
        if self._n and t < self._f["t"][self._n - 1]:
            raise ValueError(
                f"state time went backwards: {t!r} after {self._f['t'][self._n - 1]!r}"
            )
        if self._n == self._cap:
            self._grow()
        i = self._n
        for name, value in zip(
            _FLOAT_COLUMNS, (t, alt, north, east, groundspeed, roll, pitch), strict=True
        ):
            self._f[name][i] = value
        self._armed[i] = bool(armed)
        code = self._mode_codes.get(mode)
        if code is None:
            code = len(self._mode_names)
            self._mode_names.append(mode)
            self._mode_codes[mode] = code
        self._mode[i] = code
        self._n += 1

    def _grow(self) -> None:
        self._cap *= 2
        for name, col in self._f.items():
            self._f[name] = np.resize(col, self._cap)
        self._armed = np.resize(self._armed, self._cap)
        self._mode = np.resize(self._mode, self._cap)

    def add_event(self, t: float, kind: str, text: str = "") -> None:
        """Record an event; kept in time order (equal times keep arrival order)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind {kind!r} is not one of: {', '.join(EVENT_KINDS)}")
        if not math.isfinite(t):
            raise ValueError(f"event time must be finite, got {t!r}")
        i = bisect.bisect_right(self._event_times, t)
        self._event_times.insert(i, t)
        self._events.insert(i, Event(float(t), kind, str(text)))

    def add_sample(self, name: str, t: float, value: float) -> None:
        """Record one value of series `name` (e.g. "lq", the firmware's link quality in %)."""
        if not math.isfinite(t) or not math.isfinite(value):
            raise ValueError(f"sample {name} at {t!r} must be finite, got {value!r}")
        self._samples.setdefault(name, []).append((float(t), float(value)))

    def samples(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, values) of series `name` in time order; empty arrays when never recorded."""
        rows = sorted(self._samples.get(name, ()))
        if not rows:
            return np.empty(0), np.empty(0)
        arr = np.asarray(rows, dtype=np.float64)
        return arr[:, 0], arr[:, 1]

    @property
    def sample_names(self) -> list[str]:
        return sorted(self._samples)

    # --- reading -------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """All events in time order (a copy)."""
        return list(self._events)

    def __len__(self) -> int:
        """Number of state samples."""
        return self._n

    def states(self) -> dict[str, np.ndarray]:
        """Columns: t, armed (bool), mode (str), alt, north, east, groundspeed, roll,
        pitch, and dist (horizontal distance from home, m). Copies."""
        n = self._n
        out = {name: col[:n].copy() for name, col in self._f.items()}
        out["armed"] = self._armed[:n].copy()
        names = np.array(self._mode_names if self._mode_names else [""], dtype=object)
        out["mode"] = names[self._mode[:n]] if n else np.array([], dtype=object)
        out["dist"] = np.hypot(out["north"], out["east"])
        return out

    @property
    def start(self) -> float | None:
        """Time of the first record (state or event), None if empty."""
        times = []
        if self._n:
            times.append(float(self._f["t"][0]))
        if self._events:
            times.append(self._events[0].t)
        return min(times) if times else None

    @property
    def end(self) -> float | None:
        """Time of the last record (state or event), None if empty."""
        times = []
        if self._n:
            times.append(float(self._f["t"][self._n - 1]))
        if self._events:
            times.append(self._events[-1].t)
        return max(times) if times else None

    def events_between(self, t0: float, t1: float, kind: str | None = None) -> list[Event]:
        """Events with t0 <= t <= t1 (of one kind if given)."""
        lo = bisect.bisect_left(self._event_times, t0)
        hi = bisect.bisect_right(self._event_times, t1)
        return [e for e in self._events[lo:hi] if kind is None or e.kind == kind]

    def excerpt(self, t_center: float, before: float = 5.0, after: float = 5.0) -> str:
        """Readable text: the events in [t_center - before, t_center + after] and a few
        state rows (t, mode, armed, altitude, distance from home) across that window."""
        t0, t1 = t_center - before, t_center + after
        lines = [f"timeline t={t0:.2f} s .. {t1:.2f} s (t=0: start of the scenario)"]
        lines.append("   t(s)  event")
        events = self.events_between(t0, t1)
        if not events:
            lines.append("         (no events)")
        for e in events:
            lines.append(f"{_t(e.t):7.2f}  {e.kind} {e.text}".rstrip())
        rows = self._rows_in(t0, t1, t_center)
        lines.append("")
        lines.append("   t(s)  mode        armed  alt(m)  home(m)")
        if len(rows) == 0:
            lines.append("         (no state samples)")
        t = self._f["t"]
        for i in rows:
            dist = math.hypot(self._f["north"][i], self._f["east"][i])
            lines.append(
                f"{_t(float(t[i])):7.2f}  {self._mode_names[self._mode[i]]:<10}  "
                f"{'yes' if self._armed[i] else 'no':<5}  {self._f['alt'][i]:6.1f}  {dist:7.1f}"
            )
        return "\n".join(lines)

    def _rows_in(self, t0: float, t1: float, t_center: float, count: int = 11) -> list[int]:
        """Indices of up to `count` samples spread over [t0, t1], always including the one
        nearest `t_center`."""
        t = self._f["t"][: self._n]
        lo = int(np.searchsorted(t, t0, side="left"))
        hi = int(np.searchsorted(t, t1, side="right"))
        if hi <= lo:
            return []
        targets = np.append(np.linspace(t0, t1, count), t_center)
        idx = np.clip(np.searchsorted(t[lo:hi], targets), 0, hi - lo - 1) + lo
        # searchsorted gives the sample at or after each target; take the nearer neighbour.
        prev = np.maximum(idx - 1, lo)
        nearer = np.where(np.abs(t[prev] - targets) < np.abs(t[idx] - targets), prev, idx)
        return sorted({int(i) for i in nearer})


def _t(t: float) -> float:
    """A time for display: tiny negatives from clock rounding print as 0.00, not -0.00."""
    return 0.0 if abs(t) < 0.005 else t


class RecorderBase:
    """What both scenario recorders keep: states and events in absolute time, and the
    mode and arming last seen, turned into events when they change."""

    def __init__(self) -> None:
        self.states: list[tuple] = []
        self.events: list[tuple[float, str, str]] = []
        #: (absolute time, series name, value): what the board reports besides its state.
        self.samples: list[tuple[float, str, float]] = []
        self.mode: str | None = None
        self.armed: bool | None = None
        self.ever_armed = False
        #: (absolute time of a change, time since the report before it): the change
        #: happened somewhere in that gap, which bounds how exactly its time is known.
        self.change_gaps: list[tuple[float, float]] = []
        self._last_report: float | None = None

    def track(self, t: float, mode: str, armed: bool) -> None:
        """Record a report of mode and arming at absolute time ``t``; changes become events."""
        changed = False
        if mode != self.mode:
            self.events.append((t, "mode", mode))
            self.mode = mode
            changed = True
        if armed != self.armed:
            self.events.append((t, "armed" if armed else "disarmed", ""))
            self.armed = armed
            self.ever_armed = self.ever_armed or armed
            changed = True
        if changed and self._last_report is not None:
            self.change_gaps.append((t, t - self._last_report))
        self._last_report = t

    def timeline(self, t0: float) -> Timeline:
        """A Timeline with t = 0 at ``t0``."""
        timeline = Timeline()
        for row in self.states:
            timeline.add_state(row[0] - t0, *row[1:])
        for t, kind, text in sorted(self.events, key=lambda e: e[0]):
            timeline.add_event(t - t0, kind, text)
        for t, name, value in self.samples:
            timeline.add_sample(name, t - t0, value)
        return timeline

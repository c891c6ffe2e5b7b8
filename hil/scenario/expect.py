"""Evaluate a scenario's expectations over a recorded `Timeline`.

Mode and armed state come from the timeline's `mode` / `armed` / `disarmed` events (exact
transition times); before the first such event, and when there are none, from the state
samples. Altitude and position come from the state samples. A limit met exactly passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hil.scenario.model import (
    ExpectAltitude,
    ExpectArmed,
    ExpectArmedThroughout,
    Expectation,
    ExpectDisarmed,
    ExpectDisarmedThroughout,
    ExpectHoldPosition,
    ExpectLandedNearHome,
    ExpectLinkQuality,
    ExpectMode,
    ExpectNearHome,
    ExpectNeverMode,
    ExpectStatustext,
    Scenario,
)
from hil.scenario.timeline import Timeline

__all__ = ["Verdict", "evaluate", "AIRBORNE_ALT", "MAX_GAP", "SLACK"]

EPS = 1e-6  # s or m: tolerance of float round-off when comparing with a limit
AIRBORNE_ALT = 0.5  # m above home: armed and higher than this counts as having flown
LANDED_ALT = 1.0  # m above home: a disarm higher than this is not a landing
SLACK = 0.25  # s: a window counts as recorded if samples come this close to its ends
MAX_GAP = 1.0  # s: a longer gap between state samples inside a window is a failure
EXCERPT_MARGIN = 3.0  # s shown before and after the interesting span
EXCERPT_MAX = 30.0  # s: the most shown on either side of the focus time


@dataclass(frozen=True)
class Verdict:
    """The outcome of one expectation; `excerpt` is set when it failed."""

    expectation: Expectation
    passed: bool
    message: str
    t: float | None
    excerpt: str = ""


def evaluate(
    scenario: Scenario, timeline: Timeline, anchors: Mapping[str, float]
) -> list[Verdict]:
    """One verdict per expectation of `scenario`, in file order. `anchors` holds the actual
    times of "start" (0.0 if absent), "<injection id>.start" and "<injection id>.stop"."""
    full = {"start": 0.0, **anchors}
    ctx = _Context(timeline, full)
    return [ctx.evaluate(exp) for exp in scenario.expectations]


def _t(x: float) -> str:
    return f"t={x:.2f} s"


def _dur(x: float) -> str:
    return f"{x:.2f} s"


class _Context:
    """The timeline, read once into arrays and step signals, plus the anchors."""

    def __init__(self, timeline: Timeline, anchors: Mapping[str, float]) -> None:
        self.tl = timeline
        self.anchors = anchors
        self.st = timeline.states()
        self.end = timeline.end if timeline.end is not None else 0.0
        events = timeline.events
        self.modes = _signal(
            self.st["t"],
            self.st["mode"],
            [(e.t, e.text) for e in events if e.kind == "mode"],
        )
        self.armed = _signal(
            self.st["t"],
            self.st["armed"],
            [(e.t, e.kind == "armed") for e in events if e.kind in ("armed", "disarmed")],
        )

    # --- helpers --------------------------------------------------------------------------

    def anchor(self, name: str) -> float | None:
        return self.anchors.get(name)

    def at(self, name: str) -> str:
        return f"{name} ({_t(self.anchors[name])})"

    def excerpt(self, focus: float, t_from: float | None = None, t_to: float | None = None) -> str:
        """Timeline excerpt around `focus`, covering [t_from, t_to] within limits."""
        lo = focus if t_from is None else min(t_from, focus)
        hi = focus if t_to is None else max(t_to, focus)
        before = min(focus - lo + EXCERPT_MARGIN, EXCERPT_MAX)
        after = min(hi - focus + EXCERPT_MARGIN, EXCERPT_MAX)
        return self.tl.excerpt(focus, before=before, after=after)

    def fail(
        self, exp: Expectation, message: str, t: float | None, excerpt: str | None = None
    ) -> Verdict:
        if excerpt is None:
            excerpt = self.excerpt(t if t is not None else self.end)
        return Verdict(exp, False, message, t, excerpt)

    def missing_anchor(self, exp: Expectation, name: str) -> Verdict:
        inj, _, edge = name.rpartition(".")
        what = f"injection {inj!r} never {'started' if edge == 'start' else 'stopped'}"
        return self.fail(
            exp,
            f"expected {exp.describe()}; cannot check: {what} (no {name} time;"
            f" the recording ended at {_t(self.end)})",
            None,
            self.excerpt(self.end, self.end - 10.0),
        )

    def state_at(self, t: float) -> str:
        """'in LOITER at 10.0 m, 20.0 m from home' from the samples nearest `t`."""
        ts = self.st["t"]
        if len(ts) == 0:
            return "no state recorded"
        i = int(np.clip(np.searchsorted(ts, t), 0, len(ts) - 1))
        if i > 0 and abs(ts[i - 1] - t) <= abs(ts[i] - t):
            i -= 1
        return (
            f"in {self.st['mode'][i]} at {self.st['alt'][i]:.1f} m,"
            f" {self.st['dist'][i]:.1f} m from home"
        )

    def coverage(self, w0: float, w1: float) -> tuple[str, float] | None:
        """Why [w0, w1] is not fully recorded by state samples (message, time), or None."""
        ts = self.st["t"]
        if len(ts) == 0 or ts[-1] < w0 - SLACK or ts[0] > w1 + SLACK:
            return (f"no state samples from {_t(w0)} to {_t(w1)}", w0)
        if ts[0] > w0 + SLACK:
            return (f"the recording starts only at {_t(float(ts[0]))}", float(ts[0]))
        if ts[-1] < w1 - SLACK:
            return (
                f"the recording ended at {_t(float(ts[-1]))}, before the window closed",
                float(ts[-1]),
            )
        inside = ts[(ts >= w0 - MAX_GAP) & (ts <= w1 + MAX_GAP)]
        if len(inside) >= 2:
            gaps = np.diff(inside)
            k = int(np.argmax(gaps))
            if gaps[k] > MAX_GAP:
                return (
                    f"no state samples from {_t(float(inside[k]))} to {_t(float(inside[k + 1]))}"
                    f" (gap {gaps[k]:.2f} s)",
                    float(inside[k]),
                )
        return None

    def window(self, w0: float, w1: float) -> np.ndarray:
        ts = self.st["t"]
        return (ts >= w0 - EPS) & (ts <= w1 + EPS)

    # --- dispatch ---------------------------------------------------------------------------

    def evaluate(self, exp: Expectation) -> Verdict:
        for name in exp.anchors():
            if self.anchor(name) is None:
                return self.missing_anchor(exp, name)
        check: Callable[[Any], Verdict] = getattr(self, "check_" + exp.kind)
        return check(exp)

    # --- one method per kind ------------------------------------------------------------------

    def check_mode(self, exp: ExpectMode) -> Verdict:
        a = self.anchors[exp.after]
        current = _value_at(self.modes, a)
        if current == exp.mode:
            reached: float | None = a
        else:
            reached = _first_after(self.modes, a, lambda m: m == exp.mode)
        expected = f"expected mode {exp.mode} within {_dur(exp.within)} after {self.at(exp.after)}"
        if reached is None:
            seen = _values_after(self.modes, a)
            if not seen:
                what = f"the vehicle stayed in {current or 'no recorded mode'}"
            else:
                what = f"the vehicle went through {', '.join(seen)} but never {exp.mode}"
            message = f"{expected}; {what} until the end ({_t(self.end)})"
            if self.end < a + exp.within - EPS:
                message += ", before the window closed"
            return self.fail(exp, message, None, self.excerpt(a, a, a + exp.within))
        delay = reached - a
        when = (
            f"already in {exp.mode} at {exp.after}"
            if current == exp.mode
            else f"mode {exp.mode} reached at {_t(reached)}, {_dur(delay)} after {self.at(exp.after)}"
        )
        if delay > exp.within + EPS:
            return self.fail(
                exp,
                f"{expected}; {when}, too late (limit {_dur(exp.within)})",
                reached,
                self.excerpt(reached, a),
            )
        if exp.not_before is not None and delay < exp.not_before - EPS:
            return self.fail(
                exp,
                f"expected mode {exp.mode} no sooner than {_dur(exp.not_before)} after"
                f" {self.at(exp.after)}; {when}, too early",
                reached,
                self.excerpt(reached, a, a + exp.not_before),
            )
        return Verdict(exp, True, f"{when} (limit {_dur(exp.within)})", reached)

    def check_statustext(self, exp: ExpectStatustext) -> Verdict:
        a = self.anchors[exp.after]
        needle = exp.contains.lower()
        texts = [e for e in self.tl.events if e.kind == "statustext"]
        matching = [e for e in texts if needle in e.text.lower()]
        limit = f"(limit {_dur(exp.within)})"
        for e in matching:
            if a - EPS <= e.t <= a + exp.within + EPS:
                return Verdict(
                    exp,
                    True,
                    f'STATUSTEXT "{e.text}" at {_t(e.t)}, {_dur(e.t - a)} after'
                    f" {self.at(exp.after)} {limit}",
                    e.t,
                )
        expected = (
            f'expected a STATUSTEXT containing "{exp.contains}" within {_dur(exp.within)}'
            f" after {self.at(exp.after)}"
        )
        later = [e for e in matching if e.t > a + exp.within]
        if later:
            e = later[0]
            return self.fail(
                exp,
                f'{expected}; "{e.text}" came at {_t(e.t)}, {_dur(e.t - a)} after, too late',
                e.t,
                self.excerpt(e.t, a),
            )
        earlier = [e for e in matching if e.t < a]
        others = [e.text for e in texts if a - EPS <= e.t <= a + exp.within + EPS]
        what = "none arrived"
        if earlier:
            what += f" (one came before, at {_t(earlier[-1].t)})"
        if others:
            shown = ", ".join(f'"{x}"' for x in others[:3])
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            what += f"; other STATUSTEXTs in the window: {shown}{more}"
        else:
            what += "; no STATUSTEXT at all in the window"
        if self.end < a + exp.within - EPS:
            what += f"; the recording ended at {_t(self.end)}"
        return self.fail(exp, f"{expected}; {what}", None, self.excerpt(a, a, a + exp.within))

    def check_disarmed(self, exp: ExpectDisarmed) -> Verdict:
        a = self.anchors[exp.after]
        expected = (
            f"expected the vehicle to disarm within {_dur(exp.within)} after {self.at(exp.after)}"
        )
        if _value_at(self.armed, a) is False:
            t_d: float | None = a
            when = f"already disarmed at {exp.after}"
        else:
            t_d = _first_after(self.armed, a, lambda v: not v)
            when = ""
            if t_d is not None:
                when = f"disarmed at {_t(t_d)}, {_dur(t_d - a)} after {self.at(exp.after)}"
        if t_d is None:
            return self.fail(
                exp,
                f"{expected}; it was still armed at the end ({_t(self.end)}),"
                f" {self.state_at(self.end)}",
                self.end,
                self.excerpt(self.end, a),
            )
        if t_d - a > exp.within + EPS:
            return self.fail(
                exp, f"{expected}; {when}, too late", t_d, self.excerpt(t_d, a)
            )
        if exp.not_before is not None and t_d - a < exp.not_before - EPS:
            return self.fail(
                exp,
                f"expected the vehicle to disarm no sooner than {_dur(exp.not_before)} after"
                f" {self.at(exp.after)}; {when}, too early",
                t_d,
                self.excerpt(t_d, a),
            )
        rearmed = _first_after(self.armed, t_d, bool)
        if rearmed is not None:
            return self.fail(
                exp,
                f"{expected} and to stay disarmed; {when} but armed again at {_t(rearmed)}",
                rearmed,
                self.excerpt(rearmed, t_d),
            )
        return Verdict(exp, True, f"{when} (limit {_dur(exp.within)})", t_d)

    def check_armed(self, exp: ExpectArmed) -> Verdict:
        a = self.anchors[exp.after]
        expected = f"expected the vehicle to arm within {_dur(exp.within)} after {self.at(exp.after)}"
        if _value_at(self.armed, a) is True:
            t_a: float | None = a
            when = f"already armed at {exp.after}"
        else:
            t_a = _first_after(self.armed, a, bool)
            when = "" if t_a is None else f"armed at {_t(t_a)}, {_dur(t_a - a)} after {self.at(exp.after)}"
        if t_a is None or t_a - a > exp.within + EPS:
            what = f"{when}, too late" if t_a is not None else f"it was still disarmed at the end ({_t(self.end)}), {self.state_at(self.end)}"
            return self.fail(exp, f"{expected}; {what}", t_a if t_a is not None else self.end, self.excerpt(t_a if t_a is not None else self.end, a))
        if exp.not_before is not None and t_a - a < exp.not_before - EPS:
            return self.fail(
                exp,
                f"expected the vehicle to arm no sooner than {_dur(exp.not_before)} after {self.at(exp.after)}; {when}, too early",
                t_a,
                self.excerpt(t_a, a),
            )
        t_d = _first_after(self.armed, t_a, lambda v: not v)
        if t_d is not None and t_d <= min(self.end, a + exp.within) + EPS:
            return self.fail(exp, f"{expected} and to stay armed; {when} but disarmed at {_t(t_d)}", t_d, self.excerpt(t_d, t_a))
        return Verdict(exp, True, f"{when} (limit {_dur(exp.within)})", t_a)

    def check_disarmed_throughout(self, exp: ExpectDisarmedThroughout) -> Verdict:
        a, w1, until = self.open_window(exp.after, exp.duration)
        expected = f"expected the vehicle to stay disarmed from {self.at(exp.after)} to {until}"
        short = self.recording_too_short(exp, expected, exp.duration, w1)
        if short is not None:
            return short
        if _value_at(self.armed, a) is not False:
            return self.fail(exp, f"{expected}; it was not disarmed at {exp.after}, {self.state_at(a)}", a)
        t_a = _first_after(self.armed, a, bool)
        if t_a is not None and t_a <= w1 + EPS:
            return self.fail(exp, f"{expected}; it armed at {_t(t_a)}, {self.state_at(t_a)}", t_a, self.excerpt(t_a, t_a - 5.0))
        gap = self.unrecorded(exp, expected, a, w1)
        if gap is not None:
            return gap
        return Verdict(exp, True, f"disarmed from {_t(a)} to {_t(w1)}", None)

    def check_link_quality(self, exp: ExpectLinkQuality) -> Verdict:
        w0 = self.anchors[exp.after] + exp.delay
        w1 = w0 + exp.duration
        name = exp.measure.upper()
        span = f"from {_t(w0)} to {_t(w1)} ({exp.after} + {_dur(exp.delay)}, for {_dur(exp.duration)})"
        expected = f"expected the firmware's {name} between {exp.min:g} and {exp.max:g} % {span}"
        ts, values = self.tl.samples(exp.measure)
        sel = (ts >= w0 - EPS) & (ts <= w1 + EPS)
        if not sel.any():
            seen = f"it was recorded from {_t(float(ts[0]))} to {_t(float(ts[-1]))}" if ts.size else "the board never reported it"
            return self.fail(exp, f"{expected}; cannot check: no {name} sample in the window ({seen})", w0)
        # Samples must cover the window: no gap longer than a second, none at its ends.
        inside = ts[sel]
        edges = np.concatenate([[w0], inside, [w1]])
        worst = float(np.max(np.diff(edges)))
        if worst > 1.0 + EPS:
            return self.fail(exp, f"{expected}; cannot check: {name} went unrecorded for {worst:.2f} s of the window", w0)
        vals = values[sel]
        bad = (vals < exp.min - EPS) | (vals > exp.max + EPS)
        if bad.any():
            i = int(np.argmax(bad))
            return self.fail(
                exp,
                f"{expected}; at {_t(float(inside[i]))} it read {vals[i]:g} %; {int(bad.sum())} of {len(vals)} "
                f"samples out of range (seen {vals.min():g} to {vals.max():g} %)",
                float(inside[i]),
                self.excerpt(float(inside[i]), w0),
            )
        return Verdict(exp, True, f"{name} stayed between {exp.min:g} and {exp.max:g} % {span} (seen {vals.min():g} to {vals.max():g} %, {len(vals)} samples)", w1)

    def check_landed_near_home(self, exp: ExpectLandedNearHome) -> Verdict:
        st = self.st
        expected = f"expected to land and disarm within {exp.radius:.2f} m of home"
        flying = np.flatnonzero(st["armed"] & (st["alt"] > AIRBORNE_ALT))
        if len(flying) == 0:
            top = float(st["alt"].max()) if len(st["alt"]) else 0.0
            return self.fail(
                exp,
                f"{expected}; the vehicle never flew (highest altitude {top:.1f} m while armed"
                f" or not)",
                None,
                self.excerpt(self.end, self.end - 10.0),
            )
        t_fly = float(st["t"][flying[0]])
        t_d = _first_after(self.armed, t_fly, lambda v: not v)
        if t_d is None:
            return self.fail(
                exp,
                f"{expected}; it was still armed at the end ({_t(self.end)}),"
                f" {self.state_at(self.end)}",
                self.end,
                self.excerpt(self.end),
            )
        north = float(np.interp(t_d, st["t"], st["north"]))
        east = float(np.interp(t_d, st["t"], st["east"]))
        dist = float(np.hypot(north, east))
        where = f"disarmed at {_t(t_d)} {dist:.2f} m from home (north {north:.2f}, east {east:.2f})"
        alt = float(np.interp(t_d, st["t"], st["alt"]))
        if alt > LANDED_ALT:  # a disarm in the air is a fall, not a landing
            return self.fail(
                exp, f"{expected}; {where}, but {alt:.1f} m up: not landed", t_d, self.excerpt(t_d, t_d - 10.0)
            )
        if dist > exp.radius + EPS:
            return self.fail(
                exp, f"{expected}; {where}, too far", t_d, self.excerpt(t_d, t_d - 10.0)
            )
        return Verdict(exp, True, f"{where} (limit {exp.radius:.2f} m)", t_d)

    def delayed_window(self, exp: ExpectAltitude | ExpectHoldPosition) -> tuple[float, float, str]:
        """(start, end, description) of a wait-and-maintain window: `after` + `delay`, `for`."""
        w0 = self.anchors[exp.after] + exp.delay
        w1 = w0 + exp.duration
        return w0, w1, f"from {_t(w0)} to {_t(w1)} ({exp.after} + {_dur(exp.delay)}, for {_dur(exp.duration)})"

    def uncovered(self, exp: Expectation, expected: str, w0: float, w1: float) -> Verdict | None:
        """A failed verdict when the recording does not cover [w0, w1], else None."""
        gap = self.coverage(w0, w1)
        if gap is None:
            return None
        return self.fail(exp, f"{expected}; {gap[0]}", gap[1], self.excerpt(gap[1], w0))

    def unrecorded(self, exp: Expectation, expected: str, w0: float, w1: float) -> Verdict | None:
        """For a window where nothing forbidden was seen: a failed verdict when part of it
        was not recorded (a board that stopped answering proves nothing), else None."""
        gap = self.coverage(w0, w1)
        if gap is None:
            return None
        return self.fail(exp, f"{expected}; cannot check: {gap[0]}", gap[1], self.excerpt(gap[1], w0))

    def check_near_home(self, exp: ExpectNearHome) -> Verdict:
        a = self.anchors[exp.after]
        w1 = a + float(exp.within)
        expected = f"expected within {exp.radius:.2f} m of home by {_t(w1)} ({exp.after} + {_dur(float(exp.within))})"
        st = self.st
        sel = (st["t"] >= a - EPS) & (st["t"] <= w1 + EPS)
        ts = st["t"][sel]
        if len(ts) == 0:
            return self.fail(exp, f"{expected}; nothing was recorded then", a, self.excerpt(a))
        dist = np.hypot(st["north"][sel], st["east"][sel])
        near = np.flatnonzero(dist <= exp.radius + EPS)
        if len(near) == 0:
            k = int(np.argmin(dist))
            return self.fail(
                exp,
                f"{expected}; the nearest it came was {dist[k]:.2f} m at {_t(float(ts[k]))}"
                f" (it was {dist[0]:.2f} m away at {_t(float(ts[0]))})",
                w1,
                self.excerpt(w1),
            )
        t = float(ts[near[0]])
        return Verdict(
            exp,
            True,
            f"within {exp.radius:.2f} m of home at {_t(t)}, {t - a:.2f} s after {exp.after}"
            f" (from {dist[0]:.2f} m; limit {float(exp.within):.2f} s)",
            t,
        )

    def check_altitude(self, exp: ExpectAltitude) -> Verdict:
        w0, w1, span = self.delayed_window(exp)
        expected = f"expected altitude between {exp.min:.2f} and {exp.max:.2f} m {span}"
        gap = self.uncovered(exp, expected, w0, w1)
        if gap is not None:
            return gap
        sel = self.window(w0, w1)
        ts, alt = self.st["t"][sel], self.st["alt"][sel]
        low, high = alt < exp.min - EPS, alt > exp.max + EPS
        bad = low | high
        if bad.any():
            i = int(np.argmax(bad))
            side = "below the minimum" if low[i] else "above the maximum"
            dev = np.maximum(exp.min - alt, alt - exp.max)
            k = int(np.argmax(dev))
            return self.fail(
                exp,
                f"{expected}; at {_t(float(ts[i]))} it was {alt[i]:.2f} m, {side};"
                f" {int(bad.sum())} of {len(alt)} samples out of range, the worst"
                f" {alt[k]:.2f} m at {_t(float(ts[k]))}",
                float(ts[i]),
                self.excerpt(float(ts[i]), w0),
            )
        return Verdict(
            exp,
            True,
            f"altitude stayed between {exp.min:.2f} and {exp.max:.2f} m {span}"
            f" (seen {alt.min():.2f} to {alt.max():.2f} m)",
            w1,
        )

    def check_hold_position(self, exp: ExpectHoldPosition) -> Verdict:
        w0, w1, span = self.delayed_window(exp)
        expected = f"expected to stay within {exp.radius:.2f} m of its position at {_t(w0)} {span}"
        gap = self.uncovered(exp, expected, w0, w1)
        if gap is not None:
            return gap
        st = self.st
        n0 = float(np.interp(w0, st["t"], st["north"]))
        e0 = float(np.interp(w0, st["t"], st["east"]))
        sel = self.window(w0, w1)
        ts = st["t"][sel]
        drift = np.hypot(st["north"][sel] - n0, st["east"][sel] - e0)
        bad = drift > exp.radius + EPS
        ref = f"(north {n0:.2f}, east {e0:.2f})"
        if bad.any():
            i = int(np.argmax(bad))
            k = int(np.argmax(drift))
            return self.fail(
                exp,
                f"{expected} {ref}; at {_t(float(ts[i]))} it was {drift[i]:.2f} m away;"
                f" the farthest {drift[k]:.2f} m at {_t(float(ts[k]))}",
                float(ts[i]),
                self.excerpt(float(ts[i]), w0),
            )
        return Verdict(
            exp,
            True,
            f"stayed within {exp.radius:.2f} m of {ref} {span} (farthest {drift.max():.2f} m)",
            w1,
        )

    def open_window(self, after: str, duration: float | None) -> tuple[float, float, str]:
        """(start, end, how to say the end) of a window that may run to the end of the recording."""
        a = self.anchors[after]
        w1 = self.end if duration is None else a + duration
        return a, w1, "the end" if duration is None else _t(w1)

    def recording_too_short(
        self, exp: Expectation, expected: str, duration: float | None, w1: float
    ) -> Verdict | None:
        if duration is not None and self.end < w1 - SLACK:
            return self.fail(
                exp,
                f"{expected}; the recording ended at {_t(self.end)}, before the window closed",
                self.end,
            )
        return None

    def check_never_mode(self, exp: ExpectNeverMode) -> Verdict:
        a, w1, until = self.open_window(exp.after, exp.duration)
        expected = f"expected the vehicle never to enter {exp.mode} from {self.at(exp.after)} to {until}"
        short = self.recording_too_short(exp, expected, exp.duration, w1)
        if short is not None:
            return short
        if _value_at(self.modes, a) == exp.mode:
            return self.fail(exp, f"{expected}; it was already in {exp.mode} at {exp.after}", a)
        entered = _first_after(self.modes, a, lambda m: m == exp.mode)
        if entered is not None and entered <= w1 + EPS:
            return self.fail(
                exp,
                f"{expected}; it entered {exp.mode} at {_t(entered)}, {_dur(entered - a)} after"
                f" {exp.after}",
                entered,
                self.excerpt(entered, entered - 5.0),
            )
        # Nothing forbidden was recorded; a pass also needs the whole window recorded.
        gap = self.unrecorded(exp, expected, a, w1)
        if gap is not None:
            return gap
        seen = [m for m in _values_between(self.modes, a, w1) if m is not None]
        return Verdict(
            exp,
            True,
            f"never in {exp.mode} from {_t(a)} to {_t(w1)} (modes seen: {', '.join(seen) or 'none'})",
            None,
        )

    def check_armed_throughout(self, exp: ExpectArmedThroughout) -> Verdict:
        a, w1, until = self.open_window(exp.after, exp.duration)
        expected = f"expected the vehicle to stay armed from {self.at(exp.after)} to {until}"
        short = self.recording_too_short(exp, expected, exp.duration, w1)
        if short is not None:
            return short
        if _value_at(self.armed, a) is not True:
            return self.fail(
                exp, f"{expected}; it was not armed at {exp.after}, {self.state_at(a)}", a
            )
        t_d = _first_after(self.armed, a, lambda v: not v)
        if t_d is not None and t_d <= w1 + EPS:
            return self.fail(
                exp,
                f"{expected}; it disarmed at {_t(t_d)}, {self.state_at(t_d)}",
                t_d,
                self.excerpt(t_d, t_d - 5.0),
            )
        gap = self.unrecorded(exp, expected, a, w1)
        if gap is not None:
            return gap
        return Verdict(exp, True, f"armed from {_t(a)} to {_t(w1)}", None)


# --- step signals: sorted (t, value) changes ----------------------------------------------


Signal = list[tuple[float, Any]]


def _signal(
    state_t: np.ndarray, state_values: Sequence[Any], events: Sequence[tuple[float, Any]]
) -> Signal:
    """Changes of a value over time: from the state samples until the first event, then
    from the events (events give exact transition times)."""
    out: Signal = []
    first_event = events[0][0] if events else float("inf")
    for t, v in zip(state_t, state_values, strict=True):
        if t >= first_event:
            break
        v = v.item() if isinstance(v, np.generic) else v
        if not out or out[-1][1] != v:
            out.append((float(t), v))
    for t, v in events:
        if not out or out[-1][1] != v:
            out.append((float(t), v))
    return out


def _value_at(signal: Signal, t: float) -> Any:
    """The value at time t (the last change at or before t), None before the first."""
    value = None
    for ct, v in signal:
        if ct > t + EPS:
            break
        value = v
    return value


def _first_after(signal: Signal, t: float, pred: Callable[[Any], bool]) -> float | None:
    """Time of the first change after t whose value satisfies pred."""
    for ct, v in signal:
        if ct > t + EPS and pred(v):
            return ct
    return None


def _values_after(signal: Signal, t: float) -> list[Any]:
    """Values changed to after t, in order."""
    return [v for ct, v in signal if ct > t + EPS]


def _values_between(signal: Signal, t0: float, t1: float) -> list[Any]:
    """The value at t0 and those changed to in (t0, t1], without repeats."""
    values = [_value_at(signal, t0)] + [v for ct, v in signal if t0 + EPS < ct <= t1 + EPS]
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out

"""Safety properties checked over a run's recorded `Timeline`.

Pure functions of the timeline (and a few limits), so they can be tested on hand-made
timelines. Each returns a list of `Violation`s (empty: the property held), with the
scenario time and a message a technician can read.

- `check_rc_failsafe`: the radio failsafe engages within RC_FS_TIMEOUT + tolerance of
  the first continuous RC loss at least RC_FS_TIMEOUT long, and never before the RC has
  been lost for RC_FS_TIMEOUT - tolerance.
- `check_bounds`: the vehicle stays within a horizontal radius of home and below an
  altitude ceiling.
- `check_no_disarm_in_air`: it never disarms higher than ~1 m above home.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from hil.scenario.model import Scenario
from hil.scenario.timeline import Event, Timeline

__all__ = [
    "Violation",
    "check_all",
    "check_bounds",
    "check_no_disarm_in_air",
    "check_rc_failsafe",
    "failsafe_engagements",
    "rc_loss_ids",
    "rc_loss_intervals",
]

EPS = 1e-6
_RC_ID = re.compile(r"rc", re.IGNORECASE)
_FAILSAFE_TEXT = "radio failsafe"


@dataclass(frozen=True)
class Violation:
    """One breach of a property: which (`prop`), when (`t`, scenario s) and what."""

    prop: str
    t: float
    message: str

    def __str__(self) -> str:
        return f"[{self.prop}] t={self.t:.2f} s: {self.message}"


def rc_loss_ids(scenario: Scenario) -> set[str]:
    """The ids of the scenario's `rc_loss` injections."""
    return {inj.id for inj in scenario.injections if inj.kind == "rc_loss"}


def _is_rc(text: str, ids: Collection[str] | None) -> bool:
    if ids is not None:
        return text in ids
    return _RC_ID.match(text) is not None  # default: ids starting with "rc" (rc, rc1, rc_loss)


def rc_loss_intervals(
    timeline: Timeline, rc_ids: Collection[str] | None = None
) -> list[tuple[float, float, bool]]:
    """Continuous RC losses `(start, stop, stopped)`: the union of the RC-loss injection
    windows from the `injection_start` / `injection_stop` events. A window still open at
    the end of the recording ends there (`stopped` False)."""
    end = timeline.end if timeline.end is not None else 0.0
    open_at: dict[str, float] = {}
    raw: list[tuple[float, float, bool]] = []
    for e in timeline.events:
        if e.kind not in ("injection_start", "injection_stop") or not _is_rc(e.text, rc_ids):
            continue
        if e.kind == "injection_start":
            open_at.setdefault(e.text, e.t)
        elif e.text in open_at:
            raw.append((open_at.pop(e.text), e.t, True))
    raw.extend((t0, max(end, t0), False) for t0 in open_at.values())
    raw.sort()
    merged: list[tuple[float, float, bool]] = []
    for a, b, stopped in raw:
        if merged and a <= merged[-1][1] + EPS:
            pa, pb, ps = merged[-1]
            merged[-1] = (pa, max(pb, b), stopped if b >= pb else ps)
        else:
            merged.append((a, b, stopped))
    return merged


def _is_failsafe_text(e: Event) -> bool:
    text = e.text.strip().lower()
    return e.kind == "statustext" and text.startswith(_FAILSAFE_TEXT) and "clear" not in text


def failsafe_engagements(
    timeline: Timeline,
    rc_ids: Collection[str] | None = None,
    failsafe_modes: Iterable[str] = ("RTL", "LAND"),
) -> list[float]:
    """Times the radio failsafe engaged: its "Radio Failsafe" STATUSTEXTs. A board that
    never announces it (none in the whole timeline) is judged by its mode changes into
    `failsafe_modes` while the RC is lost instead (nothing else can command them then)."""
    events = timeline.events
    texts = [e.t for e in events if _is_failsafe_text(e)]
    if texts:
        return texts
    modes = {m.upper() for m in failsafe_modes}
    losses = rc_loss_intervals(timeline, rc_ids)
    return [
        e.t
        for e in events
        if e.kind == "mode"
        and e.text.upper() in modes
        and any(a - EPS <= e.t <= b + EPS for a, b, _ in losses)
    ]


def check_rc_failsafe(
    timeline: Timeline,
    *,
    timeout: float = 1.0,
    tolerance: float = 0.5,
    latency: float = 0.1,
    rc_ids: Collection[str] | None = None,
    failsafe_modes: Iterable[str] = ("RTL", "LAND"),
) -> list[Violation]:
    """The radio failsafe engages within `timeout` (RC_FS_TIMEOUT) + `tolerance` of the
    start of the first continuous RC loss at least `timeout` long, and never engages
    when the RC is present or has been lost for less than `timeout - tolerance`.

    `latency` allows for the RC frame period and the link: the board sees the loss
    start and end up to that much later than the injection events, so a loss shorter
    than `timeout + latency` is not required to trip the failsafe (it races the RC's
    return), and an engagement up to `latency` after the RC came back still counts as
    during the loss. A loss whose deadline lies past the end of the recording is not
    judged.
    """
    prop = "rc_failsafe"
    losses = rc_loss_intervals(timeline, rc_ids)
    engaged = failsafe_engagements(timeline, rc_ids, failsafe_modes)
    end = timeline.end if timeline.end is not None else 0.0
    out: list[Violation] = []

    for a, b, stopped in losses:
        if b - a < timeout + latency - EPS:
            continue
        deadline = a + timeout + tolerance
        if any(a - EPS <= t <= deadline + EPS for t in engaged):
            break
        if end < deadline - EPS and not any(t > deadline for t in engaged):
            break  # the recording ends before the deadline: cannot judge
        length = f"{b - a:.2f} s" if stopped else f"{b - a:.2f} s (to the end of the recording)"
        later = [t for t in engaged if deadline < t <= b + latency + EPS]
        if later:
            what = f"it engaged only at t={later[0]:.2f} s, {later[0] - a:.2f} s after the loss"
        else:
            what = "it never engaged during the loss"
        out.append(
            Violation(
                prop,
                deadline,
                f"RC lost at t={a:.2f} s for {length}: expected a radio failsafe within"
                f" {timeout + tolerance:.2f} s (RC_FS_TIMEOUT {timeout:g} s + {tolerance:g} s),"
                f" by t={deadline:.2f} s; {what}",
            )
        )
        break

    for t in engaged:
        inside = [(a, b) for a, b, _ in losses if a - EPS <= t <= b + latency + EPS]
        if not inside:
            out.append(
                Violation(prop, t, f"radio failsafe at t={t:.2f} s while the RC was present")
            )
            continue
        a = inside[0][0]
        if t - a < timeout - tolerance - EPS:
            out.append(
                Violation(
                    prop,
                    t,
                    f"radio failsafe at t={t:.2f} s after the RC had been lost only"
                    f" {t - a:.2f} s (since t={a:.2f} s); RC_FS_TIMEOUT is {timeout:g} s"
                    f" (tolerance {tolerance:g} s)",
                )
            )
    return sorted(out, key=lambda v: v.t)


def _excursions(t: np.ndarray, over: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [i, j) where `over` holds."""
    if len(over) == 0:
        return []
    edges = np.diff(np.concatenate(([0], over.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def check_bounds(
    timeline: Timeline, *, radius: float = 50.0, ceiling: float = 30.0
) -> list[Violation]:
    """The vehicle stays within `radius` m of home horizontally and at most `ceiling` m
    above home. One violation per excursion, at the time it began."""
    st = timeline.states()
    t = st["t"]
    out: list[Violation] = []
    for i, j in _excursions(t, st["dist"] > radius + EPS):
        k = i + int(np.argmax(st["dist"][i:j]))
        until = f"until t={t[j]:.2f} s" if j < len(t) else "to the end of the recording"
        out.append(
            Violation(
                "bounds",
                float(t[i]),
                f"{st['dist'][i]:.1f} m from home, outside the {radius:g} m bound, {until}"
                f" (farthest {st['dist'][k]:.1f} m at t={t[k]:.2f} s, in {st['mode'][k]})",
            )
        )
    for i, j in _excursions(t, st["alt"] > ceiling + EPS):
        k = i + int(np.argmax(st["alt"][i:j]))
        until = f"until t={t[j]:.2f} s" if j < len(t) else "to the end of the recording"
        out.append(
            Violation(
                "ceiling",
                float(t[i]),
                f"{st['alt'][i]:.1f} m above home, over the {ceiling:g} m ceiling, {until}"
                f" (highest {st['alt'][k]:.1f} m at t={t[k]:.2f} s, in {st['mode'][k]})",
            )
        )
    return sorted(out, key=lambda v: v.t)


def _altitude_at(st: dict[str, np.ndarray], t: float) -> float | None:
    ts = st["t"]
    if len(ts) == 0:
        return None
    i = int(np.searchsorted(ts, t, side="right")) - 1  # the last sample at or before t
    if i < 0:
        i = 0
    return float(st["alt"][i])


def check_no_disarm_in_air(timeline: Timeline, *, airborne_alt: float = 1.0) -> list[Violation]:
    """The vehicle never disarms while higher than `airborne_alt` m above home (judged on
    the last state sample at or before the disarm event)."""
    st = timeline.states()
    out: list[Violation] = []
    for e in timeline.events:
        if e.kind != "disarmed":
            continue
        alt = _altitude_at(st, e.t)
        if alt is not None and alt > airborne_alt + EPS:
            texts = [x.text for x in timeline.events_between(e.t - 0.2, e.t + 0.2, "statustext")]
            why = f" ({'; '.join(texts)})" if texts else ""
            out.append(
                Violation(
                    "disarm_in_air",
                    e.t,
                    f"disarmed at {alt:.1f} m above home (more than {airborne_alt:g} m up){why}",
                )
            )
    return out


def check_all(
    timeline: Timeline,
    *,
    scenario: Scenario | None = None,
    rc_timeout: float | None = None,
    tolerance: float = 0.5,
    latency: float = 0.1,
    rc_ids: Collection[str] | None = None,
    rc_failsafe: bool | None = None,
    radius: float = 50.0,
    ceiling: float = 30.0,
    airborne_alt: float = 1.0,
) -> list[Violation]:
    """All three properties, sorted by time.

    With `scenario`, the RC-loss ids, RC_FS_TIMEOUT and FS_THR_ENABLE come from it
    (unless given); the failsafe property is skipped when FS_THR_ENABLE is 0 or
    `rc_failsafe` is False. RC_FS_TIMEOUT defaults to the board default, 1 s.
    """
    params = scenario.setup.params if scenario is not None else {}
    if rc_ids is None and scenario is not None:
        rc_ids = rc_loss_ids(scenario)
    if rc_timeout is None:
        rc_timeout = float(params.get("RC_FS_TIMEOUT", 1.0))
    if rc_failsafe is None:
        rc_failsafe = int(params.get("FS_THR_ENABLE", 1)) != 0
    out: list[Violation] = []
    if rc_failsafe:
        out += check_rc_failsafe(
            timeline, timeout=rc_timeout, tolerance=tolerance, latency=latency,
            rc_ids=rc_ids,
        )
    out += check_bounds(timeline, radius=radius, ceiling=ceiling)
    out += check_no_disarm_in_air(timeline, airborne_alt=airborne_alt)
    return sorted(out, key=lambda v: v.t)

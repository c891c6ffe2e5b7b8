"""The report's figures, drawn with matplotlib's Agg renderer into PNG bytes.

`flight_plot` shows one scenario run against its timeline (t = 0 is the start of the
scenario, setup is at negative t): altitude, roll and pitch, distance from home and
drift from where the timeline started, and a strip of the mode and armed state, with
the injection windows shaded across all of them and each failed expectation marked.
`loop_histogram` shows the loop periods a run recorded, one panel per loop.

No pyplot: figures are plain `matplotlib.figure.Figure` objects, so nothing global is
touched and no display is needed.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

#: Colours of the modes in the strip; other modes get one from the cycle below.
MODE_COLOURS = {
    "STABILIZE": "#9e9e9e",
    "ALT_HOLD": "#90a4ae",
    "GUIDED": "#66bb6a",
    "LOITER": "#42a5f5",
    "POSHOLD": "#26c6da",
    "AUTO": "#ab47bc",
    "RTL": "#ffa726",
    "SMART_RTL": "#ffb74d",
    "LAND": "#ef5350",
    "BRAKE": "#8d6e63",
    "ANGLE": "#26a69a",
    "HORIZON": "#7e57c2",
    "ACRO": "#bdbdbd",
    "FAILSAFE": "#e53935",
}
_OTHER_COLOURS = ("#5c6bc0", "#d4e157", "#ec407a", "#78909c", "#ffca28", "#29b6f6")
INJECTION_COLOURS = ("#ff7043", "#ab47bc", "#26a69a", "#ffee58", "#8d6e63", "#42a5f5")
#: The most injection windows shaded one by one; more are merged into this many spans
#: (each artist costs milliseconds: 10,000 windows took minutes to draw).
MAX_SHADED_WINDOWS = 40
#: The most windows labelled with their id; more would only overlap.
MAX_LABELLED_WINDOWS = 12


def _mode_colour(mode: str) -> str:
    if mode in MODE_COLOURS:
        return MODE_COLOURS[mode]
    return _OTHER_COLOURS[sum(mode.encode()) % len(_OTHER_COLOURS)]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # Light compression: the figures are flat colours, and this is several times faster.
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 2})
    return buf.getvalue()


def _segments(
    events: list[tuple[float, Any]], first: Any, t0: float, t1: float
) -> list[tuple[float, float, Any]]:
    """Constant stretches of a signal: `first` from t0, then each event's value until the next."""
    out: list[tuple[float, float, Any]] = []
    start, value = t0, first
    for t, new in events:
        if t <= start:
            value = new
            continue
        if new == value:
            continue
        if value is not None:
            out.append((start, min(t, t1), value))
        start, value = t, new
    if value is not None and t1 > start:
        out.append((start, t1, value))
    return out


def injection_windows(result: Any) -> list[tuple[float, float | None, str, str]]:
    """(start, stop or None, id, kind) of every injection the run applied, from its timeline."""
    timeline = result.timeline
    if timeline is None:
        return []
    kinds = {inj.id: inj.kind for inj in getattr(result.scenario, "injections", ())}
    open_at: dict[str, float] = {}
    out: list[tuple[float, float | None, str, str]] = []
    for e in timeline.events:
        if e.kind == "injection_start":
            open_at[e.text] = e.t
        elif e.kind == "injection_stop" and e.text in open_at:
            out.append((open_at.pop(e.text), e.t, e.text, kinds.get(e.text, "")))
    for ident, start in open_at.items():
        out.append((start, None, ident, kinds.get(ident, "")))
    return sorted(out, key=lambda w: w[0])


def shaded_windows(
    windows: list[tuple[float, float | None, str, str]], t_end: float, limit: int = MAX_SHADED_WINDOWS
) -> tuple[list[tuple[float, float, str, str]], str]:
    """At most `limit` (start, stop, id, kind) spans to shade, and a note when windows were
    merged. Open windows end at `t_end`. Beyond the limit, consecutive windows (in start
    order) are merged into `limit` spans, each from its first start to its last stop."""
    closed = [(a, t_end if b is None else b, ident, kind) for a, b, ident, kind in windows]
    if len(closed) <= limit:
        return closed, ""
    groups = np.array_split(np.arange(len(closed)), limit)
    merged = []
    for group in groups:
        part = [closed[i] for i in group]
        kinds = sorted({w[3] for w in part if w[3]})
        merged.append(
            (
                min(w[0] for w in part),
                max(w[1] for w in part),
                f"{len(part)} windows",
                kinds[0] if len(kinds) == 1 else "mixed",
            )
        )
    note = (
        f"{len(closed)} injection windows: shaded as {limit} merged spans "
        f"(each from the first start to the last stop of about {len(closed) // limit} windows)"
    )
    return merged, note


def _bars_by_colour(ax: Any, segments: list[tuple[float, float, Any]], colour_of: Any, y: tuple[float, float]) -> None:
    """One broken_barh per colour, not one per segment: a flapping mode makes thousands."""
    by_colour: dict[str, list[tuple[float, float]]] = {}
    for a, b, value in segments:
        by_colour.setdefault(colour_of(value), []).append((a, b - a))
    edge = {"edgecolor": "white"} if len(segments) <= 200 else {"linewidth": 0}  # else all edge
    for colour, ranges in by_colour.items():
        ax.broken_barh(ranges, y, facecolors=colour, **edge)


def flight_plot(result: Any, *, dpi: int = 100) -> bytes | None:
    """PNG of the run against time, or None when nothing was recorded."""
    from matplotlib.figure import Figure

    timeline = result.timeline
    if timeline is None or timeline.start is None:
        return None
    st = timeline.states()
    events = timeline.events
    t = st["t"]
    t_lo, t_hi = float(timeline.start), float(timeline.end)
    if t_hi <= t_lo:
        t_hi = t_lo + 1.0

    # Fixed margins: an automatic layout engine costs as much as the drawing.
    fig = Figure(figsize=(11.0, 8.8), dpi=dpi)
    ax_alt, ax_att, ax_pos, ax_mode = fig.subplots(
        4, 1, sharex=True, gridspec_kw={"height_ratios": [3.0, 2.2, 2.2, 1.8]}
    )
    fig.subplots_adjust(left=0.075, right=0.985, top=0.95, bottom=0.06, hspace=0.08)
    verdict = "PASS" if result.passed else "FAIL"
    fig.suptitle(
        f"{result.scenario.name} on {result.board}: {verdict}",
        color="#1b5e20" if result.passed else "#b71c1c",
        fontsize=13,
        fontweight="bold",
    )

    ax_alt.plot(t, st["alt"], color="#1565c0", lw=1.4, label="altitude above home")
    ax_alt.set_ylabel("altitude (m)")
    ax_att.plot(t, np.degrees(st["roll"]), color="#c62828", lw=1.0, label="roll")
    ax_att.plot(t, np.degrees(st["pitch"]), color="#2e7d32", lw=1.0, label="pitch")
    ax_att.set_ylabel("attitude (deg)")
    ax_pos.plot(t, st["dist"], color="#6a1b9a", lw=1.4, label="distance from home")
    if len(t):
        i0 = int(np.clip(np.searchsorted(t, 0.0), 0, len(t) - 1))
        drift = np.hypot(st["north"] - st["north"][i0], st["east"] - st["east"][i0])
        ax_pos.plot(t, drift, color="#ef6c00", lw=1.0, ls="--", label="drift from the t=0 position")
    ax_pos.set_ylabel("position (m)")

    # The mode and armed strip.
    first_mode = str(st["mode"][0]) if len(t) else None
    modes = _segments([(e.t, e.text) for e in events if e.kind == "mode"], first_mode, t_lo, t_hi)
    first_armed = bool(st["armed"][0]) if len(t) else None
    armed = _segments(
        [(e.t, e.kind == "armed") for e in events if e.kind in ("armed", "disarmed")],
        first_armed,
        t_lo,
        t_hi,
    )
    span = t_hi - t_lo
    _bars_by_colour(ax_mode, modes, _mode_colour, (1.1, 0.8))
    for a, b, mode in modes:
        if (b - a) / span > 0.045:
            ax_mode.text((a + b) / 2, 1.5, mode, ha="center", va="center", fontsize=8)
    _bars_by_colour(ax_mode, armed, lambda on: "#43a047" if on else "#cfd8dc", (0.1, 0.8))
    for a, b, on in armed:
        if (b - a) / span > 0.06:
            ax_mode.text((a + b) / 2, 0.5, "armed" if on else "disarmed", ha="center", va="center", fontsize=8)
    ax_mode.set_ylim(0, 3)
    ax_mode.set_yticks([0.5, 1.5, 2.5], ["armed", "mode", "injected"])
    ax_mode.set_xlabel("t (s) from the start of the scenario (setup before 0)")

    # Injection windows, the timeline start, failed expectations.
    windows, merged_note = shaded_windows(injection_windows(result), t_hi)
    if merged_note:
        fig.subplots_adjust(top=0.935)
        fig.text(0.5, 0.955, merged_note, ha="center", va="top", fontsize=8, color="#4e342e")
    for k, (a, stop, ident, kind) in enumerate(windows):
        colour = INJECTION_COLOURS[k % len(INJECTION_COLOURS)]
        width = max(stop, a + span * 0.002) - a
        for ax in (ax_alt, ax_att, ax_pos):
            ax.axvspan(a, a + width, color=colour, alpha=0.18, lw=0)
        ax_mode.broken_barh([(a, width)], (2.1, 0.8), facecolors=colour, alpha=0.6, edgecolor="white")
        if width / span > 0.06:
            ax_mode.text(a + width / 2, 2.5, ident, ha="center", va="center", fontsize=8)
        if len(windows) > MAX_LABELLED_WINDOWS:
            continue
        label = f"{ident} ({kind})" if kind and kind != ident else ident
        ax_alt.annotate(
            label,
            (a, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -4 - 12 * (k % 3)),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="#4e342e",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "lw": 0},
        )
    for ax in (ax_alt, ax_att, ax_pos, ax_mode):
        if t_lo < 0 < t_hi:
            ax.axvline(0.0, color="#616161", lw=0.8, ls=":")
        for v in result.verdicts:
            if not v.passed and v.t is not None and math.isfinite(v.t):
                ax.axvline(v.t, color="#b71c1c", lw=1.2, ls="--")
    for ax in (ax_alt, ax_att, ax_pos):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax_mode.set_xlim(t_lo, t_hi)
    return _png(fig)


def loop_histogram(result: Any, *, dpi: int = 100) -> bytes | None:
    """PNG of the recorded loop periods, one panel per loop; None when none were recorded."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    series = {k: np.asarray(v, dtype=float) for k, v in (result.loop_periods_us or {}).items()}
    series = {k: v for k, v in series.items() if v.size}
    if not series:
        return None
    height = 2.9 * len(series) + 0.4
    fig = Figure(figsize=(11.0, height), dpi=dpi)
    axes = fig.subplots(len(series), 1, squeeze=False)[:, 0]
    fig.subplots_adjust(
        left=0.075, right=0.985, top=1.0 - 0.55 / height, bottom=0.45 / height, hspace=0.45
    )
    fig.suptitle(f"{result.scenario.name}: loop periods", fontsize=12)
    for ax, (name, periods) in zip(axes, series.items(), strict=True):
        p50, p99 = np.percentile(periods, [50, 99])
        # The bulk at full resolution; a few far outliers are counted in the title instead.
        cut = max(float(np.percentile(periods, 99.9)) * 1.2, float(p50) * 1.5)
        shown = periods[periods <= cut]
        lo, hi = float(shown.min()), float(shown.max())
        if hi - lo < 1e-6 * max(1.0, abs(hi)):
            pad = max(0.5, 0.002 * abs(hi))
            lo, hi = lo - pad, hi + pad
        counts, edges = np.histogram(shown, bins=80, range=(lo, hi))
        ax.stairs(counts, edges, fill=True, color="#5c6bc0")  # one artist, not 80 bars
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))  # no mathtext
        ax.set_ylim(0.7, max(2.0, float(counts.max()) * 1.6))
        ax.axvline(p50, color="#2e7d32", lw=1.2, label=f"p50 {p50:.1f} us")
        ax.axvline(p99, color="#ef6c00", lw=1.2, label=f"p99 {p99:.1f} us")
        beyond = periods.size - shown.size
        note = f", {beyond} longer (up to {periods.max():.0f} us) not shown" if beyond else ""
        ax.set_title(
            f"{name}: {periods.size} periods, max {periods.max():.1f} us{note}", fontsize=10
        )
        ax.set_xlabel("period (us)")
        ax.set_ylabel("count")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    return _png(fig)

"""How each scenario injection acts on the plant of the loop that runs.

A kind registers a start and a stop action where it is defined; the scenario layer
validates parameters, this module makes them happen at an exact simulation time. The
loop (a ClosedLoop over any simulator link, a BenchLink: any InjectionSchedule) times them;
what they change is the loop's plant (`hil.sim.plant.Plant`, ``loop.plant``): its
sensors, weather, battery, GNSS sky, radio links and threat state. Only the pilot's arm
switch is the loop's own.

Kinds that act on the same thing (rc_loss and rc_jamming both set the RC link) name one
target, and injections on a target stack: the latest started is in effect, and when it
stops the one under it takes effect again. A stop of one that is not on top changes
nothing, so one injection's end never clears another's threat.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hil.errors import HilError
from hil.threats.gnss import Spoof

if TYPE_CHECKING:
    from hil.sim.plant import Plant

#: What an injection does, given the loop that times it (a ClosedLoop,
#: a BenchLink: any InjectionSchedule) and its parameters; it acts on ``loop.plant``.
Action = Callable[["InjectionSchedule", Mapping[str, Any]], None]


@dataclass(frozen=True)
class Applier:
    start: Action
    stop: Action
    target: str


APPLIERS: dict[str, Applier] = {}


@dataclass
class _Scheduled:
    t_us: int
    start: bool
    kind: str
    ident: str
    params: Mapping[str, Any] = field(default_factory=dict)


class InjectionSchedule:
    """Injections at exact simulation times, for any loop that keeps ``t_us``.

    The loop calls ``_init_schedule()`` in its constructor and ``_apply_due()`` after
    each step when ``_schedule`` is not empty; ``supported_injections`` (None: all)
    names the kinds that can act on it. The kinds defined here act on ``plant``; a
    loop's plant has the parts the kinds it supports act on.
    """

    t_us: int
    supported_injections: frozenset[str] | None = None
    #: What the kinds below act on (built by the loop before it is scheduled).
    plant: Plant
    arm_switch: Callable[[bool], None]  # the pilot's arm switch (a loop that sends RC)

    @property
    def injection_target(self) -> str:
        """What injections act on, in words, for messages."""
        return type(self).__name__

    def _init_schedule(self) -> None:
        self.events: list[tuple[float, str, str]] = []
        self.event_hooks: list[Callable[[float, str, str], None]] = []
        self._schedule: list[_Scheduled] = []
        self._sched_lock = threading.Lock()
        #: Started and not stopped, per target, oldest first: the last is in effect.
        self._active: dict[str, list[_Scheduled]] = {}

    @property
    def time(self) -> float:
        """Simulation time in seconds."""
        return self.t_us / 1_000_000

    def schedule(
        self,
        kind: str,
        start: float,
        stop: float | None,
        params: Mapping[str, Any] | None = None,
        ident: str | None = None,
    ) -> None:
        """Start injection `kind` at simulation time `start` s, stop it at `stop` (None: never)."""
        known = sorted(k for k in APPLIERS if self.supported_injections is None or k in self.supported_injections)
        if kind not in known:
            raise HilError(
                f"injection kind {kind!r} cannot act on {self.injection_target}; it supports: {', '.join(known)}"
            )
        ident = ident or kind
        items = [_Scheduled(int(round(start * 1e6)), True, kind, ident, dict(params or {}))]
        if stop is not None:
            items.append(_Scheduled(int(round(stop * 1e6)), False, kind, ident, dict(params or {})))
        with self._sched_lock:
            for item in items:  # an insertion, not a sort per call: 10,000 injections took 25 s
                bisect.insort_right(self._schedule, item, key=_order)

    def clear_injections(self) -> None:
        """Forget every scheduled injection and undo those in effect, newest first (a
        loop that outlives one run: the next run starts with no threat set)."""
        with self._sched_lock:
            self._schedule.clear()
            active = [item for stack in self._active.values() for item in stack]
            self._active.clear()
        for item in reversed(active):
            APPLIERS[item.kind].stop(self, item.params)  # type: ignore[arg-type]
            self._event("injection_stop", item.ident)

    def _apply_due(self) -> None:
        with self._sched_lock:
            while self._schedule and self._schedule[0].t_us <= self.t_us:
                item = self._schedule.pop(0)
                self._apply(item)
                self._event("injection_start" if item.start else "injection_stop", item.ident)

    def _apply(self, item: _Scheduled) -> None:
        applier = APPLIERS[item.kind]
        stack = self._active.setdefault(applier.target, [])
        if item.start:
            stack.append(item)
            applier.start(self, item.params)  # type: ignore[arg-type]
            return
        on_top = bool(stack) and stack[-1].ident == item.ident and stack[-1].kind == item.kind
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].ident == item.ident and stack[i].kind == item.kind:
                del stack[i]
                break
        if not on_top:
            return  # another injection on the same target is in effect: it stays
        applier.stop(self, item.params)  # type: ignore[arg-type]
        for kind, other in APPLIERS.items():  # undo whatever an injection under it left set
            if other.target == applier.target and kind != item.kind:
                other.stop(self, {})  # type: ignore[arg-type]
        if stack:  # the one underneath takes effect again
            under = stack[-1]
            APPLIERS[under.kind].start(self, under.params)  # type: ignore[arg-type]

    def _event(self, kind: str, text: str) -> None:
        entry = (self.time, kind, text)
        self.events.append(entry)
        for hook in self.event_hooks:
            hook(*entry)


def _order(item: _Scheduled) -> tuple[int, bool]:
    """Schedule order: by time; at one time, starts before stops; else as scheduled."""
    return (item.t_us, not item.start)


def register_applier(kind: str, start: Action, stop: Action, target: str | None = None) -> None:
    """Make injection `kind` act on the loop's plant: `start(loop, params)`, `stop(loop,
    params)`, each changing ``loop.plant`` (or calling the loop's own pilot controls).

    `target` names what it sets (default: the kind); kinds sharing a target stack.
    """
    APPLIERS[kind] = Applier(start, stop, target or kind)


def _set(attr: str, value: Any) -> Action:
    """An action that sets `loop.plant.<attr>` to `value`."""

    def action(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
        setattr(loop.plant, attr, value)

    return action


def _gps_jamming_start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.jamming = (loop.time, float(params.get("ramp", 0.0)), float(params["js_db"]))


def _gps_jamming_stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.jamming = None


def _gps_spoofing_start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.gnss.spoof = Spoof(
        start_s=loop.time,
        rate_mps=float(params.get("rate", 0.0)),
        bearing_deg=float(params.get("bearing", 0.0)),
        clock_offset_s=float(params.get("clock_offset", 0.0)),
    )


def _gps_spoofing_stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.gnss.spoof = None


def _battery_sag_start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.battery.sag_v = float(params.get("volts", 0.0))


def _battery_sag_stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.battery.sag_v = 0.0


def _wind_start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    plant = loop.plant
    wind = plant.wind
    if "wind" not in plant.replaced:  # a wind over a wind keeps the first weather
        plant.replaced["wind"] = (wind.speed, wind.direction_deg, wind.gust_std)
    wind.speed = float(params.get("speed", 0.0))
    wind.direction_deg = float(params.get("direction", 0.0))
    wind.gust_std = float(params.get("gust", 0.0))


def _wind_stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    plant = loop.plant
    saved = plant.replaced.pop("wind", None)  # the next wind saves the weather it replaces again
    if saved is not None:
        plant.wind.speed, plant.wind.direction_deg, plant.wind.gust_std = saved


def _rc_loss(gone: bool) -> Action:
    def action(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
        plant = loop.plant
        plant.rc_enabled = not gone
        plant.rc_link.configure(total=gone)

    return action


def _rc_jamming_start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    link = loop.plant.rc_link
    loss = float(params.get("loss", 0.0))
    if loss >= 1.0:
        link.configure(total=True)
    else:
        burst = float(params.get("burst_ms", 100.0))
        try:
            link.configure(loss=loss, burst_ms=burst, total=False)
        except ValueError as exc:
            raise HilError(f"rc_jamming with loss = {loss} and burst_ms = {burst}: {exc}") from None


def _rc_jamming_stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.rc_link.configure(loss=0.0, total=False)


register_applier("rc_loss", _rc_loss(True), _rc_loss(False), target="rc_link")
register_applier("rc_jamming", _rc_jamming_start, _rc_jamming_stop, target="rc_link")
register_applier("gcs_loss", _set("gcs_enabled", False), _set("gcs_enabled", True))
register_applier("gps_loss", _set("gps_blocked", True), _set("gps_blocked", False))
register_applier("gps_jamming", _gps_jamming_start, _gps_jamming_stop)
register_applier("gps_spoofing", _gps_spoofing_start, _gps_spoofing_stop)
register_applier("battery_sag", _battery_sag_start, _battery_sag_stop)
register_applier("wind", _wind_start, _wind_stop)


def _attr(target: str, attr: str, param: str | None, off: Any) -> tuple[Action, Action]:
    """Start and stop of an injection that sets `loop.plant.<target>.<attr>` from a
    parameter and puts `off` back."""

    def start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
        setattr(getattr(loop.plant, target), attr, params[param] if param else True)

    def stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
        setattr(getattr(loop.plant, target), attr, off)

    return start, stop


def _compass_start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    import math

    gauss = float(params.get("gauss", 0.0))
    bearing = math.radians(float(params.get("direction", 90.0)))
    loop.plant.mag.interference = (gauss * math.cos(bearing), gauss * math.sin(bearing), 0.0)


def _compass_stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.mag.interference = (0.0, 0.0, 0.0)


_TELEMETRY_PARAMS = ("loss", "burst_ms", "delay_ms", "jitter_ms")


def _telemetry_start(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    values = {name: params.get(name, 0.0) for name in _TELEMETRY_PARAMS}
    try:
        loop.plant.telemetry_link.configure(**values)
    except ValueError as exc:
        raise HilError(f"telemetry_jamming: {exc}") from None


def _telemetry_stop(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
    loop.plant.telemetry_link.configure(**dict.fromkeys(_TELEMETRY_PARAMS, 0.0))


for _kind, _applier in {
    "imu_noise": _attr("imu", "noise_scale", "scale", 1.0),
    "imu_stuck": _attr("imu", "stuck_axis", "axis", None),
    "imu_clip": _attr("imu", "clip", "limit", 16 * 9.80665),
    "baro_drift": _attr("baro", "drift_m_per_s", "rate", 0.0),
}.items():
    register_applier(_kind, *_applier)
register_applier("compass_interference", _compass_start, _compass_stop)
register_applier("telemetry_jamming", _telemetry_start, _telemetry_stop)


def _arm_switch(on: bool) -> Action:
    def action(loop: InjectionSchedule, params: Mapping[str, Any]) -> None:
        loop.arm_switch(on)

    return action


register_applier("arm_switch", _arm_switch(True), _arm_switch(False))

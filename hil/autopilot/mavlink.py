"""The harness's view of a MAVLink flight controller (ArduPilot or PX4, by firmware profile).

Every message the board sends is kept in a bounded history with a sequence number, so a
wait that starts at a mark sees every message after it: nothing is dropped while a test
waits. Waits are measured in vehicle time (the board's own `time_boot_ms`), with a
wall-clock safety bound, and fail with what was awaited, what came instead, and when.

What differs between MAVLink firmwares (mode names and numbers, the force-arm value)
comes from the board's firmware profile (hil.profiles); ArduCopter's is the default.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from hil.autopilot.controller import ControllerIdentity, ControllerState
from hil.errors import (
    BoardNotAnswering,
    CommandRefused,
    HilError,
    LinkError,
    ParamError,
    WaitTimeout,
)
from hil.mavlink.connection import MavConnection
from hil.mavlink.dialect import mavlink
from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, arrival_ns, stamp_vehicle_time, vehicle_time
from hil.profiles import DEFAULT_PROFILE, FirmwareProfile, ProfileLacks, profile

log = logging.getLogger(__name__)

#: No new parameter for this long (wall s): the list request is sent again, or the next
#: few single reads.
PARAM_STALL_S = 2.0
#: Single PARAM_REQUEST_READs in flight at once (ArduPilot queues only a few).
PARAM_READS_AT_ONCE = 10
_ACTUATORS = HIL_ACTUATOR_CONTROLS.light  # the closed loop's answers, 400 per simulated second

Hook = Callable[[object], None]


class Stepper(Protocol):
    """What a wait needs of a gated lockstep loop (hil.sim.loop.ClosedLoop)."""

    def run_until(self, done: Callable[[], bool], wall_timeout: float) -> bool: ...


_RESULT_NAMES = {
    value: name.removeprefix("MAV_RESULT_")
    for name, value in vars(mavlink).items()
    if name.startswith("MAV_RESULT_") and isinstance(value, int) and name != "MAV_RESULT_ENUM_END"
}
_AUTOPILOT_NAMES = {
    mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA: "ArduPilot",
    mavlink.MAV_AUTOPILOT_PX4: "PX4",
    mavlink.MAV_AUTOPILOT_GENERIC: "generic",
}


@dataclass(frozen=True)
class Identity:
    """Who the board says it is."""

    autopilot: str
    vehicle_type: int
    firmware_version: str
    board_id: int | None
    usb_vid: int | None
    usb_pid: int | None
    uid: int | None


@dataclass(frozen=True)
class Event:
    """A mode change, arming change or STATUSTEXT, in vehicle time (s)."""

    t: float
    kind: str
    text: str


@dataclass
class _Record:
    seq: int
    t: float
    msg: object


class MavlinkAutopilot:
    """Connect, identify, command and wait on one MAVLink board."""

    HISTORY = 200_000

    def __init__(
        self,
        conn: MavConnection,
        *,
        target_system: int = 1,
        target_component: int = 1,
        wall_factor: float = 1.0,
        wall_margin: float = 15.0,
        profile: FirmwareProfile | str = DEFAULT_PROFILE,
    ) -> None:
        self.profile = _mavlink_profile(profile)
        self.conn = conn
        self.target_system = target_system
        self.target_component = target_component
        self.wall_factor = wall_factor
        self.wall_margin = wall_margin
        self._cond = threading.Condition()
        self._history: deque[_Record] = deque(maxlen=self.HISTORY)
        self._seq = 0
        self._hooks: list[Hook] = []
        self._failure: BaseException | None = None
        self.vehicle_time = 0.0
        self.mode: str | None = None
        self.armed: bool | None = None
        self.last: dict[str, object] = {}
        self.events: deque[Event] = deque(maxlen=2000)
        self.heartbeat_ns = 0
        self.identity: Identity | None = None
        self._params: dict[str, float] = {}
        self._param_count: int | None = None
        #: Every acknowledged COMMAND_LONG on the host clock, oldest first:
        #: (command, sent monotonic ns, COMMAND_ACK read monotonic ns, result).
        self.command_log: deque[tuple[int, int, int, int]] = deque(maxlen=10_000)
        #: A gated lockstep loop while one runs (hil.sim.loop.ClosedLoop.start): waits
        #: then run the simulation themselves and end at a step boundary.
        self.stepper: Stepper | None = None
        #: How the adapter finds its board again after `reboot` (set by the session that
        #: opened it, which knows where the board comes back): given the old URL and the
        #: seconds left, a started connection to wherever the board is now. None: `reboot`
        #: only sends the firmware's reboot command.
        self.find_again: Callable[[str, float], MavConnection] | None = None
        conn.add_listener(self._on_message)

    # -- receiving ---------------------------------------------------------------------
    def _on_message(self, msg, t_ns: int) -> None:
        if msg.__class__ is _ACTUATORS:  # the hot path: no history, no lock
            if msg.get_srcSystem() != self.target_system:
                return
            t = msg.time_usec * 1e-6
            if t + 1.0 < self.vehicle_time:
                self._set_time(t)
            else:
                self.vehicle_time = t
            for hook in self._hooks:
                hook(msg)
            return
        if msg.get_srcSystem() != self.target_system:
            return
        mtype = msg.get_type()
        if mtype == "HIL_ACTUATOR_CONTROLS":
            self._set_time(msg.time_usec * 1e-6)
            for hook in self._hooks:
                hook(msg)
            return
        stamp = getattr(msg, "time_boot_ms", None)
        if stamp is not None:
            self._set_time(stamp * 1e-3)
        with self._cond:
            if mtype == "HEARTBEAT" and msg.get_srcComponent() == self.target_component:
                self._on_heartbeat(msg, t_ns)
            elif mtype == "STATUSTEXT":
                self.events.append(Event(self.vehicle_time, "statustext", msg.text))
            elif mtype == "PARAM_VALUE":
                self._params[msg.param_id] = float(msg.param_value)
                self._param_count = msg.param_count
            stamp_vehicle_time(msg, self.vehicle_time)
            self.last[mtype] = msg
            self._seq += 1
            self._history.append(_Record(self._seq, self.vehicle_time, msg))
            self._cond.notify_all()
        for hook in self._hooks:
            hook(msg)

    def _set_time(self, t: float) -> None:
        if t + 1.0 < self.vehicle_time:
            # The board rebooted: its clock started again.
            self.events.append(Event(t, "note", f"board clock restarted (was {self.vehicle_time:.2f} s)"))
        self.vehicle_time = t

    def _on_heartbeat(self, msg, t_ns: int) -> None:
        self.heartbeat_ns = t_ns
        mode = self.profile.mode_name(msg.custom_mode)
        armed = bool(msg.base_mode & mavlink.MAV_MODE_FLAG_SAFETY_ARMED)
        if mode != self.mode:
            self.events.append(Event(self.vehicle_time, "mode", mode))
            self.mode = mode
        if armed != self.armed:
            self.events.append(Event(self.vehicle_time, "armed" if armed else "disarmed", ""))
            self.armed = armed

    def fail(self, error: BaseException) -> None:
        """Called by whoever pumps the link when it breaks: every wait raises it at once."""
        with self._cond:
            self._failure = error
            self._cond.notify_all()

    def clear_failure(self) -> None:
        with self._cond:
            self._failure = None

    # -- hooks ---------------------------------------------------------------------------
    def add_hook(self, hook: Hook) -> None:
        """Call `hook(msg)` for every message from the board (in the reading thread)."""
        self._hooks = [*self._hooks, hook]

    def remove_hook(self, hook: Hook) -> None:
        self._hooks = [h for h in self._hooks if h is not hook]

    def clear_hooks(self) -> None:
        self._hooks = []

    # -- waiting -------------------------------------------------------------------------
    def mark(self) -> int:
        """A position in the message history; waits started from it see every later message."""
        with self._cond:
            return self._seq

    def _wall_bound(self, within: float) -> float:
        return within * self.wall_factor + self.wall_margin

    def wait_for(
        self,
        what: str,
        predicate: Callable[[object], bool],
        *,
        within: float,
        since: int | None = None,
        wall_timeout: float | None = None,
        vehicle_time: bool = True,
    ):
        """The first message after `since` for which `predicate` holds, within `within` s.

        `within` is vehicle time when `vehicle_time` (the default), else wall time.
        """
        wall = self._wall_bound(within) if wall_timeout is None else wall_timeout
        if not vehicle_time:
            wall = min(wall, within)
        start_wall = time.monotonic()
        stepper = self.stepper
        if stepper is not None:
            return self._wait_stepped(stepper, what, predicate, within, since, wall, vehicle_time)
        with self._cond:
            cursor = self._seq if since is None else since
            t0 = self.vehicle_time
            while True:
                failure = self._failure
                if failure is not None:
                    if isinstance(failure, BoardNotAnswering | LinkError):
                        raise BoardNotAnswering(f"while waiting for {what}: {failure}")
                    raise HilError(f"while waiting for {what}, the closed loop stopped: {failure}")
                for record in self._records_after(cursor):
                    cursor = record.seq
                    if predicate(record.msg):
                        return record.msg
                if vehicle_time and self.vehicle_time > t0 + within:
                    raise WaitTimeout(self._timeout_text(what, within, t0, start_wall, "vehicle"))
                remaining = wall - (time.monotonic() - start_wall)
                if remaining <= 0:
                    kind = "wall" if vehicle_time else "wall-clock"
                    raise WaitTimeout(self._timeout_text(what, within, t0, start_wall, kind))
                self._cond.wait(min(remaining, 0.5))

    def _wait_stepped(
        self,
        stepper: Stepper,
        what: str,
        predicate: Callable[[object], bool],
        within: float,
        since: int | None,
        wall: float,
        vehicle_time: bool,
    ):
        """`wait_for` with a gated loop: the loop steps while this waits and checks the
        condition after every step, in its own thread, so the wait ends at the same step
        on every run. A wall-clock wait (a command's ACK) ends at a step boundary too."""
        start_wall = time.monotonic()
        with self._cond:
            cursor = self._seq if since is None else since
            t0 = self.vehicle_time
        state: dict[str, Any] = {"cursor": cursor}

        late_at = t0 + within if vehicle_time else math.inf
        history = self._history

        def done() -> bool:
            # Called after every step of the loop, in its thread (the one that appends to
            # the history): most steps bring no new record, and cost only this check.
            if (
                self._failure is None
                and (not history or history[-1].seq <= state["cursor"])
                and self.vehicle_time <= late_at
            ):
                return False
            with self._cond:
                if self._failure is not None:
                    return True
                for record in self._records_after(state["cursor"]):
                    state["cursor"] = record.seq
                    try:
                        hit = predicate(record.msg)
                    except Exception as exc:  # reported in the waiting thread
                        state["error"] = exc
                        return True
                    if hit:
                        state["found"] = record.msg
                        return True
                if self.vehicle_time > late_at:
                    state["late"] = True
                    return True
            return False

        if not done():
            stepper.run_until(done, wall)
        if "error" in state:
            raise state["error"]
        if "found" in state:
            return state["found"]
        failure = self._failure
        if failure is not None:
            if isinstance(failure, BoardNotAnswering | LinkError):
                raise BoardNotAnswering(f"while waiting for {what}: {failure}")
            raise HilError(f"while waiting for {what}, the closed loop stopped: {failure}")
        if state.get("late"):
            raise WaitTimeout(self._timeout_text(what, within, t0, start_wall, "vehicle"))
        kind = "wall" if vehicle_time else "wall-clock"
        raise WaitTimeout(self._timeout_text(what, within, t0, start_wall, kind))

    def _records_after(self, cursor: int) -> Iterable[_Record]:
        history = self._history
        if not history or history[-1].seq <= cursor:
            return ()
        first = history[0].seq
        start = max(0, cursor - first + 1)
        return [history[i] for i in range(start, len(history))]

    def _timeout_text(self, what: str, within: float, t0: float, start_wall: float, bound: str) -> str:
        wall = time.monotonic() - start_wall
        if bound == "vehicle":
            head = f"timed out waiting for {what}: {within:.2f} s of vehicle time passed"
        else:
            head = (
                f"timed out waiting for {what}: the wall-clock bound of {wall:.1f} s ran out "
                f"after only {self.vehicle_time - t0:.2f} s of vehicle time (limit {within:.2f} s)"
            )
        recent = [e for e in self.events if e.t >= t0 - 2.0][-8:]
        seen = "; ".join(f"t={e.t:.2f} {e.kind} {e.text}".rstrip() for e in recent) or "no events"
        return (
            f"{head} (t={t0:.2f} s to t={self.vehicle_time:.2f} s, {wall:.1f} s wall). "
            f"Now: mode {self.mode}, armed {self.armed}. Seen: {seen}"
        )

    def wait_mode(self, mode: str, *, within: float, since: int | None = None) -> float:
        """Wait until the board reports `mode` (a scenario word or one of the firmware's mode
        names); return the vehicle time it was first seen."""
        number, mode = self._mode(mode)
        with self._cond:
            if since is None and self.mode == mode:
                return self.vehicle_time
        msg = self.wait_for(
            f"mode {mode}",
            lambda m: m.get_type() == "HEARTBEAT"
            and m.get_srcComponent() == self.target_component
            and m.custom_mode == number,
            within=within,
            since=since,
        )
        return vehicle_time(msg)

    def wait_statustext(self, contains: str, *, within: float, since: int | None = None) -> str:
        """Wait for a STATUSTEXT containing `contains` (case-insensitive); return its text."""
        needle = contains.lower()
        msg = self.wait_for(
            f"STATUSTEXT containing {contains!r}",
            lambda m: m.get_type() == "STATUSTEXT" and needle in m.text.lower(),
            within=within,
            since=since,
        )
        return msg.text

    def wait_armed(self, armed: bool = True, *, within: float, since: int | None = None) -> float:
        with self._cond:
            if since is None and self.armed is armed:
                return self.vehicle_time
        flag = mavlink.MAV_MODE_FLAG_SAFETY_ARMED
        msg = self.wait_for(
            "armed" if armed else "disarmed",
            lambda m: m.get_type() == "HEARTBEAT"
            and m.get_srcComponent() == self.target_component
            and bool(m.base_mode & flag) is armed,
            within=within,
            since=since,
        )
        return vehicle_time(msg)

    def until_accepted(
        self, what: str, action: Callable[[], object], *, within: float, wall_within: float | None = None
    ) -> None:
        """Do `action` once per vehicle second until the board stops refusing it
        (`CommandRefused`): a board just up refuses GUIDED or arming for a while. Raises
        HilError with the last refusal after `within` s of vehicle time (or `wall_within`
        wall s, when given)."""
        t_end = self.vehicle_time + within
        wall_end = None if wall_within is None else time.monotonic() + wall_within
        while True:
            try:
                action()
                return
            except CommandRefused as exc:
                last = str(exc)
            if self.vehicle_time >= t_end or (wall_end is not None and time.monotonic() >= wall_end):
                raise HilError(f"could not {what} within {within:.0f} s of vehicle time: {last}")
            target = self.vehicle_time + 1.0
            self.wait_for(
                f"1 s before trying again to {what}", lambda _m, target=target: self.vehicle_time >= target, within=2.0
            )

    def wait_ready(self, *, within: float = 60.0) -> float:
        """Wait until the board could enter a position mode (GUIDED, LOITER) and arm:
        the pre-arm checks pass where SYS_STATUS reports them (MAV_SYS_STATUS_PREARM_CHECK
        enabled and healthy; ArduPilot's GCS.cpp sets it healthy while armed or while the
        checks pass) and, on a board whose profile streams EKF_STATUS_REPORT (ArduPilot),
        the estimator has an absolute horizontal position (EKF_POS_HORIZ_ABS, or
        EKF_PRED_POS_HORIZ_ABS while disarmed, and not EKF_CONST_POS_MODE: what
        ArduCopter's position_ok() asks of it). Returns the vehicle time it was seen."""
        with self._cond:
            if self.armed:
                return self.vehicle_time
        bit = mavlink.MAV_SYS_STATUS_PREARM_CHECK
        positioned = mavlink.EKF_POS_HORIZ_ABS | mavlink.EKF_PRED_POS_HORIZ_ABS
        needs_position = "EKF_STATUS_REPORT" in self.profile.telemetry_streams
        seen: dict[str, Any] = {"prearm": None, "ekf_flags": None}

        def ready(msg) -> bool:
            kind = msg.get_type()
            if kind == "SYS_STATUS":
                checked = bool(msg.onboard_control_sensors_enabled & bit)
                seen["prearm"] = "not checked" if not checked else (
                    "passing" if msg.onboard_control_sensors_health & bit else "failing"
                )
            elif kind == "EKF_STATUS_REPORT":
                seen["ekf_flags"] = int(msg.flags)
            elif kind != "HEARTBEAT":
                return False
            if seen["prearm"] not in ("passing", "not checked"):
                return False
            flags = seen["ekf_flags"]
            if not needs_position:
                return True
            return flags is not None and bool(flags & positioned) and not flags & mavlink.EKF_CONST_POS_MODE

        what = "the board ready to fly (pre-arm checks passing" + (
            ", an absolute position in EKF_STATUS_REPORT)" if needs_position else ")"
        )
        try:
            msg = self.wait_for(what, ready, within=within)
        except WaitTimeout as exc:
            flags = seen["ekf_flags"]
            state = f"pre-arm checks {seen['prearm'] or 'never reported (no SYS_STATUS)'}"
            if needs_position:
                state += f", EKF flags {'never reported' if flags is None else hex(flags)}"
            raise WaitTimeout(f"{exc}; last seen: {state}") from None
        return vehicle_time(msg)

    def wait_and_maintain(
        self,
        what: str,
        value: Callable[[object], float | None],
        condition: Callable[[float], bool],
        *,
        hold: float,
        within: float,
    ) -> float:
        """Wait until `condition(value(msg))` holds continuously for `hold` s of vehicle time.

        `value` returns None for messages that do not carry the signal. The condition must
        first hold within `within` s. Returns the vehicle time it was maintained until.
        """
        start_t = self.vehicle_time
        held_since: float | None = None
        last_value: float | None = None
        last_bad: tuple[float, float] | None = None

        def check(msg) -> bool:
            nonlocal held_since, last_value, last_bad
            v = value(msg)
            if v is None:
                return False
            last_value = v
            t = vehicle_time(msg)
            if condition(v):
                if held_since is None:
                    if t > start_t + within:
                        return True  # too late: reported below
                    held_since = t
                return t - held_since >= hold
            last_bad = (t, v)
            held_since = None
            return t > start_t + within

        try:
            self.wait_for(what, check, within=within + hold + 0.5)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; last value {last_value}") from None
        if held_since is None or self.vehicle_time - held_since < hold:
            broke = f", last broken at t={last_bad[0]:.2f} s with {last_bad[1]:.3g}" if last_bad else ""
            raise WaitTimeout(
                f"{what} did not hold for {hold:.1f} s within {within:.1f} s of vehicle time "
                f"(from t={start_t:.2f} s){broke}"
            )
        return self.vehicle_time

    # -- commands ------------------------------------------------------------------------
    def command(
        self,
        command: int,
        *params: float,
        timeout: float = 5.0,
        retries: int = 2,
        check: bool = True,
    ) -> int:
        """Send COMMAND_LONG and wait (wall time) for its COMMAND_ACK; return the result.

        With `check`, anything but ACCEPTED raises CommandRefused carrying the board's reason.
        """
        values = [float(p) for p in params] + [0.0] * (7 - len(params))
        ack = None
        for attempt in range(retries + 1):
            since = self.mark()
            sent_ns = time.monotonic_ns()
            self.conn.send(
                mavlink.MAVLink_command_long_message(
                    self.target_system, self.target_component, command, attempt, *values
                )
            )
            try:
                ack = self.wait_for(
                    f"COMMAND_ACK for command {command}",
                    lambda m: m.get_type() == "COMMAND_ACK" and m.command == command,
                    within=timeout,
                    since=since,
                    vehicle_time=False,
                )
                read_ns = arrival_ns(ack, 0) or time.monotonic_ns()
                self.command_log.append((command, sent_ns, max(read_ns, sent_ns), int(ack.result)))
                break
            except WaitTimeout:
                if attempt == retries:
                    raise WaitTimeout(
                        f"no COMMAND_ACK for command {command} after {retries + 1} tries of "
                        f"{timeout:.1f} s on {self.conn.link.url}; is the board still running?"
                    ) from None
        assert ack is not None
        if check and ack.result != mavlink.MAV_RESULT_ACCEPTED:
            reason = self._reason_since(since)
            name = _RESULT_NAMES.get(ack.result, str(ack.result))
            raise CommandRefused(f"command {command} refused ({name}){': ' + reason if reason else ''}")
        return ack.result

    def _reason_since(self, since: int) -> str:
        with self._cond:
            texts = [r.msg.text for r in self._records_after(since) if r.msg.get_type() == "STATUSTEXT"]
        return "; ".join(texts)

    def _mode(self, word: str) -> tuple[int, str]:
        """(custom_mode, firmware mode name) for a scenario word or a mode name."""
        try:
            number = self.profile.mode_number(word)
        except ProfileLacks as exc:
            raise HilError(f"unknown mode {word!r} for {self.profile.family}: {exc}") from None
        return number, self.profile.mode_name(number)

    def _force_value(self, which: str) -> float:
        value = getattr(self.profile.arming, which)
        if value is None:
            raise HilError(f"{self.profile.family} ({self.profile.name}) has no forced {which[6:]}")
        return float(value)

    def arm(self, *, force: bool = False) -> None:
        """Arm; `force` skips the pre-arm checks with the firmware's own magic value."""
        self.command(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 1, self._force_value("force_arm") if force else 0)
        with self._cond:
            if self.armed is not True:
                self.events.append(Event(self.vehicle_time, "armed", ""))
            self.armed = True

    def disarm(self, *, force: bool = False) -> None:
        self.command(
            mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, self._force_value("force_disarm") if force else 0
        )
        with self._cond:
            if self.armed is not False:
                self.events.append(Event(self.vehicle_time, "disarmed", ""))
            self.armed = False

    def set_mode(self, mode: str) -> None:
        """Switch to `mode`: a scenario word (RTL, HOLD, ...) or one of the firmware's names."""
        number, _ = self._mode(mode)
        self.command(mavlink.MAV_CMD_DO_SET_MODE, *self.profile.set_mode_params(number))

    def takeoff(self, altitude: float) -> None:
        self.command(mavlink.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, altitude)

    def goto_ned(self, north: float, east: float, down: float) -> None:
        """Fly to a point relative to home (GUIDED)."""
        position_only = 0b110111111000
        self.conn.send(
            mavlink.MAVLink_set_position_target_local_ned_message(
                0,
                self.target_system,
                self.target_component,
                mavlink.MAV_FRAME_LOCAL_NED,
                position_only,
                north,
                east,
                down,
                0, 0, 0, 0, 0, 0, 0, 0,
            )
        )

    def set_message_interval(self, message_id: int, rate_hz: float) -> None:
        interval = -1 if rate_hz <= 0 else int(1e6 / rate_hz)
        self.command(mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, message_id, interval)

    def reboot(self, *, within: float = 30.0) -> None:
        """Restart the firmware (the profile's reboot command) and, when the session gave
        a way to find the board again (`find_again`), return once the rebooted firmware
        answers on this adapter: its clock has started again, a HEARTBEAT came. A board
        that does not come back within `within` s raises BoardNotAnswering."""
        clock = self.vehicle_time
        self.send_reboot()
        if self.find_again is None:
            return
        deadline = time.monotonic() + within
        old = self.conn
        old.remove_listener(self._on_message)
        old.close()
        last: Exception | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardNotAnswering(f"the board on {old.link.url} did not come back within {within:.0f} s of its reboot: {last}")
            try:
                conn = self.find_again(old.link.url, left)
            except HilError as exc:
                last = exc
                time.sleep(0.2)
                continue
            self._adopt(conn)
            try:
                self.ping(max(0.5, min(3.0, deadline - time.monotonic())))
                self.command(mavlink.MAV_CMD_REQUEST_MESSAGE, mavlink.MAVLINK_MSG_ID_HEARTBEAT, check=False, retries=0)
                self.wait_heartbeat(max(0.5, deadline - time.monotonic()))
            except HilError as exc:
                last = exc
            else:
                if self.vehicle_time < clock or clock < 1.0:
                    return
                last = BoardNotAnswering(f"it answered with its clock at {self.vehicle_time:.1f} s: not rebooted")
            conn.remove_listener(self._on_message)
            conn.close()
            time.sleep(0.2)

    def send_reboot(self) -> None:
        """Send the firmware's reboot command (the profile's) and nothing more."""
        reboot = self.profile.reboot
        self.command(int(reboot.code), *reboot.params)

    def request_streams(self, timeout: float = 3.0) -> list[str]:
        """Ask for the messages the profile says the harness needs (SET_MESSAGE_INTERVAL
        each); returns what the board refused or did not answer, in words (logged, not
        raised: a board that streams them unasked still works)."""
        problems: list[str] = []
        for name, rate_hz in self.profile.telemetry_streams.items():
            message_id = getattr(mavlink, f"MAVLINK_MSG_ID_{name}", None)
            if message_id is None:
                continue
            try:
                result = self.command(
                    mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, message_id, int(1e6 / rate_hz),
                    timeout=timeout, retries=1, check=False,
                )
            except WaitTimeout as exc:
                problems.append(f"{name}: {exc}")
                continue
            if result != mavlink.MAV_RESULT_ACCEPTED:
                problems.append(f"{name} at {rate_hz:g} Hz refused ({_RESULT_NAMES.get(result, result)})")
        for problem in problems:
            log.warning("telemetry stream request: %s", problem)
        return problems

    def _adopt(self, conn: MavConnection) -> None:
        """Talk to the board over `conn` from now on, forgetting what the old firmware said."""
        with self._cond:
            self.conn = conn
            self._failure = None
            self.mode = None
            self.armed = None
            self.last.clear()
            self.heartbeat_ns = 0
            self.identity = None
            self._params.clear()
            self._param_count = None
            self.vehicle_time = 0.0
        conn.add_listener(self._on_message)

    def ping(self, timeout: float = 3.0) -> float:
        """TIMESYNC round trip; returns the wall seconds it took. Raises when the board is silent."""
        from hil.autopilot import timesync

        return timesync.exchange(self, timeout=timeout).rtt_ns * 1e-9

    def wait_heartbeat(self, timeout: float = 10.0) -> object:
        with self._cond:
            hb = self.last.get("HEARTBEAT")
        if hb is not None:
            return hb
        return self.wait_for(
            f"HEARTBEAT on {self.conn.link.url}",
            lambda m: m.get_type() == "HEARTBEAT" and m.get_srcComponent() == self.target_component,
            within=timeout,
            vehicle_time=False,
        )

    def identify(self, timeout: float = 5.0) -> Identity:
        """Autopilot type, firmware version and board id (HEARTBEAT + AUTOPILOT_VERSION)."""
        hb = self.wait_heartbeat(timeout)
        since = self.mark()
        self.command(mavlink.MAV_CMD_REQUEST_MESSAGE, mavlink.MAVLINK_MSG_ID_AUTOPILOT_VERSION, timeout=timeout)
        version = self.wait_for(
            "AUTOPILOT_VERSION",
            lambda m: m.get_type() == "AUTOPILOT_VERSION",
            within=timeout,
            since=since,
            vehicle_time=False,
        )
        sw = version.flight_sw_version
        self.identity = Identity(
            autopilot=_AUTOPILOT_NAMES.get(hb.autopilot, f"autopilot {hb.autopilot}"),
            vehicle_type=hb.type,
            firmware_version=f"{sw >> 24 & 0xFF}.{sw >> 16 & 0xFF}.{sw >> 8 & 0xFF}",
            board_id=(version.board_version >> 16) or None,
            usb_vid=version.vendor_id or None,
            usb_pid=version.product_id or None,
            uid=version.uid or None,
        )
        return self.identity

    # -- parameters ----------------------------------------------------------------------
    def _await_param(self, name: str, since: int, timeout: float, failure: str):
        try:
            return self.wait_for(
                f"PARAM_VALUE {name}",
                lambda m: m.get_type() == "PARAM_VALUE" and m.param_id == name,
                within=timeout,
                since=since,
                vehicle_time=False,
            )
        except WaitTimeout:
            raise ParamError(f"board did not {failure} within {timeout:.1f} s") from None

    def get_param(self, name: str, timeout: float = 3.0) -> float:
        since = self.mark()
        self.conn.send(
            mavlink.MAVLink_param_request_read_message(
                self.target_system, self.target_component, name.encode(), -1
            )
        )
        msg = self._await_param(name, since, timeout, f"answer a read of parameter {name}; does it exist?")
        return float(msg.param_value)

    def set_param(self, name: str, value: float, timeout: float = 3.0) -> float:
        """Set a parameter and check the board now holds `value`."""
        if not math.isfinite(value):
            raise ParamError(f"parameter {name}: value {value!r} is not a finite number")
        since = self.mark()
        self.conn.send(
            mavlink.MAVLink_param_set_message(
                self.target_system,
                self.target_component,
                name.encode(),
                float(value),
                mavlink.MAV_PARAM_TYPE_REAL32,
            )
        )
        msg = self._await_param(name, since, timeout, f"confirm {name} = {value:g}; is the name right?")
        held = float(msg.param_value)
        if not math.isclose(held, value, rel_tol=1e-6, abs_tol=1e-6):
            reason = self._reason_since(since)
            raise ParamError(f"board kept {name} = {held:g} instead of {value:g}{': ' + reason if reason else ''}")
        return held

    def fetch_params(self, timeout: float = 10.0) -> dict[str, float]:
        """Every parameter: PARAM_REQUEST_LIST, asked again while nothing of the list comes
        (a firmware still booting drops the request: ArduCopter's
        `GCS_MAVLINK_Copter::params_ready`), then single reads of any that went missing, a
        few at a time (ArduPilot drops PARAM_REQUEST_READs beyond its small queue,
        `handle_param_request_read`). Waits at most ``timeout`` wall seconds in all."""
        seen: dict[int, tuple[str, float]] = {}
        total: list[int] = []
        progress = [0.0]

        def collect(m) -> bool:
            if m.get_type() != "PARAM_VALUE":
                return False
            if m.param_index != 65535 and m.param_index not in seen:
                seen[m.param_index] = (m.param_id, float(m.param_value))
                progress[0] = time.monotonic()
            if m.param_index != 65535 or not total:
                total[:] = [m.param_count]
            return bool(total) and len(seen) >= total[0]

        deadline = time.monotonic() + timeout
        stall = min(PARAM_STALL_S, timeout)
        asked_list = 0
        while True:
            missing = sorted(set(range(total[0])) - set(seen)) if total and seen else []
            since = self.mark()
            if not missing or len(missing) > PARAM_READS_AT_ONCE * 4:
                self.conn.send(mavlink.MAVLink_param_request_list_message(self.target_system, self.target_component))
                asked_list += 1
                what = "the parameter list" if asked_list == 1 else f"the parameter list (asked {asked_list} times)"
            else:
                for index in missing[:PARAM_READS_AT_ONCE]:
                    self.conn.send(
                        mavlink.MAVLink_param_request_read_message(self.target_system, self.target_component, b"", index)
                    )
                what = f"{len(missing)} missing parameters"
            progress[0] = time.monotonic()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = f"{len(seen)} of {total[0]}" if total else "none"
                    raise WaitTimeout(
                        f"the parameter list did not come within {timeout:.1f} s (wall): got {got}, "
                        f"asked for the list {asked_list} time(s)"
                    )
                try:
                    self.wait_for(what, collect, within=min(remaining, stall), since=since, vehicle_time=False)
                    return dict(sorted(seen.values()))
                except WaitTimeout:
                    if time.monotonic() - progress[0] >= stall:
                        break  # nothing new for a while: ask again
                    # Still coming: keep listening (from the same mark; collecting twice is harmless).

    def snapshot_params(self, names: Iterable[str] | None = None) -> dict[str, float]:
        """Every parameter's value (or those in `names`), to `restore_params` later."""
        values = self.fetch_params()
        if names is None:
            return values
        wanted = list(names)
        missing = [n for n in wanted if n not in values]
        if missing:
            raise CommandRefused(f"the board has no parameter(s) {', '.join(missing)}")
        return {n: values[n] for n in wanted}

    # -- the FlightController verbs that differ in name from the MAVLink ones -----------------

    def describe(self) -> ControllerIdentity:
        """`identify()` in the words every FlightController uses."""
        ident = self.identify()
        board = "" if ident.board_id is None else str(ident.board_id)
        return ControllerIdentity(ident.autopilot, ident.firmware_version, board)

    def state(self) -> ControllerState:
        """Armed and mode from the last HEARTBEAT (waiting for one if none came yet)."""
        if self.mode is None or self.armed is None:
            self.wait_heartbeat()
        return ControllerState(bool(self.armed), str(self.mode))

    def restore_params(self, snapshot: dict[str, float]) -> list[str]:
        """Put back every parameter that differs from `snapshot`; return their names."""
        now = self.fetch_params()
        restorable = self.profile.restorable
        changed = [
            name
            for name, value in snapshot.items()
            if name in now
            and restorable(name)  # calibrations, device ids, counters: the board's own
            and not math.isclose(now[name], value, rel_tol=1e-6, abs_tol=1e-6)
        ]
        for name in changed:
            self.set_param(name, snapshot[name])
        return changed

    def close(self) -> None:
        self.conn.remove_listener(self._on_message)


def _mavlink_profile(name: FirmwareProfile | str) -> FirmwareProfile:
    found = profile(name)
    if found.protocol != "mavlink":
        raise HilError(
            f"firmware profile {found.name!r} speaks {found.protocol}, not MAVLink; "
            "a MAVLink adapter needs an ArduPilot or PX4 profile"
        )
    return found

"""Failsafe detection and the ArduPilot mapping from parameter values to actions.

Each monitor is a small state machine fed with times in seconds; ``check`` returns
``"on"`` when its failsafe starts, ``"off"`` when it clears, else None. The Copter
announces the event and applies the action (see ``Copter._failsafe``).
"""

from __future__ import annotations

# Actions.
NONE, RTL, LAND, ALT_HOLD, DISARM = "none", "rtl", "land", "alt_hold", "disarm"
HOLD = "hold"  # hold position (PX4 NAV_RCL_ACT / NAV_DLL_ACT 1)

THROTTLE_LOW_COUNT = 3
"""Consecutive RC inputs below FS_THR_VALUE that trip the radio failsafe."""
EKF_CHECKS_TO_TRIP = 10
"""EKF checks (at 10 Hz) over threshold before the EKF failsafe, ArduPilot's 1 s."""


# FS_OPTIONS, ArduCopter's failsafe options bitmask (ArduCopter/Parameters.cpp FS_OPTIONS,
# the bits in Copter.h FailsafeOption, read in events.cpp failsafe_radio_on_event,
# failsafe_gcs_on_event and handle_battery_failsafe).
OPT_RC_CONTINUE_IF_AUTO = 1 << 0
"""Radio failsafe in AUTO: carry on with the mission. Not modelled: the board has no AUTO."""
OPT_GCS_CONTINUE_IF_AUTO = 1 << 1
"""GCS failsafe in AUTO: carry on with the mission. Not modelled: no AUTO."""
OPT_RC_CONTINUE_IF_GUIDED = 1 << 2
"""Radio failsafe in GUIDED: no action ("Radio Failsafe - Continuing Guided Mode")."""
OPT_CONTINUE_IF_LANDING = 1 << 3
"""Radio, GCS or battery failsafe while landing (LAND, RTL's final descent): land on
where the vehicle is ("... Failsafe - Continuing Landing"); without it an RTL action
leaves LAND for RTL."""
OPT_GCS_CONTINUE_IF_PILOT_CONTROL = 1 << 4
"""GCS failsafe in a mode the pilot flies (not GUIDED, RTL, LAND): no action
("GCS Failsafe - Continuing Pilot Control")."""
OPT_RELEASE_GRIPPER = 1 << 5
"""Release the gripper on any failsafe action. Not modelled: no gripper."""
FS_OPTIONS_DEFAULT = OPT_GCS_CONTINUE_IF_PILOT_CONTROL
"""ArduCopter's default (16), Parameters.cpp."""
FS_OPTIONS_MODELLED = OPT_RC_CONTINUE_IF_GUIDED | OPT_CONTINUE_IF_LANDING | OPT_GCS_CONTINUE_IF_PILOT_CONTROL
"""The bits the virtual board acts on; the others are accepted and ignored."""


def apply_fs_options(failsafe: str, action: str, options: int, *, disarm: bool,
                     landing: bool, guided: bool, autopilot: bool) -> tuple[str, str | None]:
    """ArduCopter's exceptions to a failsafe's configured action, in its order.

    ``failsafe`` is "radio", "gcs" or "battery" (others pass unchanged); ``disarm``: the
    vehicle is on the ground (or throttle-down in a manual mode) and the failsafe will
    disarm it; ``landing``/``guided``/``autopilot`` describe the current mode. Returns
    (the action, the words ArduCopter adds to its announcement after " - ", or None).
    """
    if failsafe not in ("radio", "gcs", "battery"):
        return action, None
    if failsafe == "battery" and action == NONE:
        return action, None  # a warning only (BATT_FS_LOW_ACT 0): the board does not act
    if disarm:
        return action, "Disarming"
    if landing and options & OPT_CONTINUE_IF_LANDING:
        return LAND, "Continuing Landing"
    if failsafe == "radio" and guided and options & OPT_RC_CONTINUE_IF_GUIDED:
        return NONE, "Continuing Guided Mode"
    if failsafe == "gcs" and not autopilot and options & OPT_GCS_CONTINUE_IF_PILOT_CONTROL:
        return NONE, "Continuing Pilot Control"
    return action, None


def radio_action(fs_thr_enable: int) -> str:
    """FS_THR_ENABLE: 1 RTL, 2 (old continue-mission) RTL, 3 Land, 4 SmartRTL->RTL,
    5 SmartRTL->Land, 6 DO_LAND_START->RTL, 7 Brake->Land; 0 none."""
    if fs_thr_enable in (3, 5, 7):
        return LAND
    if fs_thr_enable in (1, 2, 4, 6):
        return RTL
    return NONE


def gcs_action(fs_gcs_enable: int) -> str:
    """FS_GCS_ENABLE: 5 Land, 7 Brake->Land, any other non-zero RTL; 0 none."""
    if fs_gcs_enable == 0:
        return NONE
    if fs_gcs_enable in (5, 7):
        return LAND
    return RTL


def battery_action(act: int) -> str:
    """BATT_FS_LOW_ACT: 0 warn, 1 Land, 2 RTL, 3 SmartRTL or RTL, 4 SmartRTL or Land
    (both RTL here, falling back to Land), 5 Terminate (disarm)."""
    return {1: LAND, 2: RTL, 3: RTL, 4: RTL, 5: DISARM}.get(act, NONE)


def ekf_action(act: int) -> str:
    """FS_EKF_ACTION: 1 Land, 2 AltHold, 3 Land even in manual modes."""
    return {2: ALT_HOLD}.get(act, LAND)


class RadioMonitor:
    """No valid RC for RC_FS_TIMEOUT, or throttle under FS_THR_VALUE 3 times running.

    ``extra_delay`` (a build's ``rc_failsafe_extra_delay_s`` knob) holds the failsafe
    back for that many more seconds once the loss is detected; 0 in a correct build.
    """

    def __init__(self, extra_delay: float = 0.0) -> None:
        self.last_valid: float | None = None
        self.low_count = 0
        self.active = False
        self.extra_delay = max(0.0, float(extra_delay))
        self._lost_since: float | None = None

    def on_frame(self, now: float, valid: bool, throttle_pwm: int, fs_value: float) -> None:
        """One RC input; ``valid`` when the stick channels are present and sane."""
        if not valid:
            return
        if throttle_pwm < fs_value:
            self.low_count += 1
        else:
            self.low_count = 0
        self.last_valid = now

    def rc_ok(self, now: float, timeout: float) -> bool:
        """Valid RC recently and the throttle not in failsafe territory."""
        return (self.last_valid is not None and now - self.last_valid < timeout
                and self.low_count < THROTTLE_LOW_COUNT)

    def check(self, now: float, enabled: bool, armed: bool, armed_at: float,
              timeout: float) -> str | None:
        """Start/clear the failsafe. RC never seen only counts once armed."""
        if not enabled:
            if self.active:
                self.active = False
                return "off"
            return None
        if self.last_valid is None:
            lost = armed and now - armed_at >= timeout
        else:
            lost = not self.rc_ok(now, timeout)
        if not lost:
            self._lost_since = None
        elif self._lost_since is None:
            self._lost_since = now
        if lost and not self.active and now - self._lost_since >= self.extra_delay:
            self.active = True
            return "on"
        if not lost and self.active:
            self.active = False
            return "off"
        return None


class GcsMonitor:
    """GCS heartbeats seen, then none for FS_GCS_TIMEOUT while armed."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.active = False

    def heartbeat(self, now: float) -> None:
        """A GCS heartbeat arrived."""
        self.last = now

    def check(self, now: float, enabled: bool, armed: bool, timeout: float) -> str | None:
        lost = (enabled and armed and self.last is not None
                and now - self.last >= timeout)
        if lost and not self.active:
            self.active = True
            return "on"
        if self.active and (not enabled or (self.last is not None and now - self.last < timeout)):
            self.active = False
            return "off"
        return None


class EkfMonitor:
    """Two of (velocity, horizontal position, compass) ratios over threshold for 1 s."""

    def __init__(self) -> None:
        self.count = 0
        self.active = False

    def check(self, vel: float, pos: float, mag: float, thresh: float,
              applicable: bool) -> str | None:
        """One 10 Hz check. ``applicable``: armed and in a mode where it acts."""
        if thresh <= 0.0:
            bad = False
        else:
            over = (vel >= thresh) + (pos >= thresh) + (mag >= thresh)
            bad = over >= 2 or vel >= 2.0 * thresh
        if bad and applicable:
            self.count = min(self.count + 1, EKF_CHECKS_TO_TRIP)
        elif not bad:
            self.count = max(self.count - 1, 0)
        if self.count >= EKF_CHECKS_TO_TRIP and not self.active:
            self.active = True
            return "on"
        if self.count == 0 and self.active:
            self.active = False
            return "off"
        return None


class BatteryMonitor:
    """Voltage under BATT_LOW_VOLT continuously for BATT_LOW_TIMER; latched like ArduPilot."""

    def __init__(self) -> None:
        self.low_since: float | None = None
        self.active = False

    def check(self, now: float, voltage: float | None, low_volt: float, timer: float,
              armed: bool) -> str | None:
        if self.active:
            return None
        if voltage is None or low_volt <= 0.0 or voltage >= low_volt or not armed:
            self.low_since = None
            return None
        if self.low_since is None:
            self.low_since = now
        if now - self.low_since >= timer:
            self.active = True
            return "on"
        return None

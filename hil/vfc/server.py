"""The MAVLink server of one virtual board: owns its pty and speaks ArduPilot-Copter MAVLink.

Lockstep: every HIL_SENSOR runs exactly one Copter loop and is answered at once with one
HIL_ACTUATOR_CONTROLS carrying the same time_usec; the board clock is the time_usec of
the last HIL_SENSOR. With the loop-time model on (SIM_LOOP_JIT / SIM_LOOP_OVR,
hil.vfc.looptime) the answer carries the modelled loop clock instead, with flags bit 0
(lockstep) clear to say that time_usec no longer echoes the sample; answers still come
one per sample, in order. Telemetry streams are scheduled in board time, so a run is the
same whatever the host's speed. With no simulator attached (no HIL_SENSOR for 1 s of
wall time) the clock stops and only a HEARTBEAT per wall second goes out, so a ground
station still sees the board.

The boot banner (STATUSTEXT) is sent when the first valid MAVLink message of a boot
arrives, not at boot: a USB CDC port drops what it sends before the host opens it, and
this way the harness always sees the banner exactly once per boot.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import select
import struct
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import ParamError
from hil.firmware.app_image import AppConfig
from hil.firmware.paramdefs import read_param
from hil.geo import Home, lla_to_ned
from hil.mavlink.dialect import (
    SIM_COMPONENT_ID,
    UINT16_MAX,
    VFC_BOARD_ID,
    VFC_COMPONENT_ID,
    VFC_SYSTEM_ID,
    mavlink,
    new_codec,
)
from hil.mavlink.framing import (
    HIL_ACTUATOR_CONTROLS,
    HIL_SENSOR,
    FrameReader,
    HotCodec,
    has_nonfinite,
)
from hil.mavlink.uart_marker import NAMED_VALUE_INT, parse_marker
from hil.vfc.copter import Copter
from hil.vfc.looptime import LOOP_MODEL_PARAMS, LoopTimeModel
from hil.vfc.params import ParamStore
from hil.vfc.pty import Pty
from hil.vfc.telemetry import TelemetryBuilders

M = mavlink
#: COMPONENT_ARM_DISARM param2 values, as ArduPilot's GCS_Common.cpp reads them: 2989 arms
#: without the pre-arm checks, 21196 disarms even in flight. 21196 on an arm request is an
#: ordinary, checked arm (PX4 forces both ways with 21196; this board is ArduPilot).
FORCE_ARM_MAGIC = 2989
FORCE_DISARM_MAGIC = 21196
REBOOT_DELAY_S = 0.1
BOOTLOADER_DELAY_S = 0.2  # ArduPilot: ACK, then into the bootloader ~200 ms later
IDLE_AFTER_S = 1.0
SELECT_TIMEOUT_S = 0.02
OUTBUF_LIMIT = 256 * 1024
#: HIL_ACTUATOR_CONTROLS' payload as the board fills it: time_usec, flags, controls[0..3],
#: controls[4..15] all 0.0 (48 zero bytes), mode.
_ANSWER = struct.Struct("<QQ4f48xB")
_SENSOR = HIL_SENSOR.light  # the class of the samples the fast path decodes
_MARKER = NAMED_VALUE_INT.light  # UART sequencing markers (hil.mavlink.uart_marker)
#: A frame cut in two by the pty is completed within this (wall) time, however busy the
#: host; the harness never sends half a frame, so a longer wait costs nothing but a
#: slower resynchronisation after line noise.
STALL_S = 0.5
#: What the simulator sends besides HIL_SENSOR, many times a second: decoded like it,
#: without pymavlink (the same field values; see hil.mavlink.framing).
_SIM_INPUTS = (
    HotCodec(M.MAVLink_rc_channels_override_message),
    HotCodec(M.MAVLink_battery_status_message),
    HotCodec(M.MAVLink_hil_gps_message),
)
_RC_CHANNELS = operator.attrgetter(*(f"chan{i}_raw" for i in range(1, 19)))
_NEVER = 1 << 62
_perf_counter_ns = time.perf_counter_ns
_monotonic = time.monotonic

# HIL_SENSOR fields_updated groups (PROTOCOLS.md section 4).
MAG_BITS = 0x1C0
ABS_PRESSURE_BIT = 0x200
TEMPERATURE_BIT = 0x1000

#: Default telemetry streams: message id -> rate in Hz of board time.
DEFAULT_RATES_HZ: dict[int, float] = {
    M.MAVLINK_MSG_ID_HEARTBEAT: 1.0,
    M.MAVLINK_MSG_ID_SYS_STATUS: 2.0,
    M.MAVLINK_MSG_ID_ATTITUDE: 10.0,
    M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: 10.0,
    M.MAVLINK_MSG_ID_GPS_RAW_INT: 5.0,
    M.MAVLINK_MSG_ID_RC_CHANNELS: 5.0,
    M.MAVLINK_MSG_ID_SERVO_OUTPUT_RAW: 10.0,
    M.MAVLINK_MSG_ID_EKF_STATUS_REPORT: 2.0,
    M.MAVLINK_MSG_ID_SYSTEM_TIME: 1.0,
    M.MAVLINK_MSG_ID_VFR_HUD: 4.0,
}



@dataclass(frozen=True)
class BoardIdentity:
    """What a board says about itself: USB descriptors, board id, firmware version."""

    usb_serial: str
    board_id: int = VFC_BOARD_ID
    firmware_version: str = "1.0.0"
    name: str = "HILVFC"


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return value.split("\x00", 1)[0]


class VfcServer(TelemetryBuilders):
    """One virtual board: Copter + parameters + pty, served until `stop` is set."""

    #: Bits always set in HIL_ACTUATOR_CONTROLS.mode besides armed (PX4 sets 1, custom).
    answer_mode_flags = 0

    def __init__(
        self,
        identity: BoardIdentity,
        storage_path: Path | str | None,
        *,
        on_port: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None,
        app: AppConfig | None = None,
        bootloader: bool = False,
        uarts: Any = None,
    ) -> None:
        self.identity = identity
        #: The GPS / RC receiver UARTs (hil.vfc.uarts.BoardUarts), or None.
        self.uarts = uarts
        #: The application build this board runs (None: the built-in firmware).
        self.app = app
        #: True when the board has a bootloader to reboot into (it has a flash).
        self.has_bootloader = bootloader
        #: Why `run` returned early: "bootloader" after MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN 3.
        self.exit_reason: str | None = None
        self.storage_path = Path(storage_path) if storage_path is not None else None
        self.on_port = on_port
        self.log = log or (
            lambda text: print(f"vfc {identity.usb_serial}: {text}", file=sys.stderr)
        )
        self.codec = new_codec(VFC_SYSTEM_ID, VFC_COMPONENT_ID)
        self.pty: Pty | None = None
        self.boots = 0
        self._builders: dict[int, Callable[[], Any]] = {
            M.MAVLINK_MSG_ID_HEARTBEAT: self._heartbeat,
            M.MAVLINK_MSG_ID_SYS_STATUS: self._sys_status,
            M.MAVLINK_MSG_ID_ATTITUDE: self._attitude,
            M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: self._global_position_int,
            M.MAVLINK_MSG_ID_LOCAL_POSITION_NED: self._local_position_ned,
            M.MAVLINK_MSG_ID_GPS_RAW_INT: self._gps_raw_int,
            M.MAVLINK_MSG_ID_RC_CHANNELS: self._rc_channels,
            M.MAVLINK_MSG_ID_SERVO_OUTPUT_RAW: self._servo_output_raw,
            M.MAVLINK_MSG_ID_EKF_STATUS_REPORT: self._ekf_status_report,
            M.MAVLINK_MSG_ID_SYSTEM_TIME: self._system_time,
            M.MAVLINK_MSG_ID_VFR_HUD: self._vfr_hud,
            M.MAVLINK_MSG_ID_HOME_POSITION: self._home_position,
            M.MAVLINK_MSG_ID_AUTOPILOT_VERSION: self._autopilot_version,
        }
        self._handlers: dict[str, Callable[[Any], None]] = {
            "HIL_SENSOR": self._on_hil_sensor,
            "HIL_GPS": self._on_hil_gps,
            "RC_CHANNELS_OVERRIDE": self._on_rc_override,
            "HIL_RC_INPUTS_RAW": self._on_hil_rc_inputs_raw,
            "BATTERY_STATUS": self._on_battery_status,
            "HEARTBEAT": self._on_heartbeat,
            "COMMAND_LONG": self._on_command_long,
            "COMMAND_INT": self._on_command_int,
            "SET_MODE": self._on_set_mode,
            "SET_POSITION_TARGET_LOCAL_NED": self._on_target_local,
            "SET_POSITION_TARGET_GLOBAL_INT": self._on_target_global,
            "PARAM_REQUEST_LIST": self._on_param_request_list,
            "PARAM_REQUEST_READ": self._on_param_request_read,
            "PARAM_SET": self._on_param_set,
            "TIMESYNC": self._on_timesync,
        }
        self._commands: dict[int, Callable[[list[float]], tuple[int, str]]] = {
            M.MAV_CMD_COMPONENT_ARM_DISARM: self._cmd_arm_disarm,
            M.MAV_CMD_NAV_TAKEOFF: self._cmd_takeoff,
            M.MAV_CMD_DO_SET_MODE: self._cmd_do_set_mode,
            M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN: self._cmd_reboot,
            M.MAV_CMD_SET_MESSAGE_INTERVAL: self._cmd_set_message_interval,
            M.MAV_CMD_GET_MESSAGE_INTERVAL: self._cmd_get_message_interval,
            M.MAV_CMD_REQUEST_MESSAGE: self._cmd_request_message,
            M.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES: self._cmd_request_capabilities,
        }
        #: Per-step timings (ns): Copter.loop, and the server's read-to-reply overhead.
        self.loop_ns: deque[int] = deque(maxlen=200_000)
        self.overhead_ns: deque[int] = deque(maxlen=200_000)
        #: Set by a command handler to send its reply after the COMMAND_ACK.
        self._follow_up: Callable[[], None] | None = None
        self._boot()

    # -- lifecycle ---------------------------------------------------------------------
    def _boot(self) -> None:
        """(Re)start the firmware: fresh parameters from storage, fresh Copter, new pty."""
        self.params = self._make_params()
        self.params.load()
        self.copter = self._make_copter()
        self.time_us = 0
        #: time_usec of the latest HIL_ACTUATOR_CONTROLS (the loop clock).
        self.stamp_us = 0
        self.loop_model: LoopTimeModel | None = None
        self._loop_cost_us = 0.0
        self._configure_loop_model()
        self.steps = 0
        self.last_gps: Any = None
        self.last_gps_us = -1
        self.last_mag_us = -1
        self.last_baro_us = -1
        self._intervals: dict[int, int | None] = {
            msg_id: int(round(1e6 / hz)) for msg_id, hz in DEFAULT_RATES_HZ.items()
        }
        self._due: dict[int, int] = {}
        #: The earliest `_due` time of an enabled stream (0: look at every stream next step).
        self._next_stream_us = 0
        self._load_window: deque[tuple[int, int]] = deque()
        self._load_sum_ns = 0
        self._last_sensor_wall: float | None = None
        self._last_idle_heartbeat = -math.inf
        self._banner_sent = False
        self._armed_seen = False
        self._time_warned = False
        self._reboot_at: float | None = None
        self._bootloader_at: float | None = None
        self._statustext_id = 0
        self._outbuf = bytearray()
        #: Where HIL_ACTUATOR_CONTROLS go: the MAVLink port's output (a personality whose
        #: simulator has a connection of its own answers there instead).
        self._answers = self._outbuf
        self.reader = FrameReader(self.codec, hot=(HIL_SENSOR, NAMED_VALUE_INT, *_SIM_INPUTS), stall_s=STALL_S)
        if self.uarts is not None:
            self.uarts.reset()  # the firmware starts again: no bytes owed, none held
        new_pty = Pty.open()  # before closing the old one, so the path really changes
        old, self.pty = self.pty, new_pty
        # A poll object per pty: cheaper per wait than building select()'s lists.
        self._poller = select.poll()
        self._poller.register(new_pty.master_fd, select.POLLIN)
        if old is not None:
            old.close()
        self.boots += 1
        self.log(f"boot {self.boots}: port {new_pty.path}")
        if self.on_port is not None:
            self.on_port(new_pty.path)

    def _make_params(self) -> ParamStore:
        """The parameter store of this firmware (a personality brings its own)."""
        return ParamStore(self._param_defs(), path=self.storage_path)

    def _make_copter(self) -> Copter:
        """The flight software, with this build's behaviour knobs."""
        return Copter(self.params, self.app.behaviour if self.app is not None else None)

    def _param_defs(self) -> Any:
        """Parameter definitions, with this build's defaults (loop rate, params) applied."""
        from hil.firmware.paramdefs import PARAM_DEFS

        if self.app is None:
            return PARAM_DEFS
        defaults = dict(self.app.params)
        defaults["SCHED_LOOP_RATE"] = float(self.app.loop_rate)
        return tuple(
            dataclasses.replace(d, default=defaults[d.name]) if d.name in defaults else d
            for d in PARAM_DEFS
        )

    @property
    def port(self) -> str:
        """The path the harness opens (changes at every reboot)."""
        assert self.pty is not None
        return self.pty.path

    def close(self) -> None:
        """Close the pty (the board is unplugged)."""
        if self.pty is not None:
            self._flush()
            self.pty.close()

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Serve until `should_stop()` returns True (checked every SELECT_TIMEOUT_S)."""
        while not should_stop() and self.exit_reason is None:
            self.serve_once(SELECT_TIMEOUT_S)

    def serve_once(self, timeout: float) -> None:
        """Wait up to `timeout` s for bytes, handle them, then do what is due."""
        assert self.pty is not None
        if self._outbuf:  # output the harness has not taken yet: wait for room too
            fd = self.pty.master_fd
            readable = select.select([fd], [fd], [], timeout)[0]
        else:
            readable = self._poller.poll(timeout * 1000.0)
        now = time.monotonic()
        if readable:
            t_read = time.perf_counter_ns()
            data = self.pty.read()
            msgs = self.reader.feed(data, now) if data else self.reader.poll(now)
        else:
            t_read = time.perf_counter_ns()
            msgs = self.reader.poll(now)
        for msg in msgs:
            self._dispatch(msg, t_read)
        if (
            self._last_sensor_wall is None or now - self._last_sensor_wall >= IDLE_AFTER_S
        ) and now - self._last_idle_heartbeat >= 1.0:
            self._last_idle_heartbeat = now
            self._send(self._heartbeat())
        self._flush()
        if self._reboot_at is not None and now >= self._reboot_at:
            self.log("rebooting")
            self._boot()
        if self._bootloader_at is not None and now >= self._bootloader_at:
            self._bootloader_at = None
            self.log("rebooting into the bootloader")
            self.exit_reason = "bootloader"

    # -- output ------------------------------------------------------------------------
    def _send(self, msg: Any) -> None:
        if msg is None:
            return
        data = msg.pack(self.codec)
        self.codec.seq = (self.codec.seq + 1) % 256
        if len(self._outbuf) + len(data) > OUTBUF_LIMIT:
            return  # nobody is reading the port: drop, as a USB CDC port would
        self._outbuf += data

    def _flush(self) -> None:
        if not self._outbuf or self.pty is None:
            return
        written = self.pty.write(self._outbuf)
        if written:
            del self._outbuf[:written]

    def statustext(self, severity: int, text: str) -> None:
        """Queue a STATUSTEXT, split into 50-character chunks like MAVLink 2 allows."""
        raw = text.encode("ascii", errors="replace")
        if len(raw) <= 50:
            self._send(self.codec.statustext_encode(severity, raw))
            return
        self._statustext_id = self._statustext_id % 65535 + 1
        chunks = [raw[i : i + 50] for i in range(0, len(raw), 50)]
        if len(chunks[-1]) == 50:
            chunks.append(b"")
        for seq, chunk in enumerate(chunks):
            self._send(self.codec.statustext_encode(severity, chunk, self._statustext_id, seq))

    # -- input -------------------------------------------------------------------------
    def _dispatch(self, msg: Any, t_read: int) -> None:
        if msg.__class__ is _SENSOR:
            # The hot path, once per loop: `_on_hil_sensor` ends with `_after_firmware_ran`.
            if has_nonfinite(msg):  # decoded with the answer: one attribute read
                return
            if not self._banner_sent:
                self._banner_sent = True
                self._send_banner()
            try:
                self._on_hil_sensor(msg, t_read)
            except Exception as exc:  # a firmware bug must not take the board off the bus
                self._internal_error(msg, exc)
            return
        if msg.__class__ is _MARKER:
            marker = parse_marker(msg)
            if marker is not None and self.uarts is not None:
                self.uarts.announce(*marker)
            return
        handler = self._handlers.get(msg.get_type())
        if handler is None or has_nonfinite(msg):
            return
        if not self._banner_sent:
            self._banner_sent = True
            self._send_banner()
        try:
            if msg.get_msgId() == M.MAVLINK_MSG_ID_HIL_SENSOR:
                self._on_hil_sensor(msg, t_read)
            else:
                handler(msg)
            self._after_firmware_ran()
        except Exception as exc:  # a firmware bug must not take the board off the bus
            self._internal_error(msg, exc)

    def _internal_error(self, msg: Any, exc: Exception) -> None:
        self.log("error handling " + msg.get_type() + ":\n" + traceback.format_exc())
        self.statustext(M.MAV_SEVERITY_CRITICAL, f"Internal error: {type(exc).__name__}")

    def _send_banner(self) -> None:
        ident = self.identity
        self.statustext(
            M.MAV_SEVERITY_INFO, f"HILCopter V{ident.firmware_version} (board {ident.board_id})"
        )
        self.statustext(M.MAV_SEVERITY_INFO, f"{ident.name} {ident.usb_serial}")
        self.statustext(M.MAV_SEVERITY_INFO, "Frame: QUAD/X")

    def _after_firmware_ran(self) -> None:
        for severity, text in self.copter.drain_statustexts():
            self.statustext(int(severity), str(text))
        armed = bool(self.copter.armed)
        # A mode change (or arming/disarming) is announced at once, not at the next 1 Hz slot.
        if self.copter.drain_mode_changes() or armed != self._armed_seen:
            self._armed_seen = armed
            self._send(self._heartbeat())

    @staticmethod
    def _for_us(msg: Any) -> bool:
        return msg.target_system in (VFC_SYSTEM_ID, 0) and getattr(msg, "target_component", 0) in (
            VFC_COMPONENT_ID,
            0,
        )

    def _on_hil_sensor(self, msg: Any, t_read: int | None = None) -> None:
        t_us = int(msg.time_usec)
        copter = self.copter
        loop_ns = 0
        if t_us > self.time_us or self.steps == 0:
            fields = int(msg.fields_updated)
            mag = (msg.xmag, msg.ymag, msg.zmag) if fields & MAG_BITS == MAG_BITS else None
            pressure = msg.abs_pressure if fields & ABS_PRESSURE_BIT else None
            temperature = msg.temperature if fields & TEMPERATURE_BIT else None
            uarts = self.uarts
            if uarts is not None and uarts.poll(copter, t_us):
                self.last_gps = uarts.last_gps
                self.last_gps_us = t_us
            if uarts is not None and uarts.shortfall:
                self.statustext(M.MAV_SEVERITY_WARNING, uarts.shortfall)
                uarts.shortfall = ""
            t0 = _perf_counter_ns()
            motors = copter.loop(
                t_us,
                (msg.xacc, msg.yacc, msg.zacc),
                (msg.xgyro, msg.ygyro, msg.zgyro),
                mag,
                pressure,
                temperature,
            )
            loop_ns = _perf_counter_ns() - t0
            self.time_us = t_us
            self.steps += 1
            model = self.loop_model
            self.stamp_us = t_us if model is None else model.stamp(t_us)
            if mag is not None:
                self.last_mag_us = t_us
            if pressure is not None:
                self.last_baro_us = t_us
        else:
            motors = copter.motors
            if self.loop_model is None:
                self.stamp_us = t_us  # the lockstep answer names the sample it answers
            if not self._time_warned:
                self._time_warned = True
                self.statustext(
                    M.MAV_SEVERITY_WARNING, "HIL_SENSOR time went backwards: reboot the board"
                )
        m1, m2, m3, m4 = motors[:4]
        mode = (M.MAV_MODE_FLAG_SAFETY_ARMED if copter.armed else 0) | self.answer_mode_flags
        codec = self.codec
        flags = 1 if self.loop_model is None else 0
        # Wire order: time_usec, flags (bit 0: lockstep), controls[16], mode; trailing
        # zeros trimmed as MAVLink 2 does (HotCodec.pack would give the same bytes).
        payload = _ANSWER.pack(self.stamp_us, flags, m1, m2, m3, m4, mode).rstrip(b"\x00")
        self._answers += HIL_ACTUATOR_CONTROLS.frame(
            codec.seq, VFC_SYSTEM_ID, VFC_COMPONENT_ID, payload or b"\x00"
        )
        codec.seq = (codec.seq + 1) % 256
        self._flush()
        self._last_sensor_wall = _monotonic()
        if t_read is not None:
            self.overhead_ns.append(_perf_counter_ns() - t_read - loop_ns)
        if loop_ns:
            self.loop_ns.append(loop_ns)
            self._account_load(t_us, loop_ns)
        self._after_firmware_ran()
        if self.time_us >= self._next_stream_us:
            self._send_due_streams()

    def _account_load(self, t_us: int, loop_ns: int) -> None:
        window = self._load_window
        window.append((t_us, loop_ns))
        self._load_sum_ns += loop_ns
        while window and window[0][0] <= t_us - 1_000_000:
            self._load_sum_ns -= window.popleft()[1]

    def load_permille(self) -> int:
        """Mean loop compute time over the last board second, per mille of the loop period.

        With SIM_LOOP_US set, the modelled compute time instead of the measured one.
        """
        rate = self.params.get("SCHED_LOOP_RATE") if "SCHED_LOOP_RATE" in self.params else 400.0
        if self._loop_cost_us > 0:
            return int(min(1000.0, self._loop_cost_us * max(rate, 1.0) / 1000.0))
        if not self._load_window:
            return 0
        period_ns = 1e9 / max(rate, 1.0)
        mean_ns = self._load_sum_ns / len(self._load_window)
        return int(min(1000.0, mean_ns / period_ns * 1000.0))

    def _configure_loop_model(self) -> None:
        """(Re)build the loop-time model from the parameters; log what changed."""
        previous = self.loop_model
        # A model replacing a running one carries on from its clock, so stamps never go back.
        not_before = previous.last_stamp_us if previous is not None else None
        model = LoopTimeModel.from_params(self.params, not_before_us=not_before)
        cost = max(0.0, read_param(self.params, "SIM_LOOP_US"))
        if model is not None or previous is not None or cost != self._loop_cost_us:
            described = (
                "off"
                if model is None
                else f"{model.rate_hz:g} Hz, jitter +-{model.jitter_us:g} us, overrun "
                f"probability {model.overrun_probability:g}, seed {model.seed}"
            )
            self.log(f"loop-time model: {described}; modelled loop cost {cost:g} us")
        self.loop_model = model
        self._loop_cost_us = cost

    def _send_due_streams(self) -> None:
        """Send every stream due at the board clock, in `_intervals` order; note when the
        next one is due, so the steps before it skip this."""
        now = self.time_us
        soonest = _NEVER
        for msg_id, interval in self._intervals.items():
            if not interval:
                continue
            due = self._due.get(msg_id, now)
            if now >= due:
                self._send(self._builders[msg_id]())
                due += interval
                if due <= now:
                    due = now + interval
                self._due[msg_id] = due
            if due < soonest:
                soonest = due
        self._next_stream_us = soonest

    def _on_hil_gps(self, msg: Any) -> None:
        self.last_gps = msg
        self.last_gps_us = self.time_us
        eph = msg.eph / 100.0 if msg.eph != UINT16_MAX else math.inf
        epv = msg.epv / 100.0 if msg.epv != UINT16_MAX else math.inf
        self.copter.on_gps(
            self.time_us,
            int(msg.fix_type),
            msg.lat / 1e7,
            msg.lon / 1e7,
            msg.alt / 1000.0,
            (msg.vn / 100.0, msg.ve / 100.0, msg.vd / 100.0),
            eph,
            epv,
            int(msg.satellites_visible),
            # MAVLink defines HIL_GPS.eph as HDOP x 100 (our links put the accuracy in cm
            # there, about 1 m on a clear sky: under ArduCopter's bound of 1.40).
            hdop=eph,
        )

    def _on_rc_override(self, msg: Any) -> None:
        if msg.target_system != VFC_SYSTEM_ID:
            return
        try:
            raw = _RC_CHANNELS(msg)
        except AttributeError:  # a message without the MAVLink 2 extension channels
            raw = [getattr(msg, f"chan{i}_raw", 0) for i in range(1, 19)]
        self.copter.on_rc(self.time_us, [0 if v == UINT16_MAX else int(v) for v in raw])

    def _on_hil_rc_inputs_raw(self, msg: Any) -> None:
        raw = [getattr(msg, f"chan{i}_raw") for i in range(1, 13)] + [0] * 6
        self.copter.on_rc(self.time_us, [0 if v == UINT16_MAX else int(v) for v in raw])

    def _on_battery_status(self, msg: Any) -> None:
        if msg.get_srcComponent() != SIM_COMPONENT_ID:
            return
        cells = [v for v in msg.voltages if v != UINT16_MAX]
        if not cells:
            return
        current = msg.current_battery / 100.0 if msg.current_battery != -1 else 0.0
        consumed = float(msg.current_consumed) if msg.current_consumed != -1 else 0.0
        self.copter.on_battery(self.time_us, sum(cells) / 1000.0, current, consumed)

    def _on_heartbeat(self, msg: Any) -> None:
        if msg.type == M.MAV_TYPE_GCS:
            self.copter.on_gcs_heartbeat(self.time_us)

    def _on_timesync(self, msg: Any) -> None:
        if msg.tc1 != 0:
            return  # an answer to someone else's request
        # tc1 = 0 would read as a request: a board that has not stepped yet says 1 ns.
        self._send(self.codec.timesync_encode(max(self.time_us * 1000, 1), msg.ts1))

    # -- commands ----------------------------------------------------------------------
    def _on_command_long(self, msg: Any) -> None:
        if not self._for_us(msg):
            return
        params = [
            msg.param1,
            msg.param2,
            msg.param3,
            msg.param4,
            msg.param5,
            msg.param6,
            msg.param7,
        ]
        self._run_command(msg, msg.command, params)

    def _on_command_int(self, msg: Any) -> None:
        if not self._for_us(msg):
            return
        params = [msg.param1, msg.param2, msg.param3, msg.param4, float(msg.x), float(msg.y), msg.z]
        self._run_command(msg, msg.command, params)

    def _run_command(self, msg: Any, command: int, params: list[float]) -> None:
        self._follow_up = None
        handler = self._commands.get(command)
        if handler is None:
            result, reason = M.MAV_RESULT_UNSUPPORTED, ""
        else:
            result, reason = handler(params)
        self._ack(msg, command, result)
        if reason:
            # ArduPilot reports arming refusals (Arm:/PreArm:) as CRITICAL, others as warnings.
            arming = command == M.MAV_CMD_COMPONENT_ARM_DISARM
            self._say_once(M.MAV_SEVERITY_CRITICAL if arming else M.MAV_SEVERITY_WARNING, reason)
        follow_up, self._follow_up = self._follow_up, None
        if follow_up is not None:
            follow_up()

    def _ack(self, msg: Any, command: int, result: int) -> None:
        self._send(
            self.codec.command_ack_encode(
                command, result, 0, 0, msg.get_srcSystem(), msg.get_srcComponent()
            )
        )

    def _say_once(self, severity: int, text: str) -> None:
        """Send `text`, dropping the same text if the Copter queued it too."""
        queued = self.copter.drain_statustexts()
        self.statustext(severity, text)
        for sev, other in queued:
            if other != text:
                self.statustext(int(sev), str(other))

    @staticmethod
    def _verdict(outcome: tuple[bool, str], default_reason: str) -> tuple[int, str]:
        accepted, reason = outcome
        if accepted:
            return M.MAV_RESULT_ACCEPTED, ""
        return M.MAV_RESULT_FAILED, reason or default_reason

    def _cmd_arm_disarm(self, p: list[float]) -> tuple[int, str]:
        magic = int(round(p[1]))
        if p[0] == 1:
            return self._verdict(self.copter.arm(force=magic == FORCE_ARM_MAGIC), "Arm: refused")
        if p[0] == 0:
            return self._verdict(self.copter.disarm(force=magic == FORCE_DISARM_MAGIC), "Disarm: refused")
        return M.MAV_RESULT_DENIED, f"Arm: param1 {p[0]:g} is not 0 or 1"

    def _cmd_takeoff(self, p: list[float]) -> tuple[int, str]:
        return self._verdict(self.copter.takeoff(float(p[6])), "Takeoff refused")

    def _cmd_do_set_mode(self, p: list[float]) -> tuple[int, str]:
        return self._verdict(self.copter.set_mode(int(p[1])), "Mode change failed")

    def _cmd_reboot(self, p: list[float]) -> tuple[int, str]:
        action = int(round(p[0]))
        if action == 0:
            return M.MAV_RESULT_ACCEPTED, ""
        if self.copter.armed:
            return M.MAV_RESULT_FAILED, "Reboot refused: vehicle is armed"
        if action == 1:
            self._reboot_at = time.monotonic() + REBOOT_DELAY_S
            return M.MAV_RESULT_ACCEPTED, ""
        if action == 3:
            if not self.has_bootloader:
                return M.MAV_RESULT_UNSUPPORTED, "Reboot to bootloader: no bootloader"
            self._bootloader_at = time.monotonic() + BOOTLOADER_DELAY_S
            return M.MAV_RESULT_ACCEPTED, ""
        return M.MAV_RESULT_UNSUPPORTED, f"Reboot action {action} not supported"

    def _cmd_set_message_interval(self, p: list[float]) -> tuple[int, str]:
        msg_id, interval = int(p[0]), p[1]
        if msg_id not in self._builders:
            return M.MAV_RESULT_FAILED, ""
        if interval == -1:
            self._intervals[msg_id] = None
        elif interval == 0:
            hz = DEFAULT_RATES_HZ.get(msg_id)
            self._intervals[msg_id] = int(round(1e6 / hz)) if hz else None
        elif interval > 0:
            self._intervals[msg_id] = max(1, int(interval))
        else:
            return M.MAV_RESULT_DENIED, ""
        self._due[msg_id] = self.time_us  # the next step sends it
        self._next_stream_us = 0
        return M.MAV_RESULT_ACCEPTED, ""

    def _cmd_get_message_interval(self, p: list[float]) -> tuple[int, str]:
        msg_id = int(p[0])
        if msg_id not in self._builders:
            return M.MAV_RESULT_FAILED, ""
        interval = self._intervals.get(msg_id)
        reply = self.codec.message_interval_encode(msg_id, interval if interval else -1)
        self._follow_up = lambda: self._send(reply)
        return M.MAV_RESULT_ACCEPTED, ""

    def _cmd_request_message(self, p: list[float]) -> tuple[int, str]:
        builder = self._builders.get(int(p[0]))
        reply = builder() if builder is not None else None
        if reply is None:
            return M.MAV_RESULT_FAILED, ""
        self._follow_up = lambda: self._send(reply)
        return M.MAV_RESULT_ACCEPTED, ""

    def _cmd_request_capabilities(self, p: list[float]) -> tuple[int, str]:
        reply = self._autopilot_version()
        self._follow_up = lambda: self._send(reply)
        return M.MAV_RESULT_ACCEPTED, ""

    def _on_set_mode(self, msg: Any) -> None:
        if msg.target_system != VFC_SYSTEM_ID:
            return
        result, reason = self._verdict(
            self.copter.set_mode(int(msg.custom_mode)), "Mode change failed"
        )
        self._ack(msg, M.MAVLINK_MSG_ID_SET_MODE, result)
        if reason:
            self._say_once(M.MAV_SEVERITY_WARNING, reason)

    # -- position targets --------------------------------------------------------------
    def _goto(self, north: float, east: float, down: float | None) -> None:
        accepted, reason = self.copter.goto_ned(north, east, down)
        if not accepted:
            self._say_once(M.MAV_SEVERITY_WARNING, reason or "Position target refused")

    def _on_target_local(self, msg: Any) -> None:
        if not self._for_us(msg):
            return
        mask = msg.type_mask
        if mask & 0x3 == 0x3:  # x and y ignored: velocity/acceleration targets unsupported
            return
        down = None if mask & 0x4 else float(msg.z)
        north, east = float(msg.x), float(msg.y)
        if msg.coordinate_frame == M.MAV_FRAME_LOCAL_OFFSET_NED:
            n0, e0, d0 = self.copter.position_ned
            north, east = n0 + north, e0 + east
            down = None if down is None else d0 + down
        elif msg.coordinate_frame != M.MAV_FRAME_LOCAL_NED:
            self.statustext(M.MAV_SEVERITY_WARNING, f"Frame {msg.coordinate_frame} not supported")
            return
        self._goto(north, east, down)

    def _on_target_global(self, msg: Any) -> None:
        if not self._for_us(msg):
            return
        mask = msg.type_mask
        if mask & 0x3 == 0x3:
            return
        home = self.copter.home
        if home is None:
            self.statustext(M.MAV_SEVERITY_WARNING, "Position target refused: no home")
            return
        origin = Home(*home)
        relative = msg.coordinate_frame in (
            M.MAV_FRAME_GLOBAL_RELATIVE_ALT,
            M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
            M.MAV_FRAME_GLOBAL_TERRAIN_ALT,
            M.MAV_FRAME_GLOBAL_TERRAIN_ALT_INT,
        )
        alt_amsl = origin.alt_m + msg.alt if relative else float(msg.alt)
        north, east, down = lla_to_ned(msg.lat_int / 1e7, msg.lon_int / 1e7, alt_amsl, origin)
        self._goto(north, east, None if mask & 0x4 else down)

    # -- parameters --------------------------------------------------------------------
    def _param_type(self, name: str) -> int:
        d = self.params.definition(name)
        if d.kind == "float":
            return M.MAV_PARAM_TYPE_REAL32
        if -128 <= d.minimum and d.maximum <= 127:
            return M.MAV_PARAM_TYPE_INT8
        if -32768 <= d.minimum and d.maximum <= 32767:
            return M.MAV_PARAM_TYPE_INT16
        return M.MAV_PARAM_TYPE_INT32

    def _param_value(self, name: str) -> Any:
        return self.codec.param_value_encode(
            name.encode("ascii"),
            self.params.get(name),
            self._param_type(name),
            len(self.params),
            self.params.index(name),
        )

    def _on_param_request_list(self, msg: Any) -> None:
        if not self._for_us(msg):
            return
        for name in self.params.names():
            self._send(self._param_value(name))

    def _on_param_request_read(self, msg: Any) -> None:
        if not self._for_us(msg):
            return
        names = self.params.names()
        if msg.param_index >= 0:
            if msg.param_index < len(names):
                self._send(self._param_value(names[msg.param_index]))
            return
        name = _text(msg.param_id)
        if name in self.params:
            self._send(self._param_value(name))

    def _on_param_set(self, msg: Any) -> None:
        if not self._for_us(msg):
            return
        name = _text(msg.param_id)
        if name not in self.params:
            self.statustext(M.MAV_SEVERITY_WARNING, f"Param set: unknown parameter {name}")
            return
        problem = ""
        try:
            self.params.set(name, msg.param_value)
            if name in LOOP_MODEL_PARAMS:
                self._configure_loop_model()
            self.params.save()
        except ParamError as exc:
            problem = f"Param set refused: {exc}"
        except OSError as exc:
            self.log(f"parameter storage failed: {exc}")
            problem = f"Param storage failed: {exc.strerror}"
        # The value now held first (what a ground station waits for), then the reason.
        self._send(self._param_value(name))
        if problem:
            self.statustext(M.MAV_SEVERITY_WARNING, problem)

    # -- statistics --------------------------------------------------------------------
    def timing_summary(self) -> str:
        """One line of per-step timing for the log: Copter.loop and server overhead."""
        if not self.loop_ns:
            return "no sensor steps served"
        import numpy as np

        loop = np.asarray(self.loop_ns) / 1000.0
        over = np.asarray(self.overhead_ns) / 1000.0
        return (
            f"{len(loop)} steps; Copter.loop median {np.median(loop):.1f} us p99 "
            f"{np.percentile(loop, 99):.1f} us; server read-to-reply overhead median "
            f"{np.median(over):.1f} us p99 {np.percentile(over, 99):.1f} us"
        )

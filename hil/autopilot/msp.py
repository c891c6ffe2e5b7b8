"""The harness's view of a Betaflight-class board over MSP, with its CLI on the same port.

Betaflight answers MSP requests strictly in order, one per pass of its serial task
(100 Hz by default, `serial_update_rate_hz`). Every request here is written whole, its
reply matched by command id, and every wait is bounded with a message naming what was
waited for. `request_many` keeps several requests in flight to save round trips.

The CLI has two ways in on this firmware (Betaflight 4.6, `msp_serial.c` / `cli.c`):

- the interactive session: `#` followed by 100 ms of quiet. It echoes, prompts with
  `# `, and sets the arming-disable flag CLI until the next reboot; `exit` reboots,
  `exit noreboot` leaves without rebooting but the CLI flag stays set.
- one-shot commands: STX (0x02) puts the port in a non-interactive CLI at once (the
  board answers STX), the command line runs, ETX (0x03) leaves again (the board answers
  ETX). No echo, no prompt, no arming-disable flag, no reboot needed afterwards.

`cli()` uses the interactive session when one is open (`cli_enter()`) and one-shot
commands otherwise. Neither works while armed: the firmware then ignores non-MSP bytes.

`save`, `exit`, `defaults` and MSP_REBOOT make the board reboot (the SITL exits and its
launcher starts it again): the adapter waits for the link to drop and reopens it, with
the launcher's help when given one (`sitl=`), through a `reconnect` callable, or by
reopening the same URL until the board answers again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hil.autopilot.controller import ControllerIdentity, ControllerState
from hil.codecs import msp
from hil.codecs.msp import (
    ApiVersion,
    Attitude,
    BoardInfo,
    Direction,
    FailsafeConfig,
    Feature,
    ModeRange,
    MspCommand,
    MspFrame,
    MspParser,
    RawImu,
    RebootMode,
    Status,
)
from hil.errors import (
    BoardNotAnswering,
    CommandRefused,
    ConfigError,
    HilError,
    LinkError,
    ParamError,
    WaitTimeout,
)
from hil.links.serial_link import SerialLink
from hil.profiles import BETAFLIGHT, Command, FirmwareProfile, ProfileLacks
from hil.profiles import profile as firmware_profile
from hil.timeout import Deadline

log = logging.getLogger(__name__)

#: Betaflight's permanent box ids (MSP_BOXIDS) of the modes the harness cares about, from
#: its profile; an adapter reads them from its own profile (`MspAutopilot.profile`).
BOX_ARM = BETAFLIGHT.modes["ARM"]
BOX_ANGLE = BETAFLIGHT.modes["ANGLE"]
BOX_FAILSAFE = BETAFLIGHT.modes["FAILSAFE"]
#: Boxes the adapter switches or reads, which its profile must number.
_BOXES_USED = ("ARM", "ANGLE", "FAILSAFE")

#: Arming-disable flags that stay until RC is sent (and the arm switch is flipped).
RC_PENDING_FLAGS = frozenset({"ARM_SWITCH", "THROTTLE", "RXLOSS"})

#: RC channels in AETR order (Betaflight's default `map`), sticks centred, throttle and
#: AUX low: what a transmitter sends when nobody touches it.
RC_IDLE = (1500, 1500, 1000, 1500, 1000, 1000, 1000, 1000)

_STX = b"\x02"
_ETX = b"\x03"
_PROMPT = b"\r\n# "
_BANNER = b"Entering CLI Mode"
_PROMPT_SETTLE = 0.03
_MAX_RC_CHANNELS = 18
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
#: CLI commands that only print, even with arguments (a bare command only prints too).
_READ_ONLY_CLI = frozenset({"get", "help", "dump", "diff", "version", "status", "tasks"})


#: Serial port function bits (Betaflight `io/serial.h`): MSP and a serial receiver.
SERIAL_FUNCTION_MSP = 1
SERIAL_FUNCTION_RX_SERIAL = 64
#: serial port function GPS (Betaflight src/main/io/serial.h FUNCTION_GPS = 1 << 1).
SERIAL_FUNCTION_GPS = 2


class MspCommandError(CommandRefused):
    """The board answered an MSP request with an error frame (`$M!` / `$X!`)."""

    def __init__(self, message: str, cmd: int) -> None:
        super().__init__(message)
        self.cmd = cmd


class MspNoReply(BoardNotAnswering):
    """An MSP request got no reply in time."""


class CliError(CommandRefused):
    """The CLI printed an error for a command (`###ERROR ...###`, unknown command)."""


class CliSessionOpen(HilError):
    """An MSP request was made while the port is in the interactive CLI."""


def _cmd_name(cmd: int) -> str:
    try:
        return f"MSP_{MspCommand(cmd).name} ({cmd})"
    except ValueError:
        return f"MSP command {cmd}"


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class MspIdentity:
    """Who the board says it is."""

    api: str  # "1.47"
    protocol: int
    variant: str  # "BTFL"
    firmware: str  # "4.6.0"
    board: str  # four-letter board identifier, "SITL"
    target: str | None  # target name when the firmware sends it


@dataclass(frozen=True)
class FcStatus:
    """MSP_STATUS_EX, decoded, with names for the flags.

    `arming_disabled` holds the CLI's names of the arming-disable flags (RXLOSS,
    BOOTGRACE, ARM_SWITCH, ...); `modes` the names of the active boxes (ARM, ANGLE,
    FAILSAFE, ...); `failsafe_mode` is the FAILSAFE box, on while failsafe stage 2 runs.
    `t` is the host's monotonic clock when the reply arrived.
    """

    t: float
    cycle_time_us: int
    system_load: int
    armed: bool
    failsafe_mode: bool
    flight_modes: int
    modes: tuple[str, ...]
    arming_disable_flags: int
    arming_disabled: tuple[str, ...]
    reboot_required: bool
    raw: Status

    @property
    def mode_names(self) -> tuple[str, ...]:
        return self.modes

    @property
    def arming_disable_names(self) -> tuple[str, ...]:
        return self.arming_disabled

    def has_flag(self, name: str) -> bool:
        return bool(self.arming_disable_flags & msp.arming_disable_bit(name))

    def summary(self) -> str:
        flags = " ".join(self.arming_disabled) or "none"
        modes = " ".join(self.modes) or "none"
        return (
            f"{'armed' if self.armed else 'disarmed'}, modes {modes}, arming-disable {flags}, "
            f"cycle {self.cycle_time_us} us"
        )


@dataclass(frozen=True)
class TaskRow:
    """One line of the CLI's `tasks` table (statistics columns None when not printed)."""

    id: int
    name: str
    rate_hz: int
    max_us: int | None = None
    avg_us: int | None = None
    max_load_pct: float | None = None
    avg_load_pct: float | None = None
    total_ms: int | None = None
    late: int | None = None
    runs: int | None = None
    required_us: int | None = None


@dataclass(frozen=True)
class _SettingInfo:
    name: str
    value: str
    range: tuple[int, int] | None = None
    choices: tuple[str, ...] | None = None
    array_length: int | None = None
    string_length: tuple[int, int] | None = None


# ----------------------------------------------------------------------- CLI parsing

_TASK_RE = re.compile(r"^\s*(\d+)\s+-\s+\(\s*([^)]*?)\s*\)\s*(.*)$")
_PCT_RE = re.compile(r"^(-?\d+(?:\.\d+)?)%$")


def parse_tasks(text: str) -> list[TaskRow]:
    """Rows of the CLI `tasks` output (header, RX check and total lines are skipped)."""
    rows = []
    for line in text.splitlines():
        m = _TASK_RE.match(line)
        if not m:
            continue
        fields = m.group(3).split()
        values: list[Any] = []
        for f in fields:
            pct = _PCT_RE.match(f)
            if pct:
                values.append(float(pct.group(1)))
            elif re.fullmatch(r"-?\d+", f):
                values.append(int(f))
            else:
                break
        if not values:
            continue
        keys = ("max_us", "avg_us", "max_load_pct", "avg_load_pct", "total_ms", "late", "runs", "required_us")
        extra = dict(zip(keys, values[1:], strict=False))
        rows.append(TaskRow(int(m.group(1)), m.group(2), int(values[0]), **extra))
    return rows


def parse_cli_status(text: str) -> dict[str, str]:
    """The CLI `status` output as `{key: value}`; comma-separated pairs are split."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = re.match(r"^MCU (\S+) Clock=(\S+)$", line)
        if m:
            out["MCU"], out["Clock"] = m.group(1), m.group(2)
            continue
        pieces = [p.strip() for p in line.split(", ")]
        if len(pieces) > 1 and not all(re.search(r"[:=]", p) for p in pieces):
            pieces = [line]  # a value with commas in it ("Gyros detected: gyro 1, gyro 2")
        for piece in pieces:
            m = re.match(r"^([^:=]+?)\s*[:=]\s*(.*)$", piece)
            if m:
                out[m.group(1)] = m.group(2)
            else:
                out.setdefault("lines", "")
                out["lines"] = (out["lines"] + "\n" + piece).strip()
    return out


def _parse_setting(name: str, text: str) -> _SettingInfo:
    """The block of `get <name>` output for exactly `name` (get matches substrings)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\S+) = (.*)$", line)
        if not m or m.group(1).lower() != name.lower():
            continue
        info: dict[str, Any] = {"name": m.group(1), "value": m.group(2).strip()}
        for follow in lines[i + 1 :]:
            if re.match(r"^\S+ = ", follow):
                break
            if r := re.match(r"^Allowed range: (-?\d+) - (-?\d+)", follow):
                info["range"] = (int(r.group(1)), int(r.group(2)))
            elif r := re.match(r"^Allowed values: (.*)$", follow):
                info["choices"] = tuple(v.strip() for v in r.group(1).split(","))
            elif r := re.match(r"^Array length: (\d+)", follow):
                info["array_length"] = int(r.group(1))
            elif r := re.match(r"^String length: (\d+) - (\d+)", follow):
                info["string_length"] = (int(r.group(1)), int(r.group(2)))
        return _SettingInfo(**info)
    raise ParamError(f"the board has no setting named {name!r} (`get {name}` printed: {text!r})")


def _cli_errors(text: str) -> list[str]:
    errors = re.findall(r"###ERROR(?: IN)? ?(.*?)###", text)
    errors += [line.strip() for line in text.splitlines() if line.startswith("ERR_CMD_NA")]
    return errors


def _check_cli_text(what: str, text: str) -> None:
    for ch in text:
        if not 32 <= ord(ch) <= 126 or ch in "#?":
            raise ValueError(
                f"{what} {text!r} contains {ch!r}: the CLI takes printable ASCII only, and "
                "treats '#' as a comment and '?' as completion"
            )


# --------------------------------------------------------------------------- adapter


class MspAutopilot:
    """Requests, waits and the CLI on one MSP port of a Betaflight-class board.

    `link` is a pyserial URL (`socket://10.231.0.2:5761`, `/dev/ttyACM0`) or an already
    open link with `read(timeout) -> Chunk | bytes | None`, `write(bytes)`, `close()`.
    After a reboot the link is reopened: through `sitl` (a launcher with `generation`,
    `wait_restarted(generation, timeout)`), through `reconnect` (called with no argument,
    returns a URL or an open link; called again until the board answers), or by opening
    the same URL again. All I/O holds one lock: a closed-loop thread and a test thread
    may share an adapter.

    `profile` (hil.profiles, Betaflight by default) numbers the ARM, ANGLE and FAILSAFE
    boxes and says how MSP_REBOOT reboots the firmware and into its bootloaders.

    Given a URL, the constructor opens it and waits (`connect_timeout`) until the board
    answers MSP (`probe=False` skips that). Given `sitl` (the launcher, with `restart()`),
    a boot that hangs (no MSP answer, or a scheduler that never runs: cycle time stuck
    at 0 with only BOOTGRACE set, which the Betaflight 4.6 SITL does in a large share of
    boots on a loaded host; a healthy boot runs as soon as its port opens) is restarted,
    at most `respawn_attempts` times, at connect, after each reboot and in
    `ensure_running`.
    """

    def __init__(
        self,
        link: str | Any,
        *,
        timeout: float = 1.0,
        sitl: Any = None,
        reconnect: Callable[[], Any] | None = None,
        baudrate: int = 115200,
        reboot_timeout: float = 15.0,
        pipeline_bytes: int = 192,
        connect_timeout: float = 5.0,
        probe: bool = True,
        respawn_attempts: int = 5,
        running_timeout: float = 1.5,
        profile: FirmwareProfile | str = BETAFLIGHT,
    ) -> None:
        self.profile = _msp_profile(profile)
        self.timeout = timeout
        self.reboot_timeout = reboot_timeout
        self.pipeline_bytes = pipeline_bytes
        self.baudrate = baudrate
        self._sitl = sitl
        self._reconnect = reconnect
        self._lock = threading.RLock()
        self._parser = MspParser()
        self._frames: deque[MspFrame] = deque()
        self._boxes: list[tuple[int, str]] | None = None
        self._in_cli = False
        self._resync = False
        self._debug_mode: str | None = None
        self._arm_switch: Callable[[bool], None] | None = None
        #: Frames that arrived but answered nothing asked for (stale or fire-and-forget).
        self.unmatched = 0
        #: Error replies to fire-and-forget requests, and the last of them.
        self.unsolicited_errors = 0
        self.last_unsolicited_error: MspFrame | None = None
        #: How many times the link was reopened after a reboot.
        self.reconnects = 0
        #: True once this adapter changed the board's configuration (RAM or saved).
        self.dirty = False
        #: How many hung SITL boots this adapter restarted.
        self.respawns = 0
        self.respawn_attempts = respawn_attempts
        self.running_timeout = running_timeout
        self._link: Any = None
        self.url: str | None = link if isinstance(link, str) else getattr(link, "url", None)
        if not isinstance(link, str):
            self._link = link
            return
        if not probe:
            self._link = self._open_url(link)
            return
        with self._lock:
            try:
                self._open_and_probe(Deadline(connect_timeout), "", count=False)
            except BoardNotAnswering as exc:
                if not self._can_respawn():
                    raise
                self._respawn(f"did not answer MSP at connect ({exc})")
            if self._can_respawn():
                self.ensure_running()

    # -- link ----------------------------------------------------------------------------

    @property
    def link(self) -> Any:
        """The open link to the board (None while closed or reopening after a reboot)."""
        return self._link

    def _open_url(self, url: str) -> Any:
        return SerialLink(url, self.baudrate).open()

    def close(self) -> None:
        """Close the link (idempotent)."""
        with self._lock:
            link, self._link = self._link, None
            if link is not None:
                try:
                    link.close()
                except Exception:  # noqa: BLE001 - closing a dead link must not raise
                    pass

    def __enter__(self) -> MspAutopilot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def in_cli(self) -> bool:
        """True while the interactive CLI session is open on this port."""
        return self._in_cli

    def _where(self) -> str:
        return self.url or repr(self._link)

    def _require_link(self) -> Any:
        if self._link is None:
            raise LinkError(f"MSP link {self._where()} is closed")
        return self._link

    def _read(self, timeout: float) -> bytes:
        """Bytes from the link within `timeout` (b"" if none came); LinkError at EOF."""
        chunk = self._require_link().read(max(0.0, timeout))
        if chunk is None:
            return b""
        return chunk if isinstance(chunk, bytes | bytearray) else chunk.data

    def _write(self, data: bytes) -> None:
        self._require_link().write(data)

    def _reset_stream(self) -> None:
        self._parser = MspParser()
        self._frames.clear()

    def _drain(self, quiet: float = 0.0) -> None:
        """Throw away what the board already sent (waiting for `quiet` s of silence)."""
        deadline = Deadline(max(0.5, quiet * 10))
        while not deadline.expired:
            data = self._read(quiet)
            if not data:
                break
            for frame in self._parser.feed(data):
                self._note_unmatched(frame)
        while self._frames:
            self._note_unmatched(self._frames.popleft())

    def _note_unmatched(self, frame: MspFrame) -> None:
        if frame.direction == Direction.REQUEST:
            return
        self.unmatched += 1
        if frame.is_error:
            self.unsolicited_errors += 1
            self.last_unsolicited_error = frame

    def _next_frame(self, deadline: Deadline) -> MspFrame | None:
        while not self._frames:
            remaining = deadline.remaining
            if remaining <= 0:
                return None
            data = self._read(remaining)
            if data:
                self._frames.extend(self._parser.feed(data))
        return self._frames.popleft()

    # -- requests ------------------------------------------------------------------------

    @staticmethod
    def _encode(cmd: int, payload: bytes) -> bytes:
        version = 2 if cmd > 254 or len(payload) > msp.MAX_V1_PAYLOAD else 1
        return msp.encode_request(cmd, bytes(payload), version=version)

    def _check_usable(self, what: str) -> None:
        if self._in_cli:
            raise CliSessionOpen(
                f"cannot send {what}: the interactive CLI is open on {self._where()}; "
                "call cli_exit() first"
            )

    def request(self, cmd: int, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        """Send one request and return its reply's payload.

        v1 framing, v2 for commands above 254. Raises MspCommandError on an error reply,
        MspNoReply when nothing answered within `timeout` (default: the adapter's).
        """
        return self.request_many([(cmd, payload)], timeout=timeout)[0]

    def request_many(
        self, requests: Iterable[tuple[int, bytes] | int], *, timeout: float | None = None
    ) -> list[bytes]:
        """Pipeline several requests; return their reply payloads in order.

        Up to `pipeline_bytes` of requests are in flight at once (a board's receive
        buffer is small); `timeout` bounds the wait for each next reply. If some
        replies are errors, all replies are still collected (the stream stays in step)
        and the first error is raised.
        """
        reqs = [(r, b"") if isinstance(r, int) else (int(r[0]), bytes(r[1])) for r in requests]
        if not reqs:
            return []
        wait = self.timeout if timeout is None else timeout
        encoded = [self._encode(cmd, payload) for cmd, payload in reqs]
        with self._lock:
            self._check_usable(_cmd_name(reqs[0][0]))
            self._drain(0.1 if self._resync else 0.0)
            self._resync = False
            payloads: list[bytes] = []
            errors: list[MspCommandError] = []
            sent = got = in_flight = 0
            deadline = Deadline(wait)
            while got < len(reqs):
                batch = bytearray()
                while sent < len(reqs) and (
                    sent == got or in_flight + len(encoded[sent]) <= self.pipeline_bytes
                ):
                    batch += encoded[sent]
                    in_flight += len(encoded[sent])
                    sent += 1
                if batch:
                    self._write(bytes(batch))
                cmd = reqs[got][0]
                frame = self._next_frame(deadline)
                if frame is None:
                    self._resync = True
                    done = f" ({got} of {len(reqs)} pipelined requests answered)" if len(reqs) > 1 else ""
                    raise MspNoReply(
                        f"no reply to {_cmd_name(cmd)} from {self._where()} within {wait:.2f} s{done}; "
                        f"{self.unmatched} unmatched frames and {self._parser.discarded} "
                        "non-MSP bytes seen so far"
                    )
                if frame.direction == Direction.REQUEST or frame.cmd != cmd:
                    self._note_unmatched(frame)
                    continue
                if frame.is_error:
                    errors.append(
                        MspCommandError(
                            f"the board refused {_cmd_name(cmd)} (error reply"
                            f"{', payload ' + frame.payload.hex(' ') if frame.payload else ''})",
                            cmd,
                        )
                    )
                payloads.append(frame.payload)
                in_flight -= len(encoded[got])
                got += 1
                deadline = Deadline(wait)
            if errors:
                if len(errors) > 1:
                    raise MspCommandError(f"{errors[0]} and {len(errors) - 1} more", errors[0].cmd)
                raise errors[0]
            return payloads

    def send(self, cmd: int, payload: bytes = b"") -> None:
        """Fire and forget: write a request, then discard what has arrived, unread.

        Replies (and error replies, counted in `unsolicited_errors`) are thrown away
        without waiting; for streams such as RC at 50 Hz.
        """
        data = self._encode(cmd, payload)
        with self._lock:
            self._check_usable(_cmd_name(cmd))
            self._write(data)
            self._drain(0.0)

    # -- identity and telemetry --------------------------------------------------------

    def identify(self) -> MspIdentity:
        """API version, firmware variant and version, board identifier (one pipelined trip)."""
        api_p, variant_p, version_p, board_p = self.request_many(
            [MspCommand.API_VERSION, MspCommand.FC_VARIANT, MspCommand.FC_VERSION, MspCommand.BOARD_INFO]
        )
        api = ApiVersion.decode(api_p)
        version = msp.FcVersion.decode(version_p)
        board = BoardInfo.decode(board_p)
        return MspIdentity(
            api=f"{api.major}.{api.minor}",
            protocol=api.protocol,
            variant=msp.FcVariant.decode(variant_p).identifier,
            firmware=f"{version.major}.{version.minor}.{version.patch}",
            board=board.identifier,
            target=board.target_name,
        )

    def boxes(self, *, refresh: bool = False) -> list[tuple[int, str]]:
        """The active boxes as (permanent id, name), in flight-mode bit order."""
        with self._lock:
            if self._boxes is None or refresh:
                ids_p, names_p = self.request_many([MspCommand.BOXIDS, MspCommand.BOXNAMES])
                ids, names = msp.decode_box_ids(ids_p), msp.decode_box_names(names_p)
                if len(ids) != len(names):
                    names = names + [f"BOX{i}" for i in ids[len(names) :]]
                self._boxes = list(zip(ids, names, strict=False))
            return list(self._boxes)

    def _decode_status(self, payload: bytes, t: float) -> FcStatus:
        raw = msp.decode_status_ex(payload)
        boxes = self._boxes or []
        active = [boxes[i] for i in range(len(boxes)) if raw.flight_modes >> i & 1]
        if boxes:
            box = self.profile.modes["FAILSAFE"]
            failsafe = any(pid == box for pid, _ in active)
        else:
            failsafe = raw.failsafe_mode
        return FcStatus(
            t=t,
            cycle_time_us=raw.cycle_time_us,
            system_load=raw.system_load,
            armed=raw.armed,
            failsafe_mode=failsafe,
            flight_modes=raw.flight_modes,
            modes=tuple(name for _, name in active),
            arming_disable_flags=raw.arming_disable_flags,
            arming_disabled=tuple(msp.arming_disable_names(raw.arming_disable_flags)),
            reboot_required=raw.reboot_required,
            raw=raw,
        )

    def status(self) -> FcStatus:
        """MSP_STATUS_EX with flag and mode names (box names are fetched once per link)."""
        with self._lock:
            if self._boxes is None:
                self.boxes()
            payload = self.request(MspCommand.STATUS_EX)
            return self._decode_status(payload, time.monotonic())

    def rc(self) -> tuple[int, ...]:
        """MSP_RC: channel values (us) in the firmware's order: roll, pitch, yaw, throttle, AUX1..."""
        return msp.RcChannels.decode(self.request(MspCommand.RC)).values

    def motors(self) -> tuple[int, ...]:
        """MSP_MOTOR: one value per output (1000 disarmed on the SITL, 0 unused)."""
        return msp.Motors.decode(self.request(MspCommand.MOTOR)).values

    def attitude(self) -> Attitude:
        return Attitude.decode(self.request(MspCommand.ATTITUDE))

    def raw_imu(self) -> RawImu:
        return RawImu.decode(self.request(MspCommand.RAW_IMU))

    def raw_gps(self) -> msp.RawGps:
        """MSP_RAW_GPS: the firmware's GPS solution (fix, satellites, position, speed)."""
        return msp.RawGps.decode(self.request(MspCommand.RAW_GPS))

    def comp_gps(self) -> msp.CompGps:
        """MSP_COMP_GPS: distance and direction to the home point the firmware set."""
        return msp.CompGps.decode(self.request(MspCommand.COMP_GPS))

    def failsafe_config(self) -> FailsafeConfig:
        return FailsafeConfig.decode(self.request(MspCommand.FAILSAFE_CONFIG))

    def analog(self) -> msp.Analog:
        """MSP_ANALOG: battery and the firmware's RSSI (0..1023)."""
        return msp.Analog.decode(self.request(MspCommand.ANALOG))

    def link_quality(self) -> tuple[float, float | None]:
        """(RSSI %, LQ %) as the firmware sees its receiver. LQ is read from debug[2],
        which holds it only with ``debug_mode = CRSF_LINK_STATISTICS_UPLINK`` (the bench
        configuration of a CRSF board sets it); None when another debug mode is set or
        the mode was not read (`debug_mode()`) while the board was disarmed: the CLI,
        which tells it, does not answer an armed board."""
        rssi = self.analog().rssi_percent
        lq: float | None = None
        if self._debug_mode == "CRSF_LINK_STATISTICS_UPLINK":
            lq = float(self.debug()[2])
        return rssi, lq

    def debug_mode(self) -> str:
        """The board's debug_mode, read through the CLI once per link (disarmed only)."""
        if self._debug_mode is None:
            self._debug_mode = self.get("debug_mode").upper()
        return self._debug_mode

    def debug(self) -> tuple[int, ...]:
        """MSP_DEBUG (254): the firmware's debug[] values (see `debug_mode`)."""
        return msp.decode_debug(self.request(MspCommand.DEBUG))

    def failsafe_phase(self) -> str | None:
        """The failsafe's phase by the profile's name ("IDLE", "GPS_RESCUE", ...), or None
        when it cannot be read: ``debug_mode`` is not FAILSAFE, or was not read
        (`debug_mode()`) while the board was disarmed.

        flight/failsafe.c failsafeUpdateState() puts the phase (failsafePhase_e) into
        debug[3] with ``debug_mode = FAILSAFE`` (the bench configuration's). It tells what
        MSP_STATUS cannot: disarmed, the GPS RESCUE mode bit is off (fc/core.c
        processRxModes needs ARMED) even while the failsafe still sits in its GPS_RESCUE
        phase, which the next arming turns back into a rescue."""
        if self._debug_mode != "FAILSAFE":
            return None
        values = self.debug()
        if len(values) < 4:
            return None
        phases = self.profile.failsafe_phases
        phase = values[3]
        return phases[phase] if 0 <= phase < len(phases) else f"phase {phase}"

    def feature_mask(self) -> int:
        """MSP_FEATURE_CONFIG: enabled features (`msp.Feature`), RX_MSP included."""
        return msp.decode_feature_config(self.request(MspCommand.FEATURE_CONFIG))

    def set_feature_mask(self, mask: int) -> None:
        """MSP_SET_FEATURE_CONFIG, then read back; RAM only until saved (takes effect at reboot)."""
        self.dirty = True
        self.request(MspCommand.SET_FEATURE_CONFIG, msp.encode_feature_config(mask))
        got = self.feature_mask()
        if got != mask:
            raise CommandRefused(
                f"feature mask 0x{mask:08x} was sent but the board reports 0x{got:08x}"
            )

    def mode_ranges(self) -> list[ModeRange]:
        """MSP_MODE_RANGES: every mode-activation slot (start == end: unused)."""
        return msp.decode_mode_ranges(self.request(MspCommand.MODE_RANGES))

    def set_mode_range(
        self, index: int, box_id: int, aux_channel: int, start_us: int, end_us: int
    ) -> ModeRange:
        """Set slot `index` to activate box `box_id` (permanent id, 0 = ARM) while AUX
        `aux_channel` (0 = AUX1) is within start_us..end_us; read back and return it.

        Values must be on the firmware's 25 us grid from 900 to 2100: anything else is
        refused here rather than rounded on the board. RAM only until saved.
        """
        for label, us in (("start_us", start_us), ("end_us", end_us)):
            if not 900 <= us <= 2100 or (us - 900) % 25:
                raise ValueError(f"{label} = {us} is not on the 25 us grid from 900 to 2100")
        if start_us > end_us:
            raise ValueError(f"start_us {start_us} is above end_us {end_us}")
        wanted = ModeRange(index, box_id, aux_channel, msp.us_to_step(start_us), msp.us_to_step(end_us))
        with self._lock:
            ranges = self.mode_ranges()
            if not 0 <= index < len(ranges):
                raise ValueError(f"mode range index {index} is outside 0..{len(ranges) - 1}")
            self.dirty = True
            self.request(MspCommand.SET_MODE_RANGE, wanted.encode())
            got = self.mode_ranges()[index]
            self._boxes = None
        if got != wanted:
            raise CommandRefused(f"mode range {wanted} was sent but the board reports {got}")
        return got

    def set_raw_rc(self, channels: Sequence[int], *, wait: bool = True) -> None:
        """MSP_SET_RAW_RC (200): channels in receiver order (AETR by default), in us.

        `wait=False` does not wait for the acknowledgement (for a 50 Hz stream).
        """
        if not 1 <= len(channels) <= _MAX_RC_CHANNELS:
            raise ValueError(f"MSP_SET_RAW_RC takes 1..{_MAX_RC_CHANNELS} channels, got {len(channels)}")
        payload = msp.RcChannels(tuple(int(c) for c in channels)).encode()
        if wait:
            self.request(MspCommand.SET_RAW_RC, payload)
        else:
            self.send(MspCommand.SET_RAW_RC, payload)

    def write_eeprom(self) -> None:
        """MSP_EEPROM_WRITE: persist the configuration without rebooting."""
        self.dirty = True
        self.request(MspCommand.EEPROM_WRITE, timeout=max(self.timeout, 3.0))

    def reboot(self, mode: RebootMode = RebootMode.FIRMWARE, *, timeout: float | None = None) -> None:
        """MSP_REBOOT; for a firmware reboot, wait for the board to come back and reopen."""
        with self._lock:
            gen = self._generation()
            code, payload = self._reboot_request(mode)
            try:
                self.request(code, payload)
            except (LinkError, MspNoReply):
                pass  # the board may go before its reply reaches us
            if mode == RebootMode.FIRMWARE:
                self._await_reboot(gen, timeout)

    def _reboot_request(self, mode: RebootMode) -> tuple[int, bytes]:
        """The MSP request that reboots in `mode`, as the profile gives it.

        The firmware reboot is the profile's `reboot`; a bootloader mode must be one of its
        MSP `bootloader` commands (CommandRefused otherwise); the mass-storage modes,
        which profiles do not describe, are MSP_REBOOT with their mode byte.
        """
        prof = self.profile
        if mode == RebootMode.FIRMWARE:
            return _msp_request(prof.reboot)
        if mode in (RebootMode.BOOTLOADER_ROM, RebootMode.BOOTLOADER_FLASH):
            for command in prof.bootloader:
                if command.kind == "msp" and command.payload == bytes([mode]):
                    return _msp_request(command)
            others = ", ".join(f"{c.kind} {c.code!r}" for c in prof.bootloader) or "none"
            raise CommandRefused(
                f"{prof.family} ({prof.name}) has no MSP reboot into {mode.name}; "
                f"its bootloader commands: {others}"
            )
        return MspCommand.REBOOT, msp.encode_reboot_request(mode)

    # -- waits ---------------------------------------------------------------------------

    def wait_status(
        self,
        what: str,
        predicate: Callable[[FcStatus], bool],
        *,
        timeout: float,
        interval: float = 0.02,
        describe: Callable[[FcStatus], str] | None = None,
    ) -> FcStatus:
        """Poll STATUS_EX until `predicate` holds; WaitTimeout names `what` and the last status."""
        deadline = Deadline(timeout)
        last: FcStatus | None = None
        while True:
            last = self.status()
            if predicate(last):
                return last
            if deadline.expired:
                extra = f"; {describe(last)}" if describe else ""
                raise WaitTimeout(
                    f"timed out after {timeout:.1f} s waiting for {what} on {self._where()}{extra}; "
                    f"last status: {last.summary()}"
                )
            time.sleep(min(interval, deadline.remaining))

    def wait_armable(
        self, timeout: float = 10.0, *, allow: Iterable[str] = RC_PENDING_FLAGS
    ) -> FcStatus:
        """Wait until no arming-disable flag is set but those in `allow` (CLI names)."""
        allowed = 0
        for name in allow:
            allowed |= msp.arming_disable_bit(name)
        names = msp.arming_disable_names(allowed)

        def remaining(st: FcStatus) -> str:
            left = msp.arming_disable_names(st.arming_disable_flags & ~allowed)
            return f"still blocking: {', '.join(left)}"

        return self.wait_status(
            f"the board to become armable (allowed to remain: {', '.join(names) or 'none'})",
            lambda st: not st.arming_disable_flags & ~allowed,
            timeout=timeout,
            describe=remaining,
        )

    def wait_armed(self, armed: bool = True, *, within: float = 5.0) -> FcStatus:
        """Wait until the board is armed (or, `armed=False`, disarmed)."""
        what = "armed" if armed else "disarmed"
        return self.wait_status(what, lambda st: st.armed is armed, timeout=within)

    def wait_disarmed(self, *, within: float = 5.0) -> FcStatus:
        return self.wait_armed(False, within=within)

    def wait_flag(self, name: str, present: bool = True, timeout: float = 5.0) -> FcStatus:
        """Wait until arming-disable flag `name` (RXLOSS, FAILSAFE, ...) is set (or cleared)."""
        bit = msp.arming_disable_bit(name)
        what = f"arming-disable flag {name.upper()} {'set' if present else 'cleared'}"
        return self.wait_status(
            what, lambda st: bool(st.arming_disable_flags & bit) is present, timeout=timeout
        )

    def wait_mode(self, mode: str, *, within: float = 5.0, active: bool = True) -> FcStatus:
        """Wait until the box for `mode` (a scenario word such as FAILSAFE, or a box name:
        ARM, ANGLE, ...) is on (or, `active=False`, off)."""
        key = self._box_name(mode)
        what = f"mode {key} {'on' if active else 'off'}"
        return self.wait_status(what, lambda st: (key in st.modes) is active, timeout=within)

    def _box_name(self, mode: str) -> str:
        word = mode.upper()
        key = self.profile.resolve(word) if self.profile.supports(word) else word
        known = [n for _, n in self.boxes()]
        if key not in known:
            raise ProfileLacks(
                self.profile.name, mode, f"the board has no box for {mode!r}; its boxes: {', '.join(known)}"
            )
        return key

    # -- the FlightController verbs (hil.autopilot.controller) ---------------------------

    def describe(self) -> ControllerIdentity:
        ident = self.identify()
        return ControllerIdentity(ident.variant, ident.firmware, ident.target or ident.board)

    def state(self) -> ControllerState:
        """Armed, and the flight mode: the first of the reported boxes that is one."""
        st = self.status()
        modes = [m for m in st.mode_names if m != "ARM"]
        shown = next((m for m in ("FAILSAFE", "GPS RESCUE", "ANGLE", "HORIZON") if m in modes), None)
        return ControllerState(bool(st.armed), shown or self.profile.idle_mode or "ACRO")

    def get_param(self, name: str) -> float | str:
        """A CLI setting: a number when it is one, else its text (an enum's name)."""
        text = self.get(name)
        try:
            return float(text)
        except ValueError:
            return text

    def set_param(self, name: str, value: Any) -> str:
        """Set a CLI setting (RAM until `save`); returns the old value. The adapter is
        marked dirty, so a session puts the bench configuration back afterwards."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.set(name, value)

    def snapshot_params(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The values of the CLI settings in `names` (a Betaflight has about 600; name
        the ones a test changes)."""
        if names is None:
            raise CommandRefused(
                "an MSP board's settings are read one by one through the CLI: name the ones to snapshot"
            )
        return {name: self.get_param(name) for name in names}

    def restore_params(self, snapshot: Mapping[str, Any]) -> list[str]:
        """Put back every setting that differs from `snapshot`; return their names."""
        changed = [name for name, value in snapshot.items() if self.get_param(name) != value]
        for name in changed:
            self.set_param(name, snapshot[name])
        return changed

    def attach_arm_switch(self, switch: Callable[[bool], None] | None) -> None:
        """Betaflight arms only from its receiver: give the adapter the hand on the arm
        switch (the simulator link's `arm_switch`) so that `arm`/`disarm` work."""
        self._arm_switch = switch

    def arm(self, *, force: bool = False, within: float = 5.0) -> None:
        """Arm by the switch; a switch the firmware latched (ARM_SWITCH, NOT_DISARMED:
        it was on while arming was blocked) is flipped off and on once, as a pilot would."""
        switch = self._require_switch("arm")
        if force:
            raise ProfileLacks(
                self.profile.name, "force", f"{self.profile.name} has no forced arming: it arms only when nothing blocks it"
            )
        switch(True)
        try:
            self.wait_armed(within=within / 2)
            return
        except WaitTimeout:
            flags = set(self.status().arming_disable_names)
            if not flags or flags - {"ARM_SWITCH", "NOT_DISARMED"}:
                raise CommandRefused(f"the board did not arm; arming blocked by {' '.join(sorted(flags))}") from None
        switch(False)
        self.wait_status("the arm-switch latch released", lambda st: not st.has_flag("ARM_SWITCH"), timeout=2.0)
        switch(True)
        self.wait_armed(within=within / 2)

    def disarm(self, *, force: bool = False, within: float = 5.0) -> None:
        self._require_switch("disarm")(False)
        self.wait_armed(False, within=within)

    def _require_switch(self, verb: str) -> Callable[[bool], None]:
        if self._arm_switch is None:
            raise CommandRefused(
                f"cannot {verb} {self.profile.name} over MSP: it arms by its RC switch; start the "
                "simulator link and attach its arm switch (attach_arm_switch)"
            )
        return self._arm_switch

    def set_mode(self, mode: str) -> None:
        """Betaflight's flight modes follow the mode switches (AUX ranges): this checks that
        `mode` is on, and refuses with the reason when the switches say otherwise."""
        key = self._box_name(mode)
        if key not in self.status().modes:
            raise CommandRefused(
                f"{self.profile.name} changes mode by its AUX switches, not by command; {key} is off "
                "(set a mode range with set_mode_range and move the switch)"
            )

    # -- reboots -------------------------------------------------------------------------

    def _generation(self) -> int | None:
        return getattr(self._sitl, "generation", None) if self._sitl is not None else None

    def _await_reboot(self, generation: int | None, timeout: float | None = None) -> None:
        """The board is rebooting: let the old link drop, then reopen when it is back."""
        wait = self.reboot_timeout if timeout is None else timeout
        deadline = Deadline(wait)
        if self._link is not None:
            old_link = Deadline(min(3.0, wait))
            try:
                while not old_link.expired:
                    self._read(min(0.1, old_link.remaining))
            except LinkError:
                pass  # the old board is gone: the expected end
        self.close()
        self._in_cli = False
        if self._sitl is not None and generation is not None:
            self._sitl.wait_restarted(generation, max(0.1, deadline.remaining))
        if not self._can_respawn():
            self._open_and_probe(deadline, "after the reboot")
            return
        try:
            self._open_and_probe(Deadline(min(5.0, deadline.remaining)), "after the reboot")
            self.wait_running(self.running_timeout)
        except (BoardNotAnswering, WaitTimeout) as exc:
            self._respawn(f"came back hung after the reboot ({exc})")

    def _can_respawn(self) -> bool:
        return self._sitl is not None and callable(getattr(self._sitl, "restart", None))

    def _respawn(self, why: str) -> None:
        """Restart a SITL whose boot hung until one boots properly (bounded)."""
        last = why
        for attempt in range(1, self.respawn_attempts + 1):
            log.warning("the board on %s %s; restarting it (%d of %d)",
                        self._where(), last, attempt, self.respawn_attempts)
            self.close()
            self._in_cli = False
            try:
                self._sitl.restart()
                self.respawns += 1
                self._open_and_probe(Deadline(5.0), "after a restart")
                self.wait_running(self.running_timeout)
                return
            except (HilError, OSError) as exc:
                last = f"hung again ({exc})"
        raise BoardNotAnswering(
            f"the SITL on {self._where()} did not boot properly in {self.respawn_attempts} "
            f"restarts: {last}"
        )

    def wait_running(self, timeout: float = 3.0) -> FcStatus:
        """Wait until the firmware's scheduler runs (STATUS_EX cycle time above 0)."""
        return self.wait_status(
            "the flight controller's scheduler to run (cycle time above 0)",
            lambda st: st.cycle_time_us > 0,
            timeout=timeout,
        )

    def ensure_running(self, timeout: float | None = None) -> FcStatus:
        """`wait_running`; with a SITL launcher, restart a hung boot instead of failing."""
        with self._lock:
            try:
                return self.wait_running(self.running_timeout if timeout is None else timeout)
            except (BoardNotAnswering, WaitTimeout) as exc:
                if not self._can_respawn():
                    raise
                self._respawn(f"is not running ({exc})")
                return self.status()

    def reopen(self, timeout: float = 10.0) -> None:
        """Close the link and open it again until the board answers MSP (bounded)."""
        with self._lock:
            self.close()
            self._in_cli = False
            self._open_and_probe(Deadline(timeout), "")

    def _open_and_probe(self, deadline: Deadline, why: str, count: bool = True) -> None:
        last = "no attempt"
        while True:
            try:
                if self._reconnect is not None:
                    new = self._reconnect()
                    link = self._open_url(new) if isinstance(new, str) else new
                    if isinstance(new, str):
                        self.url = new
                elif self.url is not None:
                    link = self._open_url(self.url)
                else:
                    raise BoardNotAnswering(
                        f"cannot reopen the MSP link {why}: it was given as an open link; "
                        "pass reconnect= or sitl= to MspAutopilot"
                    )
                self._link = link
                self._reset_stream()
                self._boxes = None
                self._debug_mode = None
                self.request(MspCommand.API_VERSION, timeout=min(0.5, max(0.05, deadline.remaining)))
                self.reconnects += count
                return
            except (LinkError, MspNoReply) as exc:
                last = str(exc)
                self.close()
            if deadline.expired:
                when = f" {why}" if why else ""
                raise BoardNotAnswering(
                    f"the board on {self._where()} did not answer MSP again{when} within "
                    f"{deadline.seconds:.0f} s (last: {last})"
                )
            time.sleep(min(0.05, deadline.remaining))

    # -- CLI -----------------------------------------------------------------------------

    def _read_until(
        self,
        done: Callable[[bytearray], bool],
        timeout: float,
        what: str,
        buf: bytearray | None = None,
        cap: float = 60.0,
    ) -> tuple[bytes, bool]:
        """Raw bytes (appended to `buf`) until `done(buf)`; (bytes, eof).

        `timeout` counts from the last byte received, `cap` bounds the whole read.
        """
        buf = bytearray() if buf is None else buf
        quiet = Deadline(timeout)
        total = Deadline(cap)
        while not done(buf):
            if quiet.expired or total.expired:
                raise BoardNotAnswering(
                    f"timed out after {timeout:.1f} s of silence waiting for {what} on "
                    f"{self._where()}; got {bytes(buf[-300:])!r}"
                )
            try:
                data = self._read(min(quiet.remaining, 0.1))
            except LinkError:
                return bytes(buf), True
            if data:
                buf += data
                quiet = Deadline(timeout)
        return bytes(buf), False

    def _read_prompt(self, timeout: float, what: str) -> tuple[bytes, bool]:
        """Interactive output up to a prompt that is not followed by more text.

        The firmware writes "\r\n# " both as its prompt and before a comment line such as
        "# saving"; a prompt counts once nothing follows it for a moment.
        """
        buf = bytearray()
        while True:
            _, eof = self._read_until(
                lambda b: b.endswith(_PROMPT) or b.rstrip().endswith(b"Rebooting"),
                timeout,
                what,
                buf,
            )
            if eof or buf.rstrip().endswith(b"Rebooting"):
                return bytes(buf), eof
            try:
                more = self._read(_PROMPT_SETTLE)
            except LinkError:
                return bytes(buf), True
            if not more:
                return bytes(buf), False
            buf += more

    def cli_enter(self, timeout: float = 3.0) -> None:
        """Open the interactive CLI (`#`); sets the arming-disable flag CLI until reboot."""
        with self._lock:
            if self._in_cli:
                return
            self._drain(0.0)
            self._reset_stream()
            deadline = Deadline(timeout)
            last = "nothing"
            attempts = (
                # `#` then 100 ms of quiet opens the session; the banner ends with a prompt.
                (b"#", lambda b: _BANNER in b and b.endswith(_PROMPT), 0.6, "the CLI banner"),
                # Perhaps the port already is in the CLI: an empty line answers with a prompt.
                (b"\r\n", lambda b: b.endswith(_PROMPT), 0.3, "a CLI prompt"),
            )
            while not deadline.expired:
                for data, done, wait, what in attempts:
                    self._write(data)
                    try:
                        _, eof = self._read_until(done, min(wait, max(0.05, deadline.remaining)), what)
                    except BoardNotAnswering as exc:
                        last = str(exc)
                        continue
                    if eof:
                        self.close()
                        raise BoardNotAnswering(f"the link {self._where()} closed while opening the CLI")
                    self._in_cli = True
                    return
            raise BoardNotAnswering(
                f"the board on {self._where()} did not open its CLI within {timeout:.1f} s "
                f"(is it armed? Betaflight ignores the CLI while armed); last: {last}"
            )

    def cli_exit(self, reboot: bool = True, *, timeout: float | None = None) -> None:
        """Leave the interactive CLI.

        `exit` reboots the board (unsaved changes are lost) and the link is reopened;
        `reboot=False` sends `exit noreboot`: MSP works again at once, but the CLI
        arming-disable flag stays set until the next reboot.
        """
        with self._lock:
            if not self._in_cli:
                return
            gen = self._generation()
            if reboot:
                self._write(b"exit\r\n")
                self._read_until(lambda b: b.rstrip().endswith(b"Rebooting"), 3.0, "the reply to exit")
                self._in_cli = False
                self._await_reboot(gen, timeout)
                return
            self._write(b"exit noreboot\r\n")
            _, eof = self._read_until(
                lambda b: b"leaving CLI mode" in b and b.endswith(b"\r\n"), 3.0,
                "the reply to exit noreboot",
            )
            self._in_cli = False
            self._reset_stream()
            if eof:
                self.close()
                raise BoardNotAnswering(f"the link {self._where()} closed during `exit noreboot`")

    def _oneshot(self, command: str, timeout: float) -> tuple[bytes, bool]:
        self._drain(0.0)
        self._reset_stream()
        self._write(_STX)
        try:
            _, eof = self._read_until(
                lambda b: _STX in b, min(timeout, 1.0), "the board to enter its CLI (STX)"
            )
        except BoardNotAnswering as exc:
            self._resync = True
            raise BoardNotAnswering(
                f"{exc} (is it armed? Betaflight ignores the CLI while armed; or is an "
                "interactive CLI session open that this adapter did not start?)"
            ) from None
        if eof:
            self.close()
            raise BoardNotAnswering(f"the link {self._where()} closed before CLI command {command!r}")
        self._write(command.encode("ascii") + b"\r\n" + _ETX)
        data, eof = self._read_until(
            lambda b: b.endswith(_ETX) or b.rstrip().endswith(b"Rebooting"),
            timeout,
            f"the output of CLI command {command!r}",
        )
        if data.endswith(_ETX):
            data = data[:-1]
        return data, eof

    def _cli_run(self, command: str, timeout: float | None) -> tuple[str, bool]:
        """Run one command line; (output, rebooted). Reopens the link after a reboot."""
        _check_cli_text("CLI command", command)
        wait = max(2.0, self.timeout) if timeout is None else timeout
        words = command.split()
        if len(words) > 1 and words[0].lower() not in _READ_ONLY_CLI:
            self.dirty = True
        with self._lock:
            gen = self._generation()
            if self._in_cli:
                self._write(command.encode("ascii") + b"\r\n")
                data, eof = self._read_prompt(wait, f"the output of CLI command {command!r}")
                echo = command.encode("ascii") + b"\r\n"
                if data.startswith(echo):
                    data = data[len(echo) :]
                if data.endswith(_PROMPT):
                    data = data[: -len(_PROMPT)]
            else:
                data, eof = self._oneshot(command, wait)
            text = data.decode("ascii", errors="replace").replace("\r\n", "\n").strip("\n")
            rebooting = text.rstrip().endswith("Rebooting")
            if eof and not rebooting:
                self.close()
                raise BoardNotAnswering(
                    f"the link {self._where()} closed while CLI command {command!r} ran: {text[-300:]!r}"
                )
            if rebooting:
                self._in_cli = False
                self._await_reboot(gen)
                text = text.rstrip()[: -len("Rebooting")].rstrip()
            return text, rebooting

    def cli(self, command: str, *, timeout: float | None = None, check: bool = True) -> str:
        """Run a CLI command line and return its output (echo and prompt removed).

        Uses the interactive session when open, a one-shot command otherwise. With
        `check`, a CLI error in the output raises CliError. A command that reboots the
        board (`save`, `defaults`) returns after the link is back.
        """
        text, _ = self._cli_run(command, timeout)
        if check:
            errors = _cli_errors(text)
            if errors:
                raise CliError(f"CLI command {command!r} failed: {'; '.join(errors)}")
        return text

    def _describe(self, name: str) -> _SettingInfo:
        if not _NAME_RE.match(name):
            raise ParamError(f"{name!r} is not a setting name (letters, digits and '_' only)")
        text = self.cli(f"get {name}", check=False)
        if "INVALID NAME" in text:
            raise ParamError(f"Invalid name: the board has no setting named {name!r}")
        return _parse_setting(name, text)

    def get(self, name: str) -> str:
        """The value of setting `name` as the CLI prints it (ParamError if it has none)."""
        return self._describe(name).value

    @staticmethod
    def _normalise(info: _SettingInfo, value: object) -> str:
        if isinstance(value, bool):
            text = "ON" if value else "OFF"
        elif isinstance(value, int | str):
            text = str(value).strip()
        elif isinstance(value, Sequence):
            text = ",".join(str(int(v)) for v in value)
        else:
            raise ParamError(f"Invalid value for {info.name}: {value!r} (not an int, str or list)")
        _check_cli_text(f"value for {info.name}", text)
        if info.range is not None:
            if not re.fullmatch(r"-?\d+", text) or not info.range[0] <= int(text) <= info.range[1]:
                raise ParamError(
                    f"Invalid value for {info.name}: {value!r} is not a whole number in "
                    f"{info.range[0]}..{info.range[1]}; kept {info.name} = {info.value}"
                )
            return str(int(text))
        if info.choices is not None:
            for choice in info.choices:
                if choice.lower() == text.lower():
                    return choice
            raise ParamError(
                f"Invalid value for {info.name}: {value!r} is not one of {', '.join(info.choices)}; "
                f"kept {info.name} = {info.value}"
            )
        if info.array_length is not None:
            items = [v.strip() for v in text.split(",")]
            if len(items) != info.array_length or not all(re.fullmatch(r"-?\d+", v) for v in items):
                raise ParamError(
                    f"Invalid value for {info.name}: {value!r} is not {info.array_length} "
                    f"comma-separated whole numbers; kept {info.name} = {info.value}"
                )
            return ",".join(str(int(v)) for v in items)
        if info.string_length is not None:
            lo, hi = info.string_length
            if not 1 <= len(text) <= hi:
                raise ParamError(
                    f"Invalid value for {info.name}: {value!r} must be 1..{hi} characters "
                    f"(minimum {lo}, '-' for empty); kept {info.name} = {info.value}"
                )
        return text

    @staticmethod
    def _same(info: _SettingInfo, a: str, b: str) -> bool:
        if info.array_length is not None:
            return [int(x) for x in a.split(",")] == [int(x) for x in b.split(",")]
        if info.range is not None:
            return re.fullmatch(r"-?\d+", a.strip()) is not None and int(a) == int(b)
        return a.strip().lower() == b.strip().lower()

    def set(self, name: str, value: object) -> str:
        """Set `name` to `value` through the CLI and verify the echo; return the old value.

        The value is checked against what `get` says is allowed before anything is
        sent: a wrong name or value raises ParamError and leaves the board as it was.
        If the board echoes a different value, the old one is put back and ParamError
        raised. RAM only until `save`.
        """
        if name.lower() == "debug_mode":
            self._debug_mode = None
        with self._lock:
            info = self._describe(name)
            text = self._normalise(info, value)
            self.dirty = True
            out = self.cli(f"set {info.name} = {text}", check=False)
            m = re.search(rf"^{re.escape(info.name)} set to (.*)$", out, re.MULTILINE | re.IGNORECASE)
            errors = _cli_errors(out)
            if m is None or errors:
                raise ParamError(
                    f"the board refused {info.name} = {text}: {'; '.join(errors) or out!r}; "
                    f"kept {info.name} = {info.value}"
                )
            echoed = m.group(1).strip()
            if not self._same(info, echoed, text):
                self.cli(f"set {info.name} = {info.value}", check=False)
                raise ParamError(
                    f"{info.name} = {text} was sent but the board set {echoed!r}; "
                    f"put back {info.name} = {info.value}"
                )
            return info.value

    def tasks(self) -> list[TaskRow]:
        """The CLI `tasks` table, parsed (rates in Hz, times in us, loads in percent)."""
        return parse_tasks(self.cli("tasks"))

    def cli_status(self) -> dict[str, str]:
        """The CLI `status` output as key/value pairs ("cycle time", "Arming disable flags", ...)."""
        return parse_cli_status(self.cli("status"))

    def save(self, reboot: bool = True, *, timeout: float | None = None) -> None:
        """Persist the configuration (`save`); by default the board reboots and the link is
        reopened. `reboot=False` sends `save noreboot` (new settings that need a restart,
        such as serial ports, take effect at the next reboot)."""
        with self._lock:
            self.dirty = True
            if reboot:
                text, rebooted = self._cli_run("save", timeout)
                if not rebooted:
                    raise CommandRefused(f"`save` did not reboot the board: {text!r}")
                return
            out = self.cli("save noreboot", timeout=timeout)
            if "saving" not in out:
                raise CommandRefused(f"`save noreboot` did not save: {out!r}")

    # -- bench configuration -----------------------------------------------------------

    def configure_for_harness(
        self,
        *,
        serial_update_rate_hz: int = 1000,
        rc_uart: int | None = 4,
        serial_rx: tuple[str, str] | None = None,
        gps_port: tuple[str, int] | None = None,
        arm_aux_channel: int = 0,
        arm_range_us: tuple[int, int] = (1700, 2100),
        arm_slot: int = 0,
        angle_range_us: tuple[int, int] | None = (900, 2100),
        angle_slot: int = 1,
        debug_mode: str | None = "FAILSAFE",
        settings: Mapping[str, object] | None = None,
    ) -> dict[str, tuple[str, str]]:
        """Apply the bench configuration; return {what: (before, after)} for what changed.

        - receiver from MSP (feature RX_MSP: the SITL's default, no CLI name on 4.6), or
          with `serial_rx = (port, provider)`, e.g. ("UART2", "CRSF"), a serial receiver:
          feature RX_SERIAL, `serialrx_provider`, and that port's function RX_SERIAL only;
        - with `gps_port = (port, baud)`, e.g. ("UART3", 115200): feature GPS, and that
          port's function GPS only, at that GPS baud (the driver asks the receiver to move
          there);
        - `serial_update_rate_hz` (MSP answers up to that often, pipelined);
        - UART`rc_uart` an MSP port, so RC can stream over MSP_SET_RAW_RC on a second link
          (None: no such port, as on a bench board with a receiver);
        - arm switch: box ARM on AUX`arm_aux_channel + 1` within `arm_range_us`;
        - ANGLE (self-level) on the same AUX over `angle_range_us` (None: leave alone);
        - `debug_mode` (FAILSAFE puts the failsafe phase into MSP_DEBUG), extra `settings`.

        Reads through MSP and one-shot CLI commands (no CLI arming flag); saves and
        reopens the link only when something differed. A second call changes nothing.
        """
        changed: dict[str, tuple[str, str]] = {}
        with self._lock:
            if self._in_cli:
                raise CliSessionOpen("configure_for_harness needs the interactive CLI closed")
            mask = self.feature_mask()
            rx_feature = Feature.RX_SERIAL if serial_rx is not None else Feature.RX_MSP
            want_mask = (mask & ~int(msp.RX_FEATURES)) | int(rx_feature)
            if gps_port is not None:  # the firmware drops feature GPS at boot while no port has GPS (config.c)
                want_mask |= int(Feature.GPS)
            if want_mask != mask:
                self.set_feature_mask(want_mask)
                changed[f"feature {rx_feature.name}"] = (f"0x{mask:08x}", f"0x{want_mask:08x}")

            wanted: dict[str, object] = {"serial_update_rate_hz": serial_update_rate_hz}
            if serial_rx is not None:
                wanted["serialrx_provider"] = serial_rx[1].upper()
            if debug_mode is not None:
                wanted["debug_mode"] = debug_mode
            wanted.update(settings or {})
            for name, value in wanted.items():
                info = self._describe(name)
                text = self._normalise(info, value)
                if not self._same(info, info.value, text):
                    old = self.set(name, text)
                    changed[name] = (old, text)

            if rc_uart is not None:
                self._set_port_function(f"UART{rc_uart}", changed, add=SERIAL_FUNCTION_MSP, msp_baud="115200")
            if serial_rx is not None:
                self._set_port_function(serial_rx[0].upper(), changed, exact=SERIAL_FUNCTION_RX_SERIAL)
            if gps_port is not None:
                self._set_port_function(
                    gps_port[0].upper(), changed, exact=SERIAL_FUNCTION_GPS, gps_baud=str(gps_port[1])
                )

            slots = [(arm_slot, self.profile.modes["ARM"], arm_range_us)]
            if angle_range_us is not None:
                slots.append((angle_slot, self.profile.modes["ANGLE"], angle_range_us))
            ranges = self.mode_ranges()
            for index, box, (lo, hi) in slots:
                want = ModeRange(index, box, arm_aux_channel, msp.us_to_step(lo), msp.us_to_step(hi))
                have = ranges[index]
                if (have.box_id, have.aux_channel, have.start_step, have.end_step) != (
                    want.box_id, want.aux_channel, want.start_step, want.end_step
                ):
                    self.set_mode_range(index, box, arm_aux_channel, lo, hi)
                    changed[f"aux {index}"] = (_aux_text(have), _aux_text(want))

            if changed:
                self.save(reboot=True)
        return changed



    def _set_port_function(
        self,
        port: str,
        changed: dict[str, tuple[str, str]],
        *,
        add: int = 0,
        exact: int | None = None,
        msp_baud: str | None = None,
        gps_baud: str | None = None,
    ) -> None:
        """Give serial `port` a function (`add` it to what it has, or make it `exact`ly
        that), checked by reading the port table back."""
        lines = self.cli("serial").splitlines()
        line = next((ln for ln in lines if ln.split()[1:2] == [port]), None)
        if line is None:
            known = ", ".join(ln.split()[1] for ln in lines if len(ln.split()) > 1) or "none"
            raise CommandRefused(f"the board has no serial port {port} (it has: {known})")
        fields = line.split()
        function = int(fields[2])
        want = exact if exact is not None else function | add
        want_fields = list(fields)
        want_fields[2] = str(want)
        if msp_baud is not None:
            want_fields[3] = msp_baud
        if gps_baud is not None:  # `serial <port> <function> <msp> <gps> <telemetry> <blackbox>`
            want_fields[4] = gps_baud
        if want_fields == fields:
            return
        new_line = " ".join(want_fields)
        out = self.cli(new_line)
        check = next((ln for ln in self.cli("serial").splitlines() if ln.split()[1:2] == [port]), "")
        if check.split() != want_fields:
            raise CommandRefused(f"`{new_line}` was sent but the board reports {check!r} ({out!r})")
        changed[f"serial {port}"] = (line, new_line)

def _msp_profile(name: FirmwareProfile | str) -> FirmwareProfile:
    """The profile for an MSP adapter: an MSP firmware numbering the boxes the adapter uses."""
    found = firmware_profile(name)
    missing = [box for box in _BOXES_USED if box not in found.modes]
    if found.protocol != "msp" or found.reboot.kind != "msp" or missing:
        raise ConfigError(
            f"firmware profile {found.name!r} does not suit an MSP adapter: it needs an MSP "
            f"firmware with an MSP reboot and the boxes {', '.join(_BOXES_USED)}"
            + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    return found


def _msp_request(command: Command) -> tuple[int, bytes]:
    """A profile's MSP command as (request id, payload)."""
    return int(command.code), command.payload


def _aux_text(r: ModeRange) -> str:
    return (
        f"aux {r.index} {r.box_id} {r.aux_channel} "
        f"{msp.step_to_us(r.start_step)} {msp.step_to_us(r.end_step)}"
    )


# ----------------------------------------------------------------------- RC stream


class RcStream:
    """MSP_SET_RAW_RC at a steady rate from a background thread, as a receiver would.

    `target` is an MspAutopilot (kept open) or a URL (opened here, closed by `close`).
    Channels are in receiver order (AETR by default) in us; change them at any time
    with `set_channels` / `set_channel`. `stop()` ends the stream (the board then sees
    RC loss) and keeps the link; `start()` resumes. Link errors (a reboot) are counted
    in `failures`, the link is reopened and the stream goes on.
    """

    def __init__(
        self,
        target: MspAutopilot | str,
        *,
        rate_hz: float = 50.0,
        channels: Sequence[int] = RC_IDLE,
        reopen_timeout: float = 1.0,
    ) -> None:
        if not 0 < rate_hz <= 500:
            raise ValueError(f"rate_hz = {rate_hz} must be in (0, 500]")
        self._owned = isinstance(target, str)
        self.ap = MspAutopilot(target) if isinstance(target, str) else target
        self.period = 1.0 / rate_hz
        self.reopen_timeout = reopen_timeout
        self._channels = self._checked(channels)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failures = 0
        self.last_error: BaseException | None = None

    @staticmethod
    def _checked(channels: Sequence[int]) -> tuple[int, ...]:
        values = tuple(int(c) for c in channels)
        if not 1 <= len(values) <= _MAX_RC_CHANNELS or not all(0 <= v <= 0xFFFF for v in values):
            raise ValueError(f"RC channels must be 1..{_MAX_RC_CHANNELS} values in 0..65535: {values}")
        return values

    @property
    def channels(self) -> tuple[int, ...]:
        return self._channels

    def set_channels(self, channels: Sequence[int]) -> None:
        self._channels = self._checked(channels)

    def set_channel(self, index: int, value: int) -> None:
        values = list(self._channels)
        values[index] = value
        self._channels = self._checked(values)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> RcStream:
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="msp-rc-stream", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        n = 0
        broken = False
        while not self._stop.is_set():
            try:
                if broken:
                    self.ap.reopen(self.reopen_timeout)
                    broken = False
                self.ap.set_raw_rc(self._channels, wait=False)
                self.sent += 1
            except HilError as exc:
                self.failures += 1
                self.last_error = exc
                broken = True
            n += 1
            next_t = t0 + n * self.period
            now = time.monotonic()
            if next_t < now - 5 * self.period:  # fell far behind (a reopen): start afresh
                t0, n, next_t = now, 0, now
            self._stop.wait(max(0.0, next_t - now))

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sending (bounded join); the link stays open."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise HilError(f"the RC stream thread did not stop within {timeout:.1f} s")

    def close(self) -> None:
        self.stop()
        if self._owned:
            self.ap.close()

    def __enter__(self) -> RcStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def aetr(
    roll: int = 1500, pitch: int = 1500, throttle: int = 1000, yaw: int = 1500, *aux: int
) -> tuple[int, ...]:
    """RC channels in AETR order (Betaflight's default map) followed by AUX1...

    `aetr(1500, 1500, 1000, 1500, 1800)`: sticks centred, throttle low, AUX1 high.
    """
    return (roll, pitch, throttle, yaw, *aux)


__all__ = [
    "BOX_ANGLE",
    "BOX_ARM",
    "BOX_FAILSAFE",
    "RC_IDLE",
    "RC_PENDING_FLAGS",
    "CliError",
    "CliSessionOpen",
    "FcStatus",
    "MspAutopilot",
    "MspCommandError",
    "MspIdentity",
    "MspNoReply",
    "RcStream",
    "TaskRow",
    "aetr",
    "parse_cli_status",
    "parse_tasks",
]

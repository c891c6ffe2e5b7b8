"""Board type `ardupilot-sitl`: ArduPilot SITL with the harness as its physics (issue 13).

    [[board]]
    name = "arducopter"
    type = "ardupilot-sitl"
    executable = "path/to/arducopter"     # the user's SITL build (./waf copter)
    defaults = ["my-params.parm"]         # optional: parameter files applied after ours
    instance = 0                          # optional: SITL -I (ports 5760/9002 + 10 x I)
    speedup = 100                         # optional: how far SITL may run ahead of real time

The harness starts the executable (`hil.sitl.ardupilot`) in the board's run directory
with ``--model JSON:127.0.0.1``: every physics frame of ArduPilot is a step of our
plant, over the `ardupilot_json` simulator link (`hil.sim.ardupilot_link`). Our u-blox
emulator sits on SERIAL3 and our CRSF receiver on SERIAL4 (ptys, `PtyBridge`), so GPS
jamming and spoofing reach ArduPilot's own GPS driver, with its auto-configuration
(``GPS_AUTO_CONFIG`` left at ArduPilot's default 1), and RC loss reaches its own CRSF
parser and radio failsafe. MAVLink is SERIAL0 on its TCP port.

The settings the harness's wiring needs are written as ``harness-defaults.parm`` in the
run directory and given to SITL before the user's files (which may override them).

In lockstep, SITL runs only while it gets state lines: its MAVLink port answers only
while our physics runs. So the board runs its closed loop (`hil.sim.loop.ClosedLoop`, free-running) from the
moment SITL starts until it stops, and a session restarts SITL (a fresh vehicle at
home, parameters from the defaults files again) instead of rebooting it.

A run gets that loop through a `RunHandle`: never gated (SITL waits on the physics,
and its MAVLink port is served only while the physics steps), its ``stop`` leaves the
physics running. The link writes our GPS and CRSF bytes at their times, sends the
ground station's heartbeats on simulation time through the plant's telemetry link, and
keeps the throttle stick the way ArduCopter wants it (`hil.profiles.ardupilot.RcSemantics`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError, LinkError, WaitTimeout
from hil.lifecycle import BoardState
from hil.profiles.ardupilot import parse_param_file, rc_semantics, read_param_file
from hil.receivers import Receiver, virtual_receiver
from hil.rig import Board, Rig, RigKey
from hil.session import BoardSession
from hil.sim.ardupilot_link import MAG_OFFSET_PARAMS, ArduPilotJsonLink
from hil.sim.loop import ClosedLoop, SimConfig
from hil.sim.plant import Plant
from hil.sitl.ardupilot import ArduPilotSitl, PtyBridge, find_executable

log = logging.getLogger(__name__)

#: SITL's serial ports for our receivers (SERIALn, ``--serialN``).
GPS_SERIAL = 3
RC_SERIAL = 4
DEFAULTS_NAME = "harness-defaults.parm"
#: Wall seconds the loop waits for SITL's answer to one frame (its boot takes a few).
STEP_TIMEOUT_S = 10.0
#: Physics frames per second: SITL's IMU samples once per frame, and ArduCopter refuses
#: to arm with a gyro rate under 1.8 x its 400 Hz loop ("PreArm: Gyro 0 rate 400Hz <
#: loop rate*1.8"); 1200 Hz is SITL's own default frame rate for copters.
PHYSICS_RATE_HZ = 1200.0
#: Parameters a session reads one by one when the whole list does not come in time
#: (what scenarios refer to and what the runner reads).
SESSION_PARAMS = (
    "SCHED_LOOP_RATE", "RC_FS_TIMEOUT", "FS_THR_ENABLE", "FS_THR_VALUE", "FS_GCS_ENABLE",
    "FS_GCS_TIMEOUT", "FS_EKF_ACTION", "FS_EKF_THRESH", "BATT_LOW_VOLT", "BATT_LOW_TIMER",
    "BATT_FS_LOW_ACT", "GPS_AUTO_CONFIG", "FS_OPTIONS", *MAG_OFFSET_PARAMS,
)  # fmt: skip
#: Wall seconds SITL may take from its start to its first servo packet and its MAVLink
#: port (parameter defaults loaded, storage wiped; slow on a loaded host).
BOOT_TIMEOUT_S = 60.0

#: What the harness's wiring needs, as ArduPilot parameters (names and values from
#: ArduPilot's parameter documentation: AP_SerialManager, AP_GPS, AP_RCProtocol,
#: ArduCopter/Parameters.cpp, AP_Motors, AP_InertialSensor, AP_Compass).
HARNESS_DEFAULTS: dict[str, float] = {
    "FRAME_CLASS": 1,  # quad
    "FRAME_TYPE": 1,  # X: motors 1..4 front-right, rear-left, front-left, rear-right
    f"SERIAL{GPS_SERIAL}_PROTOCOL": 5,  # GPS
    f"SERIAL{GPS_SERIAL}_BAUD": 115,  # a pty ignores it; AP_GPS probes bauds anyway
    f"SERIAL{RC_SERIAL}_PROTOCOL": 23,  # RCIN
    f"SERIAL{RC_SERIAL}_BAUD": 416,  # CRSF's 416666 baud (a pty ignores it)
    "RC_PROTOCOLS": 512,  # bit 9: CRSF only, found at once
    "GPS1_TYPE": 2,  # u-blox; GPS_AUTO_CONFIG stays at its default 1
    "BATT_MONITOR": 4,  # analog voltage and current: SITL feeds our battery's values
    # Our motors are linear in thrust and hover at half command (hil.sim.vehicle).
    "MOT_THST_EXPO": 0.0,
    "MOT_THST_HOVER": 0.5,
    # SITL's simulated compass carries offsets (SIM_MAG1_OFS 5, 13, -18); these take
    # them out, as ArduPilot's own copter defaults do, so the compass counts as calibrated.
    "COMPASS_OFS_X": 5, "COMPASS_OFS_Y": 13, "COMPASS_OFS_Z": -18,
    "COMPASS_OFS2_X": 5, "COMPASS_OFS2_Y": 13, "COMPASS_OFS2_Z": -18,
    "COMPASS_OFS3_X": 5, "COMPASS_OFS3_Y": 13, "COMPASS_OFS3_Z": -18,
    # Telemetry on SERIAL0 (our MAVLink link): streams the harness's waits read.
    "SR0_POSITION": 10, "SR0_EXTRA1": 10, "SR0_EXTRA2": 10, "SR0_EXTRA3": 2,
    "SR0_EXT_STAT": 2, "SR0_RC_CHAN": 5, "SR0_RAW_SENS": 2,
}  # fmt: skip

#: Where the executable comes from when the rig names none.
EXECUTABLE_ENV = "HIL_ARDUPILOT_SITL"


@dataclass(frozen=True)
class _PathList(RigKey):
    """A list of file paths (or one path), relative to the rig file's folder."""

    def allowed(self) -> str:
        return "must be a list of file paths, e.g. [\"my-params.parm\"]"

    def accepts(self, value: Any) -> bool:
        items = [value] if isinstance(value, str) else value
        return isinstance(items, list) and bool(items) and all(RigKey("path").accepts(v) for v in items)


def write_defaults(path: Path, values: Mapping[str, float]) -> None:
    lines = ["# written by the harness for its wiring (hil.boards.ardupilot_sitl); do not edit"]
    lines += [f"{name} {value:g}" for name, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class RunHandle:
    """What a scenario run or the ``sim`` fixture gets as its closed loop: the board's
    running `ClosedLoop`, except that ``start`` and ``stop`` attach and leave a run (a
    run's injections are cleared and undone when it leaves) instead of starting and
    stopping the physics, which SITL in lockstep needs for as long as it runs."""

    def __init__(self, loop: ClosedLoop) -> None:
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    def start(self, *, gated: bool = False) -> None:
        loop = self._loop
        if not loop.running:
            raise HilError(f"the ArduPilot SITL physics loop is not running: {loop.error or 'stopped'}")

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        loop.clear_injections()
        loop.event_hooks.clear()

    def close(self) -> None:
        self.stop()


class ArduPilotSitlBoard(Board):
    """ArduPilot SITL flown by the harness (module docstring)."""

    type_name = "ardupilot-sitl"
    board_class = "mavlink"
    profile_name = "arducopter"
    session_type = "hil.boards.ardupilot_sitl:ArduPilotSitlSession"
    #: The simulator link its sessions fly it with (hil.sim.simlink).
    simulator_link_name = ArduPilotJsonLink.name
    capabilities = frozenset({"physics", "rc_receiver", "gnss"})  # our u-blox on SERIAL3 carries the GNSS sky
    asks_for_streams = True
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "executable": RigKey("path"),
        "defaults": _PathList("path"),
        "instance": RigKey("integer", 0, 50),
        "speedup": RigKey("number", 1, 1000),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        where = f"{rig.path}: board {name!r}"
        exe = spec.get("executable") or os.environ.get(EXECUTABLE_ENV)
        self._executable = self.rig_path(str(exe)) if exe else None
        self._rig_executable = self._executable
        defaults = spec.get("defaults", [])
        if isinstance(defaults, str):
            defaults = [defaults]
        if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
            raise ConfigError(f"{where}: defaults must be a list of parameter file paths")
        self.defaults = [self.rig_path(d) for d in defaults]
        for path in self.defaults:
            if not path.is_file():
                raise ConfigError(f"{where}: defaults file {path} does not exist")
        #: Parameter files a gate's build adds after the rig's (`use_build`).
        self.extra_defaults: list[Path] = []
        self.instance = int(spec.get("instance", 0))
        self.speedup = float(spec.get("speedup", 100.0))
        self.sitl: ArduPilotSitl | None = None
        self.loop: ClosedLoop | None = None
        self.link: ArduPilotJsonLink | None = None
        self._bridges: dict[str, PtyBridge] = {}
        self._uarts: dict[str, Any] = {}
        #: Set by a session: the next one starts SITL again (a fresh vehicle).
        self.used = False

    # -- what the rig knows ----------------------------------------------------------

    @property
    def usb_serial(self) -> str:
        # The host-wide board lock is taken on this name; what two rigs must not share
        # is SITL's ports, which the instance number decides (not the board's name).
        return str(self.spec.get("usb_serial", f"ardupilot-sitl-I{self.instance}"))

    @property
    def run_dir(self) -> Path:
        """Absolute: SITL runs in it, and every path it is given must hold from there."""
        return (self.rig.work_dir / self.name).resolve()

    @property
    def lockstep(self) -> bool:
        return True

    @property
    def lock_dir(self) -> Path | None:
        return None  # its ports are the host's: one board per instance number on a host

    def _receivers_from_spec(self) -> tuple[Receiver, ...]:
        return (
            replace(virtual_receiver("gps", "ubx"), fc_port=f"SERIAL{GPS_SERIAL}"),
            replace(virtual_receiver("rc", "crsf"), fc_port=f"SERIAL{RC_SERIAL}"),
        )

    def uart_paths(self) -> dict[str, str]:
        return {role: bridge.harness_path for role, bridge in self._bridges.items()}

    def wiring_note(self, receiver: Receiver) -> str | None:
        return "the board's receiver UARTs exist while its SITL runs (ptys the harness makes)"

    @property
    def state(self) -> str:
        if self.sitl is None:
            try:
                find_executable(self._executable)
            except ConfigError:
                return "not installed"
            return "off"
        return "running" if self.sitl.alive else "stopped"

    @property
    def running(self) -> bool:
        """SITL is up and its physics steps."""
        return self.sitl is not None and self.sitl.alive and self.loop is not None and self.loop.running

    def url(self, timeout: float = 10.0) -> str:
        if self.sitl is None or not self.sitl.alive:
            raise HilError(f"ArduPilot SITL board {self.name} is not running")
        return self.sitl.mavlink_url

    def log_path(self) -> Path | None:
        return self.sitl.log_path if self.sitl is not None else None

    # -- RC as ArduPilot reads it ----------------------------------------------------------

    def parameters_at_boot(self) -> dict[str, float]:
        """The parameters SITL starts with beyond its own defaults: ours, then the user's."""
        values = dict(HARNESS_DEFAULTS)
        for path in [*self.defaults, *self.extra_defaults]:
            try:
                values.update(parse_param_file(path.read_text(encoding="utf-8", errors="replace")))
            except OSError as exc:
                raise ConfigError(f"board {self.name}: cannot read defaults file {path}: {exc}") from None
        return values

    # -- life cycle ------------------------------------------------------------------------

    def start(self, config: SimConfig | None = None) -> None:
        if self.running:
            return
        self.stop()
        exe = find_executable(self._executable)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_defaults(self.run_dir / DEFAULTS_NAME, HARNESS_DEFAULTS)
        from hil.links.udp_link import open_link

        try:
            self._bridges = {"gps": PtyBridge("gps"), "rc": PtyBridge("rc")}
            for role, receiver in zip(("gps", "rc"), self.receivers, strict=True):
                self._uarts[role] = open_link(self._bridges[role].harness_path, receiver.baud)
            sitl = ArduPilotSitl(
                self.run_dir,
                exe,
                defaults=[
                    self.run_dir / DEFAULTS_NAME,
                    *(Path(d).resolve() for d in [*self.defaults, *self.extra_defaults]),
                ],
                instance=self.instance,
                speedup=self.speedup,
                serials={
                    GPS_SERIAL: f"uart:{self._bridges['gps'].firmware_path}",
                    RC_SERIAL: f"uart:{self._bridges['rc'].firmware_path}",
                },
            )
            link = ArduPilotJsonLink(sitl.json_port, first_packet_timeout=BOOT_TIMEOUT_S)
            self.link = link
            params = self.parameters_at_boot()
            config = config or SimConfig()
            config = replace(
                config, rate_hz=PHYSICS_RATE_HZ, lockstep=True, pipeline=False, step_timeout=STEP_TIMEOUT_S,
                gps_uart="ubx", rc_uart="crsf",
            )
            link.attach(uarts=self._uarts, rc=rc_semantics(params), gcs_heartbeat_hz=config.gcs_heartbeat_hz)
            link.open()
            plant = Plant.for_mavlink_hil(config, rc_rate_hz=link.rc_rate_hz)
            link.on_restart = plant.vehicle.reset
            self.loop = ClosedLoop(plant, link, config)
            sitl.start()
            self.sitl = sitl
            self.loop.start()  # free-running lockstep: SITL waits on it from its first frame
            sitl.wait_mavlink_port(BOOT_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def reconfigure(self, config: SimConfig) -> None:
        """A run's weather, battery and seed, for the vehicle where it stands (landed):
        a new plant around the same vehicle, the sticks as they were."""
        loop = self.loop
        assert loop is not None and self.link is not None
        cfg = replace(config, rate_hz=loop.config.rate_hz, lockstep=True, pipeline=False, step_timeout=STEP_TIMEOUT_S)
        plant = Plant.for_mavlink_hil(cfg, rc_rate_hz=self.link.rc_rate_hz)
        plant.vehicle = loop.plant.vehicle
        plant.rc_channels[:] = loop.plant.rc_channels
        loop.plant = plant

    @property
    def executable(self) -> Path:
        """The build this board runs (ConfigError when there is none, or it is not there)."""
        return find_executable(self._executable)

    def use_build(self, executable: Path | None = None, defaults: Sequence[Path] = ()) -> None:
        """Run this build from now on (the field-patch gate's baseline or candidate):
        ``executable`` (None: the one the rig names) with the rig's defaults files and
        then ``defaults``, each checked line by line (`read_param_file`). SITL is
        stopped; the next session starts it afresh with its storage wiped (``-w``), so
        no parameter of the build before carries over."""
        exe = find_executable(Path(executable) if executable is not None else self._rig_executable)
        extra = [Path(d) for d in defaults]
        for path in extra:
            if not path.is_file():
                raise ConfigError(f"defaults file {path} does not exist")
            read_param_file(path)
        self.stop()
        self._executable = exe
        self.extra_defaults = extra
        self.used = True

    def use_executable(self, path: str | Path) -> None:
        """Run another build (a field patch) from now on, with the rig's defaults only."""
        self.use_build(Path(path))

    def restart(self, config: SimConfig | None = None) -> None:
        """SITL and its physics from the beginning: a fresh vehicle at home."""
        self.stop()
        self.start(config)

    def stop(self) -> None:
        loop = self.loop
        if loop is not None:
            loop.controller = None  # its end is not a failure of the session's waits
        if self.sitl is not None:
            self.sitl.stop()
        if self.link is not None:
            self.link.close()  # a loop waiting on SITL's next packet gives up at once
        if loop is not None:
            try:
                loop.stop(timeout=STEP_TIMEOUT_S + 2.0)
            except HilError as exc:
                log.warning("board %s: %s", self.name, exc)
        self.loop = None
        self.sitl = None
        if self.link is not None:
            self.link.close()
            self.link = None
        for link in self._uarts.values():
            try:
                link.close()
            except (LinkError, OSError):
                pass
        self._uarts = {}
        for bridge in self._bridges.values():
            bridge.close()
        self._bridges = {}

    def power_cycle(self) -> None:
        self.restart()


class ArduPilotSitlSession(BoardSession):
    """A test's use of an ArduPilot SITL board: SITL started afresh (a new vehicle at home,
    parameters from the defaults files), connected with its telemetry streams, the
    board's own physics loop handed out as the closed loop."""

    def __init__(self, board: Board, *, connect_timeout: float = 10.0) -> None:
        super().__init__(board, connect_timeout=max(connect_timeout, 30.0))

    def __enter__(self) -> ArduPilotSitlSession:
        board = self.board
        assert isinstance(board, ArduPilotSitlBoard)
        board.lifecycle.reach(BoardState.APP, "a test session")
        if board.used or not board.running:  # used by a test, or its SITL or physics died
            board.restart()
            board.lifecycle.mark(BoardState.APP, "SITL started afresh")
        board.used = True
        autopilot = self.connect()
        conn = autopilot.conn
        if conn.gcs_heartbeat in conn.idle_callbacks:
            # The loop sends the GCS heartbeats on simulation time (gcs_loss acts on them).
            conn.idle_callbacks.remove(conn.gcs_heartbeat)
        loop, link = board.loop, board.link
        assert loop is not None and link is not None
        loop.controller = autopilot  # the loop failing fails the session's waits
        link.send_to_board = conn.send
        link.armed = lambda: autopilot.armed
        try:
            self.param_snapshot = autopilot.fetch_params(timeout=20.0)
        except WaitTimeout as exc:
            log.warning("board %s: the whole parameter list did not come (%s); reading what runs need", board.name, exc)
            snapshot = {}
            for name in SESSION_PARAMS:
                try:
                    snapshot[name] = autopilot.get_param(name)
                except HilError:
                    pass
            self.param_snapshot = snapshot
        # Compass interference moves SITL's own compass offsets (hil.sim.ardupilot_link):
        # from the values it holds now, the ones this build has.
        snap = self.param_snapshot
        link.param_target = (autopilot.target_system, autopilot.target_component)
        link.mag_offsets_base = {name: float(snap[name]) for name in MAG_OFFSET_PARAMS if name in snap}
        return self

    def make_sim(self, config: SimConfig | None = None):
        board = self.board
        assert isinstance(board, ArduPilotSitlBoard)
        loop = board.loop
        if loop is None or not loop.running:
            raise HilError(
                f"ArduPilot SITL board {board.name}: its physics loop is not running"
                f"{': ' + str(loop.error) if loop is not None and loop.error else ''}"
            )
        if config is not None:
            board.reconfigure(config)
        self.sim = RunHandle(loop)
        return self.sim

    def _open_uarts(self) -> None:  # the board holds its receiver UARTs itself
        return

    def cleanup(self) -> list[str]:
        """Leave the run, check the board answers, disarm a vehicle left armed. Nothing is
        restored: the next session starts SITL afresh from the defaults files (-w)."""
        problems: list[str] = []
        if self.sim is not None:
            self.sim.stop()
        board = self.board
        assert isinstance(board, ArduPilotSitlBoard)
        if board.lifecycle.state in (BoardState.ARMABLE, BoardState.FLYING):
            board.lifecycle.mark(BoardState.APP, "the session ended")
        ap = self.autopilot
        if ap is not None:
            ap.clear_failure()
            try:
                ap.ping()
                if ap.armed:
                    problems.append(f"the test left board {board.name} armed (mode {ap.mode}); it was disarmed")
                    ap.disarm(force=True)
            except HilError as exc:
                problems.append(f"board {board.name}: {exc}")
            ap.conn.close()
            ap.close()
            self.autopilot = None
        if board.loop is not None:
            board.loop.controller = None
        if board.link is not None:
            board.link.send_to_board = None
            board.link.armed = None
            board.link.mag_offsets_base = None
        return problems


__all__ = ["ArduPilotSitlBoard", "ArduPilotSitlSession", "HARNESS_DEFAULTS", "RunHandle"]

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
while our physics runs. So the board runs its physics loop (`ArduPilotLoop`) from the
moment SITL starts until it stops, and a session restarts SITL (a fresh vehicle at
home, parameters from the defaults files again) instead of rebooting it.

The loop here is the minimal one issue 13 needs until the one closed loop of issue 12
drives every link: it steps the link free-running (never gated), writes our GPS and
CRSF bytes at their times, sends the ground station's heartbeats on simulation time
through the plant's telemetry link, and keeps the pilot's sticks the way ArduPilot
wants them (`hil.profiles.ardupilot.RcSemantics`).
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any

from hil.errors import BoardNotAnswering, ConfigError, HilError, LinkError
from hil.lifecycle import BoardState
from hil.mavlink.dialect import mavlink
from hil.profiles.ardupilot import RcSemantics, parse_param_file, rc_semantics
from hil.receivers import Receiver, virtual_receiver
from hil.rig import Board, Rig, RigKey
from hil.session import BoardSession
from hil.sim.ardupilot_link import ArduPilotJsonLink
from hil.sim.injections import InjectionSchedule
from hil.sim.loop import SimConfig
from hil.sim.plant import Plant
from hil.sitl.ardupilot import ArduPilotSitl, PtyBridge, find_executable

log = logging.getLogger(__name__)

#: SITL's serial ports for our receivers (SERIALn, ``--serialN``).
GPS_SERIAL = 3
RC_SERIAL = 4
DEFAULTS_NAME = "harness-defaults.parm"

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

#: What SITL sees of our physics: injections that act on parts it computes itself
#: (its compass and barometer come from our pose) cannot be flown on it.
SUPPORTED_INJECTIONS = frozenset(
    {
        "rc_loss", "rc_jamming", "gcs_loss", "gps_loss", "gps_jamming", "gps_spoofing",
        "battery_sag", "wind", "telemetry_jamming", "imu_noise", "imu_stuck", "imu_clip",
    }
)  # fmt: skip

_MAX_STAMPS = 2_000_000
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


class ArduPilotLoop(InjectionSchedule):
    """The board's physics, running from SITL's start to its stop (module docstring).

    What a scenario run needs of a closed loop: ``plant``, ``time``, ``speed``,
    ``schedule``, ``event_hooks``, ``error``, ``start``/``stop`` (here they attach and
    detach a run: the physics keeps running) and the host-clock stamps of each step.
    """

    supported_injections = SUPPORTED_INJECTIONS

    def __init__(
        self,
        link: ArduPilotJsonLink,
        config: SimConfig,
        uarts: Mapping[str, Any],
        rc: RcSemantics,
        *,
        step_timeout: float = 10.0,
    ) -> None:
        from hil.injectors.gps import GpsReceiverEmulator
        from hil.injectors.rc import RcReceiverEmulator

        self.link = link
        self.config = config
        self.uarts = dict(uarts)
        self.rc = rc
        self.step_timeout = step_timeout
        # CRSF at 150 Hz says so in its link statistics (rf mode 2, AP_RCProtocol_CRSF).
        self.rc_emulator = RcReceiverEmulator("crsf", rf_mode=2)
        self.gps_emulator = GpsReceiverEmulator("ubx", rate_hz=5.0)
        self.plant = Plant.for_mavlink_hil(config, rc_rate_hz=self.rc_emulator.rate_hz)
        link.on_restart = self._on_restart
        self.autopilot: Any = None
        self.t_us = 0
        self.dt_us = int(round(1e6 / config.rate_hz))
        self.steps = 0
        self.motors = (0.0, 0.0, 0.0, 0.0)
        self.error: BaseException | None = None
        self.wall_running = 0.0
        self.truth: list[tuple[float, ...]] = []
        self.sample_sent_ns = array("q")
        self.answer_read_ns = array("q")
        #: The simulation time of every frame SITL answered: in lockstep its main loop runs
        #: once per frame, at the time we stamp (hil.scenario.limits reads these).
        self.actuator_time_us = array("q")
        self._init_schedule()
        self._next_gcs = 0
        self._next_truth = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what a run reads --------------------------------------------------------------

    @property
    def vehicle(self):
        return self.plant.vehicle

    @property
    def speed(self) -> float:
        return self.time / self.wall_running if self.wall_running > 0 else 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def motor_times_ns(self):
        import numpy as np

        return np.array(self.answer_read_ns, dtype=np.int64)

    def rc_channels(self) -> list[int]:
        """The sticks now: throttle low while disarmed (ArduPilot arms only so), at its
        middle once armed (altitude held in LOITER and ALT_HOLD), the flight-mode channel
        at a position that selects the mode the board boots in."""
        ap = self.autopilot
        armed = bool(ap is not None and ap.armed)
        return self.rc.channels(armed=armed)

    # -- a run attaching and leaving ---------------------------------------------------

    def start(self, *, gated: bool = False) -> None:
        """A run attaches: the physics is already running (never gated: SITL waits on it)."""
        if not self.running:
            raise HilError(f"the ArduPilot SITL physics loop is not running: {self.error or 'stopped'}")

    def stop(self, timeout: float = 5.0) -> None:
        """A run leaves: its injections are cleared and undone; the physics keeps running."""
        with self._sched_lock:
            self._schedule.clear()
            active = [item for stack in self._active.values() for item in stack]
            self._active.clear()
        for item in reversed(active):
            try:
                self._apply(replace(item, start=False))
            except HilError:
                pass
        self.event_hooks.clear()

    def reconfigure(self, config: SimConfig) -> None:
        """A run's weather, battery and seed, on the vehicle where it stands (landed)."""
        with self._lock:
            old = self.plant
            plant = Plant.for_mavlink_hil(config, rc_rate_hz=self.rc_emulator.rate_hz)
            plant.vehicle = old.vehicle
            self.plant = plant
            self.config = replace(config, rate_hz=self.config.rate_hz)

    # -- the physics thread ----------------------------------------------------------------

    def run_in_background(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ardupilot-physics", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                for _ in range(40):
                    self.step()
                now = time.monotonic()
                self.wall_running += now - last
                last = now
        except (BoardNotAnswering, LinkError) as exc:
            if not self._stop.is_set():
                self.error = exc
                log.warning("ArduPilot physics loop stopped: %s", exc)
                if self.autopilot is not None:
                    self.autopilot.fail(exc)
        except Exception as exc:  # a bug here must not leave waits hanging
            self.error = exc
            log.exception("ArduPilot physics loop crashed")
            if self.autopilot is not None:
                self.autopilot.fail(exc)

    def step(self) -> None:
        with self._lock:
            t_us = self.t_us
            plant = self.plant
            self._inputs(t_us, plant)
            sent = time.monotonic_ns()
            self.link.send(t_us, plant)
            self.motors = self.link.outputs(t_us, self.step_timeout) or self.motors
            if len(self.sample_sent_ns) < _MAX_STAMPS:
                self.sample_sent_ns.append(sent)
                self.answer_read_ns.append(time.monotonic_ns())
                self.actuator_time_us.append(t_us)
            plant.step(self.dt_us * 1e-6, self.motors)
            self.t_us = t_us + self.dt_us
            self.steps += 1
            if self._schedule and self._schedule[0].t_us <= self.t_us:
                self._apply_due()
            if self.t_us >= self._next_truth:
                self._next_truth = self.t_us + 100_000
                v = plant.vehicle
                p = v.pos
                roll, pitch, yaw = v.euler()
                self.truth.append((self.time, p[0], p[1], p[2], roll, pitch, yaw))
                if len(self.truth) > 100_000:
                    del self.truth[:50_000]

    def _inputs(self, t_us: int, plant: Plant) -> None:
        """The receivers' bytes due now, and the ground station's heartbeat."""
        rc = self.uarts.get("rc")
        if rc is not None:
            data = self.rc_emulator.produce(t_us, self.rc_channels(), plant.rc_link)
            if data:
                rc.write(data)
        t = t_us * 1e-6
        gps = self.uarts.get("gps")
        emulator = self.gps_emulator
        if gps is not None and emulator.due(t):
            for _ in range(16):  # what ArduPilot sent its GPS: configuration and polls
                chunk = gps.read(0.0)
                if chunk is None:
                    break
                emulator.on_bytes(chunk.data)
            data = emulator.produce(t, plant.gnss_observation(t))
            if data:
                gps.write(data)
                baud = emulator.switch_baud()
                if baud is not None:
                    gps.set_baudrate(baud)
                    self._event("note", f"GPS receiver moved to {baud} baud")
        ap = self.autopilot
        if ap is None:
            return
        telemetry = plant.telemetry_link
        if t_us >= self._next_gcs:
            self._next_gcs = t_us + int(1e6 / self.config.gcs_heartbeat_hz)
            if plant.gcs_enabled:
                telemetry.offer(
                    t,
                    mavlink.MAVLink_heartbeat_message(
                        mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE, 3
                    ),
                )
        if telemetry.pending:
            for msg in telemetry.due(t):
                try:
                    ap.conn.send(msg)
                except (LinkError, OSError) as exc:
                    log.debug("GCS heartbeat not sent: %s", exc)

    def _on_restart(self) -> None:
        self.plant.vehicle.reset()
        self._event("note", "ArduPilot SITL restarted: the vehicle is back at home")


class ArduPilotSitlBoard(Board):
    """ArduPilot SITL flown by the harness (module docstring)."""

    type_name = "ardupilot-sitl"
    board_class = "mavlink"
    profile_name = "arducopter"
    session_type = "hil.boards.ardupilot_sitl:ArduPilotSitlSession"
    #: The simulator link its sessions fly it with (hil.sim.simlink).
    simulator_link_name = ArduPilotJsonLink.name
    capabilities = frozenset({"physics", "rc_receiver"})
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
        defaults = spec.get("defaults", [])
        if isinstance(defaults, str):
            defaults = [defaults]
        if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
            raise ConfigError(f"{where}: defaults must be a list of parameter file paths")
        self.defaults = [self.rig_path(d) for d in defaults]
        for path in self.defaults:
            if not path.is_file():
                raise ConfigError(f"{where}: defaults file {path} does not exist")
        self.instance = int(spec.get("instance", 0))
        self.speedup = float(spec.get("speedup", 100.0))
        self.sitl: ArduPilotSitl | None = None
        self.loop: ArduPilotLoop | None = None
        self.link: ArduPilotJsonLink | None = None
        self._bridges: dict[str, PtyBridge] = {}
        self._uarts: dict[str, Any] = {}
        #: Set by a session: the next one starts SITL again (a fresh vehicle).
        self.used = False

    # -- what the rig knows ----------------------------------------------------------

    @property
    def usb_serial(self) -> str:
        return str(self.spec.get("usb_serial", f"SITL-{self.name}"))

    @property
    def run_dir(self) -> Path:
        return self.rig.work_dir / self.name

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
        for path in self.defaults:
            try:
                values.update(parse_param_file(path.read_text(encoding="utf-8", errors="replace")))
            except OSError as exc:
                raise ConfigError(f"board {self.name}: cannot read defaults file {path}: {exc}") from None
        return values

    # -- life cycle ------------------------------------------------------------------------

    def start(self, config: SimConfig | None = None) -> None:
        if self.sitl is not None and self.sitl.alive and self.loop is not None and self.loop.running:
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
                defaults=[self.run_dir / DEFAULTS_NAME, *self.defaults],
                instance=self.instance,
                speedup=self.speedup,
                serials={
                    GPS_SERIAL: f"uart:{self._bridges['gps'].firmware_path}",
                    RC_SERIAL: f"uart:{self._bridges['rc'].firmware_path}",
                },
            )
            self.link = ArduPilotJsonLink(sitl.json_port)
            self.link.open()
            params = self.parameters_at_boot()
            config = config or SimConfig()
            rate = params.get("SCHED_LOOP_RATE", 400.0)
            config = replace(config, rate_hz=float(rate), lockstep=True, gps_uart="ubx", rc_uart="crsf")
            self.loop = ArduPilotLoop(self.link, config, self._uarts, rc_semantics(params))
            sitl.start()
            self.sitl = sitl
            self.loop.run_in_background()
            sitl.wait_mavlink_port(60.0)
        except BaseException:
            self.stop()
            raise

    def restart(self, config: SimConfig | None = None) -> None:
        """SITL and its physics from the beginning: a fresh vehicle at home."""
        self.stop()
        self.start(config)

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.shutdown()
        if self.sitl is not None:
            self.sitl.stop()
        if self.loop is not None and self.loop.running:  # it was blocked on the SITL
            self.loop.shutdown()
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
        if board.used:
            board.restart()
            board.lifecycle.mark(BoardState.APP, "SITL started afresh")
        board.used = True
        autopilot = self.connect()
        conn = autopilot.conn
        if conn.gcs_heartbeat in conn.idle_callbacks:
            # The loop sends the GCS heartbeats on simulation time (gcs_loss acts on them).
            conn.idle_callbacks.remove(conn.gcs_heartbeat)
        assert board.loop is not None
        board.loop.autopilot = autopilot
        self.param_snapshot = autopilot.fetch_params(timeout=30.0)
        return self

    def make_sim(self, config: SimConfig | None = None):
        board = self.board
        assert isinstance(board, ArduPilotSitlBoard)
        loop = board.loop
        if loop is None or not loop.running:
            raise HilError(f"ArduPilot SITL board {board.name}: its physics loop is not running")
        if config is not None:
            loop.reconfigure(config)
        self.sim = loop
        return loop

    def _open_uarts(self) -> None:  # the board holds its receiver UARTs itself
        return

    def cleanup(self) -> list[str]:
        loop = getattr(self.board, "loop", None)
        problems = super().cleanup()
        if loop is not None:
            loop.autopilot = None
        return problems


__all__ = ["ArduPilotLoop", "ArduPilotSitlBoard", "ArduPilotSitlSession", "HARNESS_DEFAULTS"]

"""One test's use of one board: connect, start fresh, and leave it as it was found.

After every test: the vehicle must be disarmed (a test that leaves it armed fails, and
it is disarmed), the board must still answer, and parameters are put back.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import replace

from hil.autopilot.mavlink import MavlinkAutopilot
from hil.errors import BoardNotAnswering, ConfigError, HilError, LinkError, WaitTimeout
from hil.lifecycle import BoardState
from hil.links.reconnect import reconnect_same_url
from hil.links.udp_link import open_link
from hil.mavlink.connection import MavConnection
from hil.mavlink.dialect import mavlink
from hil.rig import Board
from hil.sim.loop import ClosedLoop, SimConfig
from hil.timeout import Deadline

log = logging.getLogger(__name__)


class BoardSession:
    """Context manager: `with BoardSession(board) as s: s.autopilot, s.make_sim()`."""

    def __init__(self, board: Board, *, connect_timeout: float = 10.0) -> None:
        self.board = board
        self.connect_timeout = connect_timeout
        self.autopilot: MavlinkAutopilot | None = None
        self.sim: ClosedLoop | None = None
        self.param_snapshot: dict[str, float] = {}
        self.problems: list[str] = []
        self.uart_links: dict[str, object] = {}

    # -- connecting --------------------------------------------------------------------
    def connect(self) -> MavlinkAutopilot:
        url = self.board.url(timeout=self.connect_timeout)
        conn = self._open(url)
        autopilot = MavlinkAutopilot(conn, profile=self.board.profile, wall_factor=self.board.wall_factor)
        autopilot.find_again = self._find_again
        try:
            # A board answers TIMESYNC at once; asking for a HEARTBEAT saves waiting a second for it.
            autopilot.ping(self.connect_timeout)
            autopilot.command(mavlink.MAV_CMD_REQUEST_MESSAGE, mavlink.MAVLINK_MSG_ID_HEARTBEAT, check=False, retries=0)
            autopilot.wait_heartbeat(self.connect_timeout)
            if self.board.asks_for_streams:
                autopilot.request_streams()
        except HilError as exc:
            conn.close()
            raise BoardNotAnswering(f"board {self.board.name} on {url}: {exc}") from None
        self.autopilot = autopilot
        return autopilot

    def _open(self, url: str) -> MavConnection:
        """A started MAVLink connection on `url`, sending the GCS heartbeat when idle."""
        conn = MavConnection(open_link(url, self.board.baud))
        conn.idle_callbacks.append(conn.gcs_heartbeat)
        conn.start_reader()
        return conn

    def _find_again(self, old_url: str, within: float) -> MavConnection:
        """Where the board is after its reboot (`MavlinkAutopilot.reboot`): a new port on
        USB, the same URL behind a network port (after the old connection has dropped)."""
        deadline = Deadline(within)
        if self.board.fixed_url:
            time.sleep(min(0.5, deadline.remaining))
            url = old_url
        else:
            url = self.board.url(timeout=deadline.remaining)
            while url == old_url:
                if deadline.expired:
                    raise BoardNotAnswering(
                        f"board {self.board.name} did not come back on a new port within {within:.0f} s "
                        f"of its reboot (still {old_url})"
                    )
                time.sleep(0.02)
                url = self.board.url(timeout=deadline.remaining)
        self.board.lifecycle.mark(BoardState.APP, "rebooted")
        return self._open(url)

    def describe_firmware(self) -> str:
        """Start the board, ask who it is and let it go: "ArduPilot 1.0.0 (board 7701)".
        Raises BoardNotAnswering or LinkError when it cannot be reached within
        `connect_timeout`."""
        self.board.lifecycle.reach(BoardState.APP, "asked who it is")
        autopilot = self.connect()
        try:
            ident = autopilot.identify(self.connect_timeout)
        finally:
            self._close()
        return f"{ident.autopilot} {ident.firmware_version} (board {ident.board_id})"

    def reconnect_after_reboot(self) -> MavlinkAutopilot:
        """Reboot the board and find it again by USB serial (its port path may change)."""
        assert self.autopilot is not None
        old = self.autopilot
        old_url = old.conn.link.url
        old.send_reboot()
        old.conn.close()
        old.close()
        self.autopilot = None
        deadline = Deadline(self.connect_timeout)
        if self.board.fixed_url:  # a network port (labgrid): the board comes back on the same URL
            self.board.lifecycle.mark(BoardState.APP, "rebooted")
            return reconnect_same_url(self, old_url, deadline)
        while self.board.url(timeout=deadline.remaining) == old_url:
            if deadline.expired:
                raise BoardNotAnswering(
                    f"board {self.board.name} ({self.board.usb_serial}) did not come back on a new "
                    f"port within {self.connect_timeout:.0f} s of its reboot (still {old_url})"
                )
            time.sleep(0.02)
        self.board.lifecycle.mark(BoardState.APP, "rebooted")
        return self.connect()

    def __enter__(self) -> BoardSession:
        self.board.lifecycle.reach(BoardState.APP, "a test session")
        autopilot = self.connect()
        if self.board.lockstep:
            # A fresh vehicle for every test: reboot (the board keeps its parameters).
            autopilot = self.reconnect_after_reboot()
        self.param_snapshot = autopilot.fetch_params()
        return self

    def make_sim(self, config: SimConfig | None = None) -> ClosedLoop:
        """The closed loop for this board, at the board's own loop rate."""
        assert self.autopilot is not None
        config = config or SimConfig()
        rate = self.param_snapshot.get("SCHED_LOOP_RATE")
        if rate and rate > 0:
            config = replace(config, rate_hz=float(rate))
        config = replace(config, lockstep=self.board.lockstep)
        uarts = self.board.uart_protocols
        if uarts:
            config = replace(config, gps_uart=uarts.get("gps"), rc_uart=uarts.get("rc"))
            self._open_uarts()
        self.sim = self.board.mavlink_loop(self.autopilot, config, uart_links=self.uart_links)
        return self.sim

    def _open_uarts(self) -> None:
        """The harness's ends of the board's receiver UARTs (GPS, RC), each framed as its
        receiver says (baud, parity, stop bits; inversion is the wiring's, see hil.receivers)."""
        if self.uart_links:
            return
        receivers = {r.role: r for r in self.board.receivers}
        paths = self.board.uart_paths()
        missing = sorted(set(receivers) - set(paths))
        if missing:
            raise HilError(
                f"board {self.board.name} announces no UART for {', '.join(missing)}; "
                "is it wired (rig keys gps/rc or [[board.receiver]]) and running?"
            )
        for role, receiver in receivers.items():
            link = open_link(paths[role], receiver.baud, parity=receiver.parity, stop_bits=receiver.stop_bits)
            self.uart_links[role] = link
            log.info("%s receiver of %s on %s at %s", role, self.board.name, paths[role], receiver.framing)

    # -- leaving -------------------------------------------------------------------------
    def links(self) -> dict[str, object]:
        """The open links whose bytes a report records, name -> link."""
        out: dict[str, object] = {}
        if self.autopilot is not None:
            out["mavlink"] = self.autopilot.conn.link
        out.update(self.uart_links)
        return out

    def flight(self):
        """How the scenario runner flies this board (`hil.scenario.mavlink_flight`)."""
        from hil.scenario.mavlink_flight import MavlinkFlight

        return MavlinkFlight(self)

    def __exit__(self, *exc: object) -> None:
        self.problems = self.cleanup()

    def cleanup(self) -> list[str]:
        """Stop the loop, disarm, check the board answers, restore parameters."""
        problems: list[str] = []
        ap = self.autopilot
        if self.sim is not None:
            try:
                self.sim.stop()
            except HilError as exc:
                problems.append(str(exc))
        _let_down(self.board)
        if ap is None:
            return problems
        ap.clear_failure()
        try:
            ap.ping()
        except (BoardNotAnswering, LinkError) as exc:
            problems.append(f"board {self.board.name} stopped answering: {exc}")
            self._close()
            return problems
        if ap.armed:
            problems.append(f"the test left board {self.board.name} armed (mode {ap.mode}); it was disarmed")
            try:
                ap.disarm(force=True)
            except HilError as exc:
                problems.append(f"could not disarm board {self.board.name}: {exc}")
        try:
            restored = ap.restore_params(self.param_snapshot)
            if restored:
                log.info("restored parameters on %s: %s", self.board.name, ", ".join(restored))
        except HilError as exc:
            problems.append(f"could not restore parameters on {self.board.name}: {exc}")
        self._close()
        return problems

    def _close(self) -> None:
        for link in self.uart_links.values():
            link.close()
        self.uart_links.clear()
        if self.autopilot is not None:
            self.autopilot.conn.close()
            self.autopilot.close()
            self.autopilot = None


class MspBoardSession:
    """One test's use of an MSP board (Betaflight SITL): connect, fly, leave it clean.

    On entry the board starts from its bench configuration (a test that changed a
    setting marks the board dirty and the next session restores it) and is armable but
    for its arm switch. On exit: the loop stops, an armed board is a problem (and is
    disarmed by the switch), the board must still answer.
    """

    def __init__(self, board: Board, *, connect_timeout: float = 10.0) -> None:
        self.board = board
        self.connect_timeout = connect_timeout
        self.autopilot = None
        self.sim = None
        self.problems: list[str] = []
        self.param_snapshot: dict[str, float] = {}
        #: What happened to the board during the session that a report should mention.
        self.notes: list[str] = []

    def __enter__(self) -> MspBoardSession:
        self.board.lifecycle.reach(BoardState.APP, "a test session")
        self.board.lifecycle.reset_configuration()
        self.connect()
        return self

    def connect(self):
        deadline = Deadline(self.connect_timeout)
        last: Exception | None = None
        url = "its port"
        while True:
            # A firmware that has just (re)started may take its first request late.
            try:
                url = self.board.url(timeout=max(0.1, deadline.remaining))
                self.autopilot = self.board.open_autopilot(max(1.0, deadline.remaining))
                self.autopilot.identify()
                self._ensure_running()
                if "link_statistics" in self.board.capabilities:
                    self.autopilot.debug_mode()  # link_quality() needs it; the CLI is mute once armed
                return self.autopilot
            except HilError as exc:
                last = exc
                if self.autopilot is not None:
                    self.autopilot.close()
                    self.autopilot = None
            if deadline.expired:
                raise BoardNotAnswering(
                    f"board {self.board.name} on {url} did not answer MSP within "
                    f"{self.connect_timeout:.0f} s: {last}"
                )
            time.sleep(0.3)

    def describe_firmware(self) -> str:
        """Start the board, ask who it is and let it go: "BTFL 4.6.0 (board SITL)"."""
        self.board.lifecycle.reach(BoardState.APP, "asked who it is")
        autopilot = self.connect()
        try:
            ident = autopilot.identify()
        finally:
            autopilot.close()
            self.autopilot = None
        return f"{ident.variant} {ident.firmware} (board {ident.board})"

    def board_facts(self) -> dict[str, float]:
        """The board's failsafe timings in seconds, for scenario expressions."""
        assert self.autopilot is not None
        fs = self.autopilot.failsafe_config()
        return {
            "failsafe_delay": fs.delay_s,
            "failsafe_landing_time": fs.landing_time_s,
            "failsafe_throttle_low_delay": fs.throttle_low_delay_s,
        }

    def make_sim(self, config=None):
        """The board's simulator link (its physics loop, or the bench link), not started."""
        if self.sim is not None:
            self.sim.close()
        self.sim = self.board.simulator_link(config)
        return self.sim

    def start_loop(self, config=None, within: float = 12.0):
        """Start the closed loop and wait until the board is armable but for its switch.

        About one boot in fifty of this SITL never runs its main loop (cycle time 0,
        BOOTGRACE never clears). Such a boot is abandoned and the firmware started
        again, once; the session's notes say so.
        """
        assert self.autopilot is not None
        for attempt in (1, 2):
            loop = self.make_sim(config)
            loop.start()
            deadline = Deadline(within)
            status = None
            cycles = 0
            while not deadline.expired:
                status = self.autopilot.status()
                cycles += status.cycle_time_us > 0
                if not set(status.arming_disable_names) - {"ARM_SWITCH"}:
                    self.autopilot.attach_arm_switch(loop.arm_switch)  # arm()/disarm() by the switch
                    self.board.lifecycle.mark(BoardState.ARMABLE, "loop running, only the arm switch blocks arming")
                    return loop
                if loop.error is not None:
                    raise HilError(f"the closed loop stopped: {loop.error}")
                time.sleep(0.05)
            loop.close()
            self.sim = None
            what = (
                "its main loop never ran" if not cycles
                else f"still blocked by {' '.join(status.arming_disable_names) if status else '?'}"
            )
            if attempt == 2:
                raise WaitTimeout(
                    f"board {self.board.name} did not become armable within {within:.0f} s of "
                    f"flying the loop, twice ({what}); see {self.board.log_path()}"
                )
            self.notes.append(f"the firmware did not become armable ({what}); it was restarted")
            self.restart_board("did not become armable")
        raise AssertionError("unreachable")

    def restart_board(self, why: str) -> None:
        """Power-cycle the board (a SITL: restart its process) and talk to it again, its
        scheduler running: a SITL whose boot hung is restarted again (`_ensure_running`)."""
        self.board.lifecycle.power_cycle(why)
        self.autopilot.reopen()
        self._ensure_running()

    def _ensure_running(self) -> None:
        """The firmware's scheduler runs (MSP_STATUS_EX cycle time above 0). Betaflight
        SITL sometimes boots into a state where it answers MSP but never runs its gyro and
        PID tasks (cycle time 0, BOOTGRACE for ever; 2 to 8 boots out of 10 on a loaded host
        until the launcher gave the firmware SCHED_FIFO from exec, see
        hil.sitl.betaflight.boot_preexec; still possible without SCHED_FIFO): the adapter
        restarts such a boot, so a hung boot costs a second or two here instead of the
        armable wait of `start_loop`."""
        ensure = getattr(self.autopilot, "ensure_running", None)
        if ensure is None:
            return
        before = getattr(self.autopilot, "respawns", 0)
        ensure()
        hung = getattr(self.autopilot, "respawns", 0) - before
        if hung > 0:
            self.notes.append(f"the firmware's boot hung {hung} time(s) (cycle time 0); restarted until its scheduler ran")

    #: Arming flags that say "switch the arm switch off first": the switch was on while
    #: something else blocked arming, or when the receiver came back after a gap.
    SWITCH_LATCHES = frozenset({"ARM_SWITCH", "NOT_DISARMED"})

    def arm(self, loop, within: float = 10.0) -> None:
        """Arm by the AUX1 switch as a pilot would, within ``within`` s.

        The firmware latches ARM_SWITCH or NOT_DISARMED when the switch is on while it
        cannot arm (a receiver gap on a loaded host is enough); a pilot then flips the
        switch off and on again, and so does this. Anything else blocking arming is
        waited out; WaitTimeout names what was still in the way.
        """
        assert self.autopilot is not None
        ap = self.autopilot
        deadline = Deadline(within)
        loop.arm_switch(True)
        switched_on = time.monotonic()
        status = ap.status()
        flips = 0
        while not status.armed:
            if deadline.expired:
                raise WaitTimeout(
                    f"board {self.board.name} did not arm by its switch within {within:.0f} s "
                    f"(switch flipped {flips} times); last status: {status.summary()}"
                )
            flags = set(status.arming_disable_names)
            if (
                flags & self.SWITCH_LATCHES
                and not flags - self.SWITCH_LATCHES
                and time.monotonic() - switched_on > 0.3
            ):
                loop.arm_switch(False)
                flips += 1
                off = Deadline(min(2.0, max(0.1, deadline.remaining)))
                while not off.expired and set(ap.status().arming_disable_names) & self.SWITCH_LATCHES:
                    time.sleep(0.05)
                loop.arm_switch(True)
                switched_on = time.monotonic()
            time.sleep(0.02)
            status = ap.status()
        if flips:
            self.notes.append(f"arming needed the switch flipped off and on {flips} time(s)")
        self.board.lifecycle.mark(BoardState.FLYING, "armed by the switch")

    def links(self) -> dict[str, object]:
        """The open links whose bytes a report records, name -> link."""
        link = self.autopilot.link if self.autopilot is not None else None
        return {"msp": link} if link is not None else {}

    def flight(self):
        """How the scenario runner flies this board, in real time (`hil.scenario.msp_flight`)."""
        from hil.scenario.msp_flight import MspFlight

        return MspFlight(self)

    def __exit__(self, *exc: object) -> None:
        self.problems = self.cleanup()

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        ap = self.autopilot
        loop = self.sim
        try:
            if ap is not None:
                try:
                    status = ap.status()
                except HilError as exc:
                    problems.append(f"board {self.board.name} stopped answering: {exc}")
                    status = None
                if status is not None and status.armed:
                    problems.append(f"the test left board {self.board.name} armed; it was disarmed by the switch")
                    if loop is not None and loop.running:
                        loop.hold_altitude(None)
                        loop.arm_switch(False)
                        deadline = Deadline(3.0)
                        while not deadline.expired and ap.status().armed:
                            time.sleep(0.05)
                if getattr(ap, "dirty", False):
                    self.board.dirty = True
        finally:
            if loop is not None:
                try:
                    loop.close()
                except HilError as exc:
                    problems.append(str(exc))
                self.sim = None
            _let_down(self.board)
            if ap is not None:
                ap.close()
                self.autopilot = None
        return problems


def _let_down(board: Board) -> None:
    """The session is over: a board it made armable or flying is back in app state."""
    if board.lifecycle.state in (BoardState.ARMABLE, BoardState.FLYING):
        board.lifecycle.mark(BoardState.APP, "the session ended")


def session_for(board: Board, **kwargs):
    """A session of the kind the board's type names (`Board.session_type`)."""
    module, _, name = board.session_type.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"board {board.name} ({board.type_name}) names session type {board.session_type!r}, "
            f"which does not load: {exc}"
        ) from None
    return factory(board, **kwargs)

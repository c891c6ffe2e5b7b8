"""The virtual board with the PX4 personality: PX4's face on the MAVLink port, and its
simulator reached the way PX4 SITL reaches one (hil.vfc.px4 says what differs).

The simulator connection: like ``simulator_mavlink`` (PX4 ``SimulatorMavlink.cpp``), the
board is a TCP client of the harness's port; it tries to connect every
`CONNECT_RETRY_S` until the harness listens, sets TCP_NODELAY, and on connecting sends a
HEARTBEAT (autopilot 12) and asks for HIL_STATE_QUATERNION every 5000 us. HIL_SENSOR,
HIL_GPS and RC_CHANNELS come in on it; each HIL_SENSOR runs one loop and is answered
there with HIL_ACTUATOR_CONTROLS. A reboot drops the connection and makes a new one, as
a restarted PX4 does. (Real PX4 also holds its boot until the first HIL_SENSOR; this
board answers its MAVLink port before that.)

Order, so that a lockstep run repeats bit for bit: the MAVLink port is read before the
simulator connection (a command written before a sample is handled before it), and a
step's MAVLink output is written to the port before its answer goes out, so the harness
has it when the answer arrives.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from hil.mavlink.dialect import (
    SIM_COMPONENT_ID,
    VFC_COMPONENT_ID,
    VFC_SYSTEM_ID,
    mavlink,
    new_codec,
)
from hil.mavlink.framing import HIL_SENSOR, FrameReader, HotCodec
from hil.vfc import px4
from hil.vfc.copter import Copter
from hil.vfc.params import ParamStore
from hil.vfc.server import STALL_S, VfcServer

M = mavlink
CONNECT_RETRY_S = 0.1
#: How long a step's MAVLink output may take to leave before its answer goes anyway.
FLUSH_BOUND_S = 0.5
_SIM_HOT = (
    HIL_SENSOR,
    HotCodec(M.MAVLink_hil_gps_message),
    HotCodec(M.MAVLink_rc_channels_message),
)


class SimClient:
    """The board's end of its simulator connection (a TCP client, reconnecting)."""

    def __init__(self, host: str, port: int, log: Any) -> None:
        self.host = host
        self.port = port
        self.log = log
        self.sock: socket.socket | None = None
        self._next_try = 0.0
        self.connections = 0

    def poll_connect(self, now: float) -> bool:
        """Try to connect if it is time; True when a new connection was made."""
        if self.sock is not None or now < self._next_try:
            return False
        self._next_try = now + CONNECT_RETRY_S
        try:
            sock = socket.create_connection((self.host, self.port), timeout=0.2)
        except OSError:
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.connections += 1
        self.log(f"simulator connected on TCP port {self.port} (from port {sock.getsockname()[1]})")
        return True

    def read(self) -> bytes:
        """What arrived (b"" for nothing); the connection is dropped on end of file."""
        sock = self.sock
        if sock is None:
            return b""
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            self.log("simulator disconnected")
            self.close()
        return data

    def send(self, data: bytes) -> None:
        sock = self.sock
        if sock is None or not data:
            return
        view = memoryview(data)
        deadline = time.monotonic() + FLUSH_BOUND_S
        try:
            while view:
                try:
                    view = view[sock.send(view):]
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        self.log("simulator takes no data; dropping its connection")
                        self.close()
                        return
                    select.select([], [sock], [], 0.05)
        except OSError:
            self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.log(f"simulator connection from port {self.sock.getsockname()[1]} closed")
            self.sock.close()
            self.sock = None
            self._next_try = time.monotonic() + CONNECT_RETRY_S


class Px4Server(VfcServer):
    """A virtual board that looks like PX4 and takes its simulator over TCP."""

    personality = px4.Px4Personality()
    #: PX4 sets the custom-mode flag in every HIL_ACTUATOR_CONTROLS (SimulatorMavlink.cpp).
    answer_mode_flags = M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED

    def __init__(self, identity: Any, storage_path: Any, *, sim_host: str, sim_port: int, **kwargs: Any) -> None:
        log = kwargs.get("log") or (lambda text: None)
        self.sim = SimClient(sim_host, sim_port, log)
        self.sim_codec = new_codec(VFC_SYSTEM_ID, VFC_COMPONENT_ID)
        super().__init__(identity, storage_path, **kwargs)
        self._handlers["RC_CHANNELS"] = self._on_rc_channels

    # -- firmware ------------------------------------------------------------------------
    def _make_params(self) -> ParamStore:
        return px4.Px4ParamStore(path=self.storage_path)

    def _make_copter(self) -> Copter:
        behaviour = self.app.behaviour if self.app is not None else None
        return Copter(self.params, behaviour, personality=self.personality)

    def _boot(self) -> None:
        super()._boot()
        self._answers = bytearray()  # answers go to the simulator connection
        self.sim_reader = FrameReader(new_codec(0, 0), hot=_SIM_HOT, stall_s=STALL_S)
        self.sim.close()  # a restarted PX4 connects again

    # -- serving -------------------------------------------------------------------------
    def serve_once(self, timeout: float) -> None:
        sim = self.sim
        if sim.poll_connect(time.monotonic()):
            self._greet_simulator()
        assert self.pty is not None
        fds = [self.pty.master_fd] if sim.sock is None else [self.pty.master_fd, sim.sock]
        ready = select.select(fds, [], [], timeout)[0] if not self._outbuf else fds
        super().serve_once(0.0)  # the MAVLink port first
        if sim.sock is not None and sim.sock in ready:
            t_read = time.perf_counter_ns()
            data = sim.read()
            if data:
                for msg in self.sim_reader.feed(data, time.monotonic()):
                    self._dispatch(msg, t_read)

    def _greet_simulator(self) -> None:
        codec = self.sim_codec
        hello = codec.heartbeat_encode(M.MAV_TYPE_GENERIC, M.MAV_AUTOPILOT_PX4, 0, 0, 0)
        ask = codec.command_long_encode(
            0, 0, M.MAV_CMD_SET_MESSAGE_INTERVAL, 0, M.MAVLINK_MSG_ID_HIL_STATE_QUATERNION, 5000, 0, 0, 0, 0, 0
        )
        self.sim.send(bytes(hello.pack(codec)) + bytes(ask.pack(codec)))

    def _on_hil_sensor(self, msg: Any, t_read: int | None = None) -> None:
        if msg.id != 0:
            return  # only sensor id 0 steps the lockstep clock; other ids are spare units
        super()._on_hil_sensor(msg, t_read)
        # This step's MAVLink output leaves before its answer (see the module doc).
        deadline = time.monotonic() + FLUSH_BOUND_S
        while self._outbuf and time.monotonic() < deadline:
            self._flush()
            if self._outbuf and self.pty is not None:
                select.select([], [self.pty.master_fd], [], 0.01)
        answers = self._answers
        if answers:
            self.sim.send(bytes(answers))
            answers.clear()

    def _on_rc_channels(self, msg: Any) -> None:
        count = max(0, min(18, int(msg.chancount)))
        raw = [getattr(msg, f"chan{i}_raw") for i in range(1, 19)]
        self.copter.on_rc(self.time_us, [int(v) if i < count else 0 for i, v in enumerate(raw)])

    def _on_battery_status(self, msg: Any) -> None:
        """PX4 SITL simulates its own battery; a simulator's BATTERY_STATUS is not read."""
        if msg.get_srcComponent() == SIM_COMPONENT_ID:
            return

    def _send_banner(self) -> None:
        """PX4 sends no banner when a ground station appears."""

    # -- PX4's face ----------------------------------------------------------------------
    def _heartbeat(self) -> Any:
        msg = super()._heartbeat()
        msg.autopilot = M.MAV_AUTOPILOT_PX4
        msg.custom_mode = px4.custom_mode(self.copter.mode)
        return msg

    def _cmd_do_set_mode(self, p: list[float]) -> tuple[int, str]:
        mode = px4.decode_set_mode(p[1], p[2])
        if mode is None:
            return M.MAV_RESULT_DENIED, f"Mode {p[1]:g}/{p[2]:g} not supported"
        return self._verdict(self.copter.set_mode(mode), "Mode change failed")

    def _on_set_mode(self, msg: Any) -> None:
        if msg.target_system != VFC_SYSTEM_ID:
            return
        mode = px4.decode_custom_mode_field(int(msg.custom_mode))
        outcome = self.copter.set_mode(mode) if mode is not None else (False, "Mode not supported")
        result, reason = self._verdict(outcome, "Mode change failed")
        self._ack(msg, M.MAVLINK_MSG_ID_SET_MODE, result)
        if reason:
            self._say_once(M.MAV_SEVERITY_WARNING, reason)

    def _cmd_arm_disarm(self, p: list[float]) -> tuple[int, str]:
        force = int(round(p[1])) == px4.FORCE  # PX4: 21196 forces arming and disarming
        if p[0] == 1:
            return self._verdict(self.copter.arm(force=force), "Arming denied")
        if p[0] == 0:
            return self._verdict(self.copter.disarm(force=force), "Disarming denied")
        return M.MAV_RESULT_DENIED, f"Arm: param1 {p[0]:g} is not 0 or 1"

    def _say_once(self, severity: int, text: str) -> None:
        said = self.personality.text(text)
        if said:
            super()._say_once(severity, said)
        else:
            for sev, other in self.copter.drain_statustexts():
                self.statustext(int(sev), str(other))

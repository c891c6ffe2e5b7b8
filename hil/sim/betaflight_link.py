"""The `betaflight_udp` simulator link: Betaflight SITL's UDP ports, RC over MSP.

Every step the loop sends one FDM state packet to UDP 9003; motor packets arrive on UDP
9002 (at most one per state packet), and the newest is the firmware's answer. The
firmware keeps its own clock, so the loop paces itself by the wall clock (real time).
RC goes the way a receiver's frames would: MSP_SET_RAW_RC on the MSP UART the firmware
reads RC from (``rc_url``), at the radio's frame rate, each frame delivered or lost by
the plant's RC link model, which is how ``rc_loss`` and ``rc_jamming`` act on this board.

Packet layouts are in PROTOCOLS.md section 10. Frames: the simulation is NED with an
FRD body; the state packet carries FRD rates and specific force as-is (the firmware
flips the axes it needs), the body->NED quaternion (the firmware takes it as its
attitude), ENU velocity and (longitude, latitude, altitude) position for its virtual
GPS, and static pressure in Pa. The four motor floats arrive in ArduPilot quad-X order
(front-right, rear-left, front-left, rear-right), which is our vehicle's numbering.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from hil.codecs import msp
from hil.errors import LinkError
from hil.sim import geo
from hil.sim.realtime import Ring
from hil.sim.simlink import Motors, register

if TYPE_CHECKING:
    from hil.sim.gps_feed import GpsFeed
    from hil.sim.plant import Plant

STATE = struct.Struct("<d3d3d4d3d3dd")
MOTORS = struct.Struct("<4f")
#: RC channels in AETR order (Betaflight's default map): roll, pitch, throttle, yaw, AUX1..
RC_DISARMED = (1500, 1500, 1000, 1500, 1000, 1000, 1000, 1000)
#: State-packet stamps step by this (a binary fraction: exact in a double), see `stamp`.
STAMP_QUANTUM_S = 1 / 32
#: Seconds of motor-packet stamps kept for the loop's timing figures.
TIMING_WINDOW_S = 120.0


@register
class BetaflightUdpLink:
    """FDM state packets to Betaflight SITL, its motor packets back, RC as MSP frames."""

    name = "betaflight_udp"
    physics = True
    pipeline = False
    lockstep = False
    supported_injections = frozenset(
        {
            "rc_loss", "rc_jamming", "arm_switch", "imu_noise", "imu_stuck", "imu_clip", "baro_drift", "wind",
            "battery_sag",
        }
    )
    rc_idle = RC_DISARMED

    def __init__(
        self,
        fc_ip: str,
        host_ip: str,
        rc_url: str | None,
        *,
        rate_hz: float,
        rc_rate_hz: float,
        state_port: int = 9003,
        motor_port: int = 9002,
        clock_offset_s: float = 0.0,
        gps_feed: GpsFeed | None = None,
    ) -> None:
        """``clock_offset_s`` is added to every state timestamp: the firmware's clock
        follows them, so a second loop against the same process must not go back in time
        (pass the seconds since the process started). ``gps_feed``: our GPS receiver on
        one of the firmware's UARTs, stepped before every state packet; the GNSS threats
        then reach this board through it."""
        self.fc_ip = fc_ip
        self.host_ip = host_ip
        self.rc_url = rc_url
        self.state_port = state_port
        self.motor_port = motor_port
        self.clock_offset_s = float(clock_offset_s)
        self.gps_feed = gps_feed
        if gps_feed is not None:
            self.supported_injections = type(self).supported_injections | gps_feed.injections
        self.on_event: Callable[[str, str], None] | None = None
        self.rc_frames_sent = 0
        self.rc_frames_lost = 0
        self._rc_period_us = int(round(1e6 / rc_rate_hz))
        self._next_rc = 0
        self._state_sock: socket.socket | None = None
        self._motor_sock: socket.socket | None = None
        self._rc_sock: socket.socket | None = None
        self._closing = threading.Event()
        self._send_real_ns = 0
        self._mono_minus_real = time.monotonic_ns() - time.time_ns()
        self._started_ns = 0
        size = int(TIMING_WINDOW_S * rate_hz) + 16
        self._motor_ns = Ring(size)
        self._latency_ns = Ring(size)
        self._motors: Motors | None = None

    # -- the loop's side ---------------------------------------------------------------
    def open(self) -> None:
        """Bind the motor port, open the state socket and the RC UART (retried briefly:
        after a restart the firmware opens its UARTs one after the other)."""
        self._closing.clear()
        if self._motor_sock is None:
            motor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            motor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                motor.bind((self.host_ip, self.motor_port))
            except OSError as exc:
                motor.close()
                raise LinkError(
                    f"cannot receive motor packets on UDP {self.host_ip}:{self.motor_port}: {exc} "
                    "(another simulator or SITL harness is using it)"
                ) from None
            motor.setblocking(False)
            try:
                motor.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            except OSError:
                pass
            self._motor_sock = motor
        if self._state_sock is None:
            self._state_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self.rc_url is not None and self._rc_sock is None:
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    self._rc_sock = _connect(self.rc_url, timeout=0.5)
                    break
                except LinkError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        if not self._started_ns:
            self._started_ns = time.monotonic_ns()
        feed = self.gps_feed
        if feed is not None and feed.on_event is None:
            feed.on_event = self.on_event

    def close(self) -> None:
        self._closing.set()
        if self.gps_feed is not None:
            self.gps_feed.close()
        for sock in (self._state_sock, self._motor_sock, self._rc_sock):
            if sock is not None:
                sock.close()
        self._state_sock = self._motor_sock = self._rc_sock = None

    def reconnect_rc(self) -> None:
        """Open the RC UART again (after the firmware restarted)."""
        if self._rc_sock is not None:
            self._rc_sock.close()
            self._rc_sock = None
        if self.rc_url is not None:
            self._rc_sock = _connect(self.rc_url)

    def send(self, t_us: int, plant: Plant) -> None:
        if self.gps_feed is not None:
            self.gps_feed.step(t_us * 1e-6, plant)
        if t_us >= self._next_rc:
            self._next_rc = t_us + self._rc_period_us
            self._send_rc(plant)
        v = plant.vehicle
        ax, ay, az, gx, gy, gz = plant.imu.sample(v)
        pn, pe, pd = v.pos
        vn, ve, vd = v.vel
        lat, lon, alt = geo.ned_to_lla(pn, pe, pd)
        pressure_hpa, _temp = plant.baro.sample(geo.HOME.alt_m - pd)
        qw, qx, qy, qz = v.quat
        packet = STATE.pack(
            self.stamp(time.monotonic_ns()), gx, gy, gz, ax, ay, az, qw, qx, qy, qz, ve, vn, -vd, lon, lat, alt,
            pressure_hpa * 100.0,
        )
        self._send_real_ns = time.time_ns()
        sock = self._state_sock
        if sock is not None:
            sock.sendto(packet, (self.fc_ip, self.state_port))

    def outputs(self, t_us: int, timeout: float) -> Motors | None:
        """The newest motor packet since the last look (drains any backlog), or None."""
        sock = self._motor_sock
        got = None
        if sock is None:
            return None
        while True:
            try:
                data, anc, _flags, _addr = sock.recvmsg(64, _CMSG_SPACE)
            except BlockingIOError:
                break
            if len(data) >= 16:
                m = MOTORS.unpack_from(data)
                # Betaflight order on the wire is already our numbering (see module doc).
                got = (m[0], m[1], m[2], m[3])
                # Arrival as the kernel stamped it (CLOCK_REALTIME), not when we looked.
                arrived = _kernel_stamp(anc)
                if arrived is None:
                    arrived = time.time_ns()
                self._motor_ns.append(arrived + self._mono_minus_real)
                if self._send_real_ns:
                    self._latency_ns.append(arrived - self._send_real_ns)
        return got

    def motor_times_ns(self) -> np.ndarray:
        """Arrival stamps of the motor packets (host monotonic ns), oldest first (a copy)."""
        return self._motor_ns.values()

    def latencies_ns(self) -> np.ndarray:
        """State send -> motor arrival, ns, per motor packet (kernel stamps), oldest first."""
        return self._latency_ns.values()

    def answer_stamps(self) -> None:
        """Betaflight SITL's motor packets do not say which state packet they answer."""
        return None

    # -- the state stamp ---------------------------------------------------------------
    def stamp(self, now_ns: int) -> float:
        """The state packet's timestamp: wall-clock seconds since the link opened, plus
        the offset, in steps of `STAMP_QUANTUM_S`.

        The SITL sets its clock rate from each packet alone: the stamp step over the gap
        since the packet before, by its own receive times, whenever the step is above 0
        and below 20 ms. Two packets its receive thread reads back to back (it was
        preempted for a millisecond) set the rate to about 100 until the next packet, so
        its clock runs ahead by tens of milliseconds each time: on a busy host a 1.5 s
        failsafe delay came 0.4 s early. Stamps that step by 31.25 ms (or not at all) are
        never inside that window, so the SITL keeps its initial rate of 1 and its clock
        is the host's: a board with a crystal. The firmware uses the stamp for nothing
        else (the attitude comes from the packet's own fields).
        """
        wall = self.clock_offset_s + (now_ns - self._started_ns) * 1e-9
        return (wall // STAMP_QUANTUM_S) * STAMP_QUANTUM_S

    # -- the radio ---------------------------------------------------------------------
    def _send_rc(self, plant: Plant) -> None:
        delivered = plant.rc_frame_delivered()
        rc_sock = self._rc_sock
        if rc_sock is None:
            return
        try:
            try:
                rc_sock.recv(4096)  # the firmware acknowledges every frame; drop the acks
            except (BlockingIOError, InterruptedError):
                pass
            if delivered:
                rc_sock.send(msp.encode_request(msp.MspCommand.SET_RAW_RC, struct.pack("<8H", *plant.rc_channels[:8])))
                self.rc_frames_sent += 1
            else:
                self.rc_frames_lost += 1
        except OSError:
            # The firmware restarted (save, reboot): the RC UART comes back with it.
            self._rc_sock = None
            try:
                rc_sock.close()
            finally:
                threading.Thread(target=self._reconnect_later, name="rc-reconnect", daemon=True).start()

    def _reconnect_later(self) -> None:
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and not self._closing.is_set():
            try:
                self._rc_sock = _connect(self.rc_url, timeout=0.5) if self.rc_url else None
                return
            except LinkError:
                time.sleep(0.2)


def _connect(url: str, timeout: float = 2.0) -> socket.socket:
    """A TCP socket for a ``socket://host:port`` URL, non-blocking after connect."""
    if not url.startswith("socket://"):
        raise LinkError(f"RC UART {url!r}: only socket:// URLs are supported for Betaflight SITL")
    host, _, port = url.removeprefix("socket://").rpartition(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except (OSError, ValueError) as exc:
        raise LinkError(f"cannot open the RC UART at {url}: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")


def _kernel_stamp(ancillary: list[Any]) -> int | None:
    """The SO_TIMESTAMPNS arrival time (ns, CLOCK_REALTIME) of a datagram, if present."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None

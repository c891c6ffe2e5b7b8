"""The closed loop for Betaflight SITL: real time over its UDP ports, RC over MSP.

The firmware keeps its own clock, which would follow the stamps of the state packets
badly (see `BetaflightLoop._stamp`); our stamps leave it at the host's pace, and this
loop runs by the wall clock too: every period it integrates the physics with
the newest motor packet, samples the sensors and sends one state packet to UDP 9003.
Motor packets arrive on UDP 9002 (at most one per state packet). RC goes the way a
receiver's frames would: MSP_SET_RAW_RC on the MSP UART the firmware reads RC from
(``rc_url``), at the radio's frame rate, each frame delivered or lost by the RC link
model, which is how ``rc_loss`` and ``rc_jamming`` act on this board.

Packet layouts are in PROTOCOLS.md section 10. Frames: the simulation is NED with an
FRD body; the state packet carries FRD rates and specific force as-is (the firmware
flips the axes it needs), the body->NED quaternion (the firmware takes it as its
attitude), ENU velocity and (longitude, latitude, altitude) position for its virtual
GPS, and static pressure in Pa. The four motor floats arrive in ArduPilot quad-X order
(front-right, rear-left, front-left, rear-right), which is our vehicle's numbering.

The loop thread asks for SCHED_FIFO and a 1 ns timer slack when it may, so that its
send period holds at 1 kHz on a busy host; ``timing()`` reports what it achieved.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from hil.codecs import msp
from hil.errors import HilError, LinkError
from hil.sim import geo
from hil.sim.gps_feed import GpsFeed
from hil.sim.injections import InjectionSchedule
from hil.sim.plant import FIVE_INCH, Plant
from hil.sim.vehicle import Quadrotor

log = logging.getLogger(__name__)

STATE = struct.Struct("<d3d3d4d3d3dd")
MOTORS = struct.Struct("<4f")
#: RC channels in AETR order (Betaflight's default map): roll, pitch, throttle, yaw, AUX1..
RC_DISARMED = [1500, 1500, 1000, 1500, 1000, 1000, 1000, 1000]
ARM_US = 1900
#: Seconds of send/receive stamps kept for ``timing()``.
TIMING_WINDOW_S = 120.0
#: State-packet stamps step by this (a binary fraction: exact in a double), see `_stamp`.
STAMP_QUANTUM_S = 1 / 32
DISARM_US = 1000


@dataclass
class BetaflightLoopConfig:
    rate_hz: float = 1000.0
    rc_rate_hz: float = 50.0
    seed: int = 0
    wind_speed: float = 0.0
    wind_direction: float = 0.0
    wind_gust: float = 0.0
    battery_cells: int = 4
    battery_capacity_mah: float = 1500.0
    truth_rate_hz: float = 50.0
    #: Ask for SCHED_FIFO for the loop thread (when the process may).
    realtime_priority: int | None = 60  # above the SITL threads (50): the harness must keep time


@dataclass(frozen=True)
class LoopTiming:
    """What the real-time loop achieved: send periods and the firmware's answers."""

    rate_hz: float
    seconds: float
    sent: int
    motor_packets: int
    send_period_p50_us: float
    send_period_p99_us: float
    send_period_max_us: float
    send_jitter_p99_us: float
    missed: int
    motor_rate_hz: float
    motor_period_p99_us: float
    motor_gaps_over_5ms: int
    latency_p50_us: float
    scheduler: str

    def lines(self) -> list[str]:
        return [
            f"state sent at {self.sent / self.seconds:.0f}/s for {self.seconds:.1f} s "
            f"(target {self.rate_hz:.0f} Hz, {self.scheduler}): period p50 {self.send_period_p50_us:.0f} us, "
            f"p99 {self.send_period_p99_us:.0f} us, max {self.send_period_max_us:.0f} us, "
            f"jitter p99 {self.send_jitter_p99_us:.0f} us, {self.missed} missed",
            f"motor packets {self.motor_rate_hz:.0f}/s: period p99 {self.motor_period_p99_us:.0f} us, "
            f"{self.motor_gaps_over_5ms} gaps > 5 ms, state->motor latency p50 {self.latency_p50_us:.0f} us (kernel arrival stamps)",
        ]


class AltitudePilot:
    """A pilot on the throttle stick who holds an altitude by eye (true altitude).

    Angle mode levels the craft; height is the pilot's job. A PI on altitude error with
    a feed-forward of the hover stick, limited in rate, is how a steady human flies it.
    """

    def __init__(self, target_m: float, hover_us: float) -> None:
        self.target_m = target_m
        self.hover_us = hover_us
        self._integral = 0.0

    def throttle(self, alt_m: float, climb_mps: float, dt: float) -> int:
        err = self.target_m - alt_m
        climb_target = max(-1.5, min(2.0, 0.8 * err))
        verr = climb_target - climb_mps
        self._integral = max(-150.0, min(150.0, self._integral + 40.0 * verr * dt))
        us = self.hover_us + 80.0 * verr + self._integral
        return int(max(1000.0, min(1850.0, us)))


class _Ring:
    """The newest ``size`` samples (int64, or rows of ``width`` floats), preallocated: no
    growth in long runs.

    The buffer is written once at creation: numpy's zeros come from calloc, whose pages
    the kernel maps only when first written, which would show as memory growth while
    the ring fills."""

    def __init__(self, size: int, width: int | None = None) -> None:
        if width is None:
            self._buf = np.full(size, 0, dtype=np.int64)
        else:
            self._buf = np.full((size, width), np.nan)
        self._n = 0

    def append(self, value) -> None:
        self._buf[self._n % len(self._buf)] = value
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, len(self._buf))

    def __bool__(self) -> bool:
        return self._n > 0

    def values(self) -> np.ndarray:
        """The kept samples, oldest first (a copy)."""
        size = len(self._buf)
        if self._n <= size:
            return self._buf[: self._n].copy()
        i = self._n % size
        return np.concatenate([self._buf[i:], self._buf[:i]])


class BetaflightLoop(InjectionSchedule):
    """Flies the simulated quad with Betaflight SITL's motor outputs, in real time."""

    #: The harness flies the vehicle (the `bench` link does not).
    physics = True

    supported_injections = frozenset(
        {
            "rc_loss", "rc_jamming", "arm_switch", "imu_noise", "imu_stuck", "imu_clip", "baro_drift", "wind",
            "battery_sag",
        }
    )

    def __init__(
        self,
        fc_ip: str,
        host_ip: str,
        rc_url: str | None,
        config: BetaflightLoopConfig | None = None,
        *,
        state_port: int = 9003,
        motor_port: int = 9002,
        clock_offset_s: float = 0.0,
        gps_feed: GpsFeed | None = None,
    ) -> None:
        """``clock_offset_s`` is added to every state timestamp: the firmware's clock
        follows them, so a second loop against the same process must not go back in time
        (pass the seconds since the process started). ``gps_feed``: our GPS receiver on
        one of the firmware's UARTs (`hil.sim.gps_feed`), stepped with the loop."""
        self.config = cfg = config or BetaflightLoopConfig()
        if not 50.0 <= cfg.rate_hz <= 4000.0:
            raise HilError(f"state rate {cfg.rate_hz} Hz is outside 50..4000 Hz (the firmware needs > 50 Hz)")
        self._init_schedule()
        #: The 5-inch quad, its sensors, weather, battery, the RC link and the threats
        #: set on them (GNSS and GCS threats have no path to this board).
        self.plant = Plant.for_betaflight(cfg)
        #: Stick positions in microseconds, AETR + AUX (what the pilot's radio sends).
        self.rc_channels = list(RC_DISARMED)
        self.pilot: AltitudePilot | None = None
        self.fc_ip = fc_ip
        self.host_ip = host_ip
        self.clock_offset_s = float(clock_offset_s)
        self.state_port = state_port
        self.rc_url = rc_url
        self.gps_feed = gps_feed
        if gps_feed is not None:  # the GNSS threats reach this board through its receiver
            self.supported_injections = self.supported_injections | gps_feed.injections
            gps_feed.on_event = gps_feed.on_event or self._event
        self.dt = 1.0 / cfg.rate_hz
        self.dt_us = int(round(1e6 * self.dt))
        self.t_us = 0
        self.motors = (0.0, 0.0, 0.0, 0.0)
        #: Truth rows (t, n, e, d, roll, pitch, yaw, 4 motors), the last 10 minutes;
        #: `truth.values()` gives them oldest first.
        self.truth = _Ring(int(600 * cfg.truth_rate_hz), 11)
        self.error: BaseException | None = None
        self.scheduler = "not started"
        self.rc_frames_sent = 0
        self.rc_frames_lost = 0
        self._truth_period_us = int(round(1e6 / cfg.truth_rate_hz))
        self._rc_period_us = int(round(1e6 / cfg.rc_rate_hz))
        self._next_truth = 0
        self._next_rc = 0
        self._state_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._motor_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._motor_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._motor_sock.bind((host_ip, motor_port))
        except OSError as exc:
            self._state_sock.close()
            self._motor_sock.close()
            raise LinkError(
                f"cannot receive motor packets on UDP {host_ip}:{motor_port}: {exc} "
                "(another simulator or SITL harness is using it)"
            ) from None
        self._motor_sock.setblocking(False)
        try:
            self._motor_sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            pass
        self._send_real_ns = 0
        self._mono_minus_real = time.monotonic_ns() - time.time_ns()
        self._rc_sock: socket.socket | None = None
        # Recorded timing: fixed rings of the last TIMING_WINDOW_S seconds, so a soak
        # run's memory stays flat.
        size = int(TIMING_WINDOW_S * cfg.rate_hz) + 16
        self._send_ns = _Ring(size)
        self._motor_ns = _Ring(size)
        self._latency_ns = _Ring(size)
        self._missed = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started_ns = 0

    # -- pilot's controls --------------------------------------------------------------

    def set_sticks(self, roll: int = 1500, pitch: int = 1500, throttle: int | None = None, yaw: int = 1500) -> None:
        """Put the sticks somewhere (us); ``throttle`` None leaves it to the pilot model."""
        ch = self.rc_channels
        ch[0], ch[1], ch[3] = int(roll), int(pitch), int(yaw)
        if throttle is not None:
            self.pilot = None
            ch[2] = int(throttle)

    def arm_switch(self, on: bool) -> None:
        self.rc_channels[4] = ARM_US if on else DISARM_US

    def hold_altitude(self, target_m: float | None) -> None:
        """Let the pilot model fly the throttle to ``target_m`` (None: hands off, throttle low)."""
        if target_m is None:
            self.pilot = None
            self.rc_channels[2] = 1000
        elif self.pilot is None:
            hover_us = 1000.0 + 1000.0 * FIVE_INCH.hover_command
            self.pilot = AltitudePilot(target_m, hover_us)
        else:
            self.pilot.target_m = target_m

    # -- running -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        if self.rc_url is not None and self._rc_sock is None:
            # After a restart the firmware opens its UARTs one after the other: retry briefly.
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    self._rc_sock = _connect(self.rc_url, timeout=0.5)
                    break
                except LinkError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, name="betaflight-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is not None:
            self._stop.set()
            thread.join(timeout)
            self._thread = None
            if thread.is_alive():
                raise HilError(f"Betaflight loop did not stop within {timeout} s")

    def close(self) -> None:
        self.stop()
        for sock in (self._state_sock, self._motor_sock, self._rc_sock):
            if sock is not None:
                sock.close()
        self._rc_sock = None
        if self.gps_feed is not None:
            self.gps_feed.close()

    def reconnect_rc(self) -> None:
        """Open the RC UART again (after the firmware restarted)."""
        if self._rc_sock is not None:
            self._rc_sock.close()
            self._rc_sock = None
        if self.rc_url is not None:
            self._rc_sock = _connect(self.rc_url)

    def _run(self) -> None:
        self.scheduler = _make_realtime(self.config.realtime_priority)
        old_switch = sys.getswitchinterval()
        sys.setswitchinterval(min(old_switch, 0.0005))
        period_ns = int(round(1e9 * self.dt))
        next_ns = time.monotonic_ns()
        if not self._started_ns:
            self._started_ns = next_ns
        sleep = time.sleep
        mono = time.monotonic_ns
        try:
            while not self._stop.is_set():
                now = mono()
                wait = next_ns - now
                if wait > 250_000:
                    sleep((wait - 200_000) * 1e-9)
                while mono() < next_ns:
                    pass
                sent = mono()
                self._step(sent)
                next_ns += period_ns
                late = mono() - next_ns
                if late > period_ns:
                    skipped = late // period_ns
                    self._missed += int(skipped)
                    next_ns += skipped * period_ns
        except Exception as exc:  # keep the error for the test thread to report
            self.error = exc
            log.exception("Betaflight loop stopped")
        finally:
            sys.setswitchinterval(old_switch)

    def _step(self, now_ns: int) -> None:
        # Newest motor packet (at most one per state packet, but drain any backlog).
        sock = self._motor_sock
        while True:
            try:
                data, anc, _flags, _addr = sock.recvmsg(64, _CMSG_SPACE)
            except BlockingIOError:
                break
            if len(data) >= 16:
                m = MOTORS.unpack_from(data)
                # Betaflight order on the wire is already our numbering (see module doc).
                self.motors = (m[0], m[1], m[2], m[3])
                # Arrival as the kernel stamped it (CLOCK_REALTIME), not when we looked.
                arrived = _kernel_stamp(anc)
                if arrived is None:
                    arrived = time.time_ns()
                self._motor_ns.append(arrived + self._mono_minus_real)
                if self._send_real_ns:
                    self._latency_ns.append(arrived - self._send_real_ns)
        plant = self.plant
        plant.step(self.dt, self.motors)
        v = plant.vehicle
        self.t_us += self.dt_us
        if self._schedule and self._schedule[0].t_us <= self.t_us:
            self._apply_due()
        t = self.t_us * 1e-6
        if self.gps_feed is not None:
            self.gps_feed.step(t, plant)
        if self.t_us >= self._next_rc:
            self._next_rc = self.t_us + self._rc_period_us
            self._send_rc(t)
        ax, ay, az, gx, gy, gz = plant.imu.sample(v)
        pn, pe, pd = v.pos
        vn, ve, vd = v.vel
        lat, lon, alt = geo.ned_to_lla(pn, pe, pd)
        pressure_hpa, _temp = plant.baro.sample(geo.HOME.alt_m - pd)
        qw, qx, qy, qz = v.quat
        packet = STATE.pack(
            self._stamp(now_ns), gx, gy, gz, ax, ay, az, qw, qx, qy, qz, ve, vn, -vd, lon, lat, alt, pressure_hpa * 100.0
        )
        self._send_real_ns = time.time_ns()
        self._state_sock.sendto(packet, (self.fc_ip, self.state_port))
        self._send_ns.append(now_ns)
        if self.t_us >= self._next_truth:
            self._next_truth = self.t_us + self._truth_period_us
            roll, pitch, yaw = v.euler()
            self.truth.append((t, pn, pe, pd, roll, pitch, yaw, *self.motors))

    def _stamp(self, now_ns: int) -> float:
        """The state packet's timestamp: wall-clock seconds since the process started,
        in steps of `STAMP_QUANTUM_S`.

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

    def _send_rc(self, t: float) -> None:
        if self.pilot is not None:
            v = self.plant.vehicle
            self.rc_channels[2] = self.pilot.throttle(-v.pos[2], -v.vel[2], self._rc_period_us * 1e-6)
        delivered = self.plant.rc_frame_delivered()
        rc_sock = self._rc_sock
        if rc_sock is None:
            return
        try:
            try:
                rc_sock.recv(4096)  # the firmware acknowledges every frame; drop the acks
            except (BlockingIOError, InterruptedError):
                pass
            if delivered:
                rc_sock.send(msp.encode_request(msp.MspCommand.SET_RAW_RC, struct.pack("<8H", *self.rc_channels[:8])))
                self.rc_frames_sent += 1
            else:
                self.rc_frames_lost += 1
        except OSError:
            # The firmware restarted (save, reboot): the RC UART comes back with it.
            self._rc_sock = None
            try:
                rc_sock.close()
            finally:
                threading.Thread(target=self._reconnect_later, daemon=True).start()

    def _reconnect_later(self) -> None:
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                self._rc_sock = _connect(self.rc_url, timeout=0.5) if self.rc_url else None
                return
            except LinkError:
                time.sleep(0.2)

    # -- what it achieved --------------------------------------------------------------

    def motor_times_ns(self) -> np.ndarray:
        """Arrival stamps of the motor packets (host monotonic ns), oldest first (a copy)."""
        return self._motor_ns.values()

    def timing(self, since_s: float = 0.0) -> LoopTiming:
        """Send-period and motor-packet statistics (wall clock), from ``since_s`` of the run."""
        send = self._send_ns.values()
        motor = self._motor_ns.values()
        cut = self._started_ns + int(since_s * 1e9)
        send = send[send >= cut]
        motor = motor[motor >= cut]
        if len(send) < 3:
            raise HilError("the Betaflight loop has not run long enough to measure its timing")
        seconds = (send[-1] - send[0]) * 1e-9
        ps = np.diff(send) * 1e-3
        nominal = self.dt * 1e6
        pm = np.diff(motor) * 1e-3 if len(motor) > 2 else np.zeros(1)
        lat_ns = self._latency_ns.values()[-len(motor):]
        lat = (lat_ns if len(lat_ns) else np.zeros(1)) * 1e-3
        return LoopTiming(
            rate_hz=self.config.rate_hz,
            seconds=seconds,
            sent=len(send),
            motor_packets=len(motor),
            send_period_p50_us=float(np.percentile(ps, 50)),
            send_period_p99_us=float(np.percentile(ps, 99)),
            send_period_max_us=float(ps.max()),
            send_jitter_p99_us=float(np.percentile(np.abs(ps - nominal), 99)),
            missed=int(np.sum(ps > 1.5 * nominal)),
            motor_rate_hz=len(motor) / seconds if seconds > 0 else 0.0,
            motor_period_p99_us=float(np.percentile(pm, 99)),
            motor_gaps_over_5ms=int(np.sum(pm > 5000.0)),
            latency_p50_us=float(np.percentile(lat, 50)),
            scheduler=self.scheduler,
        )

    @property
    def vehicle(self) -> Quadrotor:
        """The simulated vehicle (``plant.vehicle``), for tests that read its truth."""
        return self.plant.vehicle

    @property
    def altitude(self) -> float:
        return -self.plant.vehicle.pos[2]

    def pose(self) -> tuple[float, float, float, float, float, float]:
        """(altitude, north, east, ground speed, roll, pitch) of the simulated vehicle now."""
        v = self.plant.vehicle
        pn, pe, pd = v.pos
        roll, pitch, _ = v.euler()
        return (-pd, pn, pe, float(np.hypot(v.vel[0], v.vel[1])), roll, pitch)

    def timing_series(self) -> tuple[np.ndarray, np.ndarray, float, int]:
        """(state send stamps, motor arrival stamps, target rate Hz, start stamp), host
        monotonic ns, oldest first: what the report's loop-period figures are made from."""
        return self._send_ns.values(), self._motor_ns.values(), self.config.rate_hz, self._started_ns

    def report(self, since_s: float = 1.0) -> tuple[list[str], dict[str, object]]:
        """Lines for a scenario's notes and its measurements, from ``since_s`` of the run."""
        timing = self.timing(since_s=since_s)
        return timing.lines(), {
            "state_rate_hz": timing.sent / timing.seconds,
            "state_jitter_p99_us": timing.send_jitter_p99_us,
            "motor_rate_hz": timing.motor_rate_hz,
            "motor_period_p99_us": timing.motor_period_p99_us,
            "loop_scheduler": timing.scheduler,
        }

    def __enter__(self) -> BetaflightLoop:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


_PR_SET_TIMERSLACK = 29
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")


def _kernel_stamp(ancillary: list) -> int | None:
    """The SO_TIMESTAMPNS arrival time (ns, CLOCK_REALTIME) of a datagram, if present."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None



def _make_realtime(priority: int | None) -> str:
    """SCHED_FIFO and 1 ns timer slack for the calling thread when permitted; returns what it got."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if priority is None:
        return "SCHED_OTHER"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError, AttributeError):
        return "SCHED_OTHER (SCHED_FIFO not permitted)"
    return f"SCHED_FIFO/{priority}"


def hover_throttle_us() -> float:
    """Throttle stick (us) at which the simulated airframe hovers, for a feed-forward."""
    return 1000.0 + 1000.0 * FIVE_INCH.hover_command




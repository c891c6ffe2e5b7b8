"""The `bench` simulator link: no physics, the board's own sensors on the bench.

A real board on a bench senses a vehicle sitting still, and nothing the harness does
moves it. What the harness drives is its radio: our receiver emulator
(`hil.injectors.rc.RcReceiverEmulator`) writes CRSF or SBUS frames into the receiver UART
the rig names, at the radio's frame rate, each frame delivered or lost by the RC link
model (`hil.threats.rc_link`), so ``rc_loss`` and ``rc_jamming`` reach the firmware's own
receiver parser, failsafe and link statistics the way a jammer would. The pilot's hands
are the sticks and the arm switch (AUX1), which the ``arm_switch`` injection also flips.

The link is flown by the one closed loop (`hil.sim.loop.ClosedLoop`) in real time at
1 kHz, like the Betaflight link: the firmware runs at the host's pace, and each tick
writes whatever frame is due. The plant is the radio alone (`Plant.radio_only`): the
loop never flies, `hold_altitude` with a height is refused, the pose is at rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hil.errors import HilError, LinkError
from hil.injectors.rc import DEFAULT_RATE_HZ, RcReceiverEmulator
from hil.receivers import Receiver
from hil.sim.loop import ClosedLoop
from hil.sim.plant import Plant
from hil.sim.simlink import Motors, register

log = logging.getLogger(__name__)

#: AETR + AUX1..4, disarmed, throttle low (Betaflight's default channel map).
RC_IDLE = (1500, 1500, 1000, 1500, 1000, 1000, 1000, 1000)
#: How often the loop wakes to send the frames due (a CRSF frame is due every 6.7 ms).
TICK_HZ = 1000.0
#: Frame write stamps kept for `timing()`, seconds.
TIMING_WINDOW_S = 120.0

Opener = Callable[[Receiver], object]


def open_receiver_port(receiver: Receiver, device: str) -> object:
    """The receiver UART as pyserial opens it: framing from the rig, writes bounded."""
    import serial

    parity = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}[receiver.parity]
    stopbits = serial.STOPBITS_TWO if receiver.stop_bits == 2 else serial.STOPBITS_ONE
    write_timeout: float | None = 0.5
    if device.startswith("rfc2217://"):
        # A labgrid place's port (ser2net): pyserial's RFC 2217 client refuses write_timeout
        # (its socket's 5 s timeout bounds a write), and a pty behind ser2net never answers
        # SET_CONTROL (hil.links.serial_link does the same for the control link).
        from hil.links.serial_link import rfc2217_url

        device, write_timeout = rfc2217_url(device), None
    try:
        return serial.serial_for_url(
            device, baudrate=receiver.baud, parity=parity, stopbits=stopbits, timeout=0, write_timeout=write_timeout
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise LinkError(f"cannot open the {receiver.role} receiver UART {device}: {exc}") from None


@dataclass(frozen=True)
class RcTiming:
    """What the receiver writer achieved."""

    seconds: float
    frames: int
    delivered: int
    write_period_p50_us: float
    write_period_p99_us: float
    write_errors: int
    reconnects: int

    def lines(self) -> list[str]:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return [
            f"receiver frame slots {rate:.0f}/s for {self.seconds:.1f} s ({self.delivered} delivered); "
            f"write period p50 {self.write_period_p50_us:.0f} us, p99 {self.write_period_p99_us:.0f} us; "
            f"{self.write_errors} write errors, {self.reconnects} reconnects"
        ]


@register
class BenchLink:
    """Radio in, nothing else: see the module docstring."""

    name = "bench"
    physics = False
    lockstep = False
    pipeline = False
    supported_injections = frozenset({"rc_loss", "rc_jamming", "arm_switch"})
    rc_idle = RC_IDLE

    def __init__(self, receiver: Receiver, device: str, *, opener: Opener | None = None) -> None:
        if receiver.role != "rc" or receiver.protocol not in DEFAULT_RATE_HZ:
            raise HilError(f"the bench link drives an RC receiver (crsf or sbus), not {receiver.role}:{receiver.protocol}")
        self.receiver = receiver
        self.device = device
        #: Frames per second the receiver's protocol sends (the RC link model's rate).
        self.rc_rate_hz = DEFAULT_RATE_HZ[receiver.protocol]
        self.emulator = RcReceiverEmulator(receiver.protocol, self.rc_rate_hz)  # type: ignore[arg-type]
        self.on_event: Callable[[str, str], None] | None = None
        self.write_errors = 0
        self.reconnects = 0
        self._open = opener or (lambda r: open_receiver_port(r, device))
        self._port: object | None = None
        self._started_ns = 0
        size = int(TIMING_WINDOW_S * self.rc_rate_hz) + 16
        self._writes_ns = np.zeros(size, dtype=np.int64)
        self._writes = 0
        self._delivered = 0

    # -- the loop's side ---------------------------------------------------------------
    def open(self) -> None:
        if self._port is None:
            self._port = self._open(self.receiver)
        if not self._started_ns:
            self._started_ns = time.monotonic_ns()

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()  # type: ignore[attr-defined]
            except OSError:
                pass

    def send(self, t_us: int, plant: Plant) -> None:
        """Write the frame due at ``t_us``, if one is (delivered or lost by the RC link)."""
        emulator = self.emulator
        before = emulator.frames
        data = emulator.produce(t_us, plant.rc_channels, plant.rc_link)
        if emulator.frames - before:
            state = emulator.last_state
            self._delivered += int(bool(state is not None and state.delivered))
            self._writes_ns[self._writes % self._writes_ns.size] = time.monotonic_ns()
            self._writes += 1
        if data:
            self._write(data)

    def outputs(self, t_us: int, timeout: float) -> Motors | None:
        """A board on the bench drives no motors we read."""
        return None

    def motor_times_ns(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def answer_stamps(self) -> None:
        """A board on the bench answers no samples."""
        return None

    def latencies_ns(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def _write(self, data: bytes) -> None:
        if self._port is None:
            try:
                self._port = self._open(self.receiver)
                self.reconnects += 1
                if self.on_event is not None:
                    self.on_event("note", f"receiver UART {self.device} opened again")
            except LinkError:
                self.write_errors += 1
                return
        try:
            self._port.write(data)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - pyserial raises several kinds; the firmware may be restarting
            self.write_errors += 1
            self.close()

    # -- timing -----------------------------------------------------------------------

    def write_times_ns(self) -> np.ndarray:
        """Monotonic stamps of the frame slots written, oldest first (the last two minutes)."""
        n = min(self._writes, self._writes_ns.size)
        if self._writes <= self._writes_ns.size:
            return self._writes_ns[:n].copy()
        i = self._writes % self._writes_ns.size
        return np.concatenate([self._writes_ns[i:], self._writes_ns[:i]])

    def timing(self, since_s: float = 0.0) -> RcTiming:
        stamps = self.write_times_ns()
        stamps = stamps[stamps >= self._started_ns + int(since_s * 1e9)]
        periods = np.diff(stamps) / 1000.0 if stamps.size > 1 else np.zeros(1)
        seconds = (stamps[-1] - stamps[0]) / 1e9 if stamps.size > 1 else 0.0
        return RcTiming(
            seconds=float(seconds),
            frames=int(stamps.size),
            delivered=self._delivered,
            write_period_p50_us=float(np.percentile(periods, 50)),
            write_period_p99_us=float(np.percentile(periods, 99)),
            write_errors=self.write_errors,
            reconnects=self.reconnects,
        )

    def timing_series(self) -> tuple[np.ndarray, np.ndarray, float, int]:
        """(frame write stamps, no motor stamps, frame rate Hz, start stamp), monotonic ns."""
        return self.write_times_ns(), np.zeros(0, dtype=np.int64), self.emulator.rate_hz, self._started_ns

    def report(self, since_s: float = 1.0) -> tuple[list[str], dict[str, object]]:
        """Lines for a scenario's notes and its measurements, from ``since_s`` of the run."""
        timing = self.timing(since_s)
        return timing.lines(), {
            "rc_frame_rate_hz": timing.frames / timing.seconds if timing.seconds > 0 else 0.0,
            "rc_write_period_p99_us": timing.write_period_p99_us,
            "rc_write_errors": timing.write_errors,
        }


@dataclass
class BenchConfig:
    """The loop's settings for a board on a bench: a 1 kHz tick, no physics."""

    rate_hz: float = TICK_HZ
    rc_rate_hz: float = 150.0
    seed: int = 0
    truth_rate_hz: float = 1.0
    step_timeout: float = 2.0
    pipeline: bool = False
    realtime_priority: int | None = None
    #: Sleep to the tick; no spinning (frames are due every 6.7 ms or more).
    spin_us: int = 0


def bench_loop(receiver: Receiver, device: str, *, seed: int = 0, opener: Opener | None = None) -> ClosedLoop:
    """The closed loop of a board on a bench: the bench link on its receiver UART, the
    radio-only plant (RC link at the protocol's frame rate), real time at 1 kHz."""
    link = BenchLink(receiver, device, opener=opener)
    config = BenchConfig(rc_rate_hz=link.rc_rate_hz, seed=seed)
    return ClosedLoop(Plant.radio_only(link.rc_rate_hz, seed), link, config)

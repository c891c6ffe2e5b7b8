"""The `bench` simulator link: no physics, the board's own sensors on the bench.

A real board on a bench senses a vehicle sitting still, and nothing the harness does
moves it. What the harness drives is its radio: our receiver emulator
(`hil.injectors.rc.RcReceiverEmulator`) writes CRSF or SBUS frames into the receiver UART
the rig names, at the radio's frame rate, each frame delivered or lost by the RC link
model (`hil.threats.rc_link`), so ``rc_loss`` and ``rc_jamming`` reach the firmware's own
receiver parser, failsafe and link statistics the way a jammer would. The pilot's hands
are the sticks and the arm switch (AUX1), which the ``arm_switch`` injection also flips.

Time is the wall clock since the link started, in microseconds, like the Betaflight
loop's: the firmware runs at the host's pace. The link never flies: `hold_altitude`
with a height is refused, the vehicle's pose is at rest, its altitude 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hil.errors import HilError, LinkError
from hil.injectors.rc import DEFAULT_RATE_HZ, RcReceiverEmulator
from hil.receivers import Receiver
from hil.sim.injections import InjectionSchedule
from hil.sim.plant import Plant

log = logging.getLogger(__name__)

#: AETR + AUX1..4, disarmed, throttle low (Betaflight's default channel map).
RC_IDLE = [1500, 1500, 1000, 1500, 1000, 1000, 1000, 1000]
ARM_US = 1900
DISARM_US = 1000
#: How often the writer wakes to send the frames due (a CRSF frame is due every 6.7 ms).
TICK_S = 0.001
#: Frame write stamps kept for `timing()`, seconds.
TIMING_WINDOW_S = 120.0

Opener = Callable[[Receiver], object]


def open_receiver_port(receiver: Receiver, device: str) -> object:
    """The receiver UART as pyserial opens it: framing from the rig, writes bounded."""
    import serial

    parity = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}[receiver.parity]
    stopbits = serial.STOPBITS_TWO if receiver.stop_bits == 2 else serial.STOPBITS_ONE
    try:
        return serial.serial_for_url(
            device, baudrate=receiver.baud, parity=parity, stopbits=stopbits, timeout=0, write_timeout=0.5
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


class BenchLink(InjectionSchedule):
    """Radio in, nothing else: see the module docstring."""

    physics = False
    supported_injections = frozenset({"rc_loss", "rc_jamming", "arm_switch"})

    def __init__(self, receiver: Receiver, device: str, *, seed: int = 0, opener: Opener | None = None) -> None:
        if receiver.role != "rc" or receiver.protocol not in DEFAULT_RATE_HZ:
            raise HilError(f"the bench link drives an RC receiver (crsf or sbus), not {receiver.role}:{receiver.protocol}")
        self._init_schedule()
        self.receiver = receiver
        self.device = device
        rate = DEFAULT_RATE_HZ[receiver.protocol]
        self.emulator = RcReceiverEmulator(receiver.protocol, rate)  # type: ignore[arg-type]
        #: No physics: the RC link and the threats set on it.
        self.plant = Plant.radio_only(rate, seed)
        self.rc_channels = list(RC_IDLE)
        self.t_us = 0
        self.error: BaseException | None = None
        self.write_errors = 0
        self.reconnects = 0
        self._open = opener or (lambda r: open_receiver_port(r, device))
        self._port: object | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_ns = 0
        size = int(TIMING_WINDOW_S * rate) + 16
        self._writes_ns = np.zeros(size, dtype=np.int64)
        self._writes = 0
        self._delivered = 0

    # -- the pilot's hands ------------------------------------------------------------

    def set_sticks(self, roll: int = 1500, pitch: int = 1500, throttle: int | None = None, yaw: int = 1500) -> None:
        ch = self.rc_channels
        ch[0], ch[1], ch[3] = int(roll), int(pitch), int(yaw)
        if throttle is not None:
            ch[2] = int(throttle)

    def arm_switch(self, on: bool) -> None:
        self.rc_channels[4] = ARM_US if on else DISARM_US

    def hold_altitude(self, target_m: float | None) -> None:
        """A bench board stays on the bench: only "hands off" (None or 0) is accepted."""
        if target_m:
            raise HilError(f"a board on the bench cannot fly to {target_m:g} m: the bench link has no physics")
        self.rc_channels[2] = 1000

    # -- what the runner reads --------------------------------------------------------

    @property
    def altitude(self) -> float:
        return 0.0

    def pose(self) -> tuple[float, float, float, float, float, float]:
        """(altitude, north, east, ground speed, roll, pitch): at rest."""
        return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        if self._port is None:
            self._port = self._open(self.receiver)
        self._stop.clear()
        self.error = None
        if not self._started_ns:
            self._started_ns = time.monotonic_ns()
        self._thread = threading.Thread(target=self._run, name="bench-rc", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is not None:
            self._stop.set()
            thread.join(timeout)
            self._thread = None
            if thread.is_alive():
                raise HilError(f"the bench receiver writer did not stop within {timeout} s")

    def close(self) -> None:
        self.stop()
        self._close_port()

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()  # type: ignore[attr-defined]
            except OSError:
                pass

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                now = time.monotonic_ns()
                self.t_us = (now - self._started_ns) // 1000
                if self._schedule and self._schedule[0].t_us <= self.t_us:
                    self._apply_due()
                before = self.emulator.frames
                data = self.emulator.produce(self.t_us, self.rc_channels, self.plant.rc_link)
                slots = self.emulator.frames - before
                if slots:
                    state = self.emulator.last_state
                    self._delivered += int(bool(state is not None and state.delivered))
                    self._writes_ns[self._writes % self._writes_ns.size] = now
                    self._writes += 1
                if data:
                    self._write(data)
                self._stop.wait(TICK_S)
        except HilError as exc:  # a scenario's mistake (an injection that cannot be): no traceback
            self.error = exc
            log.error("bench link stopped: %s", exc)
        except Exception as exc:  # kept for the test thread to report
            self.error = exc
            log.exception("bench link stopped")

    def _write(self, data: bytes) -> None:
        if self._port is None:
            try:
                self._port = self._open(self.receiver)
                self.reconnects += 1
                self._event("note", f"receiver UART {self.device} opened again")
            except LinkError:
                self.write_errors += 1
                return
        try:
            self._port.write(data)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - pyserial raises several kinds; the firmware may be restarting
            self.write_errors += 1
            self._close_port()

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

    def __enter__(self) -> BenchLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

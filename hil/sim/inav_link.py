"""The `inav_msp_simulator` simulator link: INAV HITL over MSP_SIMULATOR (0x201F).

INAV takes a simulated vehicle on a real board (or its SITL) over any MSP port: each
MSP_SIMULATOR request carries the sensors (`hil.codecs.msp_simulator`), and from the
first enabled request on INAV ignores its own IMU, baro and compass and writes no motor
or servo outputs. This link samples the plant into such a request, and reads the
firmware's motor outputs back.

Where the motors come from: the MSP_SIMULATOR reply carries the *servo mixer's*
stabilized roll, pitch, yaw and throttle (INAV `flight/servos.c`, `servoMixer`), which
a multirotor without servos never computes (they stay 0). A quad's motor commands are in
INAV's `motor[]`, computed by `mixTable` in HITL too and read with MSP_MOTOR (104, one
u16 per output, min_command 1000 .. 2000 us). So each exchange here is an MSP_SIMULATOR
request and, while the reply says armed, an MSP_MOTOR request sent right behind it.
Disarmed, the motors are all zero (the link protocol's rule) and MSP_MOTOR is not asked.

Pacing: real time, never lockstep. INAV keeps its own clock (`micros()`; the SITL reads
CLOCK_MONOTONIC) and nothing in `mspProcessSimulatorCommand` stamps or waits for a
sample: the reply is the board's state when its serial task got to the request. That
task handles one MSP command per port per pass (`msp_serial.c`,
`mspSerialProcessOnePort`; TASK_SERIAL runs at 100 Hz on a board). So the link keeps one
exchange in flight (`pipeline` False): `send` writes a new request only when the last
one was answered (or `reply_timeout` passed: then it counts a lost exchange), and drops
the samples in between. INAV holds the last values it was given. The INAV 9.1 SITL
answered about 430 exchanges a second over TCP; a board's 100 Hz serial task allows 100,
50 with MSP_MOTOR behind each.

RC: with `rc_over_simulator` (the board set to `receiver_type = SIM (SITL)`, which every
INAV 9 target has: USE_RX_SIM in target/common.h) the eight channels of `plant.rc_channels`
(AETR, then AUX1..4) travel in each request (flag SIM_RC_INPUT), and when the plant's RC
link loses the frame slot of a request the request says FAILSAFE_TRIGGERED, which INAV's
SIM receiver reports as a lost link. Otherwise RC reaches the board its own way (its
receiver, MSP_SET_RAW_RC).

Ports: on the SITL, MSP runs on UART1 and UART2 (TCP 5760 and 5761); give the link one
and the MSP flight controller the other. On a real board the link needs an MSP port of
its own (the USB port, or a UART with the MSP function behind a USB-UART adapter).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hil import geo
from hil.codecs import msp
from hil.codecs.msp_simulator import (
    MSP_SIMULATOR,
    RANGEFINDER_NONE,
    RC_INPUTS,
    GpsFields,
    SensorBlock,
    SimFlag,
    SimulatorReply,
    hitl_request,
    stop_request,
)
from hil.errors import HilError, LinkError
from hil.sim.realtime import Ring
from hil.sim.simlink import Motors, register
from hil.timeout import Deadline

if TYPE_CHECKING:
    from hil.sim.plant import Plant

log = logging.getLogger(__name__)

#: INAV's QUAD X motor order (motor 1 rear right, 2 front right, 3 rear left, 4 front
#: left: the Cleanflight layout of INAV's Quad X mixer rows; tests/test_inav_sitl.py
#: flips the vehicle with any other mapping) -> our order
#: (front-right, rear-left, front-left, rear-right): ours[i] = inav[INAV_TO_OURS[i]].
INAV_TO_OURS = (1, 2, 3, 0)
#: AETR, centred sticks, throttle low, AUX1..4 low: disarmed.
RC_IDLE = (1500, 1500, 1000, 1500, 1000, 1000, 1000, 1000)
#: MSP_FC_VARIANT's answer from INAV.
INAV_VARIANT = "INAV"

Opener = Callable[[], Any]


def _open_serial(url: str, baudrate: int) -> Any:
    from hil.links.serial_link import SerialLink

    return SerialLink(url, baudrate).open()


@register
class InavMspSimulatorLink:
    """INAV HITL on one MSP port (a `socket://` URL to a SITL UART, or a serial device).

    `opener` (no arguments, returns an object with `read(timeout)`, `write(bytes)`,
    `close()`) replaces opening `url`, for tests. `version` is the MSP_SIMULATOR layout
    (3 on INAV 9; a board that refuses it gets version 2, once). `gps_rate_hz` is how
    often a request carries a new GPS solution. `motor_range` is (min_command,
    max_throttle) in us: motor outputs are scaled from it to 0..1. `extra_flags` adds
    MSP_SIMULATOR flags (MUTE_BEEPER by default; USE_IMU makes INAV run its own AHRS on
    our accelerometer and gyro instead of taking our attitude).
    """

    name: ClassVar[str] = "inav_msp_simulator"
    physics: ClassVar[bool] = True
    pipeline: ClassVar[bool] = False
    #: The plant's threats reach INAV through the simulated sensors, GPS and radio.
    supported_injections: ClassVar[frozenset[str]] = frozenset(
        {
            "rc_loss", "rc_jamming", "arm_switch", "imu_noise", "imu_stuck", "imu_clip", "baro_drift", "wind",
            "battery_sag", "gps_jamming", "gps_loss", "gps_spoofing",
        }
    )
    rc_idle: ClassVar[tuple[int, ...]] = RC_IDLE

    def __init__(
        self,
        url: str | None = None,
        *,
        opener: Opener | None = None,
        baudrate: int = 115200,
        version: int = 3,
        gps_rate_hz: float = 5.0,
        motor_range: tuple[int, int] = (1000, 2000),
        extra_flags: int = int(SimFlag.MUTE_BEEPER),
        rc_over_simulator: bool = False,
        battery: bool = True,
        reply_timeout: float = 0.5,
        connect_timeout: float = 5.0,
    ) -> None:
        if url is None and opener is None:
            raise HilError("the inav_msp_simulator link needs the board's MSP port (a URL) or an opener")
        if version not in (2, 3):
            raise HilError(f"MSP_SIMULATOR version must be 2 or 3, not {version!r}")
        if rc_over_simulator and version != 3:
            raise HilError("RC over MSP_SIMULATOR needs version 3 (version 2 has no RC channels)")
        lo, hi = motor_range
        if not 0 <= lo < hi <= 0xFFFF:
            raise HilError(f"motor_range {motor_range!r} must be (min_command, max_throttle) with min < max")
        self.url = url
        self.lockstep = False
        self.version = version
        self.gps_period_us = int(1e6 / gps_rate_hz) if gps_rate_hz > 0 else 0
        self.motor_range = (int(lo), int(hi))
        self.extra_flags = int(extra_flags)
        self.rc_over_simulator = rc_over_simulator
        self.battery = battery
        self.reply_timeout = reply_timeout
        self.connect_timeout = connect_timeout
        self.on_event: Callable[[str, str], None] | None = None
        #: Host monotonic ns at which each motor answer arrived (the last two minutes).
        self._answer_ns = Ring(int(120 * 500) + 16)
        #: The newest MSP_SIMULATOR reply (INAV's estimated attitude, armed, debug).
        self.reply: SimulatorReply | None = None
        #: The newest motor outputs, 0..1 in our order.
        self.motors: Motors = (0.0, 0.0, 0.0, 0.0)
        #: Raw MSP_MOTOR values of the newest answer, INAV's order.
        self.motor_us: tuple[int, ...] = ()
        self.sent = 0  # MSP_SIMULATOR requests written
        self.answered = 0  # their replies
        self.dropped = 0  # samples not sent because an exchange was in flight
        self.lost = 0  # exchanges given up after reply_timeout
        self.error_replies = 0
        self._opener = opener or (lambda: _open_serial(url, baudrate))  # type: ignore[arg-type]
        self._port: Any = None
        self._parser = msp.MspParser()
        self._in_flight: set[int] = set()
        self._sent_at = 0.0
        self._next_gps_us = 0
        self._new_motors = False
        self._fell_back = False

    # -- life --------------------------------------------------------------------------

    def open(self) -> None:
        """Open the port and check INAV answers MSP_FC_VARIANT within `connect_timeout`."""
        if self._port is not None:
            return
        self._port = self._opener()
        try:
            variant = self._ask(msp.MspCommand.FC_VARIANT, Deadline(self.connect_timeout))
        except BaseException:
            self.close()
            raise
        if variant[:4] != INAV_VARIANT.encode():
            self.close()
            raise LinkError(
                f"{self._where()} answers as {variant[:4]!r}, not INAV: MSP_SIMULATOR is INAV's HITL"
            )

    def close(self) -> None:
        """Send the clean stop (HITL off, the board disarms), wait at most
        `reply_timeout` for its answer, and close; safe twice.

        The wait matters on the SITL: it writes replies with a plain send(), so a reply
        to a peer that has already closed kills it with SIGPIPE
        (src/main/drivers/serial_tcp.c)."""
        port = self._port
        if port is None:
            return
        try:
            port.write(msp.encode_v2(MSP_SIMULATOR, stop_request(self.version).encode()))
            deadline = Deadline(self.reply_timeout)
            done = False
            while not done and not deadline.expired:
                done = any(f.cmd == MSP_SIMULATOR and f.direction != msp.Direction.REQUEST
                           and not self._in_flight_reply(f) for f in self._read(deadline.remaining))
        except Exception as exc:  # noqa: BLE001 - a board that went away has stopped already
            log.debug("HITL stop not confirmed by %s: %s", self._where(), exc)
        self._port = None
        try:
            port.close()
        except Exception:  # noqa: BLE001 - closing a dead port must not raise
            pass

    def __enter__(self) -> InavMspSimulatorLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _in_flight_reply(self, frame: msp.MspFrame) -> bool:
        """True for the answer to an exchange still in flight when the stop was sent
        (it is taken as that exchange's, not as the stop's)."""
        if frame.cmd in self._in_flight:
            self._in_flight.discard(frame.cmd)
            return True
        return False

    def _where(self) -> str:
        return self.url or "the INAV MSP port"

    def _require(self) -> Any:
        if self._port is None:
            raise LinkError(f"the inav_msp_simulator link to {self._where()} is not open")
        return self._port

    def _ask(self, cmd: int, deadline: Deadline) -> bytes:
        """One request answered within `deadline` (used before the loop runs)."""
        port = self._require()
        port.write(msp.encode_request(cmd, b"", version=2 if cmd > 254 else 1))
        while not deadline.expired:
            for frame in self._read(deadline.remaining):
                if frame.cmd == cmd and frame.direction != msp.Direction.REQUEST:
                    if frame.is_error:
                        raise LinkError(f"{self._where()} refused MSP command {cmd}")
                    return frame.payload
        raise LinkError(
            f"no answer to MSP command {cmd} from {self._where()} within "
            f"{deadline.seconds:.1f} s (is it an INAV board's MSP port?)"
        )

    def _read(self, timeout: float) -> list[msp.MspFrame]:
        chunk = self._require().read(max(0.0, timeout))
        if not chunk:
            return []
        data = chunk if isinstance(chunk, bytes | bytearray) else chunk.data
        return self._parser.feed(data)

    # -- the loop's side ---------------------------------------------------------------

    def send(self, t_us: int, plant: Plant) -> None:
        """Write the plant's state at `t_us` unless an exchange is still in flight."""
        self._pump(0.0)
        if self._in_flight:
            if time.monotonic() - self._sent_at < self.reply_timeout:
                self.dropped += 1
                return
            self.lost += 1
            self._in_flight.clear()
        request = self.request_for(t_us, plant)
        frames = msp.encode_v2(MSP_SIMULATOR, request.encode())
        self._in_flight.add(MSP_SIMULATOR)
        if self.reply is not None and self.reply.armed:
            frames += msp.encode_request(msp.MspCommand.MOTOR)
            self._in_flight.add(int(msp.MspCommand.MOTOR))
        self._require().write(frames)
        self._sent_at = time.monotonic()
        self.sent += 1

    def outputs(self, t_us: int, timeout: float) -> Motors | None:
        """The newest motor outputs if an answer came since the last call, else None
        (waiting up to `timeout` s for one)."""
        self._pump(timeout)
        if not self._new_motors:
            return None
        self._new_motors = False
        return self.motors

    def _pump(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for frame in self._read(max(0.0, deadline - time.monotonic())):
                self._take(frame)
            if self._new_motors or time.monotonic() >= deadline:
                return

    def _take(self, frame: msp.MspFrame) -> None:
        if frame.direction == msp.Direction.REQUEST:
            return
        cmd = frame.cmd
        self._in_flight.discard(cmd)
        if frame.is_error:
            self.error_replies += 1
            if cmd == MSP_SIMULATOR and self.version == 3 and not self._fell_back:
                log.warning("%s refused MSP_SIMULATOR version 3; using version 2", self._where())
                self.version = 2
                self._fell_back = True
                return
            raise LinkError(f"{self._where()} refused MSP command 0x{cmd:x} (is HITL built in?)")
        if cmd == MSP_SIMULATOR:
            try:
                reply = SimulatorReply.decode(frame.payload)
            except msp.MspError as exc:
                log.warning("bad MSP_SIMULATOR reply from %s: %s", self._where(), exc)
                return
            self.answered += 1
            self.reply = reply
            if not reply.armed:
                self.motors = (0.0, 0.0, 0.0, 0.0)
                self._new_motors = True
        elif cmd == msp.MspCommand.MOTOR:
            values = msp.Motors.decode(frame.payload).values
            if len(values) < 4:
                return
            self.motor_us = values
            if self.reply is not None and not self.reply.armed:
                return  # disarmed since it was asked: the zeros stand
            lo, hi = self.motor_range
            span = hi - lo
            scaled = [min(1.0, max(0.0, (values[j] - lo) / span)) for j in INAV_TO_OURS]
            self.motors = (scaled[0], scaled[1], scaled[2], scaled[3])
            self._new_motors = True
            self._answer_ns.append(time.monotonic_ns())

    def motor_times_ns(self) -> np.ndarray:
        """When each motor answer (MSP_MOTOR) arrived, host monotonic ns, oldest first."""
        return self._answer_ns.values()

    def answer_stamps(self) -> None:
        """INAV's MSP_SIMULATOR answers carry no sample stamp."""
        return None

    def latencies_ns(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    # -- the sample --------------------------------------------------------------------

    def request_for(self, t_us: int, plant: Plant):
        """The MSP_SIMULATOR request for the plant at `t_us` (a new GPS solution when
        one is due)."""
        v = plant.vehicle
        if v is None:
            raise HilError("the inav_msp_simulator link needs a plant with a vehicle (physics)")
        ax, ay, az, gx, gy, gz = plant.imu.sample(v)
        pressure_hpa, _temp = plant.baro.sample(geo.HOME.alt_m - v.pos[2])
        block = SensorBlock.from_si(
            euler_rad=v.euler(),
            specific_force_frd=(ax, ay, az),
            rates_frd=(gx, gy, gz),
            pressure_pa=pressure_hpa * 100.0,
            mag_frd_gauss=plant.mag.sample(v.quat),
        )
        new_gps = False
        if self.gps_period_us and t_us >= self._next_gps_us and plant.gnss is not None:
            self._next_gps_us = t_us + self.gps_period_us
            obs = plant.gnss_observation(t_us * 1e-6)
            block = replace(
                block,
                gps=GpsFields.from_si(
                    obs.fix_type, obs.num_sv, obs.lat_deg, obs.lon_deg, obs.alt_m, obs.vel_ned
                ),
            )
            new_gps = True
        extra = self.extra_flags
        if self.battery and plant.battery is not None:
            b = plant.battery
            block = replace(block, vbat_dv=max(0, min(255, round(b.voltage * 10.0))))
            extra |= SimFlag.SIMULATE_BATTERY
            if self.version == 3:
                block = replace(block, current_da=max(0, min(0xFFFF, round(b.current * 10.0))))
                extra |= SimFlag.CURRENT_SENSOR
        if self.version == 3:
            block = replace(
                block,
                rangefinder_cm=RANGEFINDER_NONE,
                current_da=block.current_da or 0,
                rc=tuple(int(c) for c in plant.rc_channels[:RC_INPUTS]),
                rssi=1023,
            )
            if self.rc_over_simulator:
                extra |= SimFlag.SIM_RC_INPUT
                if not plant.rc_frame_delivered():
                    extra |= SimFlag.FAILSAFE_TRIGGERED
        return hitl_request(block, new_gps=new_gps, extra=extra, version=self.version)


def inav_loop(url: str | None = None, config: Any = None, **link_options: Any):
    """The real-time closed loop of an INAV board in HITL: this link on its MSP port,
    the 5-inch quad's plant, 250 Hz by default (INAV takes a few hundred exchanges a
    second over TCP, a board's serial task 50-100). Not started."""
    from hil.sim.betaflight_loop import BetaflightLoopConfig
    from hil.sim.loop import ClosedLoop
    from hil.sim.plant import Plant

    cfg = config or BetaflightLoopConfig(rate_hz=250.0, realtime_priority=None, spin_us=0)
    link = InavMspSimulatorLink(url, **link_options)
    return ClosedLoop(Plant.for_betaflight(cfg), link, cfg)

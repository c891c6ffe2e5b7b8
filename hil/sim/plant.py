"""The plant: the simulated vehicle and the world around it, built once for any loop.

A plant holds the quadrotor, its sensors (IMU, barometer, magnetometer), the GNSS sky
its receiver sees, its battery, the wind it flies in, the RC radio link and, for the
MAVLink HIL loop, the telemetry link the ground station's heartbeats cross. It also
holds the threat state that scenario injections set: RC on or off, GPS blocked or
jammed, GCS heartbeats on or off, the weather an injected wind replaced. Sensor faults
(noise, a stuck axis, clipping, baro drift, compass interference, battery sag) are
settings on the sensor objects themselves.

A loop owns one plant (``loop.plant``): it moves the plant in time and turns it into
what its board reads (HIL_SENSOR messages, Betaflight's UDP state packets, receiver
frames). Injections (`hil.sim.injections`) act on ``loop.plant``; the loop only times
them. So one injection kind works the same on every loop that has what it acts on.

Seeds: the sensors and the wind share one numpy Generator made from the seed, and are
built in a fixed order (IMU, baro, mag, then wind); the RC link draws from seed + 1, the
GNSS sky from seed + 2, the telemetry link from seed + 3. A loop's runs repeat bit for
bit per seed only while that order and those seeds stay as they are.

A board on a bench (`hil.sim.bench_link`) has no physics: its plant (`Plant.radio_only`)
is the RC link and the threat state alone, and the physics parts are None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hil.sim.sensors import Baro, Battery, Imu, Mag, Wind
from hil.sim.vehicle import QuadParams, Quadrotor
from hil.threats.gnss import GnssEnvironment, GnssObservation
from hil.threats.rc_link import RcLinkModel

if TYPE_CHECKING:
    from hil.threats.telemetry import TelemetryLinkModel

#: A 5-inch racing quad, the airframe Betaflight's default tuning is made for.
FIVE_INCH = QuadParams(
    mass=0.65,
    arm_length=0.16,
    inertia=(0.0022, 0.0022, 0.0040),
    thrust_to_weight=4.0,
    motor_time_constant=0.02,
    yaw_torque_per_newton=0.012,
    drag=(0.12, 0.12, 0.2),
    angular_damping=(0.0002, 0.0002, 0.0002),
    hover_current_a=14.0,
    idle_current_a=0.5,
)
#: The IMU noise of the Betaflight plant (its gyro is quieter than the default one).
BETAFLIGHT_IMU_NOISE = {"accel_noise": 0.05, "gyro_noise": 0.002}
#: J/S the GNSS sky gets while GPS is blocked: a receiver with no signal tracks nothing.
NO_SIGNAL_JS_DB = 90.0


class PlantConfig(Protocol):
    """What the plant takes from a loop's configuration (`hil.sim.loop.SimConfig` and
    `hil.sim.betaflight_loop.BetaflightLoopConfig` both have it)."""

    seed: int
    rc_rate_hz: float
    battery_cells: int
    battery_capacity_mah: float
    wind_speed: float
    wind_direction: float
    wind_gust: float


class Plant:
    """Vehicle, sensors, weather, battery, radio links and the threats set on them.

    Build one with a factory: `for_mavlink_hil`, `for_betaflight` or `radio_only`
    (or `build` for another airframe). The parts are plain attributes; a loop reads
    them every step and injections set them.
    """

    def __init__(
        self,
        rc_link: RcLinkModel,
        *,
        vehicle: Quadrotor | None = None,
        imu: Imu | None = None,
        baro: Baro | None = None,
        mag: Mag | None = None,
        gnss: GnssEnvironment | None = None,
        battery: Battery | None = None,
        wind: Wind | None = None,
        telemetry_link: TelemetryLinkModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.vehicle = vehicle
        self.imu = imu
        self.baro = baro
        self.mag = mag
        #: The GNSS sky the receiver sees (jamming and spoofing act on it).
        self.gnss = gnss
        self.battery = battery
        self.wind = wind
        #: The RC radio link: every RC frame is delivered or lost by it.
        self.rc_link = rc_link
        #: The link the GCS heartbeats cross, in simulation time (telemetry_jamming);
        #: None where the loop sends no heartbeats.
        self.telemetry_link = telemetry_link
        #: The generator the sensors and the wind draw from.
        self.rng = rng
        # The threat state injections set.
        #: The pilot's transmitter: stick and switch positions in microseconds, channel
        #: order as the firmware maps them (the simulator link sets the idle positions).
        self.rc_channels: list[int] = [1500, 1500, 1500, 1500, 1000, 1000, 1000, 1000]
        self.rc_enabled = True  # rc_loss: the pilot's radio is off
        self.gcs_enabled = True  # gcs_loss: no GCS heartbeats
        self.gps_blocked = False  # gps_loss: the receiver gets no signal at all
        self.jamming: tuple[float, float, float] | None = None  # (start s, ramp s, J/S dB)
        #: What injections put back when they stop, by target: the wind an injected
        #: wind blew over, say.
        self.replaced: dict[str, Any] = {}
        self._gcs_loss = 0.0  # gcs_loss_probability without a telemetry link

    # -- building ----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        config: PlantConfig,
        *,
        params: QuadParams | None = None,
        imu_noise: Mapping[str, float] | None = None,
        rc_rate_hz: float | None = None,
        telemetry: bool = False,
    ) -> Plant:
        """A plant with physics: the airframe `params` (None: the default quad), IMU
        noise settings `imu_noise` (keywords of `Imu`; None: its defaults), the RC link
        at `rc_rate_hz` frames per second (None: the config's), and a telemetry link
        when `telemetry` is true. Seeds and order as the module docstring says."""
        seed = config.seed
        rng = np.random.default_rng(seed)
        vehicle = Quadrotor(params)
        vehicle.reset()
        imu = Imu(rng, **dict(imu_noise or {}))
        baro = Baro(rng)
        mag = Mag(rng)
        gnss = GnssEnvironment(np.random.default_rng(seed + 2))
        battery = Battery(cells=config.battery_cells, capacity_mah=config.battery_capacity_mah)
        wind = Wind(
            rng, speed=config.wind_speed, direction_deg=config.wind_direction, gust_std=config.wind_gust
        )
        rc_link = RcLinkModel(config.rc_rate_hz if rc_rate_hz is None else rc_rate_hz, seed=seed + 1)
        telemetry_link = None
        if telemetry:
            from hil.threats.telemetry import TelemetryLinkModel

            telemetry_link = TelemetryLinkModel(seed=seed + 3)
        return cls(
            rc_link,
            vehicle=vehicle,
            imu=imu,
            baro=baro,
            mag=mag,
            gnss=gnss,
            battery=battery,
            wind=wind,
            telemetry_link=telemetry_link,
            rng=rng,
        )

    @classmethod
    def for_mavlink_hil(cls, config: PlantConfig, *, rc_rate_hz: float | None = None) -> Plant:
        """The plant of the MAVLink HIL loop (`hil.sim.loop.ClosedLoop`): the default
        quad with default sensor noise, and a telemetry link for the GCS heartbeats.
        `rc_rate_hz` is the receiver emulator's frame rate when RC goes over a UART."""
        return cls.build(config, rc_rate_hz=rc_rate_hz, telemetry=True)

    @classmethod
    def for_betaflight(cls, config: PlantConfig) -> Plant:
        """The plant of the Betaflight SITL loop (`hil.sim.betaflight_loop`): the
        5-inch quad, a quieter gyro, no telemetry link."""
        return cls.build(config, params=FIVE_INCH, imu_noise=BETAFLIGHT_IMU_NOISE)

    @classmethod
    def radio_only(cls, rate_hz: float, seed: int = 0) -> Plant:
        """The plant of a board on a bench: the RC link at `rate_hz` (seed + 1, as in
        the other plants) and the threat state, no physics."""
        return cls(RcLinkModel(rate_hz, seed=seed + 1))

    # -- what it is --------------------------------------------------------------------

    @property
    def physics(self) -> bool:
        """True when the plant has a vehicle to fly (not a radio-only plant)."""
        return self.vehicle is not None

    @property
    def gcs_loss_probability(self) -> float:
        """Share of GCS heartbeats lost: the telemetry link's `loss`, under its older
        name. A plant without a telemetry link keeps the value it is given."""
        link = self.telemetry_link
        return link.loss if link is not None else self._gcs_loss

    @gcs_loss_probability.setter
    def gcs_loss_probability(self, value: float) -> None:
        link = self.telemetry_link
        if link is not None:
            link.configure(loss=value)
        else:
            self._gcs_loss = value

    # -- moving it in time -------------------------------------------------------------

    def step(self, dt: float, motors: Sequence[float]) -> None:
        """Advance `dt` seconds with these motor commands: the wind, the vehicle in it,
        the baro's drift, the battery's draw (in this order)."""
        vehicle = self.vehicle
        vehicle.step(dt, motors, self.wind.step(dt))
        self.baro.step(dt)
        self.battery.step(dt, vehicle.current_a())

    def rc_frame_delivered(self) -> bool:
        """One RC frame slot: step the RC link; True when the frame reaches the
        receiver (the link delivered it and the radio is on)."""
        delivered = self.rc_link.step().delivered
        return self.rc_enabled and delivered

    def gnss_observation(self, t: float) -> GnssObservation:
        """What the GNSS receiver makes of the sky at `t` s, with GPS blocked or the
        jammer at its power at that time (ramping up from its start)."""
        env = self.gnss
        if self.gps_blocked:
            env.jammer_js_db = NO_SIGNAL_JS_DB
        elif self.jamming is not None:
            start, ramp, js = self.jamming
            env.jammer_js_db = js if ramp <= 0 else js * min(1.0, max(0.0, (t - start) / ramp))
        else:
            env.jammer_js_db = None
        return env.step(t, self.vehicle)

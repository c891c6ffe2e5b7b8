"""INAV SITL driven through the inav_msp_simulator link (HITL over MSP_SIMULATOR).

Runs only when HIL_INAV_SITL names an INAV SITL executable, built by hand from INAV's
public source (README.md, "INAV boards in HITL", says how); skipped otherwise. The SITL
listens on every interface, so it runs in a network namespace of its own (root and
iproute2).

What it shows: HITL switches on, a vehicle at rest reaches INAV (its attitude, altitude
and GPS read back over MSP on the other UART), the ARM switch over the link arms it,
its motors come back through MSP_MOTOR, it flies the sticks the right way round, a
silent radio puts it in failsafe, and the link's stop disarms it and turns HITL off.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil import children, geo
from hil.codecs import msp
from hil.codecs.inav_msp import MSP2_INAV_STATUS, MSP_ALTITUDE, Altitude, InavStatus
from hil.profiles.inav import HITL_SETUP_CLI, HITL_START_AFTER_BOOT_S, INAV
from hil.sim.betaflight_loop import BetaflightLoopConfig
from hil.sim.inav_link import InavMspSimulatorLink
from hil.sim.plant import Plant
from hil.sitl.netns import NetNamespace, namespaces_available
from hil.timeout import Deadline

SITL = os.environ.get("HIL_INAV_SITL")
pytestmark = pytest.mark.skipif(
    not SITL, reason="HIL_INAV_SITL is not set (an INAV SITL built by hand: README.md, INAV boards in HITL)"
)
UART1, UART2 = 5760, 5761
MSP_RAW_GPS = 106


def _connect(ip: str, port: int, within: float) -> socket.socket:
    deadline = Deadline(within)
    while True:
        try:
            return socket.create_connection((ip, port), timeout=1.0)
        except OSError as exc:
            if deadline.expired:
                raise AssertionError(f"INAV SITL did not accept on {ip}:{port} within {within} s: {exc}") from None
            time.sleep(0.1)


class Msp:
    """Requests on one UART with bounded waits (the observer's side)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = msp.MspParser()

    def ask(self, cmd: int, within: float = 5.0) -> bytes:
        self.sock.sendall(msp.encode_request(cmd, version=2 if cmd > 254 else 1))
        deadline = Deadline(within)
        while not deadline.expired:
            self.sock.settimeout(max(0.01, deadline.remaining))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            for frame in self.parser.feed(data):
                if frame.cmd == cmd and not frame.is_error:
                    return frame.payload
        raise AssertionError(f"INAV SITL gave no answer to MSP {cmd} within {within} s")

    def status(self) -> InavStatus:
        return InavStatus.decode(self.ask(MSP2_INAV_STATUS))


def _cli(ip: str, lines: tuple[str, ...], log: Path) -> None:
    """Type `lines` in the CLI on UART1, then `save` (the SITL reboots in place)."""
    with _connect(ip, UART1, 10.0) as sock:
        text = b""

        def until_prompt(what: str) -> bytes:
            nonlocal text
            deadline = Deadline(5.0)
            while not text.rstrip().endswith(b"#"):
                if deadline.expired:
                    raise AssertionError(f"no CLI prompt after {what!r} within 5 s; got {text[-200:]!r}")
                sock.settimeout(max(0.01, deadline.remaining))
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                text += chunk
            out, text = text, b""
            return out

        sock.sendall(b"#")
        until_prompt("#")
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            answer = until_prompt(line)
            with log.open("ab") as f:
                f.write(answer)
            assert b"error" not in answer.lower() and b"invalid" not in answer.lower(), answer
        sock.sendall(b"save\r\n")
        time.sleep(1.0)


@pytest.fixture
def inav_sitl(tmp_path: Path) -> Iterator[str]:
    exe = Path(SITL or "")
    if not exe.is_file() or not os.access(exe, os.X_OK):
        pytest.fail(f"HIL_INAV_SITL={SITL!r} is not an executable file")
    if not namespaces_available():
        pytest.skip("INAV SITL binds every interface: it runs only in a network namespace (root and iproute2)")
    ns = NetNamespace.create()
    children.guard.watch_netns(ns.name)
    log = tmp_path / "sitl.log"
    proc = None
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ns.command([str(exe), f"--path={tmp_path / 'eeprom.bin'}"]),
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=children.parent_death_preexec(signal.SIGKILL),
            )
        children.guard.watch(proc.pid)
        _connect(ns.guest_ip, UART1, 10.0).close()
        _cli(ns.guest_ip, HITL_SETUP_CLI, log)
        _connect(ns.guest_ip, UART2, 10.0).close()
        time.sleep(HITL_START_AFTER_BOOT_S)  # let the boot-time gyro calibration finish
        yield ns.guest_ip
    finally:
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
            children.guard.forget(proc.pid)
        ns.remove()
        children.guard.forget_netns(ns.name)


def _run(link: InavMspSimulatorLink, plant: Plant, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Real time: a step every 4 ms for `seconds`; True as soon as `until()` holds."""
    start = time.monotonic()
    motors = (0.0, 0.0, 0.0, 0.0)
    last_check = start
    dt = 0.004
    while True:
        now = time.monotonic()
        t_us = int((now - start) * 1e6)
        link.send(t_us, plant)
        out = link.outputs(t_us, 0.0)
        if out is not None:
            motors = out
        plant.step(dt, motors)
        if until is not None and now - last_check > 0.1:
            last_check = now
            if until():
                return True
        if now - start > seconds:
            return until is None
        time.sleep(dt)


def test_inav_sitl_in_hitl_at_rest_then_armed(inav_sitl: str) -> None:
    ip = inav_sitl
    plant = Plant.for_betaflight(BetaflightLoopConfig())
    plant.rc_channels[:] = InavMspSimulatorLink.rc_idle  # what the closed loop does
    plant.vehicle.reset(yaw=math.radians(30.0))
    link = InavMspSimulatorLink(f"socket://{ip}:{UART2}", rc_over_simulator=True)
    with _connect(ip, UART1, 5.0) as sock:
        fc = Msp(sock)
        link.open()
        try:
            assert _run(link, plant, 3.0)
            status = fc.status()
            assert status.hitl, f"HITL did not switch on: flags {status.flags!r}"
            att = msp.Attitude.decode(fc.ask(msp.MspCommand.ATTITUDE))
            assert abs(att.roll_decideg) <= 10 and abs(att.pitch_decideg) <= 10, att
            assert abs(att.yaw_deg - 30) <= 2, att
            assert link.reply is not None and abs(link.reply.est_attitude_decideg[2] - 300) <= 20
            alt = Altitude.decode(fc.ask(MSP_ALTITUDE))
            assert abs(alt.estimated_cm) <= 100 and abs(alt.climb_cms) <= 50, alt
            gps = fc.ask(MSP_RAW_GPS)
            fix, sats, lat, lon = gps[0], gps[1], *msp_i32(gps, 2, 6)
            assert fix == 2 and sats > 4, gps.hex()
            assert abs(lat / 1e7 - geo.HOME.lat_deg) < 1e-4 and abs(lon / 1e7 - geo.HOME.lon_deg) < 1e-4

            assert _run(link, plant, 15.0, lambda: fc.status().blockers == ()), (
                f"still blocked from arming: {fc.status().blockers}"
            )
            plant.rc_channels[4] = 1900  # AUX1 high: the ARM switch
            assert _run(link, plant, 5.0, lambda: fc.status().armed), f"not armed: {fc.status().blockers}"
            assert _run(link, plant, 3.0, lambda: link.reply is not None and link.reply.armed)
            assert _run(link, plant, 2.0, lambda: min(link.motors) > 0.0), link.motor_us
            assert all(0.0 < m < 0.3 for m in link.motors), link.motors  # idle on the ground

            # Disarmed by the switch, the motors are zero; armed again to fly.
            plant.rc_channels[4] = 1000
            assert _run(link, plant, 5.0, lambda: not fc.status().armed)
            _run(link, plant, 0.5)
            assert link.motors == (0.0, 0.0, 0.0, 0.0)
            plant.rc_channels[4] = 1900
            assert _run(link, plant, 5.0, lambda: fc.status().armed), f"not armed again: {fc.status().blockers}"

            # ANGLE (AUX2), throttle above hover: it climbs level; then the roll stick
            # right rolls it right and the pitch stick forward pitches its nose down,
            # which a motor in the wrong place or an axis of the wrong sign would not do.
            plant.rc_channels[5] = 1900
            plant.rc_channels[2] = 1450
            v = plant.vehicle

            def euler_deg() -> tuple[float, ...]:
                return tuple(round(math.degrees(a), 1) for a in v.euler())

            _run(link, plant, 2.0)
            climb = f"climbed {-v.pos[2]:.1f} m at {euler_deg()} deg"
            assert -v.pos[2] > 0.5 and max(map(abs, euler_deg()[:2])) < 3 and not v.crashed, climb
            plant.rc_channels[0] = 1700
            _run(link, plant, 1.5, lambda: euler_deg()[0] > 2.0)
            roll, pitch, yaw = euler_deg()
            assert 2.0 < roll < 30 and abs(pitch) < 3 and abs(yaw - 30) < 5, f"roll stick right: {euler_deg()}"
            plant.rc_channels[0] = 1500
            _run(link, plant, 1.0)
            plant.rc_channels[1] = 1700
            _run(link, plant, 1.5, lambda: euler_deg()[1] < -2.0)
            roll, pitch, yaw = euler_deg()
            # (the roll step still rings: INAV's default PIDs on this airframe and this
            # loop's delay; only the pitch is judged here)
            assert -30 < pitch < -2.0 and abs(yaw - 30) < 10, f"pitch stick forward: {euler_deg()}"
            plant.rc_channels[1] = 1500
            plant.rc_channels[2] = 1300  # about hover: the climb slows
            _run(link, plant, 2.0)

            # The radio goes silent (the plant's RC link): the requests say
            # FAILSAFE_TRIGGERED, INAV's FAILSAFE box comes on after failsafe_delay and
            # INAV's failsafe runs its procedure.
            ids = list(fc.ask(msp.MspCommand.BOXIDS))
            failsafe_bit = ids.index(INAV.modes["FAILSAFE"])
            plant.rc_enabled = False
            t_loss = time.monotonic()
            assert _run(link, plant, 5.0, lambda: fc.status().box_active(failsafe_bit)), "no FAILSAFE box"
            failsafe_after = time.monotonic() - t_loss
            _run(link, plant, 3.0)
            assert fc.status().armed and fc.status().box_active(failsafe_bit)
            # What the LAND procedure then does is INAV's: not judged here (see the note).
            after = f"3 s later climbing {-v.vel[2]:.1f} m/s at {-v.pos[2]:.0f} m, motors {link.motors}"
            print(
                f"INAV SITL HITL: {link.sent} exchanges sent, {link.answered} answered, "
                f"{link.dropped} samples dropped while one was in flight, {link.lost} lost; "
                f"attitude {att}, altitude {alt}; in ANGLE at throttle 1450: {climb}; "
                f"FAILSAFE box {failsafe_after:.1f} s after the radio went silent; {after}"
            )
        finally:
            link.close()
        deadline = Deadline(3.0)
        while fc.status().hitl and not deadline.expired:
            time.sleep(0.1)
        status = fc.status()
        assert not status.hitl and not status.armed, f"the link's stop left {status.flags!r}"


def msp_i32(data: bytes, *offsets: int) -> tuple[int, ...]:
    return tuple(int.from_bytes(data[o : o + 4], "little", signed=True) for o in offsets)


def _held(link: InavMspSimulatorLink, plant: Plant, seconds: float) -> None:
    """Exchanges for `seconds` with the vehicle held as it is (the plant is not stepped)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        t_us = int((time.monotonic() - start) * 1e6)
        link.send(t_us, plant)
        link.outputs(t_us, 0.0)
        time.sleep(0.003)


def test_inav_sitl_corrects_a_held_vehicle_the_right_way(inav_sitl: str) -> None:
    """The vehicle held still in the air, armed in ANGLE at mid throttle: tilted or
    turning one way, INAV's mixer must push it back the other way. Each axis's motor
    difference is compared with the one just before, level and still, so an axis fed
    with the wrong sign or motors in the wrong places fail by sign, not by timing."""
    ip = inav_sitl
    plant = Plant.for_betaflight(BetaflightLoopConfig())
    plant.rc_channels[:] = InavMspSimulatorLink.rc_idle  # what the closed loop does
    plant.imu.accel_noise = plant.imu.gyro_noise = 0.0
    v = plant.vehicle
    link = InavMspSimulatorLink(f"socket://{ip}:{UART2}", rc_over_simulator=True)
    with _connect(ip, UART1, 5.0) as sock:
        fc = Msp(sock)
        link.open()
        try:
            deadline = Deadline(15.0)
            while fc.status().blockers and not deadline.expired:
                _held(link, plant, 0.2)
            plant.rc_channels[4] = plant.rc_channels[5] = 1900  # ARM, ANGLE
            _held(link, plant, 1.0)
            assert fc.status().armed, f"not armed: {fc.status().blockers}"
            plant.rc_channels[2] = 1400
            v.on_ground = False

            def axes() -> tuple[float, float, float]:
                fr, rl, fl, rr = link.motors
                # torque that rolls left, pitches down, yaws left (CW props FL, RR faster)
                return (fr + rr - rl - fl, rl + rr - fr - fl, fl + rr - fr - rl)

            level = (1.0, 0.0, 0.0, 0.0)
            half = math.radians(10.0) / 2
            cases = (
                ("right wing 10 deg down", 0, (math.cos(half), math.sin(half), 0.0, 0.0), (0.0, 0.0, 0.0)),
                ("rolling right 30 deg/s", 0, level, (math.radians(30), 0.0, 0.0)),
                ("nose 10 deg up", 1, (math.cos(half), 0.0, math.sin(half), 0.0), (0.0, 0.0, 0.0)),
                ("pitching up 30 deg/s", 1, level, (0.0, math.radians(30), 0.0)),
                ("yawing right 60 deg/s", 2, level, (0.0, 0.0, math.radians(60))),
            )
            for name, axis, quat, rates in cases:
                v.quat, v.rates = level, (0.0, 0.0, 0.0)
                _held(link, plant, 0.3)
                before = axes()[axis]
                v.quat, v.rates = quat, rates
                _held(link, plant, 0.3)
                after = axes()[axis]
                assert after - before > 0.05, f"{name}: correction {after - before:+.2f} ({link.motors})"
        finally:
            link.close()

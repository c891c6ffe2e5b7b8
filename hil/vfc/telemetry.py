"""The virtual board's telemetry: one builder per MAVLink message it streams or answers.

Mixed into `VfcServer`, which provides `codec`, `copter`, `identity`, `params`,
`time_us` and the GPS/sensor bookkeeping the builders read.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from hil.firmware.app_image import flight_sw_version
from hil.geo import Home, ned_to_lla
from hil.mavlink.dialect import COPTER_MODES, UINT16_MAX, VFC_USB_PID, VFC_USB_VID, mavlink

M = mavlink

# ArduCopter's modes by what HEARTBEAT.base_mode says about them.
_MANUAL_THROTTLE_MODES = {COPTER_MODES[n] for n in ("STABILIZE", "ACRO", "DRIFT", "FLIP")}
_AUTOPILOT_MODES = {
    COPTER_MODES[n]
    for n in ("AUTO", "GUIDED", "RTL", "CIRCLE", "LAND", "SMART_RTL", "AVOID_ADSB", "GUIDED_NOGPS")
}



class TelemetryBuilders:
    """MAVLink messages built from the flight software's state."""

    @property
    def time_boot_ms(self) -> int:
        return self.time_us // 1000

    def _heartbeat(self) -> Any:
        c = self.copter
        base = M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | M.MAV_MODE_FLAG_STABILIZE_ENABLED
        if c.mode in _MANUAL_THROTTLE_MODES:
            base |= M.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED
        if c.mode in _AUTOPILOT_MODES:
            base |= M.MAV_MODE_FLAG_GUIDED_ENABLED
        if c.armed:
            base |= M.MAV_MODE_FLAG_SAFETY_ARMED
        if c.failsafes:
            status = M.MAV_STATE_CRITICAL
        else:
            status = M.MAV_STATE_ACTIVE if c.armed else M.MAV_STATE_STANDBY
        return self.codec.heartbeat_encode(
            M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA, base, int(c.mode), status
        )

    def _failsafe(self, *words: str) -> bool:
        return any(w in name.lower() for name in self.copter.failsafes for w in words)

    def _sys_status(self) -> Any:
        c = self.copter
        S = M
        present = (
            S.MAV_SYS_STATUS_SENSOR_3D_GYRO
            | S.MAV_SYS_STATUS_SENSOR_3D_ACCEL
            | S.MAV_SYS_STATUS_SENSOR_3D_MAG
            | S.MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE
            | S.MAV_SYS_STATUS_SENSOR_GPS
            | S.MAV_SYS_STATUS_SENSOR_RC_RECEIVER
            | S.MAV_SYS_STATUS_SENSOR_MOTOR_OUTPUTS
            | S.MAV_SYS_STATUS_AHRS
            | S.MAV_SYS_STATUS_SENSOR_BATTERY
        )
        health = S.MAV_SYS_STATUS_SENSOR_MOTOR_OUTPUTS
        # As ArduPilot (libraries/GCS_MAVLink/GCS.cpp): the pre-arm bit is present, enabled
        # while arming checks are, and healthy while armed or while the checks pass.
        enabled = present | S.MAV_SYS_STATUS_PREARM_CHECK if c.arming_checks else present
        present |= S.MAV_SYS_STATUS_PREARM_CHECK
        if c.armed or c.prearm_ok:
            health |= S.MAV_SYS_STATUS_PREARM_CHECK
        if self.steps:
            health |= S.MAV_SYS_STATUS_SENSOR_3D_GYRO | S.MAV_SYS_STATUS_SENSOR_3D_ACCEL
            if not self._failsafe("ekf"):
                health |= S.MAV_SYS_STATUS_AHRS
        recent = self.time_us - 500_000
        if self.last_mag_us >= 0 and self.last_mag_us >= recent:
            health |= S.MAV_SYS_STATUS_SENSOR_3D_MAG
        if self.last_baro_us >= 0 and self.last_baro_us >= recent:
            health |= S.MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE
        if (
            self.last_gps is not None
            and self.last_gps.fix_type >= 3
            and self.last_gps_us >= recent - 500_000
        ):
            health |= S.MAV_SYS_STATUS_SENSOR_GPS
        if c.rc_ok:
            health |= S.MAV_SYS_STATUS_SENSOR_RC_RECEIVER
        if not self._failsafe("batt"):
            health |= S.MAV_SYS_STATUS_SENSOR_BATTERY
        voltage, current, _consumed, remaining = c.battery
        mv = int(round(voltage * 1000)) if 0 < voltage < 65.535 else UINT16_MAX
        ca = max(-1, min(32767, int(round(current * 100)))) if voltage > 0 else -1
        pct = max(-1, min(100, int(round(remaining))))
        errors = min(self.reader.bad_bytes, UINT16_MAX)
        return self.codec.sys_status_encode(
            present, enabled, health, self.load_permille(), mv, ca, pct, 0, errors, 0, 0, 0, 0
        )

    def _attitude(self) -> Any:
        roll, pitch, yaw, p, q, r = self.copter.attitude
        return self.codec.attitude_encode(self.time_boot_ms, roll, pitch, yaw, p, q, r)

    def _yaw_cdeg(self) -> int:
        return int(round(math.degrees(self.copter.attitude[2]) * 100)) % 36000

    def _global_position_int(self) -> Any:
        c = self.copter
        n, e, d = c.position_ned
        vn, ve, vd = c.velocity_ned
        if c.home is None:
            lat = lon = alt = 0
        else:
            lat_deg, lon_deg, alt_m = ned_to_lla(n, e, d, Home(*c.home))
            lat, lon, alt = (
                int(round(lat_deg * 1e7)),
                int(round(lon_deg * 1e7)),
                int(round(alt_m * 1000)),
            )
        return self.codec.global_position_int_encode(
            self.time_boot_ms,
            lat,
            lon,
            alt,
            int(round(-d * 1000)),
            int(round(vn * 100)),
            int(round(ve * 100)),
            int(round(vd * 100)),
            self._yaw_cdeg(),
        )

    def _local_position_ned(self) -> Any:
        (n, e, d), (vn, ve, vd) = self.copter.position_ned, self.copter.velocity_ned
        return self.codec.local_position_ned_encode(self.time_boot_ms, n, e, d, vn, ve, vd)

    def _gps_raw_int(self) -> Any:
        g = self.last_gps
        if g is None:
            return self.codec.gps_raw_int_encode(
                self.time_us,
                M.GPS_FIX_TYPE_NO_GPS,
                0,
                0,
                0,
                UINT16_MAX,
                UINT16_MAX,
                UINT16_MAX,
                UINT16_MAX,
                255,
            )
        return self.codec.gps_raw_int_encode(
            self.time_us,
            g.fix_type,
            g.lat,
            g.lon,
            g.alt,
            g.eph,
            g.epv,
            g.vel,
            g.cog,
            g.satellites_visible,
        )

    def _rc_channels(self) -> Any:
        chans = [int(v) for v in self.copter.rc_channels][:18]
        count = len(chans)
        while count and not chans[count - 1]:
            count -= 1
        raw = [v if v else UINT16_MAX for v in chans] + [UINT16_MAX] * (18 - len(chans))
        rssi = 255 if self.copter.rc_ok else 0
        return self.codec.rc_channels_encode(self.time_boot_ms, count, *raw, rssi)

    def _servo_output_raw(self) -> Any:
        pwm = [
            int(round(1000 + 1000 * min(1.0, max(0.0, float(m))))) for m in self.copter.motors[:4]
        ]
        return self.codec.servo_output_raw_encode(self.time_us & 0xFFFFFFFF, 0, *pwm, 0, 0, 0, 0)

    def _ekf_status_report(self) -> Any:
        c = self.copter
        flags = 0
        if self.steps:
            flags |= M.EKF_ATTITUDE | M.EKF_VELOCITY_VERT | M.EKF_POS_VERT_ABS
            if c.ekf_position_ok:
                flags |= (
                    M.EKF_VELOCITY_HORIZ
                    | M.EKF_POS_HORIZ_REL
                    | M.EKF_POS_HORIZ_ABS
                    | M.EKF_PRED_POS_HORIZ_REL
                    | M.EKF_PRED_POS_HORIZ_ABS
                )
            else:
                flags |= M.EKF_CONST_POS_MODE
        else:
            flags |= M.EKF_UNINITIALIZED
        if getattr(c, "gps_glitching", False) or self._failsafe("glitch"):
            flags |= M.EKF_GPS_GLITCHING
        vel, pos_h, pos_v, compass = c.ekf_variances
        return self.codec.ekf_status_report_encode(flags, vel, pos_h, pos_v, compass, 0.0, 0.0)

    def _system_time(self) -> Any:
        return self.codec.system_time_encode(0, self.time_boot_ms & 0xFFFFFFFF)

    def _vfr_hud(self) -> Any:
        c = self.copter
        vn, ve, vd = c.velocity_ned
        ground = math.hypot(vn, ve)
        throttle = int(round(100 * sum(float(m) for m in c.motors[:4]) / 4))
        alt = (c.home[2] if c.home is not None else 0.0) - c.position_ned[2]
        return self.codec.vfr_hud_encode(
            ground, ground, self._yaw_cdeg() // 100, max(0, min(100, throttle)), alt, -vd
        )

    def _home_position(self) -> Any:
        home = self.copter.home
        if home is None:
            return None
        lat, lon, alt = home
        return self.codec.home_position_encode(
            int(round(lat * 1e7)),
            int(round(lon * 1e7)),
            int(round(alt * 1000)),
            0.0,
            0.0,
            0.0,
            [1.0, 0.0, 0.0, 0.0],
            0.0,
            0.0,
            0.0,
            self.time_us,
        )

    def _autopilot_version(self) -> Any:
        ident = self.identity
        caps = (
            M.MAV_PROTOCOL_CAPABILITY_MAVLINK2
            | M.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT
            | M.MAV_PROTOCOL_CAPABILITY_COMMAND_INT
            | M.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_LOCAL_NED
            | M.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT
        )
        serial = ident.usb_serial.encode()
        uid = int.from_bytes(hashlib.blake2b(serial, digest_size=8).digest(), "little")
        uid2 = list(hashlib.blake2b(serial, digest_size=18, person=b"uid2").digest())
        return self.codec.autopilot_version_encode(
            caps,
            flight_sw_version(ident.firmware_version),
            0,
            0,
            (ident.board_id & 0xFFFF) << 16,
            [0] * 8,
            [0] * 8,
            [0] * 8,
            VFC_USB_VID,
            VFC_USB_PID,
            uid,
            uid2,
        )


"""The virtual board's GPS driver: UBX or NMEA bytes from the GPS UART to fixes.

``GpsUartParser.feed(data)`` takes whatever arrived on the port and returns the fixes
completed by it. Like ArduPilot's drivers it never trusts the wire: frames are found by
their sync bytes and checksums, anything else (garbage, truncated frames, bad
checksums, unknown messages, lines too long) is skipped, and no input raises.

UBX: a fix per NAV-PVT (fix type from fixType, and no fix unless gnssFixOk is set);
MON-HW / MON-RF give the jamming indicator and state, NAV-STATUS the spoofing state,
carried by the following fixes. Frames are decoded with ``struct`` here, not by the
encoder's library, so a round trip checks both sides.

NMEA (any talker): a fix when GGA and RMC with the same time have both arrived. GGA
gives quality, satellites, HDOP and altitude; RMC speed and course (VTG when RMC has
none) to the NE velocity (down is 0: NMEA has no vertical speed); a GSA seen since the
last fix tells 2D from 3D; a GST of the same time gives eph = hypot(stdLat, stdLong)
and epv = stdAlt, else eph = HDOP * ``NMEA_UERE_M`` and epv = 1.5 eph.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

Vec3 = tuple[float, float, float]

NMEA_UERE_M = 1.5
"""Range error assumed to turn HDOP into a horizontal accuracy when no GST arrives."""
KNOT_MPS = 0.514444

_SYNC = b"\xb5\x62"
_MAX_UBX_PAYLOAD = 256  # longer than anything decoded here; bounds the stall on a fake header
_MAX_NMEA_LINE = 120
_PVT = struct.Struct("<IHBBBBBBIiBBBBiiiiIIiiiiiIIH")  # first 78 bytes of NAV-PVT


@dataclass(frozen=True)
class GpsReport:
    """One fix as the board's GPS driver hands it to the estimator."""

    fix_type: int  # 0 none, 2 2D, 3 3D
    lat_deg: float
    lon_deg: float
    alt_m: float  # AMSL
    vel_ned: Vec3  # m/s
    eph_m: float
    epv_m: float
    satellites: int
    jamming_indicator: int | None  # MON-HW/MON-RF jamInd, None if never seen (NMEA)
    jamming_state: int | None = None  # 0 unknown, 1 ok, 2 warning, 3 critical
    spoof_state: int | None = None  # NAV-STATUS spoofDetState
    hdop: float | None = None
    itow_ms: int | None = None  # UBX time of week; None for NMEA
    protocol: str = "ubx"


def _ubx_checksum(body: bytes | bytearray) -> bytes:
    a = b = 0
    for x in body:
        a = (a + x) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def _nmea_checksum_ok(line: bytes) -> bool:
    star = line.rfind(b"*")
    if star < 1 or len(line) < star + 3:
        return False
    c = 0
    for x in line[1:star]:
        c ^= x
    try:
        return int(line[star + 1 : star + 3], 16) == c
    except ValueError:
        return False


def _f(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _i(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _latlon(value: str, hemi: str, deg_digits: int) -> float | None:
    if len(value) < deg_digits + 1:
        return None
    d = _i(value[:deg_digits])
    m = _f(value[deg_digits:])
    if d is None or m is None or d < 0 or not 0.0 <= m < 60.0:
        return None
    v = d + m / 60.0
    if hemi in ("S", "W"):
        v = -v
    elif hemi not in ("N", "E"):
        return None
    return v


class GpsUartParser:
    """Bytes from the GPS port to ``GpsReport``s: ``protocol`` "ubx", "nmea" or "auto"."""

    def __init__(self, protocol: str = "auto") -> None:
        if protocol not in ("ubx", "nmea", "auto"):
            raise ValueError(f"protocol must be 'ubx', 'nmea' or 'auto', got {protocol!r}")
        self.protocol = protocol
        self._ubx = protocol in ("ubx", "auto")
        self._nmea = protocol in ("nmea", "auto")
        self._buf = bytearray()
        self.frames_ok = 0
        self.frames_bad = 0
        # UBX side state
        self._jam_ind: int | None = None
        self._jam_state: int | None = None
        self._spoof_state: int | None = None
        self._hdop: float | None = None
        # NMEA side state
        self._gga: tuple[str, list[str]] | None = None
        self._rmc: tuple[str, list[str]] | None = None
        self._vtg: list[str] | None = None
        self._gsa_mode: int | None = None
        self._gst: tuple[str, list[str]] | None = None

    def feed(self, data: bytes) -> list[GpsReport]:
        """Consume ``data``; the fixes it completed, oldest first. Never raises."""
        out: list[GpsReport] = []
        buf = self._buf
        buf += data
        while buf:
            u = buf.find(_SYNC) if self._ubx else -1
            n = buf.find(b"$") if self._nmea else -1
            starts = [x for x in (u, n) if x >= 0]
            if not starts:
                keep = 1 if self._ubx and buf[-1] == 0xB5 else 0
                del buf[: len(buf) - keep]
                break
            start = min(starts)
            is_ubx = u >= 0 and start == u
            if start:
                del buf[:start]
            if is_ubx:
                if not self._take_ubx(buf, out):
                    break
            elif not self._take_nmea(buf, out):
                break
        return out

    # -- UBX -------------------------------------------------------------------------
    def _take_ubx(self, buf: bytearray, out: list[GpsReport]) -> bool:
        """Handle the frame at buf[0]; False when more bytes are needed."""
        if len(buf) < 6:
            return False
        length = buf[4] | (buf[5] << 8)
        if length > _MAX_UBX_PAYLOAD:
            self.frames_bad += 1
            del buf[:1]
            return True
        if len(buf) < 8 + length:
            return False
        if _ubx_checksum(buf[2 : 6 + length]) != bytes(buf[6 + length : 8 + length]):
            self.frames_bad += 1
            del buf[:1]
            return True
        cls, mid = buf[2], buf[3]
        payload = bytes(buf[6 : 6 + length])
        del buf[: 8 + length]
        self.frames_ok += 1
        try:
            rep = self._ubx_message(cls, mid, payload)
        except (struct.error, IndexError, ValueError, OverflowError):
            rep = None
        if rep is not None:
            out.append(rep)
        return True

    def _ubx_message(self, cls: int, mid: int, p: bytes) -> GpsReport | None:
        if cls == 0x01 and mid == 0x07 and len(p) >= 84:
            (
                itow,
                _y,
                _mo,
                _d,
                _h,
                _mi,
                _s,
                _valid,
                _tacc,
                _nano,
                fix,
                flags,
                _f2,
                nsv,
                lon,
                lat,
                _height,
                hmsl,
                hacc,
                vacc,
                vn,
                ve,
                vd,
                _gs,
                _hm,
                _sacc,
                _hacc,
                pdop,
            ) = _PVT.unpack_from(p)
            fix_ok = flags & 0x01
            if not fix_ok or fix not in (2, 3, 4):
                fix_type = 0
            else:
                fix_type = 3 if fix in (3, 4) else 2
            return GpsReport(
                fix_type=fix_type,
                lat_deg=lat * 1e-7,
                lon_deg=lon * 1e-7,
                alt_m=hmsl * 1e-3,
                vel_ned=(vn * 1e-3, ve * 1e-3, vd * 1e-3),
                eph_m=hacc * 1e-3,
                epv_m=vacc * 1e-3,
                satellites=nsv,
                jamming_indicator=self._jam_ind,
                jamming_state=self._jam_state,
                spoof_state=self._spoof_state,
                hdop=self._hdop,
                itow_ms=itow,
                protocol="ubx",
            )
        if cls == 0x01 and mid == 0x04 and len(p) >= 18:  # NAV-DOP
            self._hdop = (p[12] | (p[13] << 8)) * 0.01
        elif cls == 0x01 and mid == 0x03 and len(p) >= 8:  # NAV-STATUS
            self._spoof_state = (p[7] >> 3) & 0x03
        elif cls == 0x0A and mid == 0x09 and len(p) >= 46:  # MON-HW
            self._jam_state = (p[22] >> 2) & 0x03
            self._jam_ind = p[45]
        elif cls == 0x0A and mid == 0x38 and len(p) >= 4 + 24 and p[1] >= 1:  # MON-RF
            self._jam_state = p[5] & 0x03
            self._jam_ind = p[4 + 16]
        return None

    # -- NMEA ------------------------------------------------------------------------
    def _take_nmea(self, buf: bytearray, out: list[GpsReport]) -> bool:
        nl = buf.find(b"\n", 0, _MAX_NMEA_LINE)
        if nl < 0:
            if len(buf) < _MAX_NMEA_LINE:
                nxt = buf.find(b"$", 1)
                if nxt > 0 or (self._ubx and buf.find(_SYNC, 1) > 0):
                    # Another start before this line ended: this one was cut short.
                    cut = min(x for x in (nxt, buf.find(_SYNC, 1)) if x > 0)
                    del buf[:cut]
                    self.frames_bad += 1
                    return True
                return False
            self.frames_bad += 1
            del buf[:1]
            return True
        nxt = buf.find(b"$", 1, nl)
        if nxt > 0:
            self.frames_bad += 1
            del buf[:nxt]
            return True
        line = bytes(buf[:nl]).rstrip(b"\r")
        del buf[: nl + 1]
        if not _nmea_checksum_ok(line):
            self.frames_bad += 1
            return True
        self.frames_ok += 1
        try:
            text = line[1 : line.rfind(b"*")].decode("ascii")
            rep = self._nmea_sentence(text.split(","))
        except (UnicodeDecodeError, ValueError, IndexError, OverflowError):
            rep = None
        if rep is not None:
            out.append(rep)
        return True

    def _nmea_sentence(self, f: list[str]) -> GpsReport | None:
        kind = f[0][2:] if len(f[0]) == 5 else ""
        if kind == "GGA" and len(f) >= 10:
            self._gga = (f[1], f)
        elif kind == "RMC" and len(f) >= 10:
            self._rmc = (f[1], f)
        elif kind == "VTG" and len(f) >= 8:
            self._vtg = f
            return None
        elif kind == "GSA" and len(f) >= 3:
            m = _i(f[2])
            if m is not None:
                self._gsa_mode = m if self._gsa_mode is None else max(self._gsa_mode, m)
            return None
        elif kind == "GST" and len(f) >= 9:
            self._gst = (f[1], f)
            return None
        else:
            return None
        if self._gga is None or self._rmc is None or self._gga[0] != self._rmc[0]:
            return None
        rep = self._nmea_fix()
        self._gga = self._rmc = self._vtg = self._gst = None
        self._gsa_mode = None
        return rep

    def _nmea_fix(self) -> GpsReport | None:
        assert self._gga is not None and self._rmc is not None
        g = self._gga[1]
        r = self._rmc[1]
        quality = _i(g[6]) or 0
        lat = _latlon(g[2], g[3], 2)
        lon = _latlon(g[4], g[5], 3)
        alt = _f(g[9])
        nsv = _i(g[7]) or 0
        hdop = _f(g[8])
        fix_type = 0
        if quality > 0 and r[2] == "A" and lat is not None and lon is not None:
            fix_type = 2 if self._gsa_mode == 2 or alt is None else 3
        speed = _f(r[7])
        course = _f(r[8])
        if speed is None and self._vtg is not None:
            speed = _f(self._vtg[5])
            course = _f(self._vtg[1])
        vn = ve = 0.0
        if fix_type and speed is not None:
            c = math.radians(course or 0.0)
            vn = speed * KNOT_MPS * math.cos(c)
            ve = speed * KNOT_MPS * math.sin(c)
        eph = epv = 99.99
        if self._gst is not None and self._gst[0] == self._gga[0]:
            s = self._gst[1]
            slat, slon, salt = _f(s[6]), _f(s[7]), _f(s[8])
            if slat is not None and slon is not None:
                eph = math.hypot(slat, slon)
            if salt is not None:
                epv = salt
        elif hdop is not None and fix_type:
            eph = hdop * NMEA_UERE_M
            epv = 1.5 * eph
        if not fix_type:
            eph = epv = 99.99
        return GpsReport(
            fix_type=fix_type,
            lat_deg=lat if lat is not None else 0.0,
            lon_deg=lon if lon is not None else 0.0,
            alt_m=alt if alt is not None else 0.0,
            vel_ned=(vn, ve, 0.0),
            eph_m=eph,
            epv_m=epv,
            satellites=nsv,
            jamming_indicator=None,
            hdop=hdop,
            protocol="nmea",
        )

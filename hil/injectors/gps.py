"""A GNSS receiver the harness plays on the FC's GPS port (UBX or NMEA).

``GpsReceiverEmulator.produce(t, obs)`` returns the bytes a u-blox-like receiver sends
at simulation time ``t``: a navigation epoch every 1/``rate_hz`` s built from a
``hil.threats.gnss.GnssObservation``, plus the monitor messages once a second, plus any
replies queued by ``on_bytes``. Messages are built with pyubx2 / pynmeagps.

UBX epoch: NAV-PVT, NAV-DOP, NAV-TIMEGPS, NAV-STATUS (spoofDetState in flags2);
once a second MON-HW (jamInd, jammingState, AGC) and MON-RF (one block).
NMEA epoch: GNGGA, GNRMC, GNVTG, GNGST (1-sigma errors), one GNGSA per constellation
(NMEA 4.10 systemId) and GPGSV/GAGSV.

What the FC sends (``on_bytes``): UBX frames are picked out of any byte stream (bad
checksums, garbage and NMEA are dropped silently, as a receiver does). A CFG-* message
pyubx2 can parse as a poll or a set gets ACK-ACK; a CFG-RATE poll first gets the CFG-RATE
contents and a MON-VER poll gets MON-VER. CFG-RATE sets and CFG-VALSET of CFG-RATE-MEAS
change the navigation rate. Any other frame gets ACK-NAK. Replies leave with the next
``produce`` call, due epoch or not.
"""

from __future__ import annotations

import datetime as _dt
import math

from pynmeagps import GET as NMEA_GET
from pynmeagps import NMEAMessage
from pyubx2 import GET, POLL, SET, UBX_MSGIDS, UBXMessage, UBXReader

from hil.threats.gnss import GNSS_GALILEO, GNSS_GPS, GnssObservation

_SYNC = b"\xb5\x62"
_MAX_PAYLOAD = 1024
_NMEA_SYSTEM_ID = {GNSS_GPS: "1", GNSS_GALILEO: "3"}
_NMEA_TALKER = {GNSS_GPS: "GP", GNSS_GALILEO: "GA"}
_CFG_RATE_MEAS = "CFG_RATE_MEAS"


def ubx_checksum(body: bytes) -> bytes:
    """The UBX 8-bit Fletcher checksum over class, id, length and payload."""
    a = b = 0
    for x in body:
        a = (a + x) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def _u(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(x))))


class GpsReceiverEmulator:
    """A u-blox-like receiver: observations in, UBX or NMEA bytes out."""

    def __init__(self, protocol: str = "ubx", rate_hz: float = 5.0) -> None:
        if protocol not in ("ubx", "nmea"):
            raise ValueError(f"protocol must be 'ubx' or 'nmea', got {protocol!r}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        self.protocol = protocol
        self.rate_hz = float(rate_hz)
        self._next_due: float | None = None
        self._next_mon: float | None = None
        self._rx = bytearray()
        self._replies: list[bytes] = []
        self.acked: list[tuple[int, int]] = []  # (class, id) of every ACK-ACK sent
        self.naked: list[tuple[int, int]] = []  # and of every ACK-NAK

    # -- timing -------------------------------------------------------------------------
    def due(self, t: float) -> bool:
        """True when a navigation epoch is due at ``t`` (compute the observation then)."""
        return self._next_due is None or t >= self._next_due - 1e-9

    def produce(self, t: float, obs: GnssObservation | None) -> bytes:
        """The bytes the receiver sends at sim time ``t`` (b"" when nothing is due).

        ``obs`` is the environment's observation for this epoch; with None no epoch is
        sent (only queued replies).
        """
        out = bytearray()
        for r in self._replies:
            out += r
        self._replies.clear()
        if obs is None or not self.due(t):
            return bytes(out)
        period = 1.0 / self.rate_hz
        self._next_due = (t if self._next_due is None else self._next_due) + period
        if self._next_due <= t:
            self._next_due = t + period
        if self.protocol == "ubx":
            out += self._ubx_epoch(obs)
            if self._next_mon is None or t >= self._next_mon - 1e-9:
                self._next_mon = t + 1.0 if self._next_mon is None else self._next_mon + 1.0
                if self._next_mon <= t:
                    self._next_mon = t + 1.0
                out += self._ubx_mon(obs)
        else:
            out += self._nmea_epoch(obs)
        return bytes(out)

    # -- UBX ---------------------------------------------------------------------------
    def _ubx_epoch(self, o: GnssObservation) -> bytes:
        fix = o.fix_type
        ok = 1 if fix >= 2 else 0
        utc = o.utc
        vn, ve, vd = o.vel_ned
        gspeed = math.hypot(vn, ve)
        alt_mm = _u(o.alt_m * 1000.0, -(2**31), 2**31 - 1)
        # nano: the epoch's offset from the whole UTC second, in ns (may be negative).
        nano = utc.microsecond * 1000
        if nano >= 500_000_000:
            utc_s = utc.replace(microsecond=0) + _dt.timedelta(seconds=1)
            nano -= 1_000_000_000
        else:
            utc_s = utc.replace(microsecond=0)
        pvt = UBXMessage(
            "NAV",
            "NAV-PVT",
            GET,
            iTOW=o.itow_ms,
            year=utc_s.year,
            month=utc_s.month,
            day=utc_s.day,
            hour=utc_s.hour,
            min=utc_s.minute,
            second=utc_s.second,
            validDate=1,
            validTime=1,
            fullyResolved=1,
            tAcc=_u(o.tacc_ns, 0, 2**32 - 1),
            nano=nano,
            fixType=fix,
            gnssFixOk=ok,
            numSV=_u(o.num_sv, 0, 255),
            lon=o.lon_deg,
            lat=o.lat_deg,
            height=alt_mm,
            hMSL=alt_mm,
            hAcc=_u(o.eph_m * 1000.0, 0, 2**32 - 1),
            vAcc=_u(o.epv_m * 1000.0, 0, 2**32 - 1),
            velN=_u(vn * 1000.0, -(2**31), 2**31 - 1),
            velE=_u(ve * 1000.0, -(2**31), 2**31 - 1),
            velD=_u(vd * 1000.0, -(2**31), 2**31 - 1),
            gSpeed=_u(gspeed * 1000.0, 0, 2**31 - 1),
            headMot=o.course_deg if gspeed > 0.0 else 0.0,
            sAcc=_u(o.sacc_mps * 1000.0, 0, 2**32 - 1),
            headAcc=min(180.0, math.degrees(o.sacc_mps / gspeed)) if gspeed > 0.1 else 180.0,
            pDOP=min(o.pdop, 655.35),
        )
        dop = UBXMessage(
            "NAV",
            "NAV-DOP",
            GET,
            iTOW=o.itow_ms,
            gDOP=min(o.gdop, 655.35),
            pDOP=min(o.pdop, 655.35),
            tDOP=min(o.tdop, 655.35),
            vDOP=min(o.vdop, 655.35),
            hDOP=min(o.hdop, 655.35),
            nDOP=min(o.ndop, 655.35),
            eDOP=min(o.edop, 655.35),
        )
        ftow = _u((o.tow_s * 1000.0 - o.itow_ms) * 1e6, -500000, 500000)
        timegps = UBXMessage(
            "NAV",
            "NAV-TIMEGPS",
            GET,
            iTOW=o.itow_ms,
            fTOW=ftow,
            week=o.week,
            leapS=o.leap_s,
            towValid=1,
            weekValid=1,
            leapSValid=1,
            tAcc=_u(o.tacc_ns, 0, 2**32 - 1),
        )
        status = UBXMessage(
            "NAV",
            "NAV-STATUS",
            GET,
            iTOW=o.itow_ms,
            gpsFix=fix,
            gpsFixOk=ok,
            wknSet=1,
            towSet=1,
            spoofDetState=o.spoof_state,
            ttff=0,
            msss=_u(o.t * 1000.0, 0, 2**32 - 1),
        )
        return b"".join(m.serialize() for m in (pvt, dop, timegps, status))

    def _ubx_mon(self, o: GnssObservation) -> bytes:
        hw = UBXMessage(
            "MON",
            "MON-HW",
            GET,
            noisePerMS=_u(o.noise_per_ms, 0, 65535),
            agcCnt=_u(o.agc_cnt, 0, 8191),
            aStatus=2,
            aPower=1,
            jammingState=o.jamming_state,
            jamInd=_u(o.jam_ind, 0, 255),
        )
        rf = UBXMessage(
            "MON",
            "MON-RF",
            GET,
            version=0,
            nBlocks=1,
            blockId_01=0,
            jammingState_01=o.jamming_state,
            antStatus_01=2,
            antPower_01=1,
            noisePerMS_01=_u(o.noise_per_ms, 0, 65535),
            agcCnt_01=_u(o.agc_cnt, 0, 8191),
            jamInd_01=_u(o.jam_ind, 0, 255),
        )
        return hw.serialize() + rf.serialize()

    # -- NMEA --------------------------------------------------------------------------
    def _nmea_epoch(self, o: GnssObservation) -> bytes:
        utc = o.utc
        tm = utc.time().replace(tzinfo=None)
        has_fix = o.fix_type >= 2
        lat, lon = o.lat_deg, o.lon_deg
        ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
        knots = o.ground_speed_mps / 0.514444
        course = o.course_deg if o.ground_speed_mps > 0.0 else 0.0
        mode = "A" if has_fix else "N"
        # Order: GST and GSA first, so a driver completing the epoch at GGA+RMC has them.
        msgs = [
            NMEAMessage(
                "GN",
                "GST",
                NMEA_GET,
                time=tm,
                rangeRms=round(min(o.eph_m, 999.0), 3),
                stdMajor=round(min(o.eph_m, 999.0), 3),
                stdMinor=round(min(o.eph_m, 999.0), 3),
                orient=0.0,
                stdLat=round(min(o.eph_m / math.sqrt(2.0), 999.0), 4),
                stdLong=round(min(o.eph_m / math.sqrt(2.0), 999.0), 4),
                stdAlt=round(min(o.epv_m, 999.0), 4),
            ),
        ]
        for gnss in (GNSS_GPS, GNSS_GALILEO):
            used = [s.svid for s in o.satellites if s.tracked and s.gnss_id == gnss][:12]
            kw = {f"svid_{i + 1:02d}": (used[i] if i < len(used) else "") for i in range(12)}
            msgs.append(
                NMEAMessage(
                    "GN",
                    "GSA",
                    NMEA_GET,
                    opMode="A",
                    navMode=max(1, o.fix_type),
                    PDOP=round(min(o.pdop, 99.99), 2),
                    HDOP=round(min(o.hdop, 99.99), 2),
                    VDOP=round(min(o.vdop, 99.99), 2),
                    systemId=_NMEA_SYSTEM_ID[gnss],
                    **kw,
                )
            )
        msgs += [
            NMEAMessage(
                "GN",
                "RMC",
                NMEA_GET,
                time=tm,
                status="A" if has_fix else "V",
                lat=lat,
                NS=ns,
                lon=lon,
                EW=ew,
                spd=round(knots, 4),
                cog=round(course, 3),
                date=utc.date(),
                mv="",
                mvEW="",
                posMode=mode,
                navStatus="V",
            ),
            NMEAMessage(
                "GN",
                "VTG",
                NMEA_GET,
                cogt=round(course, 3),
                cogtUnit="T",
                cogm="",
                cogmUnit="M",
                sogn=round(knots, 4),
                sognUnit="N",
                sogk=round(o.ground_speed_mps * 3.6, 4),
                sogkUnit="K",
                posMode=mode,
            ),
            NMEAMessage(
                "GN",
                "GGA",
                NMEA_GET,
                time=tm,
                lat=lat,
                NS=ns,
                lon=lon,
                EW=ew,
                quality=1 if has_fix else 0,
                numSV=o.num_sv,
                HDOP=round(min(o.hdop, 99.99), 2),
                alt=round(o.alt_m, 3),
                altUnit="M",
                sep=0.0,
                sepUnit="M",
                diffAge="",
                diffStation="",
            ),
        ]
        for gnss in (GNSS_GPS, GNSS_GALILEO):
            sats = [s for s in o.satellites if s.gnss_id == gnss]
            pages = max(1, math.ceil(len(sats) / 4))
            for p in range(pages):
                chunk = sats[p * 4 : p * 4 + 4]
                kw = {}
                for i, s in enumerate(chunk):
                    j = f"{i + 1:02d}"
                    kw[f"svid_{j}"] = s.svid
                    kw[f"elv_{j}"] = int(round(s.elevation_deg))
                    kw[f"az_{j}"] = int(round(s.azimuth_deg)) % 360
                    kw[f"cno_{j}"] = int(round(s.cno_dbhz)) if s.tracked else ""
                msgs.append(
                    NMEAMessage(
                        _NMEA_TALKER[gnss],
                        "GSV",
                        NMEA_GET,
                        numMsg=pages,
                        msgNum=p + 1,
                        numSV=len(sats),
                        **kw,
                    )
                )
        return b"".join(m.serialize() for m in msgs)

    # -- what the FC sends ---------------------------------------------------------------
    def on_bytes(self, data: bytes) -> None:
        """Take bytes the FC wrote to the GPS port; queue the replies. Never raises."""
        self._rx += data
        buf = self._rx
        while True:
            i = buf.find(_SYNC)
            if i < 0:
                # Keep a trailing 0xB5: it may be the start of the next frame.
                del buf[: len(buf) - 1 if buf.endswith(b"\xb5") else len(buf)]
                return
            if i:
                del buf[:i]
            if len(buf) < 6:
                return
            length = buf[4] | (buf[5] << 8)
            if length > _MAX_PAYLOAD:
                del buf[:2]
                continue
            if len(buf) < 8 + length:
                return
            frame = bytes(buf[: 8 + length])
            if ubx_checksum(frame[2:-2]) != frame[-2:]:
                del buf[:2]
                continue
            del buf[: 8 + length]
            try:
                self._handle(frame)
            except Exception:  # noqa: BLE001  a receiver never dies of its input
                self._nak(frame[2], frame[3])

    def _handle(self, frame: bytes) -> None:
        cls, mid = frame[2], frame[3]
        payload = frame[6:-2]
        name = UBX_MSGIDS.get(bytes((cls, mid)), "")
        if cls == 0x0A and mid == 0x04 and not payload:  # MON-VER poll
            self._replies.append(
                UBXMessage(
                    "MON",
                    "MON-VER",
                    GET,
                    swVersion=b"ROM SPG 5.10 (hil)".ljust(30, b"\0"),
                    hwVersion=b"000A0000".ljust(10, b"\0"),
                    extension_01=b"PROTVER=34.10".ljust(30, b"\0"),
                    extension_02=b"MOD=HIL-EMU".ljust(30, b"\0"),
                ).serialize()
            )
            return
        if not name.startswith("CFG-"):
            self._nak(cls, mid)
            return
        msg = None
        for mode in (POLL, SET):
            try:
                msg = UBXReader.parse(frame, msgmode=mode, validate=1)
                break
            except Exception:  # noqa: BLE001, S112
                continue
        if msg is None:
            self._nak(cls, mid)
            return
        if name == "CFG-RATE":
            if not payload:
                self._replies.append(
                    UBXMessage(
                        "CFG",
                        "CFG-RATE",
                        GET,
                        measRate=_u(1000.0 / self.rate_hz, 1, 65535),
                        navRate=1,
                        timeRef=1,
                    ).serialize()
                )
            elif len(payload) >= 2:
                meas = payload[0] | (payload[1] << 8)
                if meas < 25:
                    self._nak(cls, mid)
                    return
                self.rate_hz = 1000.0 / meas
        elif name == "CFG-VALSET":
            meas = getattr(msg, _CFG_RATE_MEAS, None)
            if meas is not None:
                if int(meas) < 25:
                    self._nak(cls, mid)
                    return
                self.rate_hz = 1000.0 / int(meas)
        self._ack(cls, mid)

    def _ack(self, cls: int, mid: int) -> None:
        self.acked.append((cls, mid))
        self._replies.append(UBXMessage("ACK", "ACK-ACK", GET, clsID=cls, msgID=mid).serialize())

    def _nak(self, cls: int, mid: int) -> None:
        self.naked.append((cls, mid))
        self._replies.append(UBXMessage("ACK", "ACK-NAK", GET, clsID=cls, msgID=mid).serialize())

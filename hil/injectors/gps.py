"""A GNSS receiver the harness plays on the FC's GPS port (UBX or NMEA).

``GpsReceiverEmulator.produce(t, obs)`` returns the bytes a u-blox receiver sends at
simulation time ``t``: a navigation solution every ``rate_hz``-th of a second built
from a ``hil.threats.gnss.GnssObservation``, each message at the rate the receiver's
configuration holds for it, plus any replies queued by ``on_bytes``. Messages are built
with pyubx2 / pynmeagps.

UBX solution: NAV-PVT, NAV-DOP, NAV-TIMEGPS, NAV-STATUS (spoofDetState in flags2),
MON-HW (jamInd, jammingState, AGC) and, on an M10, MON-RF (one block).
NMEA solution: GNGGA, GNRMC, GNVTG, GNGST (1-sigma errors), one GNGSA per constellation
(NMEA 4.10 systemId) and GPGSV/GAGSV.

The receiver is a named model (``model="M8"`` or ``"M10"``, see
``hil.injectors.ublox_config``) and starts configured the way the harness needs it, as
if a previous flight had saved that to its flash: with ``protocol="ubx"`` the four NAV
messages every solution and the monitor messages once a second, with ``"nmea"`` the
NMEA sentences every solution. A firmware that configures its GPS (ArduPilot
GPS_AUTO_CONFIG, Betaflight gps_auto_config) changes that through ``on_bytes``: every
poll it sends is answered from the current configuration, every set is applied, and
the output follows (message rates per solution, solution rate, protocols, baud).

What the FC sends (``on_bytes``): UBX frames and NMEA lines (PUBX,40 / PUBX,41) are
picked out of any byte stream; bad checksums and garbage are dropped silently, as a
receiver does. Replies leave with the next ``produce`` call, due solution or not.

Baud: ``baud`` is what the line runs at now. A set that moves the port (CFG-PRT,
VALSET CFG-UART1-BAUDRATE, PUBX,41) leaves ``pending_baud`` set; the receiver answers
at the old baud and switches once that answer has left: call ``switch_baud()`` right
after writing what ``produce`` returned (it returns the new baud, once), or let the next
``produce`` switch. ``on_baud_change(baud)`` is called at the switch either way.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable

from pynmeagps import GET as NMEA_GET
from pynmeagps import NMEAMessage
from pyubx2 import GET, UBXMessage

from hil.injectors.ublox_config import KEY, MODELS, Reply, UbloxConfig, frame, ubx_checksum
from hil.threats.gnss import GNSS_GALILEO, GNSS_GPS, GnssObservation

_SYNC = b"\xb5\x62"
_MAX_PAYLOAD = 1024
_MAX_NMEA_LINE = 120
_NOT_NMEA = re.compile(rb"[^\x20-\x7e\r]")  # the first byte that ends or breaks a line
_NMEA_SYSTEM_ID = {GNSS_GPS: "1", GNSS_GALILEO: "3"}
_NMEA_TALKER = {GNSS_GPS: "GP", GNSS_GALILEO: "GA"}
_NAV_PVT, _NAV_DOP, _NAV_TIMEGPS, _NAV_STATUS = (1, 0x07), (1, 0x04), (1, 0x20), (1, 0x03)
_MON_HW, _MON_RF = (0x0A, 0x09), (0x0A, 0x38)
_NMEA_MSGS = {"GGA": (0xF0, 0x00), "GSA": (0xF0, 0x02), "GSV": (0xF0, 0x03), "RMC": (0xF0, 0x04)}
_NMEA_MSGS |= {"VTG": (0xF0, 0x05), "GST": (0xF0, 0x07)}


def _u(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(x))))


class GpsReceiverEmulator:
    """A u-blox receiver: observations in, UBX or NMEA bytes out, CFG traffic answered."""

    def __init__(
        self,
        protocol: str = "ubx",
        rate_hz: float = 5.0,
        *,
        model: str = "M10",
        baud: int = 230400,
        on_baud_change: Callable[[int], None] | None = None,
    ) -> None:
        if protocol not in ("ubx", "nmea"):
            raise ValueError(f"protocol must be 'ubx' or 'nmea', got {protocol!r}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        if model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
        self.protocol = protocol
        self.model = MODELS[model]
        self.config = UbloxConfig.initial(self.model, rate_hz=rate_hz, baud=baud, protocol=protocol)
        self.on_baud_change = on_baud_change
        self._baud = baud
        self._pending_baud: int | None = None
        self._pending_sent = False  # the answer that moves the port has left
        self._next_due: float | None = None
        self._solution = 0  # solutions sent: a message at rate r goes when this % r == 0
        self._rx = bytearray()
        self._replies: list[bytes] = []
        self.acked: list[tuple[int, int]] = []  # (class, id) of every ACK-ACK sent
        self.naked: list[tuple[int, int]] = []  # and of every ACK-NAK

    # -- rate and baud -----------------------------------------------------------------
    @property
    def rate_hz(self) -> float:
        """Navigation solutions per second (CFG-RATE measRate x navRate)."""
        return 1.0 / self.config.solution_period_s

    @rate_hz.setter
    def rate_hz(self, hz: float) -> None:
        if not hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {hz!r}")
        self.config.values[KEY["CFG_RATE_MEAS"]] = max(1, min(65535, round(1000.0 / hz)))
        self.config.values[KEY["CFG_RATE_NAV"]] = 1

    @property
    def baud(self) -> int:
        """The baud the receiver talks at right now."""
        return self._baud

    @property
    def pending_baud(self) -> int | None:
        """A baud the receiver moves to once its answer has left (None: no change)."""
        return self._pending_baud

    def switch_baud(self) -> int | None:
        """Move to ``pending_baud`` if the answer that asked for it has been handed out by
        ``produce``; returns the new baud then (once), else None."""
        if self._pending_baud is None or not self._pending_sent:
            return None
        self._baud, self._pending_baud, self._pending_sent = self._pending_baud, None, False
        if self.on_baud_change is not None:
            self.on_baud_change(self._baud)
        return self._baud

    # -- timing -------------------------------------------------------------------------
    def due(self, t: float) -> bool:
        """True when a navigation solution is due at ``t`` (compute the observation then)."""
        return self._next_due is None or t >= self._next_due - 1e-9

    def produce(self, t: float, obs: GnssObservation | None) -> bytes:
        """The bytes the receiver sends at sim time ``t`` (b"" when nothing is due).

        ``obs`` is the environment's observation for this solution; with None no solution
        is sent (only queued replies).
        """
        self.switch_baud()  # an answer handed out last time has left by now
        out = bytearray()
        for r in self._replies:
            out += r
        self._replies.clear()
        if self._pending_baud is not None:
            self._pending_sent = True
        if obs is None or not self.due(t):
            return bytes(out)
        period = self.config.solution_period_s
        self._next_due = (t if self._next_due is None else self._next_due) + period
        if self._next_due <= t:
            self._next_due = t + period
        k = self._solution
        self._solution += 1
        if self.config.out_ubx:
            out += self._ubx_epoch(obs, k)
        if self.config.out_nmea:
            out += self._nmea_epoch(obs, k)
        return bytes(out)

    def _sends(self, msg: tuple[int, int], k: int) -> bool:
        r = self.config.rate(msg)
        return r > 0 and k % r == 0

    # -- UBX ---------------------------------------------------------------------------
    def _ubx_epoch(self, o: GnssObservation, k: int) -> bytes:
        """The UBX messages due at the ``k``-th solution, in the receiver's output order."""
        out = bytearray()
        if self._sends(_NAV_PVT, k):
            out += self._nav_pvt(o)
        if self._sends(_NAV_DOP, k):
            out += self._nav_dop(o)
        if self._sends(_NAV_TIMEGPS, k):
            out += self._nav_timegps(o)
        if self._sends(_NAV_STATUS, k):
            out += self._nav_status(o)
        emits = self.model.emits
        if _MON_HW in emits and self._sends(_MON_HW, k):
            out += self._mon_hw(o)
        if _MON_RF in emits and self._sends(_MON_RF, k):
            out += self._mon_rf(o)
        return bytes(out)

    def _nav_pvt(self, o: GnssObservation) -> bytes:
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
        return pvt.serialize()

    def _nav_dop(self, o: GnssObservation) -> bytes:
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
        return dop.serialize()

    def _nav_timegps(self, o: GnssObservation) -> bytes:
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
        return timegps.serialize()

    def _nav_status(self, o: GnssObservation) -> bytes:
        fix = o.fix_type
        status = UBXMessage(
            "NAV",
            "NAV-STATUS",
            GET,
            iTOW=o.itow_ms,
            gpsFix=fix,
            gpsFixOk=1 if fix >= 2 else 0,
            wknSet=1,
            towSet=1,
            spoofDetState=o.spoof_state,
            ttff=0,
            msss=_u(o.t * 1000.0, 0, 2**32 - 1),
        )
        return status.serialize()

    def _mon_hw(self, o: GnssObservation) -> bytes:
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
        return hw.serialize()

    def _mon_rf(self, o: GnssObservation) -> bytes:
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
        return rf.serialize()

    # -- NMEA --------------------------------------------------------------------------
    def _nmea_epoch(self, o: GnssObservation, k: int) -> bytes:
        """The NMEA sentences due at the ``k``-th solution."""
        due = {name: self._sends(msg, k) for name, msg in _NMEA_MSGS.items()}
        if not any(due.values()):
            return b""
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
        return b"".join(m.serialize() for m in msgs if due[m.msgID])

    # -- what the FC sends ---------------------------------------------------------------
    def on_bytes(self, data: bytes) -> None:
        """Take bytes the FC wrote to the GPS port; queue the replies. Never raises."""
        self._rx += data
        buf = self._rx
        while buf:
            i = buf.find(_SYNC)
            j = buf.find(b"$", 0, i if i >= 0 else len(buf))
            if j >= 0:  # an NMEA line starts before any UBX frame
                del buf[:j]
                end = _NOT_NMEA.search(buf, 1)
                if end is None:
                    if len(buf) > _MAX_NMEA_LINE:
                        del buf[:1]
                        continue
                    return
                if buf[end.start()] != 0x0A:  # not a line after all
                    del buf[:1]
                    continue
                line = bytes(buf[: end.start()]).rstrip(b"\r").decode("ascii")
                del buf[: end.start() + 1]
                self._apply(self.config.handle_nmea(line), None)
                continue
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
            raw = bytes(buf[: 8 + length])
            if ubx_checksum(raw[2:-2]) != raw[-2:]:
                del buf[:2]
                continue
            del buf[: 8 + length]
            cls, mid = raw[2], raw[3]
            try:
                reply = self.config.handle(cls, mid, raw[6:-2])
            except Exception:  # noqa: BLE001  a receiver never dies of its input
                reply = Reply((frame(0x05, 0x00, bytes((cls, mid))),), False)
            self._apply(reply, (cls, mid))

    def _apply(self, reply: Reply, msg: tuple[int, int] | None) -> None:
        self._replies.extend(reply.frames)
        if msg is not None and reply.ack is not None:
            (self.acked if reply.ack else self.naked).append(msg)
        if reply.baud is not None and reply.baud != self._baud:
            self._pending_baud, self._pending_sent = reply.baud, False

"""The configuration a u-blox receiver holds, and how it answers the FC's CFG traffic.

``UbloxConfig`` is the receiver's configuration as one set of values: the UART1 port
(baud, protocol masks), the per-port output rate of every message, the solution rate,
the navigation engine settings, SBAS and the GNSS constellation blocks. The legacy
UBX-CFG messages (PRT, MSG, RATE, NAV5, SBAS, GNSS, PMS) and the key/value interface
(CFG-VALSET / CFG-VALGET, keys as pyubx2's configuration database names them) are two
views of the same values, so a rate set with CFG-MSG reads back through VALGET and the
other way round. ``handle(cls, mid, payload)`` applies one frame from the FC and returns
the frames the receiver sends back; ``handle_nmea(line)`` does the same for the PUBX
sentences the firmwares send before they speak UBX.

What is answered, and how (facts from the sources named next to each rule):

- A CFG poll (the message with no payload, or CFG-PRT with a port id, CFG-MSG with a
  class and id, CFG-VALGET with keys) is answered with the message's current contents
  and then ACK-ACK; a set is applied and ACK-ACKed, or refused with ACK-NAK and nothing
  changed. Betaflight waits for an ACK after its CFG-GNSS poll (``gps.c``,
  ``UBLOX_MSG_CFG_GNSS``: "poll messages wait for ACK").
- CFG-MSG answers in the 8-byte form (one rate per port); ArduPilot reads the rate at
  the port id it learnt from the CFG-PRT answer (``AP_GPS_UBLOX.cpp``, ``MSG_CFG_MSG``).
- An M8 (protocol 18) has no configuration-key interface: VALSET/VALGET are NAKed.
  The interface appeared with protocol 23.01 (u-blox deprecates CFG-GNSS and the other
  legacy messages "in protocol versions greater than 23.01", quoted in rtlopez/esp-fc#200).
- An M10 NAKs CFG-GNSS (ArduPilot clears its GNSS step on an M10: "M10 does not support
  CONFIG_GNSS"; an SPG 5.10 module NAKs it in rtlopez/esp-fc#200 while it ACKs CFG-NAV5
  and CFG-SBAS). It still answers the other legacy messages ArduPilot polls (PRT, MSG,
  RATE, NAV5, SBAS): ArduPilot 4.5+ finishes configuring an M10 only with those answers.
- VALSET is refused whole if any key is unknown to the receiver (PX4/PX4-GPSDrivers#225
  quoting the interface description); VALGET of an unknown key is NAKed
  (jclark/satpulse#71). ArduPilot falls back to one key per VALGET after a NAK
  (``_configure_config_set``). Transactions are applied at once (not staged).
- PUBX,41 sets a port's protocol masks and baud without any answer; ArduPilot's
  ``UBLOX_SET_BINARY_230400`` and Betaflight's ``gpsInitData`` send it.

Simplifications: one port (UART1, port id 1) is modelled; BBR/flash layers are not kept
apart from RAM (a set that names the RAM layer changes the running configuration, one
that does not is ACKed and otherwise ignored); the measurement rate is refused below
25 ms (40 Hz), the floor the emulator has always had.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pyubx2 import UBX_MSGIDS
from pyubx2.ubxtypes_configdb import UBX_CONFIG_DATABASE

CLS_NAV, CLS_ACK, CLS_CFG, CLS_MON, CLS_NMEA = 0x01, 0x05, 0x06, 0x0A, 0xF0
CFG_PRT, CFG_MSG, CFG_RATE, CFG_CFG, CFG_NAV5, CFG_SBAS = 0x00, 0x01, 0x08, 0x09, 0x24, 0x16
CFG_GNSS, CFG_PMS, CFG_VALSET, CFG_VALGET = 0x3E, 0x86, 0x8A, 0x8B
MON_VER, NAV_SVINFO = 0x04, 0x30

UART1 = 1
"""The port id of UART1 in CFG-PRT and the index of its rate in CFG-MSG."""
PORTS = 6  # CFG-MSG carries one rate per port: DDC, UART1, UART2, USB, SPI, reserved
BAUDS = frozenset((4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600))
MIN_MEAS_MS = 25
MAX_VALGET_KEYS = 64  # the interface descriptions' limit per VALGET poll
DYN_MODELS = frozenset((0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12))  # 1 is not a model
_UART_8N1 = 0x08D0  # CFG-PRT mode: 8 data bits, no parity, 1 stop bit
_PROTO_BITS = {"UBX": 0x01, "NMEA": 0x02, "RTCM3X": 0x20}

# pyubx2's configuration database: name -> (key id, type); and back.
KEY = {name: kid for name, (kid, _t) in UBX_CONFIG_DATABASE.items()}
KEY_NAME = {kid: name for name, (kid, _t) in UBX_CONFIG_DATABASE.items()}
_SIGNED = {kid for kid, t in UBX_CONFIG_DATABASE.values() if t[0] == "I"}


def key_size(key: int) -> int:
    """Bytes a key's value takes: bits 28..30 of the id give the storage size (0 if invalid)."""
    return {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}.get((key >> 28) & 0x07, 0)


def _msgout_map() -> dict[int, tuple[int, int, int]]:
    """CFG-MSGOUT key id -> (class, id, port index), from the database's key names."""
    by_name = {name: bytes_ for bytes_, name in UBX_MSGIDS.items()}
    ports = {"I2C": 0, "UART1": 1, "UART2": 2, "USB": 3, "SPI": 4}
    out: dict[int, tuple[int, int, int]] = {}
    for name, (kid, _t) in UBX_CONFIG_DATABASE.items():
        head, _, port = name.rpartition("_")
        if port not in ports:
            continue
        if head.startswith("CFG_MSGOUT_UBX_"):
            msg = head[len("CFG_MSGOUT_UBX_") :].replace("_", "-", 1)
        elif head.startswith("CFG_MSGOUT_NMEA_ID_"):
            msg = head[len("CFG_MSGOUT_NMEA_ID_") :]
        else:
            continue
        ident = by_name.get(msg)
        if ident is not None and len(ident) == 2:
            out[kid] = (ident[0], ident[1], ports[port])
    return out


MSGOUT = _msgout_map()
MSGOUT_KEY = {v: k for k, v in MSGOUT.items()}


@dataclass(frozen=True)
class ReceiverModel:
    """What a named receiver says about itself and which parts of the protocol it has."""

    name: str
    sw_version: str
    hw_version: str
    extensions: tuple[str, ...]
    chip_gen: int | None  # NAV-SVINFO globalFlags chipGen; None: it has no NAV-SVINFO
    has_keys: bool  # CFG-VALSET / CFG-VALGET
    nak_cfg: frozenset[int]  # legacy CFG message ids it refuses
    missing_keys: tuple[str, ...]  # key-name fragments of groups it does not have
    emits: frozenset[tuple[int, int]]  # UBX messages it can output

    def knows_key(self, key: int) -> bool:
        """True when this receiver's configuration database holds ``key``."""
        name = KEY_NAME.get(key)
        return self.has_keys and name is not None and not any(f in name for f in self.missing_keys)


_NAV_PVT, _NAV_DOP, _NAV_TIMEGPS, _NAV_STATUS = (1, 0x07), (1, 0x04), (1, 0x20), (1, 0x03)
_MON_HW, _MON_RF = (0x0A, 0x09), (0x0A, 0x38)

MODELS: dict[str, ReceiverModel] = {
    # A NEO-M8N on SPG 3.01 / protocol 18.00. Betaflight tells an M8 by hwVersion
    # 0x00080000 (gps.c ubloxVersionMap); ArduPilot by NAV-SVINFO chipGen 4 (UBLOX_M8).
    "M8": ReceiverModel(
        name="M8",
        sw_version="ROM CORE 3.01 (107888)",
        hw_version="00080000",
        extensions=("FWVER=SPG 3.01", "PROTVER=18.00", "GPS;GLO;GAL;BDS", "SBAS;IMES;QZSS"),
        chip_gen=4,
        has_keys=False,
        nak_cfg=frozenset((CFG_VALSET, CFG_VALGET)),
        missing_keys=(),
        emits=frozenset((_NAV_PVT, _NAV_DOP, _NAV_TIMEGPS, _NAV_STATUS, _MON_HW)),
    ),
    # An M10 on SPG 5.10 / protocol 34.10: the MON-VER strings an HGLRC M100 reports in
    # rtlopez/esp-fc#200. hwVersion 000A0000 is what both ArduPilot (UBLOX_M10) and
    # Betaflight (UBX_VERSION_M10) look for.
    "M10": ReceiverModel(
        name="M10",
        sw_version="ROM SPG 5.10 (7b202e)",
        hw_version="000A0000",
        extensions=("FWVER=SPG 5.10", "PROTVER=34.10", "GPS;GLO;GAL;BDS", "SBAS;QZSS"),
        chip_gen=None,
        has_keys=True,
        nak_cfg=frozenset((CFG_GNSS,)),
        # Timing mode, high-precision navigation, RTCM, a second UART, USB and bands
        # other than L1/E1/B1: an L1-only, single-UART receiver has none of them.
        missing_keys=(
            "CFG_TMODE_",
            "CFG_NAVHPG_",
            "RTCM",
            "UART2",
            "USB",
            "L5",
            "_L2",
            "_E5",
            "_E6",
            "_B2",
            "_B3",
        ),
        emits=frozenset((_NAV_PVT, _NAV_DOP, _NAV_TIMEGPS, _NAV_STATUS, _MON_HW, _MON_RF)),
    ),
}

# Defaults of the navigation engine, as Betaflight lists them when it writes the
# defaults back (gps.c ubloxSendNAV5Message): fix mode auto, 2D altitude variance
# 1 m^2, elevation mask 5 deg, PDOP/TDOP masks 25.0, accuracy masks 100 m / 300 m,
# static-hold distance 200 m, DGNSS timeout 60 s; dynamic model 0 (portable).
_NAV_DEFAULTS = {
    "CFG_NAVSPG_DYNMODEL": 0,
    "CFG_NAVSPG_FIXMODE": 3,
    "CFG_NAVSPG_CONSTR_ALT": 0,
    "CFG_NAVSPG_CONSTR_ALTVAR": 10000,
    "CFG_NAVSPG_INFIL_MINELEV": 5,
    "CFG_NAVSPG_OUTFIL_PDOP": 250,
    "CFG_NAVSPG_OUTFIL_TDOP": 250,
    "CFG_NAVSPG_OUTFIL_PACC": 100,
    "CFG_NAVSPG_OUTFIL_TACC": 300,
    "CFG_MOT_GNSSSPEED_THRS": 0,
    "CFG_MOT_GNSSDIST_THRS": 200,
    "CFG_NAVSPG_CONSTR_DGNSSTO": 60,
    "CFG_NAVSPG_INFIL_NCNOTHRS": 0,
    "CFG_NAVSPG_INFIL_CNOTHRS": 0,
    "CFG_NAVSPG_UTCSTANDARD": 0,
}
# Signals as the M10 leaves the factory in this model (ArduPilot's config_M10 exists to
# change exactly these: Beidou B1I -> B1C, Glonass off, QZSS L1S on).
_SIGNAL_DEFAULTS = {
    "CFG_SIGNAL_GPS_ENA": 1,
    "CFG_SIGNAL_GPS_L1CA_ENA": 1,
    "CFG_SIGNAL_SBAS_ENA": 1,
    "CFG_SIGNAL_SBAS_L1CA_ENA": 1,
    "CFG_SIGNAL_GAL_ENA": 1,
    "CFG_SIGNAL_GAL_E1_ENA": 1,
    "CFG_SIGNAL_BDS_ENA": 1,
    "CFG_SIGNAL_BDS_B1_ENA": 1,
    "CFG_SIGNAL_BDS_B1C_ENA": 0,
    "CFG_SIGNAL_GLO_ENA": 1,
    "CFG_SIGNAL_GLO_L1_ENA": 1,
    "CFG_SIGNAL_QZSS_ENA": 1,
    "CFG_SIGNAL_QZSS_L1CA_ENA": 1,
    "CFG_SIGNAL_QZSS_L1S_ENA": 0,
    "CFG_SBAS_USE_TESTMODE": 0,
    "CFG_SBAS_USE_RANGING": 1,
    "CFG_SBAS_USE_DIFFCORR": 1,
    "CFG_SBAS_USE_INTEGRITY": 0,
    "CFG_SBAS_PRNSCANMASK": 0,
    "CFG_PM_OPERATEMODE": 0,
    "CFG_UART1INPROT_UBX": 1,
    "CFG_UART1INPROT_NMEA": 1,
    "CFG_UART1INPROT_RTCM3X": 1,
    "CFG_UART1OUTPROT_UBX": 1,
    "CFG_UART1OUTPROT_NMEA": 1,
    "CFG_UART1OUTPROT_RTCM3X": 0,
}

# CFG-GNSS blocks (gnssId, resTrkCh, maxTrkCh, flags) as a NEO-M8N answers by default:
# GPS, SBAS, QZSS and Glonass on; Galileo, Beidou, IMES off. enable is bit 0, the signal
# mask bits 16..23.
_GNSS_BLOCKS_M8 = (
    (0, 8, 16, 0x01_0001),
    (1, 1, 3, 0x01_0001),
    (2, 4, 8, 0x01_0000),
    (3, 8, 16, 0x01_0000),
    (4, 0, 8, 0x03_0000),
    (5, 0, 3, 0x05_0001),
    (6, 8, 14, 0x01_0001),
)

# CFG-NAV5: (mask bit, field, key) for every field that has a key; drLimit has none.
_NAV5 = struct.Struct("<HBBiIbBHHHHBBBBHHB5x")
_NAV5_FIELDS = (
    (0, "dynModel", "CFG_NAVSPG_DYNMODEL"),
    (2, "fixMode", "CFG_NAVSPG_FIXMODE"),
    (2, "fixedAlt", "CFG_NAVSPG_CONSTR_ALT"),
    (2, "fixedAltVar", "CFG_NAVSPG_CONSTR_ALTVAR"),
    (1, "minElev", "CFG_NAVSPG_INFIL_MINELEV"),
    (4, "pDop", "CFG_NAVSPG_OUTFIL_PDOP"),
    (5, "tDop", "CFG_NAVSPG_OUTFIL_TDOP"),
    (4, "pAcc", "CFG_NAVSPG_OUTFIL_PACC"),
    (5, "tAcc", "CFG_NAVSPG_OUTFIL_TACC"),
    (6, "staticHoldThresh", "CFG_MOT_GNSSSPEED_THRS"),
    (7, "dgnssTimeout", "CFG_NAVSPG_CONSTR_DGNSSTO"),
    (8, "cnoThreshNumSVs", "CFG_NAVSPG_INFIL_NCNOTHRS"),
    (8, "cnoThresh", "CFG_NAVSPG_INFIL_CNOTHRS"),
    (6, "staticHoldMaxDist", "CFG_MOT_GNSSDIST_THRS"),
    (10, "utcStandard", "CFG_NAVSPG_UTCSTANDARD"),
)
_NAV5_ORDER = (
    "dynModel", "fixMode", "fixedAlt", "fixedAltVar", "minElev", "drLimit", "pDop", "tDop",
    "pAcc", "tAcc", "staticHoldThresh", "dgnssTimeout", "cnoThreshNumSVs", "cnoThresh",
    "reserved", "staticHoldMaxDist", "utcStandard",
)  # fmt: skip
_PRT = struct.Struct("<BBHIIHHHH")
_SBAS = struct.Struct("<BBBBI")
_PMS = struct.Struct("<BBHH2x")


@dataclass(frozen=True)
class Reply:
    """What the receiver sends back for one frame, and a baud it moves to afterwards."""

    frames: tuple[bytes, ...] = ()
    ack: bool | None = None  # True: ended with ACK-ACK; False: ACK-NAK; None: neither
    baud: int | None = None  # switch UART1 to this baud once these frames have left


def ubx_checksum(body: bytes) -> bytes:
    """The UBX 8-bit Fletcher checksum over class, id, length and payload."""
    a = b = 0
    for x in body:
        a = (a + x) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def frame(cls: int, mid: int, payload: bytes = b"") -> bytes:
    """A whole UBX frame: sync, class, id, length, payload, checksum. (Framed here, not by
    pyubx2: its constructor re-parses the payload and refuses some valid CFG-VALGET answers.)"""
    body = struct.pack("<BBH", cls, mid, len(payload)) + payload
    return b"\xb5\x62" + body + ubx_checksum(body)


def _nmea_ok(line: str) -> bool:
    """True when an NMEA line (without CR LF) carries a correct XOR checksum."""
    if not line.startswith("$") or len(line) < 4 or line[-3] != "*":
        return False
    x = 0
    for ch in line[1:-3]:
        x ^= ord(ch)
    try:
        return x == int(line[-2:], 16)
    except ValueError:
        return False


@dataclass
class UbloxConfig:
    """The running configuration of one receiver and its answers to CFG traffic."""

    model: ReceiverModel
    values: dict[int, int] = field(default_factory=dict)  # key id -> value
    rates: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # per port
    gnss: list[list[int]] = field(default_factory=list)  # CFG-GNSS blocks
    dr_limit: int = 0  # CFG-NAV5 drLimit (no key)
    max_sbas: int = 3  # CFG-SBAS maxSBAS (no key)
    pms: tuple[int, int, int] = (0, 0, 0)  # CFG-PMS powerSetupValue, period, onTime

    @classmethod
    def initial(
        cls, model: ReceiverModel, *, rate_hz: float, baud: int, protocol: str
    ) -> UbloxConfig:
        """A receiver whose flash already holds what the harness needs (so a firmware
        with auto-configuration off gets fixes): the epoch messages at every solution,
        the monitor messages once a second, in UBX or in NMEA."""
        cfg = cls(model)
        v = cfg.values
        for name, value in {**_NAV_DEFAULTS, **_SIGNAL_DEFAULTS}.items():
            v[KEY[name]] = value
        v[KEY["CFG_UART1_BAUDRATE"]] = baud
        v[KEY["CFG_RATE_MEAS"]] = max(MIN_MEAS_MS, min(65535, round(1000.0 / rate_hz)))
        v[KEY["CFG_RATE_NAV"]] = 1
        v[KEY["CFG_RATE_TIMEREF"]] = 1  # GPS time, the u-blox default
        cfg.gnss = [list(b) for b in _GNSS_BLOCKS_M8]
        per_second = max(1, round(rate_hz))
        if protocol == "ubx":
            for m in (_NAV_PVT, _NAV_DOP, _NAV_TIMEGPS, _NAV_STATUS):
                cfg.set_rate(m, UART1, 1)
            for m in (_MON_HW, _MON_RF):
                if m in model.emits:
                    cfg.set_rate(m, UART1, per_second)
        else:
            for mid in (0x00, 0x02, 0x03, 0x04, 0x05, 0x07):  # GGA GSA GSV RMC VTG GST
                cfg.set_rate((CLS_NMEA, mid), UART1, 1)
        return cfg

    # -- the values produce() reads ---------------------------------------------------
    def rate(self, msg: tuple[int, int], port: int = UART1) -> int:
        """Output rate of ``msg`` on ``port``: every Nth solution, 0 when off."""
        r = self.rates.get(msg)
        return r[port] if r else 0

    def set_rate(self, msg: tuple[int, int], port: int, rate: int) -> None:
        """Send ``msg`` on ``port`` every ``rate`` solutions (0: never)."""
        self.rates.setdefault(msg, [0] * PORTS)[port] = rate & 0xFF

    def get(self, name: str) -> int:
        """A value by its configuration-key name (0 when never set)."""
        return self.values.get(KEY[name], 0)

    @property
    def baud(self) -> int:
        """UART1 baud."""
        return self.get("CFG_UART1_BAUDRATE")

    @property
    def solution_period_s(self) -> float:
        """Seconds between navigation solutions: measurement period times navRate."""
        return self.get("CFG_RATE_MEAS") * max(1, self.get("CFG_RATE_NAV")) / 1000.0

    @property
    def out_ubx(self) -> bool:
        """UART1 outputs UBX."""
        return bool(self.get("CFG_UART1OUTPROT_UBX"))

    @property
    def out_nmea(self) -> bool:
        """UART1 outputs NMEA."""
        return bool(self.get("CFG_UART1OUTPROT_NMEA"))

    # -- one frame from the FC --------------------------------------------------------
    def handle(self, cls: int, mid: int, payload: bytes) -> Reply:
        """Apply one checked UBX frame; the frames to send back (never raises on input)."""
        if cls == CLS_MON and mid == MON_VER and not payload:
            return Reply((self.mon_ver(),))
        if cls == CLS_NAV and mid == NAV_SVINFO and not payload and self.model.chip_gen is not None:
            # numCh 0, chipGen in globalFlags bits 0..2
            return Reply(
                (frame(CLS_NAV, NAV_SVINFO, struct.pack("<IBBH", 0, 0, self.model.chip_gen, 0)),)
            )
        if cls != CLS_CFG or mid in self.model.nak_cfg:
            return self._nak(cls, mid)
        handler = _HANDLERS.get(mid)
        if handler is None:
            # A set of a message this model does not keep: accepted, no state (CFG-CFG
            # save, CFG-NAVX5, CFG-TP5 ...). A poll of one cannot be answered honestly.
            return self._nak(cls, mid) if not payload else self._ack(cls, mid)
        try:
            return handler(self, payload)
        except (struct.error, ValueError, KeyError, IndexError, OverflowError):
            return self._nak(cls, mid)

    def handle_nmea(self, line: str) -> Reply:
        """Apply one NMEA input line (no CR LF): PUBX,41 (port) and PUBX,40 (NMEA rates)."""
        if not _nmea_ok(line):
            return Reply()
        f = line[1:-3].split(",")
        try:
            if f[0] == "PUBX" and f[1] == "41" and len(f) >= 7 and int(f[2]) == UART1:
                in_mask, out_mask, baud = int(f[3], 16), int(f[4], 16), int(f[5])
                if baud not in BAUDS:
                    return Reply()
                self._set_masks(in_mask, out_mask)
                return self._baud_reply((), None, baud)
            if f[0] == "PUBX" and f[1] == "40" and len(f) >= 8:
                ident = UBX_MSGIDS_BY_NMEA.get(f[2])
                if ident is not None:
                    for port in range(5):
                        self.set_rate(ident, port, int(f[3 + port]))
        except ValueError:
            pass
        return Reply()

    def mon_ver(self) -> bytes:
        """The MON-VER answer: 30-byte software, 10-byte hardware, 30-byte extensions."""
        m = self.model
        body = (
            m.sw_version.encode().ljust(30, b"\0")[:30]
            + m.hw_version.encode().ljust(10, b"\0")[:10]
        )
        for ext in m.extensions:
            body += ext.encode().ljust(30, b"\0")[:30]
        return frame(CLS_MON, MON_VER, body)

    # -- legacy messages ----------------------------------------------------------------
    def _prt(self, p: bytes) -> Reply:
        if len(p) in (0, 1):
            if p and p[0] != UART1:
                return self._nak(CLS_CFG, CFG_PRT)
            return self._answer(CFG_PRT, self._prt_payload())
        port, _r, _tx, _mode, baud, in_mask, out_mask, _flags, _r2 = _PRT.unpack(p)
        if port != UART1:
            return self._ack(CLS_CFG, CFG_PRT)  # other ports are not modelled
        if baud not in BAUDS:
            return self._nak(CLS_CFG, CFG_PRT)
        self._set_masks(in_mask, out_mask)
        return self._baud_reply(self._ack_frames(CFG_PRT), True, baud)

    def _prt_payload(self) -> bytes:
        in_mask = out_mask = 0
        for proto, bit in _PROTO_BITS.items():
            in_mask |= bit if self.get(f"CFG_UART1INPROT_{proto}") else 0
            out_mask |= bit if self.get(f"CFG_UART1OUTPROT_{proto}") else 0
        return _PRT.pack(UART1, 0, 0, _UART_8N1, self.baud, in_mask, out_mask, 0, 0)

    def _set_masks(self, in_mask: int, out_mask: int) -> None:
        for proto, bit in _PROTO_BITS.items():
            self.values[KEY[f"CFG_UART1INPROT_{proto}"]] = int(bool(in_mask & bit))
            self.values[KEY[f"CFG_UART1OUTPROT_{proto}"]] = int(bool(out_mask & bit))

    def _msg(self, p: bytes) -> Reply:
        if len(p) == 2:
            return self._answer(CFG_MSG, p + bytes(self.rates.get((p[0], p[1]), [0] * PORTS)))
        if len(p) == 3:  # one rate, for the port the message arrived on
            self.set_rate((p[0], p[1]), UART1, p[2])
        elif len(p) == 8:
            for port in range(PORTS):
                self.set_rate((p[0], p[1]), port, p[2 + port])
        else:
            return self._nak(CLS_CFG, CFG_MSG)
        return self._ack(CLS_CFG, CFG_MSG)

    def _rate(self, p: bytes) -> Reply:
        if not p:
            body = struct.pack(
                "<HHH",
                self.get("CFG_RATE_MEAS"),
                self.get("CFG_RATE_NAV"),
                self.get("CFG_RATE_TIMEREF"),
            )
            return self._answer(CFG_RATE, body)
        meas, nav, ref = struct.unpack("<HHH", p)
        if meas < MIN_MEAS_MS or nav < 1 or ref > 4:
            return self._nak(CLS_CFG, CFG_RATE)
        for name, value in (
            ("CFG_RATE_MEAS", meas),
            ("CFG_RATE_NAV", nav),
            ("CFG_RATE_TIMEREF", ref),
        ):
            self.values[KEY[name]] = value
        return self._ack(CLS_CFG, CFG_RATE)

    def _nav5(self, p: bytes) -> Reply:
        if not p:
            fields = {f: self.get(k) for _b, f, k in _NAV5_FIELDS} | {
                "drLimit": self.dr_limit,
                "reserved": 0,
            }
            return self._answer(CFG_NAV5, _NAV5.pack(0xFFFF, *(fields[f] for f in _NAV5_ORDER)))
        mask, *vals = _NAV5.unpack(p)
        fields = dict(zip(_NAV5_ORDER, vals, strict=True))
        if mask & 1 and fields["dynModel"] not in DYN_MODELS:
            return self._nak(CLS_CFG, CFG_NAV5)
        for bit, name, key in _NAV5_FIELDS:
            if mask & (1 << bit):
                self.values[KEY[key]] = fields[name]
        if mask & (1 << 3):
            self.dr_limit = fields["drLimit"]
        return self._ack(CLS_CFG, CFG_NAV5)

    def _sbas(self, p: bytes) -> Reply:
        if not p:
            mode = (self.get("CFG_SIGNAL_SBAS_ENA") & 1) | (
                self.get("CFG_SBAS_USE_TESTMODE") & 1
            ) << 1
            usage = (
                (self.get("CFG_SBAS_USE_RANGING") & 1)
                | (self.get("CFG_SBAS_USE_DIFFCORR") & 1) << 1
                | (self.get("CFG_SBAS_USE_INTEGRITY") & 1) << 2
            )
            mask = self.get("CFG_SBAS_PRNSCANMASK")
            return self._answer(
                CFG_SBAS,
                _SBAS.pack(mode, usage, self.max_sbas, (mask >> 32) & 0x7F, mask & 0xFFFFFFFF),
            )
        mode, usage, max_sbas, scan2, scan1 = _SBAS.unpack(p)
        v = self.values
        v[KEY["CFG_SIGNAL_SBAS_ENA"]] = mode & 1
        v[KEY["CFG_SBAS_USE_TESTMODE"]] = (mode >> 1) & 1
        v[KEY["CFG_SBAS_USE_RANGING"]] = usage & 1
        v[KEY["CFG_SBAS_USE_DIFFCORR"]] = (usage >> 1) & 1
        v[KEY["CFG_SBAS_USE_INTEGRITY"]] = (usage >> 2) & 1
        v[KEY["CFG_SBAS_PRNSCANMASK"]] = scan1 | (scan2 & 0x7F) << 32
        self.max_sbas = max_sbas
        return self._ack(CLS_CFG, CFG_SBAS)

    def _gnss(self, p: bytes) -> Reply:
        if not p:
            body = struct.pack("<BBBB", 0, 32, 32, len(self.gnss))
            body += b"".join(
                struct.pack("<BBBBI", g, res, mx, 0, flags) for g, res, mx, flags in self.gnss
            )
            return self._answer(CFG_GNSS, body)
        _ver, _hw, _use, n = struct.unpack_from("<BBBB", p)
        if len(p) != 4 + 8 * n:
            return self._nak(CLS_CFG, CFG_GNSS)
        for i in range(n):
            g, res, mx, _r, flags = struct.unpack_from("<BBBBI", p, 4 + 8 * i)
            for block in self.gnss:
                if block[0] == g:
                    block[1:] = [res, mx, flags]
        return self._ack(CLS_CFG, CFG_GNSS)

    def _pms(self, p: bytes) -> Reply:
        if not p:
            return self._answer(CFG_PMS, _PMS.pack(0, *self.pms))
        _ver, value, period, on_time = _PMS.unpack(p)
        self.pms = (value, period, on_time)
        self.values[KEY["CFG_PM_OPERATEMODE"]] = 0 if value == 0 else 1
        return self._ack(CLS_CFG, CFG_PMS)

    # -- the configuration-key interface ------------------------------------------------
    def _valset(self, p: bytes) -> Reply:
        if len(p) < 4:
            return self._nak(CLS_CFG, CFG_VALSET)
        layers, pairs, i = p[1], [], 4
        while i < len(p):
            if i + 4 > len(p):
                return self._nak(CLS_CFG, CFG_VALSET)
            (key,) = struct.unpack_from("<I", p, i)
            size = key_size(key)
            if not size or i + 4 + size > len(p) or not self.model.knows_key(key):
                return self._nak(CLS_CFG, CFG_VALSET)  # one bad key: nothing is applied
            pairs.append((key, _decode(key, p[i + 4 : i + 4 + size])))
            i += 4 + size
        new = dict(pairs)
        for key, value in new.items():
            if key == KEY["CFG_UART1_BAUDRATE"] and value not in BAUDS:
                return self._nak(CLS_CFG, CFG_VALSET)
            if key == KEY["CFG_RATE_MEAS"] and value < MIN_MEAS_MS:
                return self._nak(CLS_CFG, CFG_VALSET)
            if key == KEY["CFG_NAVSPG_DYNMODEL"] and value not in DYN_MODELS:
                return self._nak(CLS_CFG, CFG_VALSET)
        if not layers & 0x01:  # BBR / flash only: takes effect after a restart
            return self._ack(CLS_CFG, CFG_VALSET)
        baud = new.pop(KEY["CFG_UART1_BAUDRATE"], None)
        for key, value in new.items():
            msg = MSGOUT.get(key)
            if msg is not None:
                self.set_rate((msg[0], msg[1]), msg[2], value)
            else:
                self.values[key] = value
        return self._baud_reply(self._ack_frames(CFG_VALSET), True, baud)

    def _valget(self, p: bytes) -> Reply:
        if len(p) < 4 or (len(p) - 4) % 4:
            return self._nak(CLS_CFG, CFG_VALGET)
        keys = struct.unpack_from(f"<{(len(p) - 4) // 4}I", p, 4)
        if (
            not keys
            or len(keys) > MAX_VALGET_KEYS
            or not all(self.model.knows_key(k) for k in keys)
        ):
            return self._nak(CLS_CFG, CFG_VALGET)
        body = bytearray(struct.pack("<BBH", 1, p[1], struct.unpack_from("<H", p, 2)[0]))
        for key in keys:
            body += struct.pack("<I", key) + _encode(key, self._value(key))
        return self._answer(CFG_VALGET, bytes(body))

    def _value(self, key: int) -> int:
        msg = MSGOUT.get(key)
        if msg is not None:
            return self.rate((msg[0], msg[1]), msg[2])
        return self.values.get(key, 0)

    # -- answers ---------------------------------------------------------------------------
    def _answer(self, mid: int, body: bytes) -> Reply:
        return Reply((frame(CLS_CFG, mid, body), *self._ack_frames(mid)), True)

    @staticmethod
    def _ack_frames(mid: int) -> tuple[bytes]:
        return (frame(CLS_ACK, 0x01, bytes((CLS_CFG, mid))),)

    @staticmethod
    def _ack(cls: int, mid: int) -> Reply:
        return Reply((frame(CLS_ACK, 0x01, bytes((cls, mid))),), True)

    @staticmethod
    def _nak(cls: int, mid: int) -> Reply:
        return Reply((frame(CLS_ACK, 0x00, bytes((cls, mid))),), False)

    def _baud_reply(self, frames: tuple[bytes, ...], ack: bool | None, baud: int | None) -> Reply:
        """Frames that leave at the current baud; the new one is stored now and applies
        once they have gone (the caller decides when that is)."""
        if baud is None or baud == self.baud:
            return Reply(frames, ack)
        self.values[KEY["CFG_UART1_BAUDRATE"]] = baud
        return Reply(frames, ack, baud)


def _decode(key: int, raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=key in _SIGNED)


def _encode(key: int, value: int) -> bytes:
    size = key_size(key)
    signed = key in _SIGNED
    lo, hi = (
        (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1)
        if signed
        else (0, (1 << (8 * size)) - 1)
    )
    return max(lo, min(hi, value)).to_bytes(size, "little", signed=signed)


UBX_MSGIDS_BY_NMEA = {
    name: (k[0], k[1]) for k, name in UBX_MSGIDS.items() if len(k) == 2 and k[0] == CLS_NMEA
}

_HANDLERS = {
    CFG_PRT: UbloxConfig._prt,
    CFG_MSG: UbloxConfig._msg,
    CFG_RATE: UbloxConfig._rate,
    CFG_NAV5: UbloxConfig._nav5,
    CFG_SBAS: UbloxConfig._sbas,
    CFG_GNSS: UbloxConfig._gnss,
    CFG_PMS: UbloxConfig._pms,
    CFG_VALSET: UbloxConfig._valset,
    CFG_VALGET: UbloxConfig._valget,
}

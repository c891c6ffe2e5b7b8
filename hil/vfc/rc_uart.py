"""The virtual board's RC input driver: bytes from the RC UART -> RC reports.

`RcUartInput(protocol).feed(data, t_us)` parses what arrived and returns one `RcReport`
per thing the flight software should hear about:

CRSF
    RC_CHANNELS_PACKED -> a report with the 16 channels in microseconds, `valid=True`.
    LINK_STATISTICS -> a report *without channels* (`channels_us == ()`, `valid=False`)
    carrying the new uplink LQ and RSSI. LQ/RSSI are sent as their own report rather than
    waiting for the next channel frame because while a jammer eats RC frames the link
    statistics are exactly what keeps arriving (ArduPilot updates its RSSI/LQ from them on
    their own); a consumer tells the two kinds apart by `channels_us` being empty
    (`RcReport.link_stats_only`). Every channel report also carries the latest LQ/RSSI.
    Other frame types are ignored. CRSF has no failsafe flag: the FC's failsafe is the
    absence of channel frames for its timeout.
SBUS
    A frame with the failsafe flag -> a report with the receiver's failsafe channels and
    `valid=False` (ArduPilot treats SBUS failsafe as no RC). A frame with only the
    frame-lost flag -> no report (ArduPilot drops it and keeps the last sticks). Any other
    frame -> `valid=True`. SBUS carries no LQ/RSSI: those stay None. Frames are found by
    the idle gap too: a chunk fed more than `sbus_idle_gap_us` after the previous one
    starts after a quiet line, so partial bytes left over are dropped (FC drivers reset a
    frame on a gap of about 2 ms); `None` turns this off.

Garbage, truncated frames and bad CRCs are skipped (counted in `discarded`); `feed`
never raises on any input bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hil.codecs import crsf, sbus


@dataclass(frozen=True)
class RcReport:
    """What the RC driver hands the flight software."""

    channels_us: tuple[int, ...]
    valid: bool
    """Channels are live sticks. False: receiver failsafe (SBUS) or link statistics only."""
    lq: int | None
    """Uplink link quality in percent (CRSF LINK_STATISTICS), None until one arrived."""
    rssi_dbm: int | None
    """Uplink RSSI in dBm (the better antenna), None until one arrived."""

    @property
    def link_stats_only(self) -> bool:
        """A LINK_STATISTICS update with no channels."""
        return not self.channels_us


def _round_us(us: float) -> int:
    return int(math.floor(us + 0.5))


class RcUartInput:
    """The FC side of the RC UART; see the module docstring."""

    def __init__(
        self, protocol: Literal["crsf", "sbus"] = "crsf", *, sbus_idle_gap_us: int | None = 2000
    ) -> None:
        if protocol not in ("crsf", "sbus"):
            raise ValueError(f"protocol must be 'crsf' or 'sbus', got {protocol!r}")
        self.protocol = protocol
        self.sbus_idle_gap_us = sbus_idle_gap_us
        self._crsf = crsf.CrsfParser()
        self._sbus = sbus.SbusParser()
        self._last_t_us: int | None = None
        self.lq: int | None = None
        self.rssi_dbm: int | None = None
        self.snr_db: int | None = None
        self.stats_t_us: int | None = None
        """When the last LINK_STATISTICS arrived."""
        self.frames = 0
        """Channel frames accepted (valid or failsafe)."""
        self.lost_frames = 0
        """SBUS frames dropped for their frame-lost flag."""
        self.failsafe_frames = 0
        """SBUS frames with the failsafe flag."""

    @property
    def discarded(self) -> int:
        """Bytes thrown away as noise by the protocol's parser."""
        return self._crsf.discarded if self.protocol == "crsf" else self._sbus.discarded

    def feed(self, data: bytes, t_us: int) -> list[RcReport]:
        """Bytes that arrived at `t_us` -> the reports they complete."""
        data = bytes(data)
        gap = (
            self._last_t_us is not None
            and self.sbus_idle_gap_us is not None
            and t_us - self._last_t_us > self.sbus_idle_gap_us
        )
        self._last_t_us = t_us
        if self.protocol == "crsf":
            return self._feed_crsf(data, t_us)
        return self._feed_sbus(data, gap)

    def _feed_crsf(self, data: bytes, t_us: int) -> list[RcReport]:
        out: list[RcReport] = []
        for msg in self._crsf.feed(data):
            if isinstance(msg, crsf.RcChannelsPacked):
                self.frames += 1
                out.append(RcReport(msg.to_us(), True, self.lq, self.rssi_dbm))
            elif isinstance(msg, crsf.LinkStatistics):
                self.lq = msg.uplink_link_quality
                self.rssi_dbm = max(msg.uplink_rssi_ant1_dbm, msg.uplink_rssi_ant2_dbm)
                self.snr_db = msg.uplink_snr_db
                self.stats_t_us = t_us
                out.append(RcReport((), False, self.lq, self.rssi_dbm))
        return out

    def _feed_sbus(self, data: bytes, gap: bool) -> list[RcReport]:
        out: list[RcReport] = []
        for frame in self._sbus.feed(data, gap_before=gap):
            channels = tuple(_round_us(u) for u in frame.to_us())
            if frame.failsafe:
                self.failsafe_frames += 1
                self.frames += 1
                out.append(RcReport(channels, False, None, None))
            elif frame.frame_lost:
                self.lost_frames += 1
            else:
                self.frames += 1
                out.append(RcReport(channels, True, None, None))
        return out

"""What a scenario run records for its report directory, and writes there afterwards.

The runner hands a `ScenarioCapture` the board session once the links are open
(`attach`), and again after the closed loop opened the receiver UARTs; from then on
every MAVLink message the board sends is kept for the .tlog (a list append in the
reading thread) and every serial link's bytes go to a `RawLog` through the link's
``raw_log`` tap. `detach` ends the recording; `write` puts the files in place:

    <dir>/flight.tlog          MAVLink boards: every frame received, arrival-stamped
    <dir>/links/<name>.log     raw bytes of each serial link (mavlink, gps, rc, msp)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hil.report.rawlog import RawLog
from hil.report.tlog import ClockMap, write_tlog


def safe_name(name: str) -> str:
    """A scenario name as a directory name (letters, digits, '.', '_' and '-')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "scenario"


class ScenarioCapture:
    """Recording of one scenario run into `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.clock = ClockMap()
        self.messages: list[Any] = []
        self.raw_logs: dict[str, RawLog] = {}
        self.files: dict[str, Path] = {}
        self._tapped: list[tuple[Any, RawLog]] = []
        self._hooked: Any = None
        self._written = False

    # -- recording ---------------------------------------------------------------------
    def on_message(self, msg: Any) -> None:
        """Autopilot hook: keep the message (its frame and arrival stamp go to the tlog)."""
        self.messages.append(msg)

    def attach(self, session: Any) -> None:
        """Start recording what the session's links carry; links already tapped are kept."""
        ap = getattr(session, "autopilot", None)
        if getattr(ap, "conn", None) is not None and self._hooked is None:
            ap.add_hook(self.on_message)  # a MAVLink adapter: its messages go to the tlog
            self._hooked = ap
        for name, link in session.links().items():
            self.tap(str(name), link)

    def tap(self, name: str, link: Any) -> RawLog | None:
        """Log `link`'s bytes as links/<name>.log (a link without a tap is left alone)."""
        if not hasattr(link, "raw_log"):
            return None
        for tapped, log in self._tapped:
            if tapped is link:
                return log
        log = self.raw_logs.get(name)
        if log is None:
            log = RawLog(self.dir / "links" / f"{safe_name(name)}.log", name, str(getattr(link, "url", "")))
            self.raw_logs[name] = log
        link.raw_log = log
        self._tapped.append((link, log))
        return log

    def detach(self) -> None:
        """Stop recording (idempotent)."""
        if self._hooked is not None:
            self._hooked.remove_hook(self.on_message)
            self._hooked = None
        for link, log in self._tapped:
            if getattr(link, "raw_log", None) is log:
                link.raw_log = None
        self._tapped.clear()

    # -- writing -----------------------------------------------------------------------
    def write(self) -> dict[str, Path]:
        """Write the tlog and raw logs; returns {what: path} (also kept in `files`)."""
        self.detach()
        if self._written:
            return self.files
        self._written = True
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.messages:
            path = self.dir / "flight.tlog"
            write_tlog(path, self.messages, self.clock)
            self.files["tlog"] = path
            self.messages = []
        for name, log in self.raw_logs.items():
            self.files[f"link {name}"] = log.close()
        return self.files

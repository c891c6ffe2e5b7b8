"""The harness's end of a labgrid place: a `PlaceAgent` process (hil.labgrid.agent)
holds the place and answers in JSON lines; this module starts it, waits for it, and
turns its answers into URLs and errors of the harness.

Nothing here imports labgrid, so hil loads without it; the agent says in one line that
labgrid is missing when a rig names a place.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import BoardNotAnswering, ConfigError, HilError
from hil.locks import BoardBusy

_PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class PlaceError(BoardNotAnswering):
    """The coordinator or the place's exporter failed us: the board cannot be reached
    (exit code 3, like a board that is missing)."""


@dataclass(frozen=True)
class Resource:
    """One resource of an acquired place, as the coordinator describes it."""

    name: str
    cls: str
    avail: bool
    params: dict[str, Any]

    @property
    def serial_url(self) -> str:
        """The pyserial URL of a NetworkSerialPort (`rfc2217://host:port`, or
        `socket://` for one exported raw)."""
        host = self.params.get("host")
        port = self.params.get("port")
        if self.cls != "NetworkSerialPort":
            raise PlaceError(f"resource {self.name} is a {self.cls}, not a NetworkSerialPort")
        if not host or not port or not self.avail:
            raise PlaceError(f"serial port {self.name} is not available now (its exporter gone, or ser2net stopped)")
        scheme = "socket" if self.params.get("protocol") == "raw" else "rfc2217"
        return f"{scheme}://{_host(str(host))}:{int(port)}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class PlaceAgent:
    """`PlaceAgent(coordinator=..., place=...).acquire(wait)` holds a place until
    `release()`, or until this process ends (the agent sees its stdin close)."""

    def __init__(
        self,
        *,
        coordinator: str | None = None,
        place: str | None = None,
        tags: dict[str, str] | None = None,
        token: str | None = None,
        label: str = "",
    ) -> None:
        self.coordinator = coordinator
        self.place = place
        self.tags = dict(tags or {})
        self.token = token
        self.label = label or (place or ",".join(f"{k}={v}" for k, v in sorted(self.tags.items())) or "a place")
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.acquired: str | None = None
        self.user: str = ""
        self.resources: dict[str, Resource] = {}
        self.waited_for: dict[str, str] = {}

    @property
    def held(self) -> bool:
        return self.acquired is not None and self._proc is not None and self._proc.poll() is None

    def command(self, wait: float) -> list[str]:
        argv = [sys.executable, "-m", "hil.labgrid.agent", "--wait", f"{max(0.0, wait):g}"]
        if self.coordinator:
            argv += ["--coordinator", self.coordinator]
        if self.place:
            argv += ["--place", self.place]
        for key, value in sorted(self.tags.items()):
            argv += ["--tag", f"{key}={value}"]
        if self.token:
            argv += ["--token", self.token]
        return argv

    def acquire(self, wait: float = 60.0) -> PlaceAgent:
        """Reserve and acquire the place, waiting up to `wait` s for it to come free.
        BoardBusy names the holders when it does not; PlaceError when the coordinator
        cannot be reached; ConfigError when labgrid is missing or no place matches."""
        if self.held:
            return self
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        try:
            proc = subprocess.Popen(
                self.command(wait),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                # Its own session: a Ctrl-C to our process group reaches us, and we release.
                start_new_session=True,
            )
        except OSError as exc:
            raise PlaceError(f"cannot start the labgrid agent for {self.label}: {exc}") from None
        self._proc = proc
        # Not given to the child guard (hil.children): the agent ends itself when our end of
        # its stdin closes, however we end, and it must not be cut short while it releases
        # (the coordinator waits for the exporter to stop ser2net, about a second per port;
        # the guard's SIGKILL comes 3 s after its SIGTERM). Its own bound: 30 s to release.
        # The coordinator's connect timeout, the wait for the place, the exporter's start.
        deadline = time.monotonic() + wait + 40.0
        while True:
            message = self._next(deadline, f"the place {self.label} to be acquired")
            event = message.get("event")
            if event == "waiting":
                self.waited_for = {str(k): str(v) for k, v in dict(message.get("holders") or {}).items()}
                continue
            if event == "acquired":
                self.acquired = str(message["place"])
                self.user = str(message.get("user", ""))
                self.token = str(message.get("token") or "") or self.token
                self._take_resources(message)
                return self
            if event == "error":
                self._reap()
                raise _error(message, self.label)

    def _take_resources(self, message: dict[str, Any]) -> None:
        found = {}
        for item in message.get("resources") or []:
            resource = Resource(str(item["name"]), str(item["cls"]), bool(item.get("avail")), dict(item.get("params") or {}))
            found[resource.name] = resource
        self.resources = found

    def refresh(self, timeout: float = 10.0) -> dict[str, Resource]:
        """Ask the coordinator again (a port may move when the exporter restarts it)."""
        self._send("resources")
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, f"the resources of place {self.acquired}")
            if message.get("event") == "resources":
                self._take_resources(message)
                return self.resources
            if message.get("event") == "error":
                raise _error(message, self.label)

    def serial_url(self, name: str) -> str:
        resource = self.resources.get(name)
        if resource is None:
            have = ", ".join(f"{r.name} ({r.cls})" for r in self.resources.values()) or "none"
            raise ConfigError(f"place {self.acquired} has no resource named {name!r}; it has: {have}")
        return resource.serial_url

    def power(self, action: str, timeout: float = 30.0) -> None:
        """"on", "off" or "cycle" through labgrid's driver for the place's power resource."""
        self._command(f"power {action}", f"power {action} on place {self.acquired}", timeout)

    def dfu_download(self, alt: int, path: Path | str, timeout: float = 300.0) -> None:
        """Write the file at `path` (a DfuSe .dfu: its addresses are inside) to the place's
        DFU device with labgrid's DFUDriver: dfu-util on the exporter host, through SSH."""
        text = str(path)
        if "\n" in text:
            raise ConfigError(f"a file name with a line break cannot be handed to the labgrid agent: {text!r}")
        self._command(f"dfu download {int(alt)} {text}", f"dfu-util on place {self.acquired}'s exporter", timeout)

    def dfu_detach(self, alt: int, timeout: float = 60.0) -> None:
        """labgrid's DFUDriver.detach: `dfu-util --detach` on the exporter host."""
        self._command(f"dfu detach {int(alt)}", f"dfu-util --detach on place {self.acquired}'s exporter", timeout)

    def resources_of(self, cls: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.cls == cls]

    def describe_resources(self) -> str:
        return ", ".join(f"{r.name} ({r.cls})" for r in self.resources.values()) or "none"

    def _command(self, line: str, what: str, timeout: float) -> None:
        self._send(line)
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, what)
            if message.get("event") == "done":
                if not message.get("ok"):
                    raise PlaceError(f"place {self.acquired}: {message.get('message')}")
                return
            if message.get("event") == "error":
                raise _error(message, self.label)

    def release(self, timeout: float = 40.0) -> None:
        """Let the place go (the agent releases it and cancels the reservation); bounded."""
        proc, self._proc = self._proc, None
        self.acquired = None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write(b"release\n")
                proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # it releases on SIGTERM too
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    # -- the pipe --------------------------------------------------------------------------
    def _send(self, line: str) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            raise PlaceError(f"the labgrid agent holding {self.label} is gone (place no longer held)")
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise PlaceError(f"the labgrid agent holding {self.label} stopped listening: {exc}") from None

    def _next(self, deadline: float, what: str) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._reap()
                raise PlaceError(f"waited too long for {what} (the labgrid agent said nothing)")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = proc.wait(5.0)
                raise PlaceError(f"the labgrid agent for {self.label} exited (status {code}) while waiting for {what}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            return {"event": "noise", "text": line.decode(errors="replace")}
        return message if isinstance(message, dict) else {"event": "noise"}

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(15.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)


def _error(message: dict[str, Any], label: str) -> HilError:
    kind = message.get("kind")
    text = f"labgrid place {label}: {message.get('message')}"
    if kind == "busy":
        return BoardBusy(text)
    if kind == "config":
        return ConfigError(text)
    return PlaceError(text)


__all__ = ["PlaceAgent", "PlaceError", "Resource"]

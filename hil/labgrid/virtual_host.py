"""A bench host of virtual boards for labgrid: run the virtual boards of a rig here and
export their ports, so another host's harness reaches them through a place as it would
reach real boards (CI does it on loopback: tests/test_labgrid_remote.py).

    python -m hil.labgrid.virtual_host --rig fixtures/virtual.toml \\
        --exporter-config /tmp/exporter.yaml
    labgrid-exporter --coordinator HOST:PORT /tmp/exporter.yaml

A virtual board opens a new pty at every boot, and labgrid's exporter hands ser2net one
fixed path (which must lie under /dev/, exporter.py SerialPortExport._start). So each
port gets a stable name, as udev's /dev/serial/by-id gives a real board: a symlink in
/dev/shm/hil-labgrid-UID/SERIAL/ kept pointing at the board's current pty (control) and
at its receiver UARTs (gps, rc). ser2net opens the path at each client connection, so a
client that reconnects after a reboot reaches the new pty.

Each board can also get a power switch (`power=True`): a small HTTP service on
127.0.0.1 that speaks what labgrid's `simplerest` power backend sends
(labgrid/driver/power/simplerest.py: GET the host URL with {value} 0 or 1 to switch,
with {value} empty to read), exported as a `NetworkPowerPort`. Switching it off
really stops the virtual board and removes its port links (the port is gone, as a real
board's USB port is); on boots it again. The harness reaches it only through labgrid's
NetworkPowerDriver, which a `power = true` labgrid board uses.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hil.errors import HilError
from hil.rig import Board, Rig

#: How often the links follow the boards' ports (a reboot moves the control port).
FOLLOW_S = 0.02


def default_links_dir() -> Path:
    return Path("/dev/shm") / f"hil-labgrid-{os.getuid()}"


def replace_link(link: Path, target: str) -> None:
    """Point `link` at `target` atomically (a reader sees the old or the new, never none)."""
    try:
        if os.readlink(link) == target:
            return
    except OSError:
        pass
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)


class VirtualHost:
    """The virtual boards of `rig`, running, with stable links to their ports."""

    def __init__(self, rig: Rig, links_dir: Path | None = None) -> None:
        self.rig = rig
        self.links_dir = Path(links_dir) if links_dir is not None else default_links_dir()
        if not str(self.links_dir).startswith("/dev/"):
            raise HilError(f"links directory {self.links_dir}: labgrid's exporter serves only paths under /dev/")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Held while a board is switched, so the follower never relinks a board going off.
        self._switching = threading.Lock()
        #: Boards switched off through the power service (their links are removed).
        self._off: set[str] = set()
        #: Every switch the power service was asked for, in order: (board, "on"|"off").
        self.switched: list[tuple[str, str]] = []
        self._power_server: ThreadingHTTPServer | None = None
        self.boards: list[Board] = [b for b in rig.boards if b.type_name == "virtual"]
        if not self.boards:
            raise HilError(f"{rig.path}: no virtual boards to export")

    def links(self, board: Board) -> dict[str, Path]:
        """Resource name -> stable path: "control", and each receiver role."""
        base = self.links_dir / (board.usb_serial or board.name)
        out = {"control": base / "control"}
        for role in sorted(board.uart_protocols):
            out[role] = base / role
        return out

    def start(self, timeout: float = 20.0) -> VirtualHost:
        for board in self.boards:
            board.lifecycle.reach(_app(), "exported through labgrid")
            for path in self.links(board).values():
                path.parent.mkdir(parents=True, exist_ok=True)
            self._follow(board, timeout)
        self._thread = threading.Thread(target=self._run, name="hil-virtual-host", daemon=True)
        self._thread.start()
        return self

    def _follow(self, board: Board, timeout: float) -> None:
        links = self.links(board)
        replace_link(links["control"], board.url(timeout=timeout))
        uarts = board.uart_paths()
        for role, path in links.items():
            if role != "control" and role in uarts:
                replace_link(path, uarts[role])

    def _run(self) -> None:
        while not self._stop.wait(FOLLOW_S):
            for board in self.boards:
                with self._switching:
                    if board.name in self._off:
                        continue
                    try:
                        self._follow(board, 0.0)
                    except Exception:  # between boots: the next round finds the new port
                        pass

    # -- power -----------------------------------------------------------------------------
    def power(self, name: str, on: bool, timeout: float = 20.0) -> None:
        """Switch board `name`: off stops it and removes its port links; on boots it and
        links its ports again (bounded by `timeout`)."""
        board = next((b for b in self.boards if b.name == name), None)
        if board is None:
            raise HilError(f"no virtual board {name!r} on this host")
        with self._switching:
            if on:
                self._off.discard(name)
                board.lifecycle.reach(_app(), "switched on through the power service")
                self._follow(board, timeout)
            else:
                self._off.add(name)
                board.lifecycle.reach(_off(), "switched off through the power service")
                for path in self.links(board).values():
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        pass
            self.switched.append((name, "on" if on else "off"))

    def is_on(self, name: str) -> bool:
        return name not in self._off

    def serve_power(self, port: int = 0) -> str:
        """Start the power service on 127.0.0.1 (`port` 0: any free one); returns its base
        URL. A board's switch is BASE/power/BOARD/{value} (labgrid's simplerest form)."""
        if self._power_server is None:
            server = ThreadingHTTPServer(("127.0.0.1", port), _power_handler(self))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name="hil-virtual-power", daemon=True).start()
            self._power_server = server
        host, bound = self._power_server.server_address[:2]
        return f"http://{host}:{bound}"

    def exporter_config(self, speed: int = 115200) -> str:
        """labgrid exporter YAML: one resource group per board (named after it), a
        RawSerialPort per port, and a NetworkPowerPort (simplerest) per board when the
        power service runs."""
        lines = []
        base = self.serve_power() if self._power_server is not None else None
        for board in self.boards:
            lines.append(f"{board.name}:")
            for name, path in self.links(board).items():
                lines += [f"  {name}:", "    cls: RawSerialPort", f"    port: {path}", f"    speed: {speed}"]
            if base is not None:
                lines += [
                    "  power:", "    cls: NetworkPowerPort", "    model: simplerest",
                    f"    host: '{base}/power/{board.name}/{{value}}'", "    index: 0",
                ]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self._stop.set()
        if self._power_server is not None:
            self._power_server.shutdown()
            self._power_server.server_close()
            self._power_server = None
        if self._thread is not None:
            self._thread.join(2.0)
        try:
            self.rig.stop()
        finally:
            for board in self.boards:
                for path in self.links(board).values():
                    try:
                        path.unlink()
                    except OSError:
                        pass
                try:
                    path.parent.rmdir()
                except OSError:
                    pass
            try:
                self.links_dir.rmdir()  # when no other board's links are left in it
            except OSError:
                pass

    def __enter__(self) -> VirtualHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _app():
    from hil.lifecycle import BoardState

    return BoardState.APP


def _off():
    from hil.lifecycle import BoardState

    return BoardState.OFF


def _power_handler(host: VirtualHost) -> type[BaseHTTPRequestHandler]:
    class PowerHandler(BaseHTTPRequestHandler):
        """GET /power/BOARD/1 or /0 switches, GET /power/BOARD answers 1 or 0."""

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) not in (2, 3) or parts[0] != "power":
                self._answer(404, "not a power switch")
                return
            name = parts[1]
            try:
                if len(parts) == 3:
                    if parts[2] not in ("0", "1"):
                        self._answer(400, "value must be 0 or 1")
                        return
                    host.power(name, parts[2] == "1")
                    self._answer(200, parts[2])
                else:
                    known = any(b.name == name for b in host.boards)
                    self._answer(200 if known else 404, ("1" if host.is_on(name) else "0") if known else "no such board")
            except Exception as exc:  # the switch failed: labgrid's backend raises on 5xx
                self._answer(500, f"{type(exc).__name__}: {exc}")

        def _answer(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return None

    return PowerHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.labgrid.virtual_host")
    parser.add_argument("--rig", required=True, help="a rig file of virtual boards")
    parser.add_argument("--state-dir", default=None, help="where the boards keep flash and parameters")
    parser.add_argument("--links-dir", default=None, help="stable port links (under /dev/; default /dev/shm/hil-labgrid-UID)")
    parser.add_argument("--exporter-config", default=None, help="write labgrid exporter YAML here")
    parser.add_argument(
        "--power-port", type=int, default=None,
        help="serve a power switch per board on 127.0.0.1:PORT (0: any) for labgrid's simplerest backend",
    )
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    host: VirtualHost | None = None
    try:
        rig = Rig.load(args.rig, work_dir=Path(args.state_dir) if args.state_dir else None)
        host = VirtualHost(rig, Path(args.links_dir) if args.links_dir else None)
        host.start()
        if args.power_port is not None:
            host.serve_power(args.power_port)
    except HilError as exc:
        print(f"hil.labgrid.virtual_host: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except OSError as exc:  # the power service's port taken
        print(f"hil.labgrid.virtual_host: power service on 127.0.0.1:{args.power_port}: {exc.strerror or exc}", file=sys.stderr)
        if host is not None:
            host.stop()
        return 2
    try:
        config = host.exporter_config()
        if args.exporter_config:
            Path(args.exporter_config).write_text(config)
        else:
            sys.stdout.write(config)
        print("ready", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
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
                try:
                    self._follow(board, 0.0)
                except Exception:  # between boots: the next round finds the new port
                    pass

    def exporter_config(self, speed: int = 115200) -> str:
        """labgrid exporter YAML: one resource group per board (named after it), a
        RawSerialPort per port."""
        lines = []
        for board in self.boards:
            lines.append(f"{board.name}:")
            for name, path in self.links(board).items():
                lines += [f"  {name}:", "    cls: RawSerialPort", f"    port: {path}", f"    speed: {speed}"]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self._stop.set()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.labgrid.virtual_host")
    parser.add_argument("--rig", required=True, help="a rig file of virtual boards")
    parser.add_argument("--state-dir", default=None, help="where the boards keep flash and parameters")
    parser.add_argument("--links-dir", default=None, help="stable port links (under /dev/; default /dev/shm/hil-labgrid-UID)")
    parser.add_argument("--exporter-config", default=None, help="write labgrid exporter YAML here")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        rig = Rig.load(args.rig, work_dir=Path(args.state_dir) if args.state_dir else None)
        host = VirtualHost(rig, Path(args.links_dir) if args.links_dir else None)
        host.start()
    except HilError as exc:
        print(f"hil.labgrid.virtual_host: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
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

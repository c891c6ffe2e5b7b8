"""Run one virtual board: `python -m hil.vfc --usb-serial SN --storage FILE --registry DIR`.

The board announces its pty in the registry (and again after every reboot, as its port
path changes), serves MAVLink until SIGTERM or SIGINT, then removes its entry and
exits 0. It logs sparsely to stderr, line-buffered, so a harness can keep the log.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from hil.links import registry
from hil.mavlink.dialect import VFC_BOARD_ID, VFC_USB_PID, VFC_USB_VID


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hil.vfc", description=__doc__)
    parser.add_argument("--usb-serial", required=True, help="USB serial number the board reports")
    parser.add_argument(
        "--storage", required=True, type=Path, help="parameter storage file (its flash)"
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry directory (default: $HIL_REGISTRY or a per-user temp dir)",
    )
    parser.add_argument(
        "--board-id", type=int, default=VFC_BOARD_ID, help="board id (APJ board_id)"
    )
    parser.add_argument("--firmware-version", default="1.0.0", help="firmware version X.Y.Z")
    parser.add_argument("--name", default="HILVFC", help="board name shown in the boot banner")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve one board until signalled; return the exit code."""
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    args = _parser().parse_args(argv)
    serial: str = args.usb_serial
    directory = args.registry if args.registry is not None else registry.default_registry_dir()
    pid = os.getpid()

    def log(text: str) -> None:
        print(f"vfc {serial} [{pid}]: {text}", file=sys.stderr)

    other = registry.find_entry(directory, serial)
    if other is not None and other.get("process_id") != pid:
        log(f"USB serial {serial} is already served by pid {other.get('process_id')}; exiting")
        return 2

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def announce(port: str) -> None:
        entry = {
            "usb_serial": serial,
            "port": port,
            "process_id": pid,
            "state": "app",
            "usb_vid": VFC_USB_VID,
            "usb_pid": VFC_USB_PID,
            "board_id": args.board_id,
            "firmware_version": args.firmware_version,
            "name": args.name,
        }
        registry.write_entry(directory, entry)

    from hil.vfc.server import BoardIdentity, VfcServer

    identity = BoardIdentity(serial, args.board_id, args.firmware_version, args.name)
    server = None
    try:
        server = VfcServer(identity, args.storage, on_port=announce, log=log)
        server.run(lambda: stopping)
        log("stopping: " + server.timing_summary())
    finally:
        registry.remove_entry(directory, serial, process_id=pid)
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

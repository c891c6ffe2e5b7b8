"""The `hil` command: run the scenario suite, list the rig's boards."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hil.errors import ConfigError, HilError


def _cmd_run(args: argparse.Namespace) -> int:
    import pytest

    report = Path(args.report or f"hil-runs/{time.strftime('%Y%m%d-%H%M%S')}")
    report.mkdir(parents=True, exist_ok=True)
    targets = list(args.scenarios)
    if not targets:
        default = Path("scenarios")
        if not default.is_dir():
            print("hil run: no scenarios given and no scenarios/ directory here", file=sys.stderr)
            return 4
        targets = [str(default)]
    pytest_args = [
        *targets,
        "-p",
        "no:cacheprovider",
        f"--hil-report={report}",
        "-o",
        "junit_family=xunit1",
        "-q",
    ]
    if args.rig:
        pytest_args.append(f"--rig={args.rig}")
    if args.board:
        pytest_args.append(f"--board={args.board}")
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    code = int(pytest.main(pytest_args))
    print(f"report: {report}/ (junit.xml, summary.json)")
    return code


def _cmd_boards(args: argparse.Namespace) -> int:
    from hil.plugin import _resolve_rig_path
    from hil.rig import Rig
    from hil.session import BoardSession

    rig = Rig.load(_resolve_rig_path(args.rig))
    try:
        def identify(board) -> str:
            try:
                board.start()
                session = BoardSession(board, connect_timeout=args.timeout)
                autopilot = session.connect()
                try:
                    ident = autopilot.identify(args.timeout)
                finally:
                    session._close()
                return f"{ident.autopilot} {ident.firmware_version} (board {ident.board_id})"
            except HilError as exc:
                return f"unreachable: {exc}"

        rows = rig.statuses(identify)
    finally:
        rig.stop()
    print(f"rig {rig.name} ({rig.path})")
    header = f"{'name':12} {'type':8} {'state':9} {'usb serial':14} {'port':22} firmware"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.name:12} {row.type:8} {row.state:9} {row.usb_serial:14} {row.port:22} {row.firmware}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from hil import bench

    figures = bench.run_all(quick=args.quick)
    print(bench.to_json(figures) if args.json else bench.format_table(figures))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="hardware-in-the-loop tests for flight controllers")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run scenarios (through pytest) on a rig")
    run.add_argument("scenarios", nargs="*", help="scenario files or directories (default: scenarios/)")
    run.add_argument("--rig", help="rig file (default: fixtures/virtual.toml)")
    run.add_argument("--board", help="board of the rig (name or USB serial)")
    run.add_argument("--report", help="directory for JUnit XML and the report (default: hil-runs/<time>)")
    run.add_argument("-k", dest="keyword", help="only scenarios matching this pytest keyword expression")
    run.set_defaults(func=_cmd_run)

    boards = sub.add_parser("boards", help="list the rig's boards with state, port, USB serial, firmware")
    boards.add_argument("--rig", help="rig file (default: fixtures/virtual.toml)")
    boards.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each board")
    boards.set_defaults(func=_cmd_boards)

    bench = sub.add_parser("bench", help="measure what this host sustains (harness cost, lockstep speed)")
    bench.add_argument("--quick", action="store_true", help="shorter runs (a smoke test, wider spread)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of the table")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, HilError) as exc:
        print(f"hil {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

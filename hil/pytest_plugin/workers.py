"""Several boards at once: the plugin under pytest-xdist (`pytest -n N`, `hil run -n N`).

Each worker is a pytest session of its own: it claims the first board of the rig no one
else holds (`HilState.board`, `hil.locks.claim_first_free`) and flies the scenarios the
controller hands it. What the controller needs for the run's outcome comes back to it
through xdist's own channels:

- every flown scenario, with the report of its setup (when the flight happens): the
  report carries `hil_result`, the `ScenarioResult` pickled with its board's lockstep flag
  and firmware facts (`pack`). pytest serialises a report's extra attributes for xdist, and
  JUnit XML ignores them; a worker that dies later has still delivered what it flew;
- at the end of a worker, `workeroutput["hil"]`: the board it claimed and the boards it
  found unavailable (for the run's exit code), read in `pytest_testnodedown`.

The controller collects those (`pytest_runtest_logreport`), puts the results in the
order the workers collected the items (`pytest_xdist_node_collection_finished`), and then
writes summary.json and report.html and prints the results table exactly as a single
process does. JUnit XML needs nothing from us: pytest's junitxml plugin on the
controller writes the reports of every worker into one file, and does nothing on workers.

Progress lines are written by the worker that flies the scenario, to its standard error,
which xdist leaves joined to the controller's; they name the worker and the board.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import types
from typing import Any

import pytest

#: The report attribute a worker's scenario result travels in.
RESULT_ATTR = "hil_result"
#: The key of `config.workeroutput` the plugin's worker facts travel in.
OUTPUT_KEY = "hil"


def worker_id(config: pytest.Config) -> str | None:
    """The xdist worker this session is (gw0, gw1...), or None outside a worker."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("workerid") if isinstance(workerinput, dict) else None


def is_controller(config: pytest.Config) -> bool:
    """True in the xdist controller, which runs no test and merges the workers' results."""
    return config.pluginmanager.get_plugin("dsession") is not None


# -- one scenario's result, from a worker to the controller ---------------------------------
def _pickler(buffer: io.BytesIO) -> pickle.Pickler:
    # Scenarios hold read-only mappings (types.MappingProxyType), which pickle refuses:
    # they travel as dicts and come back read-only. Only this pickler is taught that.
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    table = copyreg.dispatch_table.copy()
    table[types.MappingProxyType] = lambda m: (read_only, (dict(m),))
    pickler.dispatch_table = table
    return pickler


def read_only(mapping: dict) -> types.MappingProxyType:
    """A read-only view of `mapping` (how a pickled MappingProxyType comes back)."""
    return types.MappingProxyType(mapping)


def pack(result: Any, lockstep: bool, board_info: dict[str, str]) -> bytes | None:
    """A flown scenario's result for the controller: the ScenarioResult itself (so the
    table, summary.json and report.html see what a single process sees), its board's
    lockstep flag and firmware facts. Should the result not pickle (something unforeseen
    in it), it goes without its timeline and loop periods, with a note saying so; None if
    even that fails (JUnit XML still has the scenario)."""
    import dataclasses

    record = {"result": result, "lockstep": bool(lockstep), "board_info": dict(board_info)}
    try:
        buffer = io.BytesIO()
        _pickler(buffer).dump(record)
        return buffer.getvalue()
    except Exception as exc:  # noqa: BLE001 - a report detail must not cost the run
        why = f"{type(exc).__name__}: {exc}"
    try:
        slim = dataclasses.replace(result, timeline=None, loop_periods_us={}, notes=[
            *result.notes, f"report: timeline and loop periods left on the worker ({why})"])
        buffer = io.BytesIO()
        _pickler(buffer).dump({**record, "result": slim})
        return buffer.getvalue()
    except Exception:  # noqa: BLE001
        return None


def unpack(data: bytes) -> dict[str, Any]:
    """What `pack` made, read back (by the controller, from its own workers only)."""
    return pickle.loads(data)  # noqa: S301 - bytes from this run's own worker processes


# -- the controller's side ------------------------------------------------------------------
class Merged:
    """What the controller gathers from its workers."""

    def __init__(self) -> None:
        #: nodeid -> the unpacked record of its flight (the last one, should one come twice).
        self.flown: dict[str, dict[str, Any]] = {}
        #: The item ids in the order the workers collected them.
        self.order: list[str] = []
        #: worker id -> the board it claimed.
        self.boards: dict[str, str] = {}

    def add(self, nodeid: str, data: bytes) -> dict[str, Any]:
        record = unpack(data)
        self.flown[nodeid] = record
        return record

    def results(self) -> list[Any]:
        """The flown results in collection order (what a single process would list)."""
        rank = {nodeid: i for i, nodeid in enumerate(self.order)}
        ids = sorted(self.flown, key=lambda n: (rank.get(n, len(rank)), n))
        return [self.flown[n]["result"] for n in ids]


_MERGED = pytest.StashKey[Merged]()


def merged(config: pytest.Config) -> Merged:
    """The controller's gathered results (made on first use)."""
    found = config.stash.get(_MERGED, None)
    if found is None:
        found = config.stash[_MERGED] = Merged()
    return found


def worker_boards(config: pytest.Config) -> dict[str, str]:
    """worker id -> the board it flew on, as the controller heard it ({} without workers)."""
    found = config.stash.get(_MERGED, None)
    return dict(found.boards) if found is not None else {}


def too_many_workers(
    config: pytest.Config, rig_path: Any, board: str | None, tags: dict[str, str] | None = None
) -> str | None:
    """On the controller: a warning when there are more workers than boards they can have
    (a worker claims a board when its first test needs one, and holds it to the end; one
    that finds every board held waits --lock-wait seconds, then its board tests ERROR).
    None when the workers fit, or the rig cannot be read (the workers will say why)."""
    import tomllib

    if not is_controller(config):
        return None
    count = len(getattr(config.option, "tx", None) or ())
    try:
        with open(rig_path, "rb") as f:
            boards = f.read()
        found = tomllib.loads(boards.decode("utf-8")).get("board")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if isinstance(found, list) and tags:
        found = [
            spec for spec in found
            if isinstance(spec, dict) and isinstance(spec.get("tags"), dict)
            and all(spec["tags"].get(k) == v for k, v in tags.items())
        ]
    usable = 1 if board else len(found) if isinstance(found, list) else 0
    if not usable or count <= usable:
        return None
    carrying = f" carrying {','.join(f'{k}={v}' for k, v in sorted(tags.items()))}" if tags else ""
    which = f"--board {board}" if board else f"{usable} board(s){carrying} on rig {rig_path}"
    return (
        f"{count} workers for {which}: a worker that needs a board when all are held waits "
        f"--lock-wait s for one and then errors; give -n {usable} to fly on every board at once"
    )


# -- hooks -------------------------------------------------------------------------------------
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """The controller takes each flown scenario a worker reports (with its setup)."""
    data = getattr(report, RESULT_ATTR, None)
    if not isinstance(data, bytes) or getattr(report, "node", None) is None:
        return  # a single process keeps its own results; only xdist reports carry a node
    from hil.pytest_plugin.options import STATE

    config = report.node.config
    state = config.stash.get(STATE, None)
    if state is None:
        return
    record = merged(config).add(report.nodeid, data)
    result = record["result"]
    state.lockstep[result.board] = record["lockstep"]
    state.board_info.setdefault(result.board, record["board_info"])
    state.results = merged(config).results()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """The collection order, so the merged results list as a single process lists them."""
    gathered = merged(node.config)
    if not gathered.order:
        gathered.order = list(ids)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error: object) -> None:
    """A worker ended: note the board it claimed and every board it found unavailable
    (the run's exit code says that no verdict could be reached on them)."""
    from hil.errors import BoardUnavailable
    from hil.pytest_plugin.options import STATE

    output = getattr(node, "workeroutput", None) or {}
    facts = output.get(OUTPUT_KEY)
    state = node.config.stash.get(STATE, None)
    if not isinstance(facts, dict) or state is None:
        return
    if facts.get("board"):
        merged(node.config).boards[str(node.gateway.id)] = str(facts["board"])
    for name, (text, code) in (facts.get("unavailable") or {}).items():
        if name not in state.unavailable:
            error_ = BoardUnavailable(str(text))
            error_.exit_code = int(code)
            state.unavailable[name] = error_


def worker_facts(state: Any) -> dict[str, Any]:
    """What a worker tells the controller when it ends (`workeroutput["hil"]`)."""
    return {
        "board": state.claimed_board,
        "unavailable": {name: [str(exc), int(exc.exit_code)] for name, exc in state.unavailable.items()},
    }

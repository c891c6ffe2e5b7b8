"""The pytest plugin of hil: options, fixtures, scenario files as test items, the results table.

Registered through the `pytest11` entry point (`hil = "hil.pytest_plugin"`), so any
project that installs `hil` gets the fixtures `rig`, `board`, `board_session`,
`autopilot`, `sim` and `flashed_firmware`, and pytest collects scenario files.

The work is split by job:

- `options`: pytest_addoption, the rig file to use, `HilState` (the session's rig,
  board, locks, flashed firmware and results), pytest_configure/unconfigure;
- `fixtures`: the fixtures;
- `items`: `ScenarioFile`/`ScenarioItem` and the collection hooks;
- `reporting`: progress lines, the results table, summary.json and report.html;
- `workers`: several boards at once under pytest-xdist: the controller merges what every
  worker flew into one table, summary.json and report.html.

pytest registers this module, and only this module, as the plugin named "hil": pluggy
finds hooks, and pytest fixtures, among its attributes. So every hook and fixture of the
submodules is imported here by name (one plugin, as before the split: `-p no:hil` still
disables all of it, and hook order is unchanged). A hook or fixture added to a submodule
must be added here too; tests/test_pytest_plugin_layout.py checks that none is missing.
"""

from hil.pytest_plugin.fixtures import autopilot, board, board_session, flashed_firmware, rig, sim
from hil.pytest_plugin.items import (
    pytest_collect_file,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
)
from hil.pytest_plugin.options import pytest_addoption, pytest_configure, pytest_unconfigure
from hil.pytest_plugin.reporting import (
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
)
from hil.pytest_plugin.workers import (
    pytest_runtest_logreport,
    pytest_testnodedown,
    pytest_xdist_node_collection_finished,
)

__all__ = [
    # options
    "pytest_addoption",
    "pytest_configure",
    "pytest_unconfigure",
    # items
    "pytest_collect_file",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_runtest_makereport",
    # reporting
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "pytest_terminal_summary",
    # workers (pytest-xdist)
    "pytest_runtest_logreport",
    "pytest_testnodedown",
    "pytest_xdist_node_collection_finished",
    # fixtures
    "autopilot",
    "board",
    "board_session",
    "flashed_firmware",
    "rig",
    "sim",
]

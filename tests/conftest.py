"""Shared test configuration: pytester for the plugin's own tests."""

import pytest

pytest_plugins = ["pytester"]

# Scenario files the tests load on purpose (some fail by design): not test items, even
# when `pytest tests/` names the folder (the plugin collects scenarios under folders named
# on the command line).
collect_ignore = ["data"]


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester without labgrid's pytest plugin in the inner sessions: that plugin keeps
    process-wide state (labgrid.logging.StepLogger, started once per process), so a second
    session in the same process stops with INTERNALERROR. Outer sessions keep it: the
    labgrid tests run scenarios with both plugins loaded (tests/test_labgrid_remote.py).
    pytester clears PYTEST_ADDOPTS when it is made; this sets it afterwards."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:labgrid")
    return pytester

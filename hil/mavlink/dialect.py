"""The MAVLink dialect the harness speaks (MAVLink 2, ardupilotmega), and ArduCopter's modes."""

from __future__ import annotations

import os

os.environ.setdefault("MAVLINK20", "1")

from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

from hil.profiles.ardupilot import ARDUCOPTER  # noqa: E402
from hil.profiles.ardupilot import COPTER_MODES as ARDUCOPTER_MODES  # noqa: E402

#: ArduCopter's custom_mode numbers, from its firmware profile (hil.profiles.ardupilot),
#: kept here for the callers that import them from the dialect.
COPTER_MODES: dict[str, int] = ARDUCOPTER_MODES
COPTER_MODE_NAMES: dict[int, str] = {number: name for name, number in COPTER_MODES.items()}

#: Identity of the harness on the wire.
GCS_SYSTEM_ID = 255
GCS_COMPONENT_ID = mavlink.MAV_COMP_ID_MISSIONPLANNER  # 190
SIM_COMPONENT_ID = mavlink.MAV_COMP_ID_USER1  # 25: the simulator (sensors, battery ADC)

#: Identity of the virtual board.
VFC_SYSTEM_ID = 1
VFC_COMPONENT_ID = mavlink.MAV_COMP_ID_AUTOPILOT1
VFC_USB_VID = 0x1209
VFC_USB_PID = 0x5741
VFC_BOARD_ID = 7701


def mode_name(custom_mode: int) -> str:
    """Name of an ArduCopter mode number, or `MODE(n)` when unknown."""
    return ARDUCOPTER.mode_name(custom_mode)


def new_codec(system_id: int, component_id: int) -> mavlink.MAVLink:
    """A MAVLink 2 encoder/decoder that keeps parsing after bad bytes."""
    codec = mavlink.MAVLink(None, srcSystem=system_id, srcComponent=component_id)
    codec.robust_parsing = True
    return codec

#: "Not provided" in MAVLink's uint16 fields (RC channels, accuracy, cell voltages...).
UINT16_MAX = 0xFFFF

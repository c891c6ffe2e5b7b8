"""Names that become file and directory names: board names and USB serial numbers.

A rig file's board names and USB serial numbers name directories and lock files under
the rig's state directory (hil.rig), and a receiver's adapter is named by its USB serial
(hil.receivers), so both check them with the same rule: no path separators, no leading
dot.
"""

from __future__ import annotations

import re

#: Board names and USB serial numbers: they name files and directories of the board.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
SAFE_NAME_RULE = "1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with a dot"

__all__ = ["SAFE_NAME", "SAFE_NAME_RULE"]

"""Finding a rebooted board again on a URL that does not change (a network serial port:
a labgrid exporter's ser2net keeps its TCP port while the board behind it reboots).

A board on USB comes back on a new port, and a session waits for that port to appear.
Behind a fixed URL there is nothing new to wait for: the old firmware's link closes (the
exporter drops the connection when the device goes) and a new connection reaches the
new firmware. So: let the reboot happen, then connect until the board answers, and take
an answer only from a board whose clock started again.
"""

from __future__ import annotations

import time

from hil.errors import BoardNotAnswering, LinkError
from hil.timeout import Deadline

#: How long a reboot takes to close the old firmware's port, at least. A connection made
#: sooner can reach the old firmware and die under the session.
SETTLE_S = 0.5
#: A board whose clock reads more than this after the reboot (plus the time since) has
#: not rebooted: that answer came from the old firmware.
FRESH_BOOT_S = 5.0


def reconnect_same_url(session, old_url: str, deadline: Deadline):
    """`session.connect()` until it answers as a freshly booted board, within `deadline`
    (BoardNotAnswering naming the URL and the last error when it does not)."""
    rebooted_at = time.monotonic()
    time.sleep(min(SETTLE_S, max(0.0, deadline.remaining)))
    last: Exception | None = None
    while True:
        try:
            autopilot = session.connect()
        except (BoardNotAnswering, LinkError) as exc:
            last = exc
        else:
            since = time.monotonic() - rebooted_at
            clock = float(getattr(autopilot, "vehicle_time", 0.0) or 0.0)
            if clock <= since + FRESH_BOOT_S:
                return autopilot
            last = BoardNotAnswering(f"it answered with its clock at {clock:.1f} s: the old firmware, not rebooted")
            autopilot.conn.close()
            autopilot.close()
            session.autopilot = None
        if deadline.expired:
            raise BoardNotAnswering(
                f"board {session.board.name} did not come back on {old_url} after its reboot "
                f"within {deadline.seconds:.0f} s: {last}"
            )
        time.sleep(0.2)

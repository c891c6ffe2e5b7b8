"""SIGTERM ends the harness the way Ctrl-C does.

`timeout`, a CI cancel and `kill` send SIGTERM, whose default action ends the process
on the spot: no `finally`, no fixture teardown, no board stopped, no lock released.
Raising KeyboardInterrupt instead sends it down the path a Ctrl-C takes, which tears
everything down in order. A second SIGTERM, while that teardown runs, ends the process
at once (the children's lifeline and guard then stop them).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The process was asked to end by a signal (SIGTERM); carries its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"ended by {signal.Signals(signum).name}")
        self.signum = signum


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one is not polite any more
    raise Terminated(signum)


def install() -> Callable[[], None]:
    """Make SIGTERM raise :class:`Terminated` in the main thread; return an undo function.

    Leaves an existing handler alone (the `hil` command's, or the user's own), and does
    nothing off the main thread, where Python cannot install handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _interrupt)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is _interrupt:
            signal.signal(signal.SIGTERM, previous)

    return undo

"""Named errors. Each message says what was expected, what happened, and where.

Each error class carries the exit code of the `hil` command it ends with, so a CI job
can tell "the firmware failed a scenario" (pytest's 1) from "the bench could not run it".
"""

from __future__ import annotations

#: A harness error that is neither the bench nor the input (a refused command, a wait of
#: its own that ran out).
EXIT_ERROR = 2
#: A board is missing, busy, or stopped answering: nothing is known about its firmware.
EXIT_BOARD = 3
#: Bad input: command line, rig file, scenario file. Nothing was run.
EXIT_USAGE = 4


class HilError(Exception):
    """Base class of every error the harness raises on purpose."""

    exit_code = EXIT_ERROR


class WaitTimeout(HilError):
    """A bounded wait ran out before its condition held."""


class LinkError(HilError):
    """A port could not be opened, read or written."""

    exit_code = EXIT_BOARD


class PortNotFound(LinkError):
    """No port carries the requested USB serial number."""


class BoardNotAnswering(HilError):
    """The board stopped answering on its control link."""

    exit_code = EXIT_BOARD


class BoardUnavailable(HilError):
    """A board could not be reached, or stopped answering during a test: an error of the
    bench, not a verdict on the firmware. Once raised for a board, every later use of that
    board in the session fails at once with the same reason."""

    exit_code = EXIT_BOARD


class CommandRefused(HilError):
    """The board answered a command with a refusal."""


class ParamError(HilError):
    """A parameter name or value was not accepted."""


class ConfigError(HilError):
    """A rig file or option is wrong; the message names the file and key."""

    exit_code = EXIT_USAGE


class ScenarioError(HilError):
    """A scenario file is wrong; the message names the file, the key and what is allowed."""

    exit_code = EXIT_USAGE


def exit_code(exc: BaseException) -> int:
    """The `hil` command's exit code for an error that ended it."""
    return int(getattr(exc, "exit_code", EXIT_ERROR))

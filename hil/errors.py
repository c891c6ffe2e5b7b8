"""Named errors. Each message says what was expected, what happened, and where."""

from __future__ import annotations


class HilError(Exception):
    """Base class of every error the harness raises on purpose."""


class WaitTimeout(HilError):
    """A bounded wait ran out before its condition held."""


class LinkError(HilError):
    """A port could not be opened, read or written."""


class PortNotFound(LinkError):
    """No port carries the requested USB serial number."""


class BoardNotAnswering(HilError):
    """The board stopped answering on its control link."""


class CommandRefused(HilError):
    """The board answered a command with a refusal."""


class ParamError(HilError):
    """A parameter name or value was not accepted."""


class ConfigError(HilError):
    """A rig file or option is wrong; the message names the file and key."""


class ScenarioError(HilError):
    """A scenario file is wrong; the message names the file, the key and what is allowed."""

"""User-facing errors.

Anything raised as a :class:`LobbywatchError` is printed by the CLI as one clear
message (no stack trace) and exits with status 2. Raise it for bad input a user
can fix: config files, model files, videos, payloads.
"""

from __future__ import annotations


class LobbywatchError(Exception):
    """An error whose message tells the user what is wrong and how to fix it."""


class ConfigError(LobbywatchError):
    """A configuration file is invalid."""


class ModelError(LobbywatchError):
    """A model file is missing, corrupt or of the wrong shape."""


class SourceError(LobbywatchError):
    """A video, stream or image cannot be read."""

"""Exceptions shared by the whole package."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration, command-line or data-location problem the user must fix.

    The CLI prints ``classaware: error: <message>`` (one line, no traceback) and exits with code 2.
    """


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss, so the run stopped (``final.json`` records it).

    The message is one line: the epoch and the setting to lower.  ``classaware train`` prints
    ``classaware: error: <message>`` and exits with code 3.
    """

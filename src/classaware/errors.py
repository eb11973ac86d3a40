"""Exceptions shared by the whole package."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration, command-line or data-location problem the user must fix.

    The CLI prints ``classaware: error: <message>`` (one line, no traceback) and exits with code 2.
    """

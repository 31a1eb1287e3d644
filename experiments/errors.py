"""Errors shown to a CLI user as one line (no traceback)."""

from formulations.requests import ValidationError


class ConfigError(ValidationError):
    """A wrong name or value in a config file or on the command line; says what is valid."""

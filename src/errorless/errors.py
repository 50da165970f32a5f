"""User-facing errors: the CLI prints their message (naming the file or key) without a traceback."""


class ErrorlessError(Exception):
    """Base class of errors that are the user's to fix (bad input, bad config)."""


class ConfigError(ErrorlessError):
    """A configuration key or value is wrong."""


class DataError(ErrorlessError):
    """A data file is missing, corrupt, or has the wrong shape/labels."""

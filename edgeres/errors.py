"""Errors that are the user's to fix: the CLI prints them as one line and exits 1, without a traceback."""


class EdgeresError(Exception):
    """A failure with a message that names the file and the fix."""


class DataError(EdgeresError):
    """Bad or missing images / data folders."""


class ModelFileError(EdgeresError):
    """A model file that cannot be read, or should not be read without trust."""


class StageSkipped(Exception):
    """Raised by a stage that cannot run here; the message is the reason recorded in the report."""

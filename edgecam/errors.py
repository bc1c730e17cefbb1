"""The exception hierarchy. Every error edgecam raises on purpose is an EdgecamError.

The CLI turns an EdgecamError into one clear line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""


class EdgecamError(Exception):
    """Base class for all expected edgecam failures."""


class ConfigError(EdgecamError):
    """The configuration file or a command-line override is invalid."""


class ConfigConflict(ConfigError):
    """The config file changed on disk while a change to it was being made: nothing was written."""


class ModelError(EdgecamError):
    """A model file is missing, corrupt, or not what edgecam expects."""


class ModelBuildError(ModelError):
    """Building (export, quantization, weights) a model failed."""


class SourceError(EdgecamError):
    """A frame source could not be opened or stopped delivering frames."""


class EndOfStream(SourceError):
    """A non-looping file source reached its end: not an error to retry."""


class PublishError(EdgecamError):
    """A sink could not deliver a message."""

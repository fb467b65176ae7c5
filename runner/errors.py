"""The project's own exceptions. Library errors are translated into these at the edge.

Every message is written for the person who has to act on it: it says what is wrong and what to do.
"""


class RunnerError(Exception):
    """Base class: an error a user can act on. ``str(err)`` is the one-line reason."""


class ConfigError(RunnerError):
    """A setting is missing or malformed."""


class ValidationError(RunnerError):
    """Input (a schedule, a name, a script, a thread id) was refused."""


class ScheduleError(ValidationError):
    """A schedule string could not be understood exactly."""


class NotFound(RunnerError):
    """An id or a file does not exist (or is not visible to the caller)."""


class DatabaseError(RunnerError):
    """The database could not be reached or refused an operation."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached (down, restarting, unreachable): a fault to wait out."""


class SandboxError(RunnerError):
    """The Docker engine could not run a job container."""


class ImageMissing(SandboxError):
    """The job image is not present on the engine."""

"""One exception type for mistakes a user can fix; entry points print its message, never a stack trace."""


class RelevanceError(Exception):
    """A user-facing error: one sentence naming the file, line or key, and the fix."""


class DataError(RelevanceError):
    """Bad input data: names the file and line."""

    def __init__(self, path, line: int | None, message: str):
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class ConfigError(RelevanceError):
    """An option, or a combination of options, that cannot work: names the key."""


class TrainingDiverged(RelevanceError):
    """The training loss stopped being a finite number (too high a learning rate, broken data)."""


class TrainingError(RelevanceError):
    """Training produced something that must not be kept (weights that hold nothing): says why and what to do."""

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


def require_number(value, key: str, integer: bool, minimum: float, strict: bool = False) -> None:
    """An option that must be a number (an integer where `integer`) of at least `minimum` (above it where `strict`);
    a boolean is not a number here, though Python counts it as one."""
    number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not number or value < minimum or (strict and value == minimum):
        raise ConfigError(
            f"{key}={value!r} must be {'an integer' if integer else 'a number'} {'>' if strict else '>='} {minimum}."
        )


class TrainingDiverged(RelevanceError):
    """The training loss stopped being a finite number (too high a learning rate, broken data)."""


class TrainingError(RelevanceError):
    """Training produced something that must not be kept (weights that hold nothing): says why and what to do."""

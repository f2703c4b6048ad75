"""One exception hierarchy for fastsynth.

Every error a user can cause derives from :class:`FastsynthError`; the CLI prints such
errors as one line and exits non-zero, without a traceback. Errors about bad values
also derive from ``ValueError`` so callers can catch them the standard way.
"""
from __future__ import annotations


class FastsynthError(Exception):
    """Base class of every error fastsynth raises on purpose."""


class ConfigError(FastsynthError, ValueError):
    """A parameter, option or configuration file value is invalid."""


class InputError(FastsynthError, ValueError):
    """An input record or file is malformed.

    ``source`` names the file (or builtin corpus) and ``line`` the 1-based line number
    (JSONL) or ``row`` the 0-based row (Parquet), where known.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 row: int | None = None, reason: str | None = None):
        self.source = source
        self.line = line
        self.row = row
        self.reason = reason or message
        where = ""
        if source is not None:
            where = str(source)
            if line is not None:
                where += f":{line}"
            elif row is not None:
                where += f" row {row}"
            where += ": "
        super().__init__(where + message)


class DependencyError(FastsynthError, ImportError):
    """An optional dependency (an extra) is needed for this feature but missing."""

    def __init__(self, package: str, extra: str, feature: str):
        super().__init__(
            f"{feature} needs the '{package}' package: pip install 'fastsynth[{extra}]'"
        )
        self.package = package
        self.extra = extra

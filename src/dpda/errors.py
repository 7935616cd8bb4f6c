"""Exceptions with messages meant for users.

Every error that the command line prints without a traceback derives from
:class:`DpdaError`. Messages name the file (and line, where there is one) and
say what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

PathLike = Union[str, Path]


class DpdaError(Exception):
    """Base class of all user-facing dpda errors."""


class AudioError(DpdaError, ValueError):
    """An audio file is missing, unreadable or holds unusable samples."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Problem:
    """One problem found in a text file: where it is and what is wrong."""

    __slots__ = ("path", "line", "message")

    def __init__(self, path: PathLike, line: Optional[int], message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.line!r}, {self.message!r})"


class ProtocolError(DpdaError, ValueError):
    """A protocol, key, metadata or score file is malformed or inconsistent.

    ``problems`` holds every problem found (file, line, message); the message
    lists the first ``max_listed`` of them.
    """

    max_listed = 20

    def __init__(self, problems: Sequence[Problem], summary: Optional[str] = None) -> None:
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[: self.max_listed]]
        extra = len(self.problems) - len(lines)
        if extra > 0:
            lines.append(f"... and {extra} more problem(s)")
        head = summary or (lines.pop(0) if len(lines) == 1 else f"{len(self.problems)} problem(s) found")
        super().__init__("\n  ".join([head] + lines) if lines else head)

    @classmethod
    def at(cls, path: PathLike, line: Optional[int], message: str) -> "ProtocolError":
        """A ProtocolError with a single problem."""
        return cls([Problem(path, line, message)])

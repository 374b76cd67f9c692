"""Errors of the face driver: small classes that carry their fields and name the fix."""

from __future__ import annotations

from pathlib import Path


class FaceError(Exception):
    """Base of the face driver's errors."""


class KeyFileError(FaceError):
    """A terminal key file is missing, unreadable or holds the wrong kind of key."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"face key file {path}: {problem}; fix: {fix}")


class SeqStateError(FaceError):
    """The persisted replay state (last sequence per terminal) cannot be read or written."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"face replay state {path}: {problem}; fix: restore the file from backup or delete it "
            "(every terminal's next event is then accepted once its time is within the skew)"
        )


class FaceLinkError(FaceError, ConnectionError):
    """The face source lost (or never got) its transport: broker down, port taken.

    A ConnectionError (so an OSError): the supervisor restarts the task with backoff.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"face source {where}: {problem}")

    def __str__(self) -> str:
        return f"face source {self.where}: {self.problem}"

"""The one exception the unwind-table compiler raises for a whole file it cannot table."""

from __future__ import annotations


class UnwindTableError(Exception):
    """The file cannot be tabled; the message is one line naming the file and the reason.

    `transient` marks failures to read the file (open, map) rather than problems with its content: the
    cache does not remember those, since the next attempt may succeed.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

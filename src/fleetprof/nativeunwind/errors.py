"""The one exception the unwind-table compiler raises for a whole file it cannot table."""

from __future__ import annotations


class UnwindTableError(Exception):
    """The file cannot be tabled; the message is one line naming the file and the reason."""

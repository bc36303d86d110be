"""Errors the CLI turns into one line on stderr and an exit status — never a traceback."""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_CAPABILITY = 2
EXIT_FAILURE = 1
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure with a one-line message and an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class UsageError(CliError):
    """Bad options or arguments."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class CapabilityError(CliError):
    """A missing capability (not root, no BPF, no BTF); exit status 2 per DESIGN.md."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_CAPABILITY)

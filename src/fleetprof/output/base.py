"""The one small interface every output format implements."""

from __future__ import annotations

from typing import BinaryIO, Protocol

from fleetprof.profile.model import Profile


class OutputFormat(Protocol):
    """A writer turning a finished Profile into one file format."""

    name: str  # the `--format` value
    suffix: str  # default file name suffix, e.g. ".pb.gz"
    binary: bool  # True when the output is not text (don't print it to a terminal)

    def write(self, profile: Profile, stream: BinaryIO) -> None:
        """Write the whole profile to `stream` in this format."""
        ...

"""Output formats by name (`--format`) and by file name suffix (`--output`)."""

from __future__ import annotations

from os import PathLike

from fleetprof.output.base import OutputFormat
from fleetprof.output.flamegraph import HtmlFormat
from fleetprof.output.folded import FoldedFormat
from fleetprof.output.otlp import OtlpFormat
from fleetprof.output.pprof import PprofFormat
from fleetprof.output.speedscope import SpeedscopeFormat

FORMATS: dict[str, OutputFormat] = {
    fmt.name: fmt for fmt in (FoldedFormat(), PprofFormat(), SpeedscopeFormat(), HtmlFormat(), OtlpFormat())
}

# Longest suffixes first, so `.speedscope.json` wins over `.json` and `.pb.gz` is not read as `.gz`.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".speedscope.json", "speedscope"),
    (".pb.gz", "pprof"),
    (".folded", "folded"),
    (".pprof", "pprof"),
    (".otlp", "otlp"),
    (".html", "html"),
    (".json", "speedscope"),
    (".txt", "folded"),
    (".htm", "html"),
    (".pb", "otlp"),
)


class UnknownFormatError(ValueError):
    """Raised for a format name no writer answers to; the message lists the known names."""


def format_names() -> list[str]:
    """The names `--format` accepts, sorted."""
    return sorted(FORMATS)


def get_format(name: str) -> OutputFormat:
    """The writer called `name` (case-insensitive)."""
    fmt = FORMATS.get(name.strip().lower())
    if fmt is None:
        raise UnknownFormatError(f"unknown output format {name!r} (known: {', '.join(format_names())})")
    return fmt


def format_for_path(path: str | PathLike[str]) -> OutputFormat | None:
    """The writer a file name's suffix suggests, or None when the suffix says nothing."""
    lowered = str(path).lower()
    for suffix, name in _SUFFIXES:
        if lowered.endswith(suffix):
            return FORMATS[name]
    return None

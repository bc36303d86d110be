"""Folded stacks (`root;caller;leaf 42`), exactly the contract in DESIGN.md."""

from __future__ import annotations

from collections import Counter
from typing import BinaryIO

from fleetprof.profile.model import Profile, Sample

# Everything str.splitlines() breaks on, `\n` and `\r` among them; none of them is printable, so names that
# are printable and have no `;` (nearly all) skip the slow translate().
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_ONE_LINE = str.maketrans(dict.fromkeys(_LINE_BREAKS, " "))
_UNSAFE = str.maketrans({";": ":", **dict.fromkeys(_LINE_BREAKS, " ")})
UNKNOWN_FRAME = "[unknown]"


def one_line(name: str) -> str:
    """`name` with line breaks turned into spaces, for formats where a name must stay on one line."""
    if not name.isprintable():
        name = name.translate(_ONE_LINE)
    return name or UNKNOWN_FRAME


def sanitize(name: str) -> str:
    """A frame name that can't break the line format: `;` becomes `:`, line breaks become spaces."""
    if ";" in name or not name.isprintable():
        name = name.translate(_UNSAFE)
    return name or UNKNOWN_FRAME


def folded_stack(sample: Sample) -> str:
    """The `;`-joined, root-first rendering of one sample's stack."""
    if not sample.stack:
        return sanitize(sample.process_name)
    return ";".join(sanitize(frame.folded_name()) for frame in sample.stack)


def folded_counts(profile: Profile) -> Counter[str]:
    """Sample counts per rendered stack; samples whose stacks render alike are merged."""
    counts: Counter[str] = Counter()
    for sample in profile.samples:
        if sample.count > 0:
            counts[folded_stack(sample)] += sample.count
    return counts


def folded_lines(profile: Profile) -> list[str]:
    """One `stack count` line per unique stack, sorted so output is stable."""
    return [f"{stack} {count}" for stack, count in sorted(folded_counts(profile).items())]


class FoldedFormat:
    """Brendan Gregg's folded stacks, readable by flamegraph.pl, inferno, speedscope, Pyroscope."""

    name = "folded"
    suffix = ".folded"
    binary = False

    def write(self, profile: Profile, stream: BinaryIO) -> None:
        """Write one line per unique stack, UTF-8."""
        for line in folded_lines(profile):
            stream.write(f"{line}\n".encode(errors="replace"))

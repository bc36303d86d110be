"""Parse /proc/PID/maps into the executable mappings a profiler cares about.

Only lines with `x` in their permissions are parsed in full (a cheap check skips the rest), so a
rescan of a process with thousands of data mappings stays fast.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

DELETED_SUFFIX = " (deleted)"
MEMFD_PREFIX = "/memfd:"


class MapKind(enum.Enum):
    """What backs an executable mapping."""

    FILE = "file"  # a regular file (possibly deleted); read through map_files or the process root
    MEMFD = "memfd"  # a memfd_create file: only reachable through map_files
    ANON = "anon"  # no file: JIT code, [vsyscall], [anon:name], /dev/zero, anon_inode:...
    VDSO = "vdso"  # the kernel's [vdso], read from process memory


MappingKey = tuple[int, int, int, int, int]  # (start, end, offset, dev, inode): what a diff compares


@dataclass(frozen=True, slots=True)
class MapsEntry:
    """One executable mapping as /proc/PID/maps describes it.

    `remapped` marks anonymous text that copies part of a file mapped next to it (huge-page text
    remapping as done by `node --use-largepages`, hugify, iodlr): `offset`, `dev`, `inode` and `path`
    are then inferred from the neighbour, and `source` is the neighbour's range to open the file by.
    """

    start: int
    end: int
    perms: str
    offset: int
    dev: int  # os.makedev(major, minor) as printed in maps
    inode: int
    path: str  # as the process sees it, without " (deleted)"; "" for plain anonymous memory
    deleted: bool
    kind: MapKind
    remapped: bool = False
    source: tuple[int, int] = (0, 0)  # map_files range that opens the backing file

    @property
    def key(self) -> MappingKey:
        """Identity used to diff two scans: the maps line's own fields (remapped text is anonymous in maps,
        so its inferred file fields stay out)."""
        if self.remapped:
            return self.start, self.end, 0, 0, 0
        return self.start, self.end, self.offset, self.dev, self.inode

    @property
    def open_range(self) -> tuple[int, int]:
        """The (start, end) whose /proc/PID/map_files entry opens the backing file."""
        return self.source if self.remapped else (self.start, self.end)


@dataclass(frozen=True, slots=True)
class _Line:
    start: int
    end: int
    perms: str
    offset: int
    dev: int
    inode: int
    raw_path: str


def _split(line: str) -> _Line | None:
    fields = line.split(None, 5)
    if len(fields) < 5:
        return None
    try:
        start_s, _, end_s = fields[0].partition("-")
        major, _, minor = fields[3].partition(":")
        return _Line(
            start=int(start_s, 16),
            end=int(end_s, 16),
            perms=fields[1],
            offset=int(fields[2], 16),
            dev=os.makedev(int(major, 16), int(minor, 16)),
            inode=int(fields[4]),
            raw_path=fields[5].rstrip("\n") if len(fields) == 6 else "",
        )
    except ValueError:
        return None


def classify(raw_path: str, inode: int) -> tuple[MapKind, str, bool]:
    """Kind, clean path and deleted flag for a maps path column (kernel escapes newline as \\012)."""
    deleted = raw_path.endswith(DELETED_SUFFIX)
    path = raw_path.removesuffix(DELETED_SUFFIX).replace("\\012", "\n")
    if path == "[vdso]":
        return MapKind.VDSO, path, False
    if not path.startswith("/") or inode == 0 or path == "/dev/zero":
        return MapKind.ANON, path, False
    if path.startswith(MEMFD_PREFIX):
        return MapKind.MEMFD, path, True
    return MapKind.FILE, path, deleted


def _file_neighbour(lines: list[str], index: int) -> tuple[_Line, MapKind, str, bool] | None:
    if not 0 <= index < len(lines):
        return None
    parsed = _split(lines[index])
    if parsed is None:
        return None
    kind, path, deleted = classify(parsed.raw_path, parsed.inode)
    if kind not in (MapKind.FILE, MapKind.MEMFD):
        return None
    return parsed, kind, path, deleted


def _infer_remap(lines: list[str], index: int, line: _Line) -> MapsEntry | None:
    """Anonymous text between or next to mappings of one file at consistent offsets: a remapped copy."""
    before = _file_neighbour(lines, index - 1)
    after = _file_neighbour(lines, index + 1)
    if before is not None and before[0].end != line.start:
        before = None
    if after is not None and after[0].start != line.end:
        after = None
    length = line.end - line.start
    guesses = []
    if before is not None:
        prev = before[0]
        guesses.append((prev.offset + (prev.end - prev.start), before))
    if after is not None and after[0].offset >= length:
        guesses.append((after[0].offset - length, after))
    if not guesses:
        return None
    offset, (source, kind, path, deleted) = guesses[0]
    for other_offset, (other, _, _, _) in guesses[1:]:
        if other_offset != offset or (other.dev, other.inode) != (source.dev, source.inode):
            return None
    return MapsEntry(
        start=line.start,
        end=line.end,
        perms=line.perms,
        offset=offset,
        dev=source.dev,
        inode=source.inode,
        path=path,
        deleted=deleted,
        kind=kind,
        remapped=True,
        source=(source.start, source.end),
    )


def parse_maps(data: bytes | str) -> tuple[list[MapsEntry], int]:
    """Executable mappings of one maps file, in address order, and the number of malformed lines."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    lines = text.splitlines()
    entries: list[MapsEntry] = []
    malformed = 0
    for index, line in enumerate(lines):
        space = line.find(" ")
        if space < 0 or len(line) <= space + 3:
            if line.strip():
                malformed += 1
            continue
        if line[space + 3] != "x":
            continue
        parsed = _split(line)
        if parsed is None:
            malformed += 1
            continue
        kind, path, deleted = classify(parsed.raw_path, parsed.inode)
        if kind is MapKind.ANON and not path:
            remap = _infer_remap(lines, index, parsed)
            if remap is not None:
                entries.append(remap)
                continue
        entries.append(
            MapsEntry(
                start=parsed.start,
                end=parsed.end,
                perms=parsed.perms,
                offset=parsed.offset if kind is not MapKind.ANON else 0,
                dev=parsed.dev,
                inode=parsed.inode,
                path=path,
                deleted=deleted,
                kind=kind,
            )
        )
    return entries, malformed

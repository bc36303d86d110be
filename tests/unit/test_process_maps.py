"""Parsing /proc/PID/maps: which mappings are kept, how they are classified, remapped text."""

from __future__ import annotations

import os
from pathlib import Path

from fleetprof.process.maps import MapKind, parse_maps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "process"


def _by_start(name: str) -> tuple[dict[int, object], int]:
    entries, malformed = parse_maps((FIXTURES / name).read_bytes())
    return {e.start: e for e in entries}, malformed


def test_keeps_only_executable_mappings_and_counts_malformed_lines():
    entries, malformed = _by_start("maps_mixed.txt")
    assert sorted(entries) == [
        0x55D0C0A02000,
        0x7F0000000000,
        0x7F0000200000,
        0x7F0000300000,
        0x7F0000400000,
        0x7F0000500000,
        0x7F0000600000,
        0x7F0000700000,
        0x7F0000800000,
        0x7F0000902000,
        0xFFFFFFFFFF600000,
    ]
    assert malformed == 1


def test_file_mapping_fields():
    app = _by_start("maps_mixed.txt")[0][0x55D0C0A02000]
    assert (app.end, app.offset, app.inode, app.path) == (0x55D0C0A08000, 0x2000, 1001, "/usr/bin/app")
    assert app.dev == os.makedev(0xFE, 0)
    assert app.kind is MapKind.FILE and not app.deleted and app.perms == "r-xp"
    assert app.key == (0x55D0C0A02000, 0x55D0C0A08000, 0x2000, os.makedev(0xFE, 0), 1001)
    textrel = _by_start("maps_mixed.txt")[0][0x7F0000700000]
    assert textrel.kind is MapKind.FILE and textrel.perms == "rwxp"
    assert textrel.dev == os.makedev(0x103, 0x02)


def test_special_mappings_are_classified():
    entries = _by_start("maps_mixed.txt")[0]
    assert entries[0x7F0000000000].kind is MapKind.ANON and entries[0x7F0000000000].path == ""
    assert entries[0x7F0000200000].kind is MapKind.ANON and entries[0x7F0000200000].path == "[anon:v8 code]"
    assert entries[0x7F0000300000].kind is MapKind.ANON  # shared anonymous memory shows as /dev/zero
    assert entries[0x7F0000800000].kind is MapKind.ANON  # anon_inode:...
    assert entries[0x7F0000902000].kind is MapKind.VDSO
    assert (
        entries[0xFFFFFFFFFF600000].kind is MapKind.ANON and entries[0xFFFFFFFFFF600000].path == "[vsyscall]"
    )


def test_deleted_memfd_and_escaped_paths():
    entries = _by_start("maps_mixed.txt")[0]
    memfd = entries[0x7F0000400000]
    assert memfd.kind is MapKind.MEMFD and memfd.path == "/memfd:jit-lib" and memfd.deleted
    old = entries[0x7F0000500000]
    assert old.kind is MapKind.FILE and old.deleted and old.path == "/opt/app/lib/libold.so"
    assert entries[0x7F0000600000].path == "/tmp/odd\nname.so"


def test_anonymous_text_between_file_mappings_is_attributed_to_the_file():
    entries = _by_start("maps_remapped.txt")[0]
    node = entries[0x00800000]
    assert node.remapped and node.kind is MapKind.FILE
    assert (node.path, node.inode, node.offset) == ("/usr/bin/node", 42, 0x400000)
    assert node.open_range == (0x00600000, 0x00800000)
    assert node.key == (0x00800000, 0x02800000, 0, 0, 0)  # diffs compare what maps shows


def test_remap_needs_adjacent_consistent_neighbours():
    entries = _by_start("maps_remapped.txt")[0]
    assert not entries[0x02B10000].remapped  # not adjacent to any file mapping
    assert entries[0x02B10000].kind is MapKind.ANON
    assert not entries[0x7F1000003000].remapped  # neighbours disagree on the offset
    assert entries[0x7F1000003000].kind is MapKind.ANON
    data_neighbour = entries[0x7F2000001000]  # only the parser's guess; the tracker checks it is text
    assert data_neighbour.remapped and data_neighbour.offset == 0x4000


def test_parses_str_and_empty_input():
    assert parse_maps("") == ([], 0)
    line = "00400000-00401000 r-xp 00000000 08:01 5 /bin/x\n"
    entries, malformed = parse_maps(line)
    assert malformed == 0 and entries[0].path == "/bin/x" and entries[0].open_range == (0x400000, 0x401000)

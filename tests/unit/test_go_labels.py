"""Goroutine labels, without root: go_offsets.h and its mirror agree; discovery finds the release, g's TLS
slot and runtime.g / runtime.m offsets in the fixture built with the installed `go` (its DWARF is the
oracle for the hand-written table); label sets are read from memory in both of Go's shapes, and a set
freed and reused since the sample is refused; labels travel through pprof and OTLP."""

from __future__ import annotations

import ctypes
import gzip
import importlib.util
import struct
import sys
from pathlib import Path

import pytest
from cprobe import struct_layout

from fleetprof.elf.view import ElfView
from fleetprof.interpreters.go import layouts, procinfo
from fleetprof.interpreters.go.discovery import GoBinary, GoUnsupported, inspect_go_binary, parse_version
from fleetprof.interpreters.go.labels import ConstStrings, Labels, LabelsError, Memory, read_label_sets
from fleetprof.output.otlp import attribute_label, label_attribute, to_otlp_request
from fleetprof.output.pprof import PprofFormat
from fleetprof.output.proto import profile_pb2
from fleetprof.profile.model import Frame, FrameKind, Profile, Sample
from fleetprof.wire.otlp_decode import from_otlp_request

_spec = importlib.util.spec_from_file_location(
    "gobuild", Path(__file__).parents[1] / "fixtures" / "golang" / "gobuild.py"
)
gobuild = importlib.util.module_from_spec(_spec)
sys.modules["gobuild"] = gobuild
_spec.loader.exec_module(gobuild)

HEADER = Path(procinfo.__file__).with_name("go_offsets.h")


def read_label_set(
    mem: Memory, address: int, tag: int, form: str, constants: ConstStrings | None = None
) -> Labels:
    """One set read alone, its LabelsError raised."""
    found = read_label_sets(mem, [(address, tag)], form, constants)[0]
    if isinstance(found, LabelsError):
        raise found
    return found


def test_struct_matches_c(tmp_path: Path) -> None:
    cls = procinfo.GoProcInfo
    got = struct_layout(tmp_path, HEADER, "go_proc_info", [f[0] for f in cls._fields_])
    assert got == [ctypes.sizeof(cls), *(getattr(cls, f[0]).offset for f in cls._fields_)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The labels program with DWARF and stripped (`-s -w`)."""
    work = tmp_path_factory.mktemp("golabels")
    try:
        full, stripped = work / "labels", work / "labels-stripped"
        gobuild.build(full, work, source=gobuild.LABELS)
        gobuild.build(stripped, work, "-ldflags=-s -w", source=gobuild.LABELS)
    except gobuild.GoBuildError as exc:
        pytest.fail(str(exc))
    return full, stripped


def test_dwarf_and_the_table_agree_for_the_installed_go(built: tuple[Path, Path]) -> None:
    """The DWARF of the binary decides; the stripped copy gets the table's row, and the two are equal."""
    full, stripped = built
    from_dwarf = inspect_go_binary(str(full), "a" * 32)
    from_table = inspect_go_binary(str(stripped), "b" * 32)
    assert isinstance(from_dwarf, GoBinary) and from_dwarf.how == "dwarf", from_dwarf
    assert isinstance(from_table, GoBinary) and from_table.how == "table", from_table
    assert from_dwarf.version == from_table.version
    assert from_dwarf.version in layouts.covered(), f"add a row for go{from_dwarf.version}"
    assert from_dwarf.offsets == from_table.offsets
    assert from_dwarf.tls_g == from_table.tls_g == -8  # a static, internally linked program
    assert from_dwarf.version_text.startswith(f"go{from_dwarf.version[0]}.{from_dwarf.version[1]}")


def test_cgo_binary_finds_g_in_its_tls_block(tmp_path: Path) -> None:
    """With cgo, g is runtime.tlsg in the executable's PT_TLS block, below libc's thread pointer."""
    exe = tmp_path / "labels-cgo"
    try:
        gobuild.build(exe, tmp_path, "-ldflags=-s -w", source=gobuild.LABELS, cgo=True)
    except gobuild.GoBuildError as exc:
        pytest.fail(str(exc))
    found = inspect_go_binary(str(exe), "e" * 32)
    assert isinstance(found, GoBinary) and found.how == "table", found
    with ElfView(str(exe)) as elf:
        tls = elf.segment(7)
    assert tls is not None and tls.memsz == 8
    assert found.tls_g == -8


def test_not_go_and_unknown_releases() -> None:
    assert inspect_go_binary(sys.executable, "c" * 32) is None
    assert parse_version("go1.21rc2") == (1, 21)
    assert parse_version("devel go1.24-a8b1c2 Tue") == (1, 24)
    assert parse_version("go2") is None
    assert layouts.offsets_for((1, 30)) is None


def test_unknown_release_of_a_stripped_binary_says_why(built: tuple[Path, Path], tmp_path: Path) -> None:
    """A stripped binary of a release the table lacks: labels unsupported, with the version in the reason."""
    data = bytearray(built[1].read_bytes())
    at = data.find(b"go1.", data.find(b"\xff Go buildinf:"))
    data[at : at + 5] = b"go1.9"  # the inline version string, now "go1.9…"
    odd = tmp_path / "odd"
    odd.write_bytes(bytes(data))
    found = inspect_go_binary(str(odd), "d" * 32)
    assert isinstance(found, GoUnsupported) and "go1.9" in found.reason and "DWARF" in found.reason


class _Memory:
    """A fake address space: bytes placed at addresses."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytes] = {}
        self.next = 0x10000

    def put(self, data: bytes) -> int:
        addr = self.next
        self.blocks[addr] = data
        self.next += (len(data) + 0xFF) & ~0xFF
        return addr

    def read(self, addr: int, size: int) -> bytes | None:
        for start, data in self.blocks.items():
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start : addr - start + size]
        return None

    def read_many(self, requests: list[tuple[int, int]]) -> list[bytes | None]:
        return [self.read(a, n) for a, n in requests]

    def string(self, text: str) -> tuple[int, int]:
        raw = text.encode()
        return self.put(raw), len(raw)


def _bucket(mem: _Memory, entries: list[tuple[str, str]], overflow: int = 0, tophash: int = 9) -> bytes:
    """One runtime.bmap of map[string]string (its strings placed in `mem`)."""
    empty = 8 - len(entries)
    tops = bytes([tophash] * len(entries) + [0] * empty)
    keys = b"".join(struct.pack("<QQ", *mem.string(k)) for k, _ in entries) + b"\0" * 16 * empty
    values = b"".join(struct.pack("<QQ", *mem.string(v)) for _, v in entries) + b"\0" * 16 * empty
    return tops + keys + values + struct.pack("<Q", overflow)


def _map(mem: _Memory, count: int, log2: int, hash0: int, buckets: int, old: int = 0) -> int:
    """A runtime.hmap: what BPF sends for the map form (the *labelMap's first word)."""
    return mem.put(struct.pack("<QBBHIQQQQ", count, 0, log2, 0, hash0, buckets, old, 0, 0))


def test_map_form_with_overflow_and_growth() -> None:
    """Nine labels: six in the first bucket, two in its overflow bucket, one still in the old array of a
    growing map (whose evacuated slots are skipped)."""
    mem = _Memory()
    pairs = [(f"k{i}", f"v{i}") for i in range(9)]
    overflow = mem.put(_bucket(mem, pairs[6:8]))
    buckets = mem.put(_bucket(mem, pairs[:6], overflow) + _bucket(mem, []))
    old = mem.put(_bucket(mem, [pairs[8]]) + _bucket(mem, [("moved", "x")], tophash=2))
    labels = _map(mem, 9, 1, 0xC0FFEE, buckets, old)
    assert read_label_set(mem, labels, 0xC0FFEE, layouts.MAP) == tuple(sorted(pairs))
    with pytest.raises(LabelsError, match="replaced"):
        read_label_set(mem, labels, 0xBAD, layouts.MAP)


def test_map_form_refuses_what_does_not_add_up() -> None:
    mem = _Memory()
    bucket = mem.put(_bucket(mem, [("job", "resize")]))
    with pytest.raises(LabelsError, match="holds 1 entries, not 2"):
        read_label_set(mem, _map(mem, 2, 0, 7, bucket), 7, layouts.MAP)
    with pytest.raises(LabelsError, match="implausible"):
        read_label_set(mem, _map(mem, 10_000, 0, 7, bucket), 7, layouts.MAP)
    with pytest.raises(LabelsError, match="unreadable"):
        read_label_set(mem, 0xDEAD0000, 7, layouts.MAP)
    assert read_label_set(mem, _map(mem, 0, 0, 7, 0), 7, layouts.MAP) == ()


def test_literal_strings_are_read_once_and_sets_together() -> None:
    """Keys and values in the binary's read-only segments are kept: a second set of the same literals costs
    the map and its bucket only; a string outside them (heap: may be freed and reused) is read each time.
    Several sets are read stage by stage, one batch each."""
    mem = _Memory()
    calls: list[int] = []
    reader = mem.read_many
    mem.read_many = lambda requests: calls.append(len(requests)) or reader(requests)  # type: ignore[method-assign]
    literals = ConstStrings([(mem.next, mem.next + 0x1000)])
    job, resize = mem.string("job"), mem.string("resize")
    mem.next = literals.ranges[0][1]
    heap = mem.string("tenant-42")

    def labelled_set(hash0: int) -> int:
        slots = struct.pack("<QQQQ", *job, *resize) + struct.pack("<QQQQ", *mem.string("tenant"), *heap)
        bucket = bytes([9, 9] + [0] * 6) + slots[:16] + slots[32:48] + b"\0" * 96
        bucket += slots[16:32] + slots[48:64] + b"\0" * 96 + struct.pack("<Q", 0)
        return _map(mem, 2, 0, hash0, mem.put(bucket))

    want = (("job", "resize"), ("tenant", "tenant-42"))
    assert read_label_set(mem, labelled_set(1), 1, layouts.MAP, literals) == want
    assert calls == [1, 1, 4]  # the map, its bucket, the four strings
    calls.clear()
    assert read_label_set(mem, labelled_set(2), 2, layouts.MAP, literals) == want
    assert calls == [1, 1, 2]  # "tenant" and "tenant-42" are not in the read-only range
    calls.clear()
    sets = [(labelled_set(3), 3), (labelled_set(4), 99), (labelled_set(5), 5)]
    found = read_label_sets(mem, sets, layouts.MAP, literals)
    assert found[0] == found[2] == want and isinstance(found[1], LabelsError), found
    assert calls == [3, 2, 3]  # heads, buckets (the replaced set skipped), strings: two "tenant", one value


def test_slice_form() -> None:
    """Go 1.24+: a sorted []label; the tag is the low half of the first key's data pointer."""
    mem = _Memory()
    entries = [mem.string("job") + mem.string("resize"), mem.string("tenant") + mem.string("acme")]
    array = mem.put(b"".join(struct.pack("<QQQQ", *e) for e in entries))
    labels = mem.put(struct.pack("<QQQ", array, 2, 2))
    tag = entries[0][0] & 0xFFFFFFFF
    assert read_label_set(mem, labels, tag, layouts.SLICE) == (("job", "resize"), ("tenant", "acme"))
    with pytest.raises(LabelsError, match="replaced"):
        read_label_set(mem, labels, tag + 1, layouts.SLICE)


def _labelled_profile() -> Profile:
    leaf = Frame(kind=FrameKind.INTERPRETED, function="main.spin", file="main.go", line=20, runtime="go")
    root = Frame(kind=FrameKind.PROCESS, function="labels")
    samples = [
        Sample(
            (root, leaf), 7, 8, "labels", "labels", 3, custom_labels=(("job", "resize"), ("thread.name", "x"))
        ),
        Sample((root, leaf), 7, 8, "labels", "labels", 1, custom_labels=(("job", "thumb"),)),
        Sample((root, leaf), 7, 8, "labels", "labels", 2),
    ]
    return Profile(samples=samples, frequency_hz=99, start_time_ns=1, duration_ns=2)


def test_labels_travel_through_otlp_and_pprof(tmp_path: Path) -> None:
    """OTLP: each label a sample attribute under its own key (prefixed when it would read as a
    semantic-convention one) and back; pprof: string labels as Go's own profiler writes them."""
    assert label_attribute("job") == "job" and attribute_label("job") == "job"
    assert label_attribute("thread.name") == "label.thread.name"
    assert attribute_label("label.thread.name") == "thread.name" and attribute_label("thread.id") is None
    back = from_otlp_request(to_otlp_request(_labelled_profile()))
    got = sorted((s.custom_labels, s.count) for p in back for s in p.samples)
    assert got == [((), 2), ((("job", "resize"), ("thread.name", "x")), 3), ((("job", "thumb"),), 1)]
    out = tmp_path / "p.pprof"
    with out.open("wb") as stream:
        PprofFormat().write(_labelled_profile(), stream)
    prof = profile_pb2.Profile.FromString(gzip.decompress(out.read_bytes()))
    jobs = {}
    for sample in prof.sample:
        labels = {prof.string_table[x.key]: prof.string_table[x.str] for x in sample.label if x.str}
        jobs[labels.get("job", "")] = sample.value[0]
    assert jobs == {"resize": 3, "thumb": 1, "": 2}

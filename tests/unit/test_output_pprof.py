"""pprof output: round trip through our profile.proto, tables, inline order, labels, PGO needs."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_output_profiles import (
    APP,
    HELPER,
    INNER,
    LIBC,
    MAIN,
    NOPIE,
    PERIOD_HZ,
    START_NS,
    empty_profile,
    rich_profile,
)

from fleetprof.output import get_format
from fleetprof.output.frames import runtime_address
from fleetprof.output.proto import profile_pb2 as pb
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile

PERIOD_NS = 1_000_000_000 // PERIOD_HZ


def parse(profile: Profile) -> pb.Profile:
    stream = io.BytesIO()
    get_format("pprof").write(profile, stream)
    out = pb.Profile()
    out.ParseFromString(gzip.decompress(stream.getvalue()))
    return out


def labels(p: pb.Profile, s: pb.Sample) -> dict[str, int | str]:
    return {p.string_table[lb.key]: (p.string_table[lb.str] if lb.str else lb.num) for lb in s.label}


def function_names(p: pb.Profile, location: pb.Location) -> list[str]:
    functions = {f.id: f for f in p.function}
    return [p.string_table[functions[line.function_id].name] for line in location.line]


def test_header() -> None:
    p = parse(rich_profile())
    st = p.string_table
    assert st[0] == ""
    assert [(st[t.type], st[t.unit]) for t in p.sample_type] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert (st[p.period_type.type], st[p.period_type.unit]) == ("cpu", "nanoseconds")
    assert p.period == PERIOD_NS
    assert p.time_nanos == START_NS
    assert p.duration_nanos == 2_000_000_000
    assert st[p.default_sample_type] == "cpu"
    assert [st[c] for c in p.comment] == [
        "frequency_hz=100",
        "host=host-1",
        "kernel=6.1.0-test",
        "lost_samples=2",
    ]


def test_ids_and_references_are_consistent() -> None:
    p = parse(rich_profile())
    for table in (p.mapping, p.location, p.function):
        assert [entry.id for entry in table] == list(range(1, len(table) + 1))
    mapping_ids = {m.id for m in p.mapping}
    function_ids = {f.id for f in p.function}
    location_ids = {loc.id for loc in p.location}
    for loc in p.location:
        assert loc.mapping_id == 0 or loc.mapping_id in mapping_ids
        assert loc.line
        assert all(line.function_id in function_ids for line in loc.line)
    for s in p.sample:
        assert all(i in location_ids for i in s.location_id)
    n = len(p.string_table)
    for f in p.function:
        assert all(0 <= i < n for i in (f.name, f.system_name, f.filename))
    assert len(set(p.string_table)) == n  # interned once each


def test_samples_values_labels_and_leaf_first() -> None:
    p = parse(rich_profile())
    assert len(p.sample) == 6  # the zero-count sample is dropped
    assert sum(s.value[0] for s in p.sample) == rich_profile().total
    for s in p.sample:
        assert s.value[1] == s.value[0] * PERIOD_NS
    first = p.sample[0]
    assert labels(p, first) == {"pid": 100, "tid": 101, "thread_name": "worker", "process_name": "app"}
    locations = {loc.id: loc for loc in p.location}
    assert function_names(p, locations[first.location_id[0]]) == ["ksys_read"]  # leaf first
    assert function_names(p, locations[first.location_id[-1]]) == ["inner", "helper(int)", "main"]
    py = next(s for s in p.sample if labels(p, s)["pid"] == 200)
    assert labels(p, py)["container_id"] == "c0ffee" * 10
    assert [function_names(p, locations[i])[0] for i in py.location_id] == [
        "work;semi\nline naïve_λ",
        "<module>",
        "_start",
    ]


def test_inline_frames_share_one_location() -> None:
    p = parse(rich_profile())
    st = p.string_table
    functions = {f.id: f for f in p.function}
    inlined = [loc for loc in p.location if len(loc.line) > 1]
    assert len(inlined) == 1
    loc = inlined[0]
    assert [(st[functions[ln.function_id].name], ln.line) for ln in loc.line] == [
        ("inner", 30),
        ("helper(int)", 20),
        ("main", 10),
    ]
    by_name = {st[f.name]: f for f in p.function}
    assert st[by_name["helper(int)"].system_name] == "_Z6helperi"
    assert st[by_name["main"].system_name] == "main"
    # no system name unless the symbolizer had one: pprof would otherwise "simplify" `<module>` to ""
    assert st[by_name["<module>"].system_name] == ""
    assert by_name["helper(int)"].start_line == 18
    assert st[by_name["inner"].filename] == "inner.h"


def test_mappings() -> None:
    p = parse(rich_profile())
    st = p.string_table
    by_file = {st[m.filename]: m for m in p.mapping}
    assert set(by_file) == {APP.path, LIBC.path, NOPIE.path, "[kernel.kallsyms]"}
    app = by_file[APP.path]
    assert (app.memory_start, app.memory_limit, app.file_offset) == (APP.start, APP.limit, APP.offset)
    assert st[app.build_id] == APP.build_id
    assert st[by_file[LIBC.path].build_id] == ""
    assert app.has_functions and not app.has_filenames  # the `</script>` frame has no file
    libc = by_file[LIBC.path]
    assert not libc.has_functions  # one frame stayed `libc.so.6+0x41a2b`
    assert not libc.has_line_numbers
    kernel = by_file["[kernel.kallsyms]"]
    assert kernel.has_functions and not kernel.has_line_numbers
    assert kernel.memory_start == 0xFFFFFFFF81000000
    assert kernel.memory_limit == 0xFFFFFFFF81234561
    mappings = {m.id: m for m in p.mapping}
    for loc in p.location:
        if loc.mapping_id:
            mapping = mappings[loc.mapping_id]
            assert mapping.memory_start <= loc.address < mapping.memory_limit


def test_fully_symbolized_mapping_flags() -> None:
    profile = Profile(
        samples=rich_profile().samples[:2], frequency_hz=PERIOD_HZ, start_time_ns=0, duration_ns=1
    )
    p = parse(profile)
    app = next(m for m in p.mapping if p.string_table[m.filename] == APP.path)
    assert (app.has_functions, app.has_filenames, app.has_line_numbers, app.has_inline_frames) == (True,) * 4


def test_python_and_error_frames_have_no_mapping() -> None:
    p = parse(rich_profile())
    for loc in p.location:
        names = function_names(p, loc)
        if names[0] in ("<module>", "[unwind: no mapping]"):
            assert loc.mapping_id == 0
            assert loc.address == 0


def test_addresses() -> None:
    assert runtime_address(MAIN) == APP.start + 0x1234 - APP.offset
    assert APP.start <= runtime_address(MAIN) < APP.limit
    assert runtime_address(HELPER) == runtime_address(INNER) == runtime_address(MAIN)
    nopie = Frame(FrameKind.NATIVE, "_start", mapping=NOPIE, address=0x420010)
    assert runtime_address(nopie) == 0x420010  # non-PIE: the ELF address is the runtime address
    unknown = Frame(FrameKind.NATIVE, "f", mapping=Mapping(file_id="0" * 32, path="/x"), address=0x99)
    assert runtime_address(unknown) == 0x99
    p = parse(rich_profile())
    app_id = next(m.id for m in p.mapping if p.string_table[m.filename] == APP.path)
    main = next(loc for loc in p.location if len(loc.line) == 3)
    assert (main.mapping_id, main.address) == (app_id, runtime_address(MAIN))


def test_go_pgo_requirements() -> None:
    """cmd/compile's PGO reader needs samples/count or cpu/nanoseconds, line numbers and a start_line."""
    p = parse(rich_profile())
    st = p.string_table
    assert any((st[t.type], st[t.unit]) == ("samples", "count") for t in p.sample_type)
    start_lines = {st[f.name]: f.start_line for f in p.function}
    assert (start_lines["main"], start_lines["helper(int)"], start_lines["__libc_read"]) == (5, 18, 25)
    assert all(line.line >= 0 for loc in p.location for line in loc.line)


def test_output_is_reproducible() -> None:
    first, second = io.BytesIO(), io.BytesIO()
    get_format("pprof").write(rich_profile(), first)
    get_format("pprof").write(rich_profile(), second)
    assert first.getvalue() == second.getvalue()
    assert first.getvalue()[:2] == b"\x1f\x8b"


def test_empty_profile() -> None:
    p = parse(empty_profile())
    assert list(p.string_table[:1]) == [""]
    assert not p.sample and not p.location and not p.mapping and not p.function
    assert len(p.sample_type) == 2


def test_go_pprof_reads_it(tmp_path: Path) -> None:
    """Go's own profile parser (go tool pprof) accepts the file and sees names, lines and inline frames."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go not installed")
    path = tmp_path / "cpu.pb.gz"
    with path.open("wb") as stream:
        get_format("pprof").write(rich_profile(), stream)
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "HOME": str(tmp_path), "GOTOOLCHAIN": "local"}
    result = subprocess.run(
        [go, "tool", "pprof", "-raw", str(path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    raw = result.stdout
    assert "samples/count cpu/nanoseconds" in raw
    assert "inner inner.h:30 s=29" in raw
    assert "helper(int) app.c:20 s=18(_Z6helperi)" in raw
    assert "<module> /app/main.py:12 s=1" in raw
    assert "pid:[100] tid:[101]" in raw
    assert APP.build_id in raw

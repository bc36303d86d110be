"""OTLP profiles output: round trip, dictionary consistency, resources, attributes, timestamps."""

from __future__ import annotations

import io
from typing import Any

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp
from test_output_profiles import (
    APP,
    LIBC,
    MAIN,
    PERIOD_HZ,
    START_NS,
    empty_profile,
    process,
    rich_profile,
    sample,
)

from fleetprof.output import get_format
from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.model import Profile

TABLES = ("mapping_table", "location_table", "function_table", "link_table", "attribute_table", "stack_table")


def round_trip(profile: Profile) -> ExportProfilesServiceRequest:
    stream = io.BytesIO()
    get_format("otlp").write(profile, stream)
    request = ExportProfilesServiceRequest()
    request.ParseFromString(stream.getvalue())
    return request


def any_value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


class View:
    """Resolves dictionary indexes of one request for readable assertions."""

    def __init__(self, request: ExportProfilesServiceRequest) -> None:
        self.d = request.dictionary
        self.s = self.d.string_table

    def attrs(self, indices) -> dict[str, Any]:
        out = {}
        for i in indices:
            kv = self.d.attribute_table[i]
            out[self.s[kv.key_strindex]] = any_value(kv.value)
        return out

    def lines(self, location_index: int) -> list[tuple[str, int]]:
        loc = self.d.location_table[location_index]
        return [(self.s[self.d.function_table[ln.function_index].name_strindex], ln.line) for ln in loc.lines]

    def stack(self, sample: otlp.Sample) -> list[list[tuple[str, int]]]:
        return [self.lines(i) for i in self.d.stack_table[sample.stack_index].location_indices]


def resources(request: ExportProfilesServiceRequest) -> dict[int, tuple[dict[str, Any], otlp.Profile]]:
    out = {}
    for rp in request.resource_profiles:
        attributes = {kv.key: any_value(kv.value) for kv in rp.resource.attributes}
        (sp,) = rp.scope_profiles
        assert sp.scope.name == "fleetprof"
        (profile,) = sp.profiles
        out[attributes["process.pid"]] = (attributes, profile)
    return out


def test_round_trip_equals_conversion() -> None:
    assert round_trip(rich_profile()) == to_otlp_request(rich_profile())


def test_tables_start_with_zero_values_and_indexes_are_valid() -> None:
    request = round_trip(rich_profile())
    d = request.dictionary
    assert d.string_table[0] == ""
    for name in TABLES:
        table = getattr(d, name)
        assert len(table) >= 1, name
        assert table[0] == type(table[0])(), name
    sizes = {name: len(getattr(d, name)) for name in TABLES}
    n_strings = len(d.string_table)
    assert len(set(d.string_table)) == n_strings
    for m in d.mapping_table:
        assert m.filename_strindex < n_strings
        assert all(0 < i < sizes["attribute_table"] for i in m.attribute_indices)
    for loc in d.location_table[1:]:
        assert 0 <= loc.mapping_index < sizes["mapping_table"]
        assert loc.lines
        assert all(0 < ln.function_index < sizes["function_table"] for ln in loc.lines)
        assert all(0 < i < sizes["attribute_table"] for i in loc.attribute_indices)
    for f in d.function_table:
        for i in (f.name_strindex, f.system_name_strindex, f.filename_strindex):
            assert i < n_strings
    for st in d.stack_table:
        assert all(0 < i < sizes["location_table"] for i in st.location_indices)
    for kv in d.attribute_table[1:]:
        assert 0 < kv.key_strindex < n_strings
    for rp in request.resource_profiles:
        for p in rp.scope_profiles[0].profiles:
            for s in p.samples:
                assert 0 <= s.stack_index < sizes["stack_table"]
                assert all(0 < i < sizes["attribute_table"] for i in s.attribute_indices)
                assert s.link_index == 0
                assert s.values or s.timestamps_unix_nano


def test_resources_per_process() -> None:
    by_pid = resources(round_trip(rich_profile()))
    assert sorted(by_pid) == [100, 200, 300]
    app_attrs, app = by_pid[100]
    assert app_attrs == {
        "process.pid": 100,
        "process.title": "app",
        "host.name": "host-1",
        "os.version": "6.1.0-test",
    }
    py_attrs, _ = by_pid[200]
    assert py_attrs["container.id"] == "c0ffee" * 10
    assert "container.id" not in app_attrs
    request = round_trip(rich_profile())
    s = request.dictionary.string_table
    assert (s[app.sample_type.type_strindex], s[app.sample_type.unit_strindex]) == ("samples", "count")
    assert (s[app.period_type.type_strindex], s[app.period_type.unit_strindex]) == ("cpu", "nanoseconds")
    assert app.period == 1_000_000_000 // PERIOD_HZ
    assert app.time_unix_nano == START_NS
    assert app.duration_nano == 2_000_000_000


def test_samples_attributes_and_timestamps() -> None:
    request = round_trip(rich_profile())
    view = View(request)
    _, app = resources(request)[100]
    by_thread = {}
    for s in app.samples:
        attrs = view.attrs(s.attribute_indices)
        by_thread.setdefault(attrs["thread.id"], []).append((attrs, s))
    attrs, first = by_thread[101][0]
    assert attrs == {"thread.id": 101, "thread.name": "worker", "cpu.logical_number": 0}
    assert list(first.values) == []
    assert list(first.timestamps_unix_nano) == sorted(first.timestamps_unix_nano)
    assert len(first.timestamps_unix_nano) == 3
    untimed = [s for a, s in by_thread[101] if "cpu.logical_number" not in a]  # ran on CPUs 0 and 1
    assert len(untimed) == 1
    assert list(untimed[0].values) == [1]
    assert not untimed[0].timestamps_unix_nano
    total = sum(len(s.timestamps_unix_nano) or sum(s.values) for s in app.samples)
    assert total == 10


def test_stacks_leaf_first_with_inline_lines_and_no_process_frame() -> None:
    request = round_trip(rich_profile())
    view = View(request)
    _, app = resources(request)[100]
    stack = view.stack(app.samples[0])
    assert stack[0] == [("ksys_read", 0)]
    assert stack[-1] == [("inner", 30), ("helper(int)", 20), ("main", 10)]
    assert len(stack) == 4  # main+helper+inner, __libc_read, two kernel frames; no process frame
    _, py = resources(request)[200]
    assert [lines[0][0] for lines in view.stack(py.samples[0])] == [
        "work;semi\nline naïve_λ",
        "<module>",
        "_start",
    ]


def test_mappings_locations_and_frame_types() -> None:
    request = round_trip(rich_profile())
    view = View(request)
    d = request.dictionary
    by_file = {view.s[m.filename_strindex]: m for m in d.mapping_table[1:]}
    app = by_file[APP.path]
    assert (app.memory_start, app.memory_limit, app.file_offset) == (APP.start, APP.limit, APP.offset)
    assert view.attrs(app.attribute_indices) == {
        "fleetprof.file_id": APP.file_id,
        "process.executable.build_id.gnu": APP.build_id,
    }
    assert view.attrs(by_file[LIBC.path].attribute_indices) == {
        "fleetprof.file_id": LIBC.file_id,
        "process.executable.build_id.htlhash": LIBC.file_id,  # no build id: our file id is the content hash
    }
    kernel = by_file["[kernel.kallsyms]"]
    types = {}
    for i, loc in enumerate(d.location_table[1:], start=1):
        name = view.lines(i)[-1][0]
        types[name] = view.attrs(loc.attribute_indices).get("profile.frame.type")
        if name == "main" and len(loc.lines) == 3:
            assert loc.address == MAIN.address  # ELF virtual address: the backend symbolizes by file id
            assert d.mapping_table[loc.mapping_index] == app
        if types[name] == "kernel":
            assert d.mapping_table[loc.mapping_index] == kernel
            assert kernel.memory_start <= loc.address < kernel.memory_limit
        if types[name] == "cpython":
            assert loc.mapping_index == 0
    assert types["ksys_read"] == "kernel"
    assert types["<module>"] == "cpython"
    assert types["__libc_read"] == "native"
    assert types["[unwind: no mapping]"] is None
    functions = {view.s[f.name_strindex]: f for f in d.function_table[1:]}
    assert functions["<module>"].start_line == 1
    assert view.s[functions["<module>"].filename_strindex] == "/app/main.py"
    assert view.s[functions["helper(int)"].system_name_strindex] == "_Z6helperi"


def test_identical_samples_are_merged() -> None:
    stack = [process("app"), MAIN]
    profile = Profile(
        samples=[sample(stack, count=2), sample(stack, count=3), sample(stack, count=1, timed=False)],
        frequency_hz=PERIOD_HZ,
        start_time_ns=START_NS,
        duration_ns=1,
    )
    (rp,) = to_otlp_request(profile).resource_profiles
    (s,) = rp.scope_profiles[0].profiles[0].samples
    assert list(s.values) == [6]  # one untimed sample: the merged sample carries a count, no timestamps
    timed = Profile(
        samples=profile.samples[:2], frequency_hz=PERIOD_HZ, start_time_ns=START_NS, duration_ns=1
    )
    (rp,) = to_otlp_request(timed).resource_profiles
    (s,) = rp.scope_profiles[0].profiles[0].samples
    assert len(s.timestamps_unix_nano) == 5 and not s.values


def test_empty_profile() -> None:
    request = round_trip(empty_profile())
    assert not request.resource_profiles
    d = request.dictionary
    assert list(d.string_table) == [""]
    for name in TABLES:
        assert len(getattr(d, name)) == 1

"""OTLP encode → decode: raw and symbolized profiles come back as they were; a request shaped like the
OpenTelemetry eBPF profiler's decodes into the same model; malformed input fails with one line."""

from __future__ import annotations

import random

import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp
from test_output_profiles import rich_profile

from fleetprof.output.folded import folded_lines
from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.symbolize.profile import symbolize_profile
from fleetprof.wire.otlp_decode import OtlpDecodeError, from_otlp_bytes, from_otlp_request

START = 1_700_000_000_000_000_000
APP = Mapping(file_id="ab" * 16, path="/srv/bin/api", build_id="ab" * 20, start=0x55_0000, limit=0x56_0000)
LIBC = Mapping(
    file_id="cd" * 16, path="/lib/libc.so.6", start=0x7F_0000_0000, limit=0x7F_0010_0000, offset=0x28000
)
RESOURCE: dict[str, str | int] = {
    "host.name": "node-1",
    "host.id": "0123456789abcdef0123456789abcdef",
    "os.type": "linux",
    "os.description": "Debian GNU/Linux 12 (bookworm)",
    "os.version": "6.1.0-test",
    "host.arch": "amd64",
    "host.cpu.model.name": "Test CPU",
    "host.cpu.count": 8,
    "fleetprof.agent.version": "0.1.0",
}


def raw(function: str, mapping: Mapping, address: int) -> Frame:
    del function  # the name a symbolizer will give it, for readability
    return Frame(FrameKind.NATIVE, "", mapping=mapping, address=address)


def _sample(stack: list[Frame], pid: int, tid: int, count: int, cpu: int, **labels: str) -> Sample:
    stamps = [START + 1_000_000 * (i + 1) + tid for i in range(count)]
    return Sample(
        stack=tuple(stack),
        pid=pid,
        tid=tid,
        process_name=stack[0].function,
        thread_name=f"t{tid}",
        count=count,
        cpus={cpu},
        timestamps_ns=stamps,
        **labels,
    )


def raw_profile() -> Profile:
    """Every frame a raw profile holds; one CPU per sample and distinct labels, so encoding is lossless."""
    api = Frame(FrameKind.PROCESS, "api")
    py = Frame(FrameKind.PROCESS, "python3")
    kernel = Frame(FrameKind.KERNEL, "do_syscall_64", address=0xFFFFFFFF81000010)
    jit = Frame(
        FrameKind.NATIVE, "LazyCompile:*work", mapping=Mapping(file_id="", path="jit"), address=0x3F00
    )
    unknown = Frame(FrameKind.NATIVE, "[unknown]+0x1234", address=0x1234)
    error = Frame(FrameKind.ERROR, "[unwind: no table entry]")
    marker = Frame(FrameKind.ERROR, "[unwind: python: CPython 3.7 is not supported]")
    pyframe = Frame(FrameKind.PYTHON, "handle", file="/app/h.py", line=12, start_line=10)
    jvm = Frame(FrameKind.INTERPRETED, "com.example.Main.run", file="Main.java", line=3, runtime="jvm")
    # a TurboFan frame with what it inlined (the agent's V8 namer gives them root first, inner ones inlined)
    node = Frame(FrameKind.PROCESS, "node")
    js = [
        Frame(FrameKind.INTERPRETED, "run", file="/srv/a.js", line=9, start_line=6, runtime="v8js"),
        Frame(
            FrameKind.INTERPRETED,
            "total",
            file="/srv/a.js",
            line=5,
            start_line=5,
            inlined=True,
            runtime="v8js",
        ),
        Frame(
            FrameKind.INTERPRETED, "hot", file="/srv/b.js", line=2, start_line=1, inlined=True, runtime="v8js"
        ),
    ]
    labels = {
        "executable": "/srv/bin/api",
        "container_id": "c" * 64,
        "pod_uid": "0c4f9d2e-51a7-4b83-9f0e-2d6c8a1b3e5f",
    }
    samples = [
        _sample([api, raw("main", APP, 0x1000), raw("read", LIBC, 0x11A2AF), kernel], 10, 11, 3, 0, **labels),
        _sample([api, raw("main", APP, 0x1000), raw("read", LIBC, 0x11A2AF), kernel], 10, 12, 2, 1, **labels),
        _sample([api, error, raw("main", APP, 0x1004)], 10, 11, 1, 0, **labels),
        _sample([api, unknown, jit, raw("main", APP, 0x1000)], 10, 11, 4, 1, **labels),
        _sample(
            [py, marker, raw("_start", LIBC, 0x2000), pyframe], 20, 20, 5, 1, executable="/usr/bin/python3.12"
        ),
        _sample([py, jvm], 20, 21, 1, 0),
        _sample([node, raw("main", APP, 0x1000), *js], 30, 30, 2, 0),
    ]
    return Profile(
        samples=samples,
        frequency_hz=20,
        start_time_ns=START,
        duration_ns=5_000_000_000,
        hostname="node-1",
        kernel_release="6.1.0-test",
        stats={"lost_samples": 2, "python_processes": 1},
        resource=dict(RESOURCE),
    )


def _lookup(file_id: str, build_id: str, path: str, addresses: list[int]) -> dict[int, tuple[Frame, ...]]:
    """main has an inlined callee; libc's 0x2000 stays unknown."""
    names = {
        0x1000: (
            Frame(FrameKind.NATIVE, "main", file="api.c", line=10, start_line=5),
            Frame(
                FrameKind.NATIVE, "parse<int>", file="p.h", line=3, inlined=True, system_name="_Z5parseIiEvv"
            ),
        ),
        0x1004: (Frame(FrameKind.NATIVE, "main", file="api.c", line=11, start_line=5),),
        0x11A2AF: (Frame(FrameKind.NATIVE, "__libc_read", file="read.c", line=26),),
    }
    return {a: names[a] for a in addresses if a in names}


def _canonical(profile: Profile) -> tuple[object, ...]:
    samples = sorted(
        profile.samples, key=lambda s: (s.pid, s.tid, [f.folded_name() for f in s.stack], s.count)
    )
    return (
        samples,
        profile.frequency_hz,
        profile.start_time_ns,
        profile.duration_ns,
        profile.hostname,
        profile.kernel_release,
        profile.stats,
        profile.resource,
    )


def _round_trip(profile: Profile) -> Profile:
    data = to_otlp_request(profile).SerializeToString()
    (back,) = from_otlp_bytes(data)
    return back


def test_raw_profile_round_trips() -> None:
    profile = raw_profile()
    back = _round_trip(profile)
    assert _canonical(back) == _canonical(profile)
    assert any(f.is_raw for s in back.samples for f in s.stack), "native frames stay raw"


def test_symbolized_profile_round_trips() -> None:
    profile = symbolize_profile(raw_profile(), _lookup)
    assert not any(f.is_raw for s in profile.samples for f in s.stack)
    back = _round_trip(profile)
    assert _canonical(back) == _canonical(profile)
    inlined = next(f for s in back.samples for f in s.stack if f.inlined and f.kind is FrameKind.NATIVE)
    assert (inlined.function, inlined.system_name, inlined.mapping) == ("parse<int>", "_Z5parseIiEvv", APP)


def test_inlined_interpreted_frames_keep_their_place() -> None:
    """A JIT frame's inlined functions (V8, HotSpot) travel as one location with a line each, outermost
    first, and come back inlined under their caller."""
    back = _round_trip(raw_profile())
    (sample,) = [s for s in back.samples if s.pid == 30]
    got = [(f.function, f.line, f.inlined, f.runtime) for f in sample.stack[-3:]]
    assert got == [("run", 9, False, "v8js"), ("total", 5, True, "v8js"), ("hot", 2, True, "v8js")]


def test_decoded_raw_profile_symbolizes_like_the_original() -> None:
    """The server's path: decode the agent's raw profile, then symbolize it centrally."""
    original = symbolize_profile(raw_profile(), _lookup)
    central = symbolize_profile(_round_trip(raw_profile()), _lookup)
    assert sorted(folded_lines(central)) == sorted(folded_lines(original))


def test_lossy_profile_keeps_its_stacks_and_counts() -> None:
    """Samples spread over CPUs lose their CPU, merged duplicates come back merged: stacks and counts stay."""
    profile = rich_profile()
    back = _round_trip(profile)
    assert sorted(folded_lines(back)) == sorted(folded_lines(profile))
    assert back.total == profile.total and back.stats == profile.stats
    assert back.resource == {"host.name": "host-1", "os.version": "6.1.0-test"}


def _attrs(request: ExportProfilesServiceRequest, indices: list[int]) -> dict[str, object]:
    d = request.dictionary
    out = {}
    for i in indices:
        kv = d.attribute_table[i]
        out[d.string_table[kv.key_strindex]] = getattr(kv.value, kv.value.WhichOneof("value"))
    return out


def test_raw_frames_travel_as_mapping_and_address() -> None:
    request = to_otlp_request(raw_profile())
    d = request.dictionary
    raw_locations = [loc for loc in d.location_table[1:] if not loc.lines]
    assert raw_locations, "raw native frames have no Line"
    for loc in raw_locations:
        assert _attrs(request, loc.attribute_indices) == {"profile.frame.type": "native"}
        mapping = d.mapping_table[loc.mapping_index]
        attrs = _attrs(request, mapping.attribute_indices)
        assert attrs["fleetprof.file_id"] in (APP.file_id, LIBC.file_id)
    app = next(m for m in d.mapping_table if d.string_table[m.filename_strindex] == APP.path)
    assert _attrs(request, app.attribute_indices)["process.executable.build_id.gnu"] == APP.build_id
    types = {
        str(_attrs(request, loc.attribute_indices).get("profile.frame.type")) for loc in d.location_table[1:]
    }
    assert types == {"native", "kernel", "cpython", "jvm", "v8js", "None"}
    resources = [{kv.key: kv.value for kv in rp.resource.attributes} for rp in request.resource_profiles]
    api = next(r for r in resources if r["process.pid"].int_value == 10)
    assert api["process.executable.path"].string_value == "/srv/bin/api"
    assert api["process.executable.name"].string_value == "api"
    assert api["process.title"].string_value == "api"
    assert api["k8s.pod.uid"].string_value == "0c4f9d2e-51a7-4b83-9f0e-2d6c8a1b3e5f"
    assert api["container.id"].string_value == "c" * 64
    assert api["host.id"].string_value == RESOURCE["host.id"]
    assert api["host.cpu.count"].int_value == 8
    profiles = [p for rp in request.resource_profiles for p in rp.scope_profiles[0].profiles]
    assert all(p.time_unix_nano == START and p.duration_nano == 5_000_000_000 for p in profiles)
    assert _attrs(request, profiles[0].attribute_indices) == {
        "fleetprof.stats.lost_samples": 2,
        "fleetprof.stats.python_processes": 1,
    }
    sample = profiles[0].samples[0]
    assert set(_attrs(request, sample.attribute_indices)) == {
        "thread.id",
        "thread.name",
        "cpu.logical_number",
    }
    assert len(sample.timestamps_unix_nano) > 0 and not sample.values


def test_idle_window_still_reports_host_and_counters() -> None:
    idle = Profile(
        samples=[],
        frequency_hz=20,
        start_time_ns=START,
        duration_ns=5,
        stats={"lost_samples": 1},
        resource={"host.name": "idle-1"},
    )
    request = to_otlp_request(idle)
    assert len(request.resource_profiles) == 1
    (back,) = from_otlp_request(request)
    assert (back.samples, back.stats, back.hostname, back.start_time_ns) == (
        [],
        {"lost_samples": 1},
        "idle-1",
        START,
    )


def test_hosts_are_kept_apart() -> None:
    """Resources of two hosts in one request decode into one Profile each, with their own identity."""
    request = to_otlp_request(raw_profile())
    host_id = next(kv for kv in request.resource_profiles[1].resource.attributes if kv.key == "host.id")
    host_id.value.string_value = "f" * 32
    profiles = from_otlp_request(request)
    assert sorted(str(p.resource["host.id"]) for p in profiles) == sorted(
        [str(RESOURCE["host.id"]), "f" * 32]
    )
    assert sum(p.total for p in profiles) == raw_profile().total
    moved = next(p for p in profiles if p.resource["host.id"] == "f" * 32)
    assert [(s.pid, s.executable, s.count) for s in moved.samples] == [(20, "", 1)]
    assert sum(p.stats.get("lost_samples", 0) for p in profiles) == 2, "counters are not duplicated"


# ---- the OpenTelemetry eBPF profiler's shape -------------------------------------------------------------


class _Builder:
    """Builds a request the way the eBPF profiler's reporter does (reporter/internal/pdata/generate.go):
    zero entries first, mappings with gnu/htlhash build ids, a Line only for symbolized frames, the frame
    type on every location, per-process resources, thread and CPU as sample attributes, timestamps only."""

    def __init__(self) -> None:
        self.request = ExportProfilesServiceRequest()
        d = self.request.dictionary
        self.d = d
        d.string_table.append("")
        for table in (d.mapping_table, d.location_table, d.function_table, d.link_table, d.stack_table):
            table.add()
        d.attribute_table.add()
        self.strings: dict[str, int] = {"": 0}

    def s(self, text: str) -> int:
        if text not in self.strings:
            self.strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self.strings[text]

    def attr(self, key: str, value: str | int) -> int:
        entry = self.d.attribute_table.add(key_strindex=self.s(key))
        if isinstance(value, int):
            entry.value.int_value = value
        else:
            entry.value.string_value = value
        return len(self.d.attribute_table) - 1

    def mapping(self, filename: str, htlhash: str, gnu: str = "", start: int = 0, end: int = 0) -> int:
        attrs = [self.attr("process.executable.build_id.htlhash", htlhash)]
        if gnu:
            attrs.insert(0, self.attr("process.executable.build_id.gnu", gnu))
        self.d.mapping_table.add(
            memory_start=start, memory_limit=end, filename_strindex=self.s(filename), attribute_indices=attrs
        )
        return len(self.d.mapping_table) - 1

    def location(
        self, frame_type: str, mapping: int, address: int, function: str = "", file: str = "", line: int = 0
    ) -> int:
        loc = self.d.location_table.add(
            mapping_index=mapping,
            address=address,
            attribute_indices=[self.attr("profile.frame.type", frame_type)],
        )
        if function or file:
            self.d.function_table.add(name_strindex=self.s(function), filename_strindex=self.s(file))
            loc.lines.add(function_index=len(self.d.function_table) - 1, line=line)
        return len(self.d.location_table) - 1

    def stack(self, *locations: int) -> int:
        self.d.stack_table.add(location_indices=list(locations))
        return len(self.d.stack_table) - 1

    def resource(self, **attrs: str | int) -> otlp.ScopeProfiles:
        rp = self.request.resource_profiles.add()
        for key, value in attrs.items():
            v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
            rp.resource.attributes.append(KeyValue(key=key.replace("_", "."), value=v))
        sp = rp.scope_profiles.add()
        sp.scope.name = "go.opentelemetry.io/ebpf-profiler"
        return sp

    def profile(
        self, sp: otlp.ScopeProfiles, sample_type: tuple[str, str] = ("samples", "count")
    ) -> otlp.Profile:
        prof = sp.profiles.add(time_unix_nano=START, duration_nano=5_000_000_000, period=50_000_000)
        prof.sample_type.type_strindex = self.s(sample_type[0])
        prof.sample_type.unit_strindex = self.s(sample_type[1])
        prof.period_type.type_strindex = self.s("cpu")
        prof.period_type.unit_strindex = self.s("nanoseconds")
        return prof

    def sample(
        self, prof: otlp.Profile, stack: int, tid: int, comm: str, cpu: int, stamps: list[int]
    ) -> None:
        attrs = [
            self.attr("thread.name", comm),
            self.attr("thread.id", tid),
            self.attr("cpu.logical_number", cpu),
        ]
        prof.samples.add(stack_index=stack, attribute_indices=attrs, timestamps_unix_nano=stamps)


HTL_JAVA = "00112233445566778899aabbccddeeff"
HTL_LIBC = "ffeeddccbbaa99887766554433221100"
GNU_LIBC = "89abcdef" * 5


def ebpf_profiler_request() -> ExportProfilesServiceRequest:
    b = _Builder()
    libjvm = b.mapping("libjvm.so", HTL_JAVA, start=0x7F00_0000_0000, end=0x7F00_0100_0000)
    libc = b.mapping("libc.so.6", HTL_LIBC, GNU_LIBC, 0x7F10_0000_0000, 0x7F10_0020_0000)
    kernel = b.mapping("vmlinux", "0" * 32)
    dummy = b.mapping("", HTL_JAVA)  # interpreted frames get a placeholder mapping
    k_read = b.location("kernel", kernel, 0xFFFFFFFF81234560, "ksys_read")
    read = b.location("native", libc, 0x11A2AF)  # unsymbolized: (file id, address)
    write = b.location("native", libc, 0x11B000, "__libc_write", "write.c", 30)  # symbolized upstream
    jvm_run = b.location("jvm", dummy, 7, "com.example.Main.run", "Main.java", 42)
    jvm_main = b.location("jvm", dummy, 1, "com.example.Main.main", "Main.java", 9)
    interp = b.location("native", libjvm, 0x5A5A0)
    py = b.location("cpython", dummy, 3, "handler", "/app/h.py", 17)
    v8 = b.location("v8js", dummy, 0, "processTicksAndRejections", "node:internal/process/task_queues", 95)
    abort = b.location("abort-marker", 0, 0)
    java_stack = b.stack(k_read, read, jvm_run, interp, jvm_main)  # leaf first
    java_write = b.stack(write, jvm_run, interp, jvm_main)
    py_stack = b.stack(py, abort)
    v8_stack = b.stack(v8)

    java = b.resource(
        container_id="a" * 64,
        process_pid=4242,
        **{
            "process.executable.path": "/usr/lib/jvm/java-21/bin/java",
            "process.executable.name": "java",
            "service.name": "checkout",
        },
    )
    prof = b.profile(java)
    b.sample(prof, java_stack, 4243, "C2 CompilerThre", 3, [START + 1, START + 2])
    b.sample(prof, java_write, 4244, "main", 1, [START + 3])
    offcpu = b.profile(java, ("events", "nanoseconds"))  # off-CPU: not a sample count, skipped
    b.sample(offcpu, java_stack, 4243, "main", 1, [START + 4])

    other = b.resource(process_pid=77, **{"process.executable.path": "/usr/bin/python3.12"})
    prof = b.profile(other)
    b.sample(prof, py_stack, 77, "python3", 0, [START + 5, START + 6, START + 7])
    b.sample(prof, v8_stack, 78, "node", 2, [START + 8])
    return b.request


def test_ebpf_profiler_request_decodes() -> None:
    (profile,) = from_otlp_bytes(ebpf_profiler_request().SerializeToString())
    assert profile.frequency_hz == 20
    assert (profile.start_time_ns, profile.duration_ns) == (START, 5_000_000_000)
    assert profile.stats == {"otlp_skipped_profiles": 1}
    assert profile.resource == {} and profile.hostname == ""
    by_tid = {s.tid: s for s in profile.samples}
    assert sorted(by_tid) == [77, 78, 4243, 4244]
    java = by_tid[4243]
    assert (java.pid, java.process_name, java.thread_name, java.count, java.cpus) == (
        4242,
        "java",
        "C2 CompilerThre",
        2,
        {3},
    )
    assert (java.executable, java.container_id, java.timestamps_ns) == (
        "/usr/lib/jvm/java-21/bin/java",
        "a" * 64,
        [START + 1, START + 2],
    )
    process, main, interp, run, read, k_read = java.stack
    assert process == Frame(FrameKind.PROCESS, "java")
    assert (main.kind, main.runtime, main.function, main.file, main.line) == (
        FrameKind.INTERPRETED,
        "jvm",
        "com.example.Main.main",
        "Main.java",
        9,
    )
    assert interp.is_raw and interp.mapping is not None
    assert (interp.mapping.file_id, interp.mapping.path, interp.address) == (HTL_JAVA, "libjvm.so", 0x5A5A0)
    assert read.is_raw and read.mapping is not None
    assert (read.mapping.file_id, read.mapping.build_id, read.address) == (HTL_LIBC, GNU_LIBC, 0x11A2AF)
    assert (read.mapping.start, read.mapping.limit) == (0x7F10_0000_0000, 0x7F10_0020_0000)
    assert k_read == Frame(FrameKind.KERNEL, "ksys_read", address=0xFFFFFFFF81234560)
    assert run.function == "com.example.Main.run"
    write = by_tid[4244].stack[-1]
    assert (write.kind, write.function, write.file, write.line, write.is_raw) == (
        FrameKind.NATIVE,
        "__libc_write",
        "write.c",
        30,
        False,
    )  # kept as it came
    py = by_tid[77]
    assert (py.pid, py.process_name, py.executable, py.count) == (77, "python3.12", "/usr/bin/python3.12", 3)
    assert [f.kind for f in py.stack] == [FrameKind.PROCESS, FrameKind.ERROR, FrameKind.PYTHON]
    assert py.stack[2] == Frame(FrameKind.PYTHON, "handler", file="/app/h.py", line=17)
    assert by_tid[78].stack[-1].runtime == "v8js"
    # The server's next step: symbolize the raw frames by (file id, address), keep the others.
    seen: list[tuple[str, str, list[int]]] = []

    def lookup(file_id: str, build_id: str, path: str, addresses: list[int]) -> dict[int, tuple[Frame, ...]]:
        seen.append((file_id, build_id, addresses))
        return {a: (Frame(FrameKind.NATIVE, f"fn_{a:x}"),) for a in addresses}

    done = symbolize_profile(profile, lookup)
    assert sorted(seen) == [(HTL_JAVA, "", [0x5A5A0]), (HTL_LIBC, GNU_LIBC, [0x11A2AF])]
    names = [f.function for f in next(s for s in done.samples if s.tid == 4243).stack]
    assert names == [
        "java",
        "com.example.Main.main",
        "fn_5a5a0",
        "com.example.Main.run",
        "fn_11a2af",
        "ksys_read",
    ]


# ---- malformed input -------------------------------------------------------------------------------------


def _mutated(change) -> ExportProfilesServiceRequest:  # type: ignore[no-untyped-def]
    request = to_otlp_request(raw_profile())
    change(request)
    return request


def _named_location(r: ExportProfilesServiceRequest) -> otlp.Location:
    return next(loc for loc in r.dictionary.location_table if loc.lines)


def _first_sample(r: ExportProfilesServiceRequest) -> otlp.Sample:
    return r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: setattr(_first_sample(r), "stack_index", 999), "stack index 999 out of range"),
        (lambda r: r.dictionary.stack_table[1].location_indices.append(10_000), "location index 10000"),
        (lambda r: setattr(r.dictionary.location_table[1], "mapping_index", 500), "mapping index 500"),
        (lambda r: setattr(_named_location(r).lines[0], "function_index", 77), "function index 77"),
        (lambda r: setattr(r.dictionary.function_table[1], "name_strindex", 9999), "string index 9999"),
        (lambda r: _first_sample(r).attribute_indices.append(4096), "attribute index 4096"),
        (lambda r: setattr(r.dictionary.attribute_table[1], "key_strindex", 12345), "string index 12345"),
        (lambda r: setattr(_first_sample(r), "link_index", 3), "link index 3"),
        (lambda r: r.ClearField("dictionary"), "missing dictionary"),
        (lambda r: _first_sample(r).values.append(-5), "negative sample value"),
        (lambda r: setattr(_first_sample(r), "stack_index", -1), "stack index -1"),
    ],
)
def test_malformed_requests_fail_with_one_line(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OtlpDecodeError) as excinfo:
        from_otlp_request(_mutated(change))
    message = str(excinfo.value)
    assert reason in message and "\n" not in message


def test_garbage_bytes_fail_with_one_line() -> None:
    for data in (b"\xff\xff\xff\xff", to_otlp_request(raw_profile()).SerializeToString()[:-7]):
        with pytest.raises(OtlpDecodeError) as excinfo:
            from_otlp_bytes(data)
        assert "\n" not in str(excinfo.value)


def test_random_corruption_never_escapes_as_another_error() -> None:
    """Flipped bytes either decode or raise OtlpDecodeError: no IndexError, KeyError or ValueError leaks."""
    data = bytearray(to_otlp_request(raw_profile()).SerializeToString())
    rng = random.Random(9)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        try:
            from_otlp_bytes(bytes(corrupt))
            outcomes["ok"] += 1
        except OtlpDecodeError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0


def test_sparse_locations_get_placeholder_names() -> None:
    """Locations missing names or types still decode: kernel and Python placeholders, untyped file-backed
    locations as raw native frames, nameless native Lines as module offsets."""
    b = _Builder()
    libx = b.mapping("/usr/lib/libx.so", HTL_LIBC)
    kernel = b.location("kernel", 0, 0xFFFFFFFF81000000)
    python = b.location("cpython", 0, 0)
    untyped = b.d.location_table.add(mapping_index=libx, address=0x4242)
    chain = b.location(
        "native", libx, 0x99, "inner", "x.h", 2
    )  # an inline chain whose outer Line has no name
    b.d.function_table.add(filename_strindex=b.s("x.c"))
    b.d.location_table[chain].lines.add(function_index=len(b.d.function_table) - 1, line=4)
    only_file = b.location("native", libx, 0x77, file="y.c", line=9)
    stack = b.stack(kernel, chain, only_file, len(b.d.location_table) - 3, python)
    del untyped
    sp = b.resource(process_pid=5)
    b.sample(b.profile(sp), stack, 5, "x", 0, [START])
    (profile,) = from_otlp_request(b.request)
    _, py, raw_frame, no_name, outer, inner, k = profile.samples[0].stack
    assert (py.kind, py.function) == (FrameKind.PYTHON, "<python frame>")
    assert raw_frame.is_raw and raw_frame.address == 0x4242
    assert no_name.is_raw and no_name.address == 0x77, "a Line without a function: symbolized later"
    assert (outer.function, outer.file, outer.line, outer.inlined) == ("libx.so+0x99", "x.c", 4, False)
    assert (inner.function, inner.inlined) == ("inner", True)
    assert (k.kind, k.function) == (FrameKind.KERNEL, "[kernel]+0xffffffff81000000")

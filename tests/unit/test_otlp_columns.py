"""The columnar decoder (wire/otlp_columns.py) gives what the exact decoder gives — the same profiles, with
the same canonical frame and stack objects — on every request shape it takes, packed or unpacked; it hands
everything else (malformed, truncated, corrupted) back to the exact decoder, so the server's refusals read
as before."""

from __future__ import annotations

import random
import struct

import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp
from test_otlp_roundtrip import (
    HTL_LIBC,
    START,
    _Builder,
    _first_sample,
    _named_location,
    ebpf_profiler_request,
    raw_profile,
)
from test_output_profiles import rich_profile

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.columns import ColumnarProfile
from fleetprof.profile.model import Profile
from fleetprof.server.ingest import IngestError, decode_body
from fleetprof.store.synthetic import StackPool, fleet_profile
from fleetprof.wire.intern import SHARED, Interner
from fleetprof.wire.otlp_columns import columns_from_bytes, columns_from_many
from fleetprof.wire.otlp_decode import from_otlp_bytes, from_otlp_request
from fleetprof.wire.rawmessages import RawRequest


def _same(data: bytes, interner: Interner = SHARED) -> list[ColumnarProfile]:
    """Decode `data` both ways: the columnar answer is given and equals the exact one, object for object."""
    columns = columns_from_bytes(data, interner)
    assert columns is not None, "the columnar decoder handed a well-formed request back"
    exact = from_otlp_request(_parsed(data), interner)
    profiles = [c.to_profile() for c in columns]
    assert profiles == exact
    for mine, theirs in zip(profiles, exact, strict=True):
        for a, b in zip(mine.samples, theirs.samples, strict=True):
            assert a.stack is b.stack, "stacks are the interner's canonical objects"
    return columns


def _parsed(data: bytes) -> ExportProfilesServiceRequest:
    request = ExportProfilesServiceRequest()
    request.ParseFromString(data)
    return request


def _mixed_request() -> ExportProfilesServiceRequest:
    """Two hosts; a resource with two scopes; per-sample attributes and timestamps; counts in values
    (equal to, above and without timestamps), zero counts, CPU nanoseconds scaled by the period, a profile
    of a type that is skipped, counters; symbolized, inlined and unsymbolized native frames, kernel and
    Python frames."""
    b = _Builder()
    libc = b.mapping("/lib/libc.so.6", HTL_LIBC, "89abcdef" * 5, 0x7F00_0000, 0x7F10_0000)
    app = b.mapping("/srv/app", "ab" * 16)
    kernel = b.location("kernel", 0, 0xFFFFFFFF81000010, "do_syscall_64")
    read = b.location("native", libc, 0x1234)
    write = b.location("native", libc, 0x2000, "__write", "write.c", 7)
    inlined = b.location("native", app, 0x500, "inner", "a.h", 3)
    b.d.function_table.add(name_strindex=b.s("outer"), filename_strindex=b.s("a.c"), start_line=10)
    b.d.location_table[inlined].lines.add(function_index=len(b.d.function_table) - 1, line=12)
    py = b.location("cpython", 0, 0, "handle", "/srv/h.py", 40)
    s1 = b.stack(kernel, read, inlined)
    s2 = b.stack(write, py, inlined)
    s3 = b.stack(read)

    host_a = {"host.name": "a", "host.id": "id-a", "os.version": "6.8"}
    sp = b.resource(**host_a, **{"process.pid": 10, "process.executable.path": "/srv/app"})
    prof = b.profile(sp)
    prof.attribute_indices.append(b.attr("fleetprof.stats.lost_samples", 3))
    b.sample(prof, s1, 11, "worker", 0, [START + 1, START + 2])
    b.sample(prof, s2, 12, "io", 1, [START + 3])
    prof.samples[-1].values.extend([4])  # a count above its timestamps: timestamps dropped
    b.sample(prof, s3, 11, "worker", 0, [])
    prof.samples[-1].values.extend([2, 3])  # a count without timestamps
    b.sample(prof, s3, 13, "idle", 2, [])  # counts nothing: left out
    second_scope = b.request.resource_profiles[-1].scope_profiles.add()
    cpu = b.profile(second_scope, ("cpu", "nanoseconds"))
    b.sample(cpu, s1, 11, "worker", 0, [])
    cpu.samples[-1].values.extend([150_000_000])  # three periods of 50 ms
    skipped = b.profile(second_scope, ("alloc", "bytes"))
    b.sample(skipped, s2, 11, "worker", 0, [START])

    sp = b.resource(**host_a, **{"process.pid": 20, "container.id": "c" * 12, "k8s.pod.uid": "pod-1"})
    b.sample(b.profile(sp), s2, 21, "main", 3, [START + 5, START + 6])
    sp = b.resource(**{"host.name": "b", "host.id": "id-b", "process.pid": 30})
    b.sample(b.profile(sp), s1, 31, "b-main", 0, [START + 7])
    return b.request


REQUESTS = {
    "raw": lambda: to_otlp_request(raw_profile()),
    "symbolized": lambda: to_otlp_request(rich_profile()),
    "ebpf-profiler": ebpf_profiler_request,
    "mixed": _mixed_request,
    "fleet": lambda: to_otlp_request(fleet_profile(StackPool.build(300, seed=3), "h", START, 800)),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_columns_equal_the_exact_decoder(name: str) -> None:
    _same(REQUESTS[name]().SerializeToString())


def test_mixed_request_as_expected() -> None:
    """The mixed request's hosts, counts and timestamps, read off the columns."""
    a, b = _same(_mixed_request().SerializeToString())
    assert (a.hostname, a.kernel_release, b.hostname) == ("a", "6.8", "b")
    assert a.stats == {"lost_samples": 3, "otlp_skipped_profiles": 1}
    assert a.count.tolist() == [2, 4, 5, 3, 2] and b.count.tolist() == [1]
    assert a.stamp_bounds.tolist() == [0, 2, 2, 2, 2, 4]
    labels = [a.labels[i] for i in a.label.tolist()]
    assert [(x.pid, x.tid, x.thread_name) for x in labels][:2] == [(10, 11, "worker"), (10, 12, "io")]
    assert (labels[-1].container_id, labels[-1].pod_uid, labels[-1].cpus) == ("c" * 12, "pod-1", {3})
    assert a.total + b.total == 17


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _unpacked(sample: otlp.Sample) -> bytes:
    """`sample` encoded with every repeated field unpacked and the fields in reverse order."""
    out = b"".join(b"\x29" + struct.pack("<Q", t) for t in sample.timestamps_unix_nano)
    out += b"".join(b"\x20" + _varint(v) for v in sample.values)
    out += b"".join(b"\x10" + _varint(a) for a in sample.attribute_indices)
    out += b"\x08" + _varint(sample.stack_index) if sample.stack_index else b""
    return out


def test_unpacked_and_reordered_fields_decode_alike() -> None:
    """Repeated fields sent unpacked and fields out of order (both valid protobuf) give the same profiles;
    stacks sent unpacked too."""
    request = _mixed_request()
    raw = RawRequest()
    raw.ParseFromString(request.SerializeToString())
    for rp_raw, rp in zip(raw.resource_profiles, request.resource_profiles, strict=True):
        for sp_raw, sp in zip(rp_raw.scope_profiles, rp.scope_profiles, strict=True):
            for p_raw, p in zip(sp_raw.profiles, sp.profiles, strict=True):
                p_raw.samples[:] = [_unpacked(s) for s in p.samples]
    raw.dictionary.stack_table[:] = [
        b"".join(b"\x08" + _varint(i) for i in s.location_indices) for s in request.dictionary.stack_table
    ]
    data = raw.SerializeToString()
    assert data != request.SerializeToString()
    columns = _same(data)
    assert [c.to_profile() for c in columns] == from_otlp_request(request)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: setattr(_first_sample(r), "stack_index", 999),
        lambda r: r.dictionary.stack_table[1].location_indices.append(10_000),
        lambda r: setattr(r.dictionary.location_table[1], "mapping_index", 500),
        lambda r: setattr(_named_location(r).lines[0], "function_index", 77),
        lambda r: setattr(r.dictionary.function_table[1], "name_strindex", 9999),
        lambda r: _first_sample(r).attribute_indices.append(4096),
        lambda r: setattr(r.dictionary.attribute_table[1], "key_strindex", 12345),
        lambda r: setattr(_first_sample(r), "link_index", 3),
        lambda r: r.ClearField("dictionary"),
        lambda r: _first_sample(r).values.append(-5),
        lambda r: setattr(_first_sample(r), "stack_index", -1),
    ],
)
def test_malformed_requests_go_to_the_exact_decoder(change) -> None:  # type: ignore[no-untyped-def]
    """The columnar decoder declines; the server answers 400 with the exact decoder's one-line reason."""
    request = to_otlp_request(raw_profile())
    change(request)
    data = request.SerializeToString()
    assert columns_from_bytes(data) is None
    with pytest.raises(IngestError) as excinfo:
        decode_body(data)
    assert excinfo.value.status == 400
    assert excinfo.value.reason.startswith("malformed OTLP profiles: ") and "\n" not in excinfo.value.reason


def test_truncated_and_garbage_bytes_answer_as_before() -> None:
    for data in (b"\xff\xff\xff\xff", to_otlp_request(raw_profile()).SerializeToString()[:-7]):
        assert columns_from_bytes(data) is None
        with pytest.raises(IngestError) as excinfo:
            decode_body(data)
        assert excinfo.value.status == 400
        assert excinfo.value.reason.startswith("body is not an OTLP profiles request (protobuf:")


def _corrupted(data: bytes | bytearray, rng: random.Random) -> bytes:
    """`data` with one to three bytes set to random values."""
    corrupt = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
    return bytes(corrupt)


def test_corrupted_bytes_decode_alike_or_go_to_the_exact_decoder() -> None:
    """Flipped bytes: whenever the columnar decoder answers, the exact decoder answers the same."""
    data = bytearray(_mixed_request().SerializeToString())
    rng = random.Random(11)
    answered = 0
    for _ in range(300):
        corrupt = _corrupted(data, rng)
        columns = columns_from_bytes(corrupt, Interner())
        if columns is None:
            continue
        answered += 1
        assert [c.to_profile() for c in columns] == from_otlp_bytes(corrupt)
    assert answered > 0


def test_small_tables_are_cleared_and_decoding_goes_on() -> None:
    """With tables that overflow on every request, answers stay equal (objects merely not shared)."""
    interner = Interner(frame_limit=4, stack_limit=4)
    pool = StackPool.build(200, seed=4)
    for seed in range(4):
        data = to_otlp_request(fleet_profile(pool, "h", START, 300, seed=seed)).SerializeToString()
        columns = columns_from_bytes(data, interner)
        assert columns is not None
        assert [c.to_profile() for c in columns] == from_otlp_bytes(data)


def test_server_decodes_protobuf_as_columns_and_json_as_objects() -> None:
    from google.protobuf import json_format

    request = _mixed_request()
    (first, *_) = decode_body(request.SerializeToString(), "application/x-protobuf")
    assert isinstance(first, ColumnarProfile)
    (first_json, *_) = decode_body(json_format.MessageToJson(request).encode(), "application/json")
    assert isinstance(first_json, Profile)
    assert first.to_profile() == first_json


def test_requests_without_counted_samples() -> None:
    """Samples that all count nothing, and an idle window (counters only), decode alike."""
    request = to_otlp_request(raw_profile())
    for rp in request.resource_profiles:
        for p in (p for sp in rp.scope_profiles for p in sp.profiles):
            for s in p.samples:
                del s.timestamps_unix_nano[:]
                s.values[:] = [0]
    assert [len(c) for c in _same(request.SerializeToString())] == [0]
    idle = Profile([], 20, START, 10**9, hostname="idle", stats={"lost": 2}, resource={"host.name": "idle"})
    (columns,) = _same(to_otlp_request(idle).SerializeToString())
    assert (len(columns), columns.stats) == (0, {"lost": 2})


def _exact_or_none(data: bytes) -> list[Profile] | None:
    """The exact decoder's profiles of `data`, None where it refuses them."""
    try:
        return from_otlp_bytes(data)
    except Exception:
        return None


def test_a_group_decodes_as_its_requests_one_by_one() -> None:
    """Requests decoded together (the server's group commit) give each request's own profiles, tables
    rebased per request (every request's indices start at 0), the idle one included."""
    idle = Profile([], 20, START, 10**9, hostname="idle", stats={"lost": 2}, resource={"host.name": "idle"})
    bodies = [REQUESTS[name]().SerializeToString() for name in sorted(REQUESTS)]
    bodies.insert(2, to_otlp_request(idle).SerializeToString())
    answers = columns_from_many(bodies)
    for data, columns in zip(bodies, answers, strict=True):
        assert columns is not None
        assert [c.to_profile() for c in columns] == from_otlp_bytes(data)


def test_a_bad_request_in_a_group_costs_the_others_nothing() -> None:
    """A malformed, a truncated and an index-out-of-its-own-table request are each handed back (None);
    the group's other requests still decode."""
    good = _mixed_request().SerializeToString()
    beyond = to_otlp_request(raw_profile())
    _first_sample(beyond).stack_index = len(beyond.dictionary.stack_table)  # inside the group's, not its own
    answers = columns_from_many([good, beyond.SerializeToString(), good[:-7], b"\xff\xff", good])
    assert [a is None for a in answers] == [False, True, True, True, False]
    assert [c.to_profile() for c in answers[0]] == [c.to_profile() for c in answers[4]]  # type: ignore[union-attr]
    assert [c.to_profile() for c in answers[0]] == from_otlp_bytes(good)  # type: ignore[union-attr]


def test_corrupted_requests_in_a_group_decode_alike_or_are_handed_back() -> None:
    """Flipped bytes in one request of a group: its answer is the exact decoder's or None (never another
    request's entries), and the clean request beside it decodes as alone."""
    clean = to_otlp_request(raw_profile()).SerializeToString()
    data = bytearray(_mixed_request().SerializeToString())
    rng = random.Random(12)
    answered = 0
    for _ in range(150):
        corrupt = _corrupted(data, rng)
        first, second = columns_from_many([clean, corrupt], Interner())
        assert first is not None and [c.to_profile() for c in first] == from_otlp_bytes(clean)
        if second is None:
            continue
        answered += 1
        assert [c.to_profile() for c in second] == _exact_or_none(corrupt)
    assert answered > 0

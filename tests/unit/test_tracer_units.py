"""The sampler's userspace pieces without BPF: LPM block decomposition, table row allocation, aggregation
of recorded sample records, capability checks."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetprof.bpf import caps
from fleetprof.nativeunwind.loader import RangeAllocator, TableSpaceError
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import Aggregator, decode_frames
from fleetprof.tracer.mapsync import lpm_blocks, mapping_key


@settings(max_examples=300, derandomize=True)
@given(st.integers(0, (1 << 48) - 1), st.integers(1, 1 << 32))
def test_lpm_blocks_cover_range_exactly(start: int, length: int) -> None:
    end = start + length
    blocks = lpm_blocks(start, end)
    pos = start
    for addr, bits in blocks:
        size = 1 << (64 - bits)
        assert addr == pos
        assert addr % size == 0, "blocks are aligned to their size"
        pos += size
    assert pos == end
    assert len(blocks) <= 128


def test_mapping_key_layout() -> None:
    key = mapping_key(1234, 0x7F00_0000_1000, 52)
    prefixlen, pid = struct.unpack_from("<II", key)
    assert (prefixlen, pid) == (32 + 52, 1234)
    assert key[8:] == (0x7F00_0000_1000).to_bytes(8, "big")
    assert len(key) == layout.MAPPING_KEY_STRUCT.size


def test_range_allocator_first_fit_and_coalescing() -> None:
    alloc = RangeAllocator(100)
    a, b, c = alloc.alloc(10), alloc.alloc(20), alloc.alloc(30)
    assert (a, b, c) == (0, 10, 30)
    alloc.free(b, 20)
    assert alloc.alloc(15) == 10
    alloc.free(10, 15)
    alloc.free(a, 10)
    alloc.free(c, 30)
    assert alloc.used == 0
    assert alloc.alloc(100) == 0
    try:
        alloc.alloc(1)
    except TableSpaceError:
        pass
    else:
        raise AssertionError("a full allocator must refuse")


def _record(
    pid: int, tid: int, frames: list[tuple[int, int, int, int, int]], nk: int, error: int = 0
) -> bytes:
    hdr = layout.HEADER_STRUCT.pack(
        123_456_789, pid, tid, 1, nk, len(frames) - nk, error, 0, 0, 0, b"thr\0junk", b"proc\0old"
    )
    body = b"".join(
        layout.FRAME_STRUCT.pack(fid, addr, aux, kind, flags, 0) for fid, addr, aux, kind, flags in frames
    )
    return hdr + body


def test_aggregator_counts_identical_records_and_cuts_names_at_nul() -> None:
    agg = Aggregator()
    frames = [
        (0, 0xFFFFFFFF81000000, 0, layout.FRAME_KERNEL, 0),
        (7, 0x1130, 0, layout.FRAME_NATIVE, 0),
        (7, 0x1200, 0, layout.FRAME_NATIVE, layout.FRAME_FLAG_RETURN_ADDRESS),
    ]
    seen = []
    agg.on_new_stack = seen.append
    for _ in range(3):
        agg.add_bytes(_record(10, 11, frames, nk=1))
    agg.add_bytes(_record(10, 12, frames, nk=1, error=layout.UNWIND_ERR_READ_FAILED))
    assert agg.samples == 4
    assert len(agg.stacks) == 2 and len(seen) == 2
    key = seen[0]
    assert (key.comm, key.pcomm, key.num_kernel) == (b"thr", b"proc", 1)
    assert agg.stacks[key].count == 3
    decoded = decode_frames(key.frames)
    assert [f.kind for f in decoded] == [layout.FRAME_KERNEL, layout.FRAME_NATIVE, layout.FRAME_NATIVE]
    assert decoded[2].flags & layout.FRAME_FLAG_RETURN_ADDRESS
    assert agg.whole_share() == 0.75


def test_capability_checks_name_what_is_missing(tmp_path) -> None:
    assert caps.check_privileges(caps=0, euid=1000) is not None
    assert "root" in caps.check_privileges(caps=0, euid=1000).message
    assert caps.check_privileges(caps=(1 << caps.CAP_BPF) | (1 << caps.CAP_PERFMON), euid=1000) is None
    assert caps.check_btf(str(tmp_path / "missing")).name == "btf"
    assert caps.check_kernel("5.4.0-150-generic").name == "kernel"
    assert caps.check_kernel("6.1.0") is None
    assert caps.check_perf_events(str(tmp_path / "nope")).name == "perf_events"

"""Python mirror of hotspot_offsets.h: the per-process struct the BPF HotSpot step reads, filled from a live
JVM (its code heaps' reserved ranges and segment maps, the interpreter's CodeBlob) and its layout.

Field names and constants are identical to the C header; tests/unit/test_hotspot_procinfo.py compiles the
header and compares.
"""

from __future__ import annotations

import ctypes

from fleetprof.interpreters.hotspot.layouts import BLOB_NAME_INTERPRETER, HotSpotLayout
from fleetprof.interpreters.hotspot.process import CodeHeapInfo, blocks, c_string, code_heaps
from fleetprof.process.memory import MemoryReader

HS_MAX_HEAPS = 3
HS_MAX_HOPS = 48
HS_SEGMAP_FREE = 0xFF
HS_CODE_AS_OFFSET = 1
HS_COMPLETE_16 = 2
JVM_FRAME_INTERPRETED = 1
JVM_FRAME_COMPILED = 2
JVM_AUX_KIND_MASK = 15
JVM_AUX_TOP = 16
JVM_AUX_COOKIE_SHIFT = 8
JVM_AUX_COOKIE_MASK = 0xFFFFFF
INTERPRETER_SEARCH = 4096  # blocks of the first code heap looked through for the interpreter's blob


class HotSpotProcInfo(ctypes.Structure):
    """`struct hotspot_proc_info`: where one JVM keeps its code and how its frames are read."""

    _fields_ = (
        ("heap_low", ctypes.c_uint64 * HS_MAX_HEAPS),
        ("heap_high", ctypes.c_uint64 * HS_MAX_HEAPS),
        ("segmap", ctypes.c_uint64 * HS_MAX_HEAPS),
        ("interpreter", ctypes.c_uint64),
        ("log2_segment", ctypes.c_uint8 * HS_MAX_HEAPS),
        ("heap_count", ctypes.c_uint8),
        ("heapblock_size", ctypes.c_uint8),
        ("blob_frame_size", ctypes.c_uint8),
        ("blob_frame_complete", ctypes.c_uint8),
        ("blob_code_begin", ctypes.c_uint8),
        ("method_const_method", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("constmethod_size", ctypes.c_uint16),
        ("fp_method", ctypes.c_int8),
        ("fp_bcp", ctypes.c_int8),
        ("fp_sender_sp", ctypes.c_int8),
        ("reserved", ctypes.c_uint8),
        ("nmethod_compile_id", ctypes.c_uint16),
        ("version", ctypes.c_uint16),
    )


def interpreter_blob(mem: MemoryReader, heaps: list[CodeHeapInfo], layout: HotSpotLayout) -> int | None:
    """The CodeBlob named "Interpreter" among the first blocks of the heaps, the smallest first (the
    non-nmethod heap, where start-up puts it)."""
    for heap in sorted(heaps, key=lambda h: h.reserved_high - h.low):
        for blob in blocks(mem, heap, layout, INTERPRETER_SEARCH):
            if c_string(mem, mem.u64(blob + layout.blob_name) or 0) == BLOB_NAME_INTERPRETER:
                return blob
    return None


def hotspot_proc_info(
    mem: MemoryReader, bias: int, layout: HotSpotLayout, version: int
) -> HotSpotProcInfo | None:
    """The BPF step's info for the JVM loaded at `bias`, None while its code cache or interpreter is not
    set up yet (a JVM starting)."""
    heaps = code_heaps(mem, bias, layout)
    if not heaps or len(heaps) > HS_MAX_HEAPS:
        return None
    interpreter = interpreter_blob(mem, heaps, layout)
    if interpreter is None:
        return None
    as_offset = layout.blob_code_begin < 0
    info = HotSpotProcInfo(
        interpreter=interpreter,
        heap_count=len(heaps),
        heapblock_size=layout.heapblock_size,
        blob_frame_size=layout.blob_frame_size,
        blob_frame_complete=layout.blob_frame_complete_offset,
        blob_code_begin=layout.blob_code_offset if as_offset else layout.blob_code_begin,
        method_const_method=layout.method_const_method,
        flags=(HS_CODE_AS_OFFSET if as_offset else 0)
        | (HS_COMPLETE_16 if layout.blob_frame_complete_width == 2 else 0),
        constmethod_size=layout.constmethod_size,
        nmethod_compile_id=layout.nmethod_compile_id,
        fp_method=layout.fp_method,
        fp_bcp=layout.fp_bcp,
        fp_sender_sp=layout.fp_sender_sp,
        version=version,
    )
    for i, heap in enumerate(heaps):
        info.heap_low[i], info.segmap[i] = heap.low, heap.segmap
        info.heap_high[i] = max(heap.reserved_high, heap.high)
        info.log2_segment[i] = heap.log2_segment_size
    return info

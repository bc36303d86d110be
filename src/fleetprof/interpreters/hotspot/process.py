"""Read one running JVM: its VM tables' numbers (field offsets the file holds as 0), its code heaps, and
the CodeBlob holding a pc, found through the heap's segment map as CodeHeap::find_start does.

Nothing here raises for bad memory: a read that fails gives None (or a one-line reason for the layout).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from fleetprof.interpreters.hotspot.discovery import (
    CONSTANT_STRIDE,
    CONSTANT_VALUE,
    META,
    STRUCT_IS_STATIC,
    STRUCT_OFFSET,
    STRUCT_STRIDE,
    TYPE_SIZE,
    TYPE_STRIDE,
    HotSpotBinary,
)
from fleetprof.interpreters.hotspot.layouts import BLOB_NAME_INTERPRETER as INTERPRETER
from fleetprof.interpreters.hotspot.layouts import HotSpotLayout, VMValues, layout_from
from fleetprof.process.memory import MemoryReader

MAX_HEAPS = 8  # CodeCache has 1 (unsegmented) or 3 (non-nmethods, profiled, non-profiled) heaps
SEGMAP_FREE = 0xFF  # a segment no block starts in or covers (CodeHeap::free_sentinel)
SEGMAP_CHUNK = 4096  # segment map bytes read at a time while stepping back
MAX_STEPS = 1 << 16  # segment map steps before giving up (a block of 16M segments)
MAX_NAME = 256
CHUNK = 1 << 20  # the most one read asks (process.memory.MAX_READ)


def _read(mem: MemoryReader, addr: int, size: int) -> bytes | None:
    """`size` bytes at `addr` in reads of at most CHUNK bytes."""
    parts = []
    for start in range(0, size, CHUNK):
        part = mem.read(addr + start, min(CHUNK, size - start))
        if part is None:
            return None
        parts.append(part)
    return b"".join(parts)


def read_values(mem: MemoryReader, bias: int, binary: HotSpotBinary) -> VMValues | str:
    """The numbers of `binary`'s VM tables as the JVM (loaded at `bias`) initialized them."""
    tables = binary.tables
    for name, expected in META.items():
        value = mem.u64(bias + tables.meta[name])
        if value != expected:
            return f"{name} is {value} in the process, not {expected}: unknown VMStructs entry layout"
    structs = _read(mem, bias + tables.arrays["gHotSpotVMStructs"], len(tables.structs) * STRUCT_STRIDE)
    types = _read(mem, bias + tables.arrays["gHotSpotVMTypes"], len(tables.types) * TYPE_STRIDE)
    ints = _read(
        mem, bias + tables.arrays["gHotSpotVMIntConstants"], len(tables.int_constants) * CONSTANT_STRIDE
    )
    longs = _read(
        mem, bias + tables.arrays["gHotSpotVMLongConstants"], len(tables.long_constants) * CONSTANT_STRIDE
    )
    if structs is None or types is None or ints is None or longs is None:
        return "VMStructs tables unreadable in the process"
    fields: dict[str, int] = {}
    field_types: dict[str, str] = {}
    statics: dict[str, int] = {}
    for index, entry in enumerate(tables.structs):
        base = index * STRUCT_STRIDE
        key = f"{entry.type_name}::{entry.field_name}"
        if struct.unpack_from("<i", structs, base + STRUCT_IS_STATIC)[0]:
            statics[key] = entry.address
        else:
            fields[key] = struct.unpack_from("<Q", structs, base + STRUCT_OFFSET)[0]
            field_types[key] = entry.type_string
    sizes = {
        name: struct.unpack_from("<Q", types, index * TYPE_STRIDE + TYPE_SIZE)[0]
        for index, name in enumerate(tables.types)
    }
    constants = {
        name: struct.unpack_from("<i", ints, index * CONSTANT_STRIDE + CONSTANT_VALUE)[0]
        for index, name in enumerate(tables.int_constants)
    }
    for index, name in enumerate(tables.long_constants):
        constants[name] = struct.unpack_from("<Q", longs, index * CONSTANT_STRIDE + CONSTANT_VALUE)[0]
    return VMValues(fields=fields, field_types=field_types, statics=statics, sizes=sizes, constants=constants)


_LAYOUTS: dict[str, HotSpotLayout] = {}
_LOCK = threading.Lock()


def layout_from_process(mem: MemoryReader, bias: int, binary: HotSpotBinary) -> HotSpotLayout | str:
    """The layout of `binary` from one process running it (kept per file id: the same file has the same
    offsets in every process), or a one-line reason."""
    with _LOCK:
        found = _LAYOUTS.get(binary.file_id)
    if found is not None:
        return found
    values = read_values(mem, bias, binary)
    if isinstance(values, str):
        return values
    layout = layout_from(values, binary.version)
    if isinstance(layout, HotSpotLayout):
        with _LOCK:
            _LAYOUTS[binary.file_id] = layout
    return layout


@dataclass(frozen=True, slots=True)
class CodeHeapInfo:
    """One CodeHeap: its committed code [low, high) inside its reservation [low, reserved_high) (commits
    grow toward it: put the reservation in the pc lookup), its segment map (a byte per 2**log2 bytes)."""

    low: int
    high: int
    segmap: int
    log2_segment_size: int
    reserved_high: int


def code_heaps(mem: MemoryReader, bias: int, layout: HotSpotLayout) -> list[CodeHeapInfo] | None:
    """Every CodeHeap of the JVM loaded at `bias` (CodeCache::_heaps), None when unreadable or not set up."""
    array = mem.u64(bias + layout.codecache_heaps)
    if not array:
        return None
    head = mem.read(array, max(layout.growable_len, layout.growable_data) + 8)
    if head is None:
        return None
    count = struct.unpack_from("<i", head, layout.growable_len)[0]
    data = struct.unpack_from("<Q", head, layout.growable_data)[0]
    if not 0 < count <= MAX_HEAPS or not data:
        return None
    pointers = mem.read(data, count * 8)
    if pointers is None:
        return None
    heaps = []
    for (heap,) in struct.iter_unpack("<Q", pointers):
        memory, segmap = heap + layout.codeheap_memory, heap + layout.codeheap_segmap
        low, high = mem.u64(memory + layout.vspace_low), mem.u64(memory + layout.vspace_high)
        reserved = mem.u64(memory + layout.vspace_high_boundary)
        seg, log2 = mem.u64(segmap + layout.vspace_low), mem.u32(heap + layout.codeheap_log2_segment_size)
        if (
            not low
            or not high
            or not seg
            or log2 is None
            or not 0 < log2 < 32
            or not low <= high <= (reserved or 0)
        ):
            return None
        heaps.append(
            CodeHeapInfo(low=low, high=high, segmap=seg, log2_segment_size=log2, reserved_high=reserved or 0)
        )
    return heaps


def find_blob(mem: MemoryReader, heaps: list[CodeHeapInfo], pc: int, layout: HotSpotLayout) -> int | None:
    """The CodeBlob holding `pc`: from the pc's segment, step back by the segment map's bytes to the start
    of the block, which must be in use; the blob follows the HeapBlock header."""
    heap = next((h for h in heaps if h.low <= pc < h.high), None)
    if heap is None:
        return None
    index = (pc - heap.low) >> heap.log2_segment_size
    window_start, window = -1, b""
    for _ in range(MAX_STEPS):
        if not window_start <= index < window_start + len(window):
            window_start = max(0, index - SEGMAP_CHUNK + 1)
            window = mem.read(heap.segmap + window_start, index - window_start + 1) or b""
            if not window:
                return None
        tag = window[index - window_start]
        if tag == SEGMAP_FREE:
            return None
        if tag == 0:
            return _used_block(mem, heap.low + (index << heap.log2_segment_size), layout)
        index -= tag
        if index < 0:
            return None
    return None


def _used_block(mem: MemoryReader, block: int, layout: HotSpotLayout) -> int | None:
    """The CodeBlob in the HeapBlock at `block`, None when the block is free."""
    used = mem.read(block + layout.heapblock_used, 1)
    return block + layout.heapblock_size if used and used[0] else None


def blocks(
    mem: MemoryReader, heap: CodeHeapInfo, layout: HotSpotLayout, limit: int = 1 << 20
) -> Iterator[int]:
    """The CodeBlob of every used block of `heap`, in address order (at most `limit` blocks)."""
    block = heap.low
    width = layout.heapblock_length_width
    for _ in range(limit):
        if block >= heap.high:
            return
        head = mem.read(block, max(layout.heapblock_length + width, layout.heapblock_used + 1))
        if head is None:
            return
        length = int.from_bytes(head[layout.heapblock_length : layout.heapblock_length + width], "little")
        if length <= 0:
            return
        if head[layout.heapblock_used]:
            yield block + layout.heapblock_size
        block += length << heap.log2_segment_size


def c_string(mem: MemoryReader, addr: int, limit: int = MAX_NAME) -> str | None:
    """The NUL-terminated ASCII string at `addr` (at most `limit` bytes), None when unreadable."""
    if not addr:
        return None
    data = mem.read(addr, limit)
    if data is None:  # the string may end near a page end: read up to it
        room = 4096 - addr % 4096
        data = mem.read(addr, min(room, limit))
    if data is None:
        return None
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def code_range(mem: MemoryReader, blob: int, layout: HotSpotLayout) -> tuple[int, int] | None:
    """[code begin, code end) of a CodeBlob: absolute fields up to JDK 22, offsets from the blob after."""
    if layout.blob_code_begin >= 0:
        begin, end = mem.u64(blob + layout.blob_code_begin), mem.u64(blob + layout.blob_code_end)
    else:
        offsets = mem.read_many([(blob + layout.blob_code_offset, 4), (blob + layout.blob_data_offset, 4)])
        if offsets[0] is None or offsets[1] is None:
            return None
        begin = blob + struct.unpack("<i", offsets[0])[0]
        end = blob + struct.unpack("<i", offsets[1])[0]
    if begin is None or end is None or not begin <= end:
        return None
    return begin, end


class HotSpotProcess:
    """One JVM process: its layout, its code heaps (re-read on demand: they grow) and blob lookups."""

    def __init__(self, mem: MemoryReader, bias: int, layout: HotSpotLayout) -> None:
        self.mem = mem
        self.bias = bias
        self.layout = layout
        self._heaps: list[CodeHeapInfo] | None = None
        self._interpreter: tuple[int, int] | None = None

    def code_heaps(self, refresh: bool = False) -> list[CodeHeapInfo] | None:
        """The code heaps (read once; `refresh` re-reads their committed bounds)."""
        if self._heaps is None or refresh:
            self._heaps = code_heaps(self.mem, self.bias, self.layout)
        return self._heaps

    def find_blob(self, pc: int) -> int | None:
        """The CodeBlob holding `pc`, None outside the code heaps or in a free block."""
        heaps = self.code_heaps()
        if heaps is None:
            return None
        found = find_blob(self.mem, heaps, pc, self.layout)
        if found is None and not any(h.low <= pc < h.high for h in heaps):
            heaps = self.code_heaps(refresh=True) or []
            found = find_blob(self.mem, heaps, pc, self.layout)
        return found

    def interpreter(self) -> tuple[int, int] | None:
        """[begin, end) of the template interpreter's code (the BufferBlob "Interpreter", generated at
        startup and never moved): a pc there is an interpreted frame's (or its entry's)."""
        if self._interpreter is None:
            for heap in self.code_heaps() or []:
                blob = next(
                    (b for b in blocks(self.mem, heap, self.layout) if self.blob_name(b) == INTERPRETER), 0
                )
                if blob:
                    self._interpreter = code_range(self.mem, blob, self.layout)
                    break
        return self._interpreter

    def blob_name(self, blob: int) -> str | None:
        """CodeBlob::_name ("nmethod", "Interpreter", a stub's name)."""
        return c_string(self.mem, self.mem.u64(blob + self.layout.blob_name) or 0)

"""Name HotSpot frames from process memory: (Method*, bci) for interpreted frames, (nmethod, pc) for
compiled ones (the methods C1/C2 inlined there expanded from its debug info), (CodeBlob, pc) for stubs.

Names are `holder.method` with the holder's external name (dots; a hidden class's `+` shown as `/`, as
HotSpot prints lambda proxies), files are the class's SourceFile attribute, lines come from ConstMethod's
compressed line number table. Nothing here raises for bad memory: it returns None.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from fleetprof.interpreters.hotspot.layouts import HotSpotLayout
from fleetprof.interpreters.hotspot.process import c_string, code_range
from fleetprof.process.memory import MemoryReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.symbolize.lru import BoundedLru

RUNTIME = "jvm"  # Frame.runtime: OTel's profile.frame.type for HotSpot frames
# The frame encoding the BPF walker emits (id, addr, aux); aux's low 4 bits are the frame kind.
JVM_FRAME_INTERPRETED = 1  # id = Method*, addr = bci (bcp - (ConstMethod* + sizeof(ConstMethod)))
JVM_FRAME_COMPILED = 2  # id = nmethod (CodeBlob*), addr = pc: a return address as-is, or the interrupted pc
JVM_FRAME_STUB = 3  # id = CodeBlob*, addr = pc: named from CodeBlob::_name
JVM_AUX_KIND_MASK = 15
JVM_AUX_TOP = 1 << 4  # COMPILED: addr is the interrupted pc (leaf frame), not a return address
JVM_AUX_COOKIE_SHIFT = (
    8  # COMPILED: aux >> 8 = nmethod::_compile_id's low 24 bits when BPF read it, 0 when not
)
JVM_AUX_COOKIE_MASK = 0xFFFFFF
# UNSIGNED5 (unsigned5.hpp): bytes below L end a number; each further byte adds 6 bits. JDK 20+ offsets
# every byte by X = 1 so none is zero (L 191), older streams use L 192 and X 0.
UNSIGNED5_H_BITS = 6
UNSIGNED5_MAX_LENGTH = 5
LINE_ESCAPE = 0xFF  # CompressedLineNumberWriteStream: a (signed bci delta, signed line delta) pair follows
LINE_SHORT_BITS = 3  # otherwise one byte: bci delta << 3 | line delta (0..7)
MAX_LINE_TABLE = 1 << 16  # bytes of a line number table read
MAX_PCS = 1 << 16  # PcDescs of one nmethod
MAX_SCOPES_DATA = 4 << 20
MAX_METADATA = 1 << 16
MAX_INLINE_DEPTH = 64
MAX_SYMBOL = 1 << 16
NMETHOD_HEADER = 512  # bytes read from an nmethod's start: every header field the namer uses
CACHE_SIZE = 16384
INVOCATION_ENTRY_BCI = -1
UNKNOWN_BCI = -2  # a frame whose bci is not known: line 0


def read_unsigned5(data: bytes, pos: int, excludes_zero: bool) -> tuple[int, int] | None:
    """One UNSIGNED5 number at `pos`: (value, position after it), None when the data ends first."""
    x = 1 if excludes_zero else 0
    low = 256 - (1 << UNSIGNED5_H_BITS) - x
    if pos >= len(data) or data[pos] < x:
        return None
    value, shift = data[pos] - x, UNSIGNED5_H_BITS
    pos += 1
    if value < low:
        return value, pos
    for index in range(1, UNSIGNED5_MAX_LENGTH):
        if pos >= len(data):
            return None
        byte = data[pos] - x
        pos += 1
        value += byte << shift
        if byte < low or index == UNSIGNED5_MAX_LENGTH - 1:
            return value & 0xFFFFFFFF, pos
        shift += UNSIGNED5_H_BITS
    return None


def _signed(value: int) -> int:
    """CompressedStream::decode_sign: zig-zag, the sign in the low bit."""
    return (value >> 1) ^ -(value & 1)


def line_number_table(data: bytes, excludes_zero: bool) -> list[tuple[int, int]]:
    """The (bci, line) pairs of a compressed line number table (it ends at a zero byte)."""
    pairs: list[tuple[int, int]] = []
    bci = line = pos = 0
    while pos < len(data):
        head = data[pos]
        pos += 1
        if head == 0:
            return pairs
        if head == LINE_ESCAPE:
            first = read_unsigned5(data, pos, excludes_zero)
            second = read_unsigned5(data, first[1], excludes_zero) if first else None
            if first is None or second is None:
                return pairs
            bci, line, pos = bci + _signed(first[0]), line + _signed(second[0]), second[1]
        else:
            bci, line = bci + (head >> LINE_SHORT_BITS), line + (head & ((1 << LINE_SHORT_BITS) - 1))
        pairs.append((bci, line))
    return pairs


def line_at(pairs: Sequence[tuple[int, int]], bci: int) -> int:
    """The line of `bci` as Method::line_number_from_bci picks it: an exact entry, else the entry with
    the largest bci below it (the latest among equals); 0 when unknown."""
    best_bci, best_line = 0, 0
    for entry_bci, line in pairs:
        if entry_bci == bci:
            return line
        if best_bci <= entry_bci < bci:
            best_bci, best_line = entry_bci, line
    return best_line


def scope_chain(data: bytes, offset: int, excludes_zero: bool) -> list[tuple[int, int]] | None:
    """(metadata index, bci) of each scope from the one at `offset` outwards (innermost first): each
    record is UNSIGNED5 (sender's decode offset, Method* metadata index, bci + 1); offset 0 ends it."""
    chain: list[tuple[int, int]] = []
    while offset and len(chain) < MAX_INLINE_DEPTH:
        sender = read_unsigned5(data, offset, excludes_zero)
        method = read_unsigned5(data, sender[1], excludes_zero) if sender else None
        bci = read_unsigned5(data, method[1], excludes_zero) if method else None
        if sender is None or method is None or bci is None or sender[0] >= offset:
            return chain or None  # senders are written before their callees: offsets only go down
        chain.append((method[0], bci[0] + INVOCATION_ENTRY_BCI))
        offset = sender[0]
    return chain


def pc_desc_at(pcs: Sequence[tuple[int, int]], pc_offset: int, top: bool) -> int | None:
    """The scope decode offset of the PcDesc for `pc_offset` as HotSpot finds it: for a return address
    the PcDesc at it (pc_desc_at), for an interrupted pc the first one past it (pc_desc_near(pc + 1))."""
    target = pc_offset + 1 if top else pc_offset
    lo, hi = 0, len(pcs)
    while lo < hi:
        mid = (lo + hi) // 2
        if pcs[mid][0] < target:
            lo = mid + 1
        else:
            hi = mid
    return pcs[lo][1] if lo < len(pcs) else None


def external_class_name(internal: str) -> str:
    """`java/util/HashMap` -> `java.util.HashMap`; a hidden class's `Foo$$Lambda+0x...` keeps HotSpot's
    printed form `Foo$$Lambda/0x...`."""
    name = internal.replace("/", ".")
    plus = name.rfind("+")
    return f"{name[:plus]}/{name[plus + 1 :]}" if plus >= 0 else name


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """What naming one Method needs: `holder.method`, the source file, the (bci, line) table."""

    function: str
    file: str
    lines: tuple[tuple[int, int], ...]

    @property
    def start_line(self) -> int:
        """The smallest line in the table (the method's first statement), 0 without a table."""
        return min((line for _, line in self.lines), default=0)


@dataclass(frozen=True, slots=True)
class NMethodInfo:
    """One nmethod's debug info: its Method*, code start, PcDescs, scopes data and metadata."""

    method: int
    compile_id: int
    code_begin: int
    pcs: tuple[tuple[int, int], ...]  # (pc offset, scope decode offset), sorted by pc offset
    scopes: bytes
    metadata: tuple[int, ...]  # metadata_at(i) is metadata[i - 1]
    deopt_handler: int  # a deoptimizing frame returns here (its own pc: at sp + orig_pc_offset)


class HotSpotNamer:
    """Frames for the JVM entries of one process's stacks, with bounded caches per Method and nmethod."""

    def __init__(self, mem: MemoryReader, layout: HotSpotLayout) -> None:
        self.mem = mem
        self.layout = layout
        self._methods: BoundedLru[int, MethodInfo] = BoundedLru(CACHE_SIZE)
        self._nmethods: BoundedLru[int, NMethodInfo] = BoundedLru(CACHE_SIZE)
        self._stubs: BoundedLru[int, str] = BoundedLru(CACHE_SIZE)

    def _i32(self, data: bytes, offset: int) -> int:
        return struct.unpack_from("<i", data, offset)[0]

    def _u64(self, data: bytes, offset: int) -> int:
        return struct.unpack_from("<Q", data, offset)[0]

    def symbol(self, addr: int) -> str | None:
        """A Symbol's text (modified UTF-8, decoded leniently)."""
        lay = self.layout
        head = self.mem.read(addr + lay.symbol_length, 2) if addr else None
        if head is None:
            return None
        length = struct.unpack("<H", head)[0]
        body = self.mem.read(addr + lay.symbol_body, length) if length else b""
        return None if body is None else body.decode("utf-8", "replace")

    def _cp_symbol(self, pool: int, index: int) -> str | None:
        """The Symbol in constant pool slot `index`."""
        if index <= 0:
            return None
        slot = self.mem.u64(pool + self.layout.constantpool_size + index * 8)
        return self.symbol(slot) if slot else None

    def method(self, method: int) -> MethodInfo | None:
        """The name, file and line table of a Method* (cached)."""
        found = self._methods.get(method)
        if found is None:
            found = self._read_method(method)
            if found is not None:
                self._methods.put(method, found)
        return found

    def _read_method(self, method: int) -> MethodInfo | None:
        lay, mem = self.layout, self.mem
        const = mem.u64(method + lay.method_const_method) if method else None
        head = mem.read(const, lay.constmethod_size) if const else None
        if const is None or head is None:
            return None
        pool = self._u64(head, lay.constmethod_constants)
        flags = int.from_bytes(
            head[lay.constmethod_flags : lay.constmethod_flags + lay.constmethod_flags_width], "little"
        )
        code_size = struct.unpack_from("<H", head, lay.constmethod_code_size)[0]
        name_index = struct.unpack_from("<H", head, lay.constmethod_name_index)[0]
        size = self._i32(head, lay.constmethod_method_size) * 8
        pool_head = mem.read(pool, lay.constantpool_size) if pool else None
        if pool_head is None:
            return None
        holder = self._u64(pool_head, lay.constantpool_pool_holder)
        if lay.constantpool_source_file_name_index >= 0:
            source = struct.unpack_from("<H", pool_head, lay.constantpool_source_file_name_index)[0]
        else:
            index = mem.read(holder + lay.instanceklass_source_file_name_index, 2) if holder else None
            source = struct.unpack("<H", index)[0] if index else 0
        klass_symbol = mem.u64(holder + lay.klass_name) if holder else None
        klass = self.symbol(klass_symbol) if klass_symbol else None
        name = self._cp_symbol(pool, name_index)
        if klass is None or name is None:
            return None
        lines: list[tuple[int, int]] = []
        table_start = lay.constmethod_size + code_size
        if flags & lay.constmethod_has_linenumber_table and table_start < size:
            data = mem.read(const + table_start, min(size - table_start, MAX_LINE_TABLE))
            lines = line_number_table(data or b"", lay.unsigned5_excludes_zero)
        return MethodInfo(
            function=f"{external_class_name(klass)}.{name}",
            file=self._cp_symbol(pool, source) or "",
            lines=tuple(lines),
        )

    def nmethod(self, nm: int) -> NMethodInfo | None:
        """An nmethod's debug info (cached by address; a cookie in frames() tells a reused address)."""
        found = self._nmethods.get(nm)
        if found is None:
            found = self._read_nmethod(nm)
            if found is not None:
                self._nmethods.put(nm, found)
        return found

    def _read_nmethod(self, nm: int) -> NMethodInfo | None:
        lay, mem = self.layout, self.mem
        head = mem.read(nm, NMETHOD_HEADER) if nm else None
        code = code_range(mem, nm, lay) if head else None
        if head is None or code is None:
            return None
        if lay.nmethod_immutable_data >= 0:
            immutable = self._u64(head, lay.nmethod_immutable_data)
            pcs_begin = immutable + self._i32(head, lay.nmethod_scopes_pcs_offset)
            pcs_end = scopes_begin = immutable + self._i32(head, lay.nmethod_scopes_pcs_end)
            scopes_end = immutable + self._i32(head, lay.nmethod_immutable_data_size)
            mutable = self._u64(head, lay.blob_mutable_data)
            meta_begin = mutable + self._i32(head, lay.blob_relocation_size)
            meta_end = mutable + self._i32(head, lay.blob_mutable_data_size)
        else:
            pcs_begin = nm + self._i32(head, lay.nmethod_scopes_pcs_offset)
            pcs_end = nm + self._i32(head, lay.nmethod_scopes_pcs_end)
            scopes_begin = self._u64(head, lay.nmethod_scopes_data)
            scopes_end = pcs_begin
            meta_begin = nm + self._i32(head, lay.nmethod_metadata_offset)
            meta_end = scopes_begin
        pcs_count = (pcs_end - pcs_begin) // lay.pcdesc_size
        meta_count = (meta_end - meta_begin) // 8
        if not (0 <= pcs_count <= MAX_PCS and 0 <= scopes_end - scopes_begin <= MAX_SCOPES_DATA):
            return None
        if not 0 <= meta_count <= MAX_METADATA:
            return None
        pcs_data, scopes, meta = mem.read_many(
            [
                (pcs_begin, pcs_count * lay.pcdesc_size),
                (scopes_begin, scopes_end - scopes_begin),
                (meta_begin, meta_count * 8),
            ]
        )
        if pcs_data is None or scopes is None or meta is None:
            return None
        pcs = sorted(
            (
                self._i32(pcs_data, i + lay.pcdesc_pc_offset),
                self._i32(pcs_data, i + lay.pcdesc_scope_decode_offset),
            )
            for i in range(0, len(pcs_data), lay.pcdesc_size)
        )
        if lay.nmethod_deopt_handler >= 0:
            deopt = self._u64(head, lay.nmethod_deopt_handler)
        else:
            deopt = nm + self._i32(head, lay.nmethod_deopt_handler_offset)
        return NMethodInfo(
            deopt_handler=deopt,
            method=self._u64(head, lay.nmethod_method),
            compile_id=self._i32(head, lay.nmethod_compile_id),
            code_begin=code[0],
            pcs=tuple(pcs),
            scopes=scopes,
            metadata=tuple(m for (m,) in struct.iter_unpack("<Q", meta)),
        )

    def _frame(self, info: MethodInfo, bci: int, inlined: bool = False) -> Frame:
        """The frame of `info` at `bci` (-1: method entry, below: the line is unknown)."""
        return Frame(
            kind=FrameKind.INTERPRETED,
            function=info.function,
            file=info.file,
            line=line_at(info.lines, max(bci, 0)) if bci >= INVOCATION_ENTRY_BCI else 0,
            start_line=info.start_line,
            inlined=inlined,
            runtime=RUNTIME,
        )

    def frames(self, id: int, addr: int, aux: int) -> tuple[Frame, ...] | None:
        """The frames one JVM frame stands for, root first (a compiled frame's inlined callees after it,
        `inlined=True`); None when its memory can't be read."""
        kind = aux & JVM_AUX_KIND_MASK
        if kind == JVM_FRAME_INTERPRETED:
            info = self.method(id)
            return None if info is None else (self._frame(info, addr),)
        if kind == JVM_FRAME_COMPILED:
            return self._compiled(id, addr, aux)
        if kind == JVM_FRAME_STUB:
            name = self.stub_name(id)
            return (
                None if name is None else (Frame(kind=FrameKind.INTERPRETED, function=name, runtime=RUNTIME),)
            )
        return None

    def stub_name(self, blob: int) -> str | None:
        """`[jvm: NAME]` from CodeBlob::_name (cached)."""
        found = self._stubs.get(blob)
        if found is None:
            name = c_string(self.mem, self.mem.u64(blob + self.layout.blob_name) or 0) if blob else None
            if not name:
                return None
            found = f"[jvm: {name}]"
            self._stubs.put(blob, found)
        return found

    def _compiled(self, nm: int, pc: int, aux: int) -> tuple[Frame, ...] | None:
        cookie = aux >> JVM_AUX_COOKIE_SHIFT
        info = self.nmethod(nm)
        if info is not None and cookie and info.compile_id & JVM_AUX_COOKIE_MASK != cookie:
            info = self._read_nmethod(nm)  # the address was reused by a later compilation
            if info is not None:
                self._nmethods.put(nm, info)
        if info is None or (cookie and info.compile_id & JVM_AUX_COOKIE_MASK != cookie):
            return None
        deoptimizing = pc == info.deopt_handler  # the walker should have sent the original pc instead
        top = bool(aux & JVM_AUX_TOP)
        decode = pc_desc_at(info.pcs, pc - info.code_begin, top) if info.pcs and not deoptimizing else None
        chain = scope_chain(info.scopes, decode, self.layout.unsigned5_excludes_zero) if decode else None
        if not chain:
            outer = self.method(info.method)
            return None if outer is None else (self._frame(outer, UNKNOWN_BCI),)
        frames: list[Frame] = []
        for depth, (index, bci) in enumerate(reversed(chain)):
            method = info.metadata[index - 1] if 0 < index <= len(info.metadata) else 0
            found = self.method(method) if method else None
            if found is None:
                return tuple(frames) or None
            frames.append(self._frame(found, bci, inlined=depth > 0))
        return tuple(frames)

"""Name V8 frames from process memory: (SharedFunctionInfo, bytecode offset or Code and pc offset) becomes
`function (file.js:LINE)` frames, the functions TurboFan inlined included.

Names follow V8's own profiler: the function's name, else the name V8 inferred for an anonymous function
(`obj.method`, `Klass.prototype.run`), else `(anonymous)`. Lines come from source position tables: the
bytecode's for interpreted frames, the optimized Code's (with its inlining positions and deoptimization
literals) for compiled ones. Node.js collects bytecode positions lazily: where a function has none yet the
frame gets the line the function starts on. Nothing here raises for bad memory: it returns None.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from fleetprof.interpreters.v8.layouts import (
    FIRST_NONSTRING_TYPE,
    HEAP_OBJECT_TAG,
    HEAP_OBJECT_TAG_MASK,
    SMI_SHIFT,
    STRING_CONS,
    STRING_EXTERNAL,
    STRING_ONE_BYTE,
    STRING_REPR_MASK,
    STRING_SEQ,
    STRING_SLICED,
    STRING_THIN,
    V8Layout,
)
from fleetprof.process.memory import MemoryReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.symbolize.lru import BoundedLru

RUNTIME = "v8js"  # Frame.runtime: OTel's profile.frame.type for V8 JavaScript frames
V8_FRAME_INTERPRETED = 1
V8_FRAME_CODE = 2
V8_FRAME_FUNCTION = 3
V8_FRAME_JIT_INTERPRETED = 4
V8_AUX_KIND_MASK = 15
V8_AUX_SHIFT = 4
MAX_STRING = 4096  # characters of a name or file name
MAX_SOURCE = 64 << 20  # bytes of a script's source read to find its line ends
MAX_TABLE = 1 << 20  # bytes of a position table
MAX_INLINE_DEPTH = 32
CACHE_SIZE = 16384
CODE_ALIGNMENT = 64  # x64: where instructions of a JIT code object start
CODE_SEARCH = 256 << 10  # how far below a pc its code's start is looked for
PAGE = 4096
CHUNK = 1 << 20  # the most one read may ask (process.memory.MAX_READ)
# ScopeInfo (scope-info.tq): flags, parameter count and context local count (13.x: then start and end),
# then the variable part (the layout says where).
SCOPE_FLAGS = 8
SCOPE_LOCAL_COUNT = 24
SCOPE_START_FIRST = 32  # 13.x: the start position, right after the counts
SCOPE_TYPES_WITH_POSITIONS = {1, 2, 3, 4}  # before 13.x: eval, function, module, script
VAR_ALLOCATION_STACK = 1
VAR_ALLOCATION_CONTEXT = 2
ANONYMOUS = "(anonymous)"
PREFIX_SCALES = {0: 1, 1: 2, 2: 1, 3: 2}  # Wide, ExtraWide, DebugBreakWide, DebugBreakExtraWide -> scale
_NEWLINE = re.compile("\n")
WEAK_TAG = 2  # a weak reference is a heap object pointer with this bit set too
SFI_WRAPPER_SHARED = 8  # SharedFunctionInfoWrapper: its SharedFunctionInfo


def _smi(value: int | None) -> int | None:
    """The integer a tagged Smi holds, None for a heap object (or a failed read)."""
    if value is None or value & 1:
        return None
    signed = value - (1 << 64) if value >> 63 else value
    return signed >> SMI_SHIFT


def _is_object(value: int | None) -> bool:
    return value is not None and value & HEAP_OBJECT_TAG_MASK == HEAP_OBJECT_TAG and value > 4096


def _varints(data: bytes) -> Iterator[int]:
    """V8's zig-zag VLQ integers (source-position-table.cc DecodeInt), in order."""
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            yield (value >> 1) ^ -(value & 1)
            value = shift = 0


def _unsigned_varints(data: bytes) -> Iterator[int]:
    """V8's unsigned VLQ integers (base/vlq.h), in order."""
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            yield value
            value = shift = 0


def baseline_bytecode_offset(table: bytes, bytecodes: bytes, sizes: bytes, pc_offset: int) -> int | None:
    """The bytecode offset baseline (Sparkplug) code runs at `pc_offset`, from its bytecode offset table
    (one pc delta per bytecode, the prologue first; BytecodeOffsetIterator); -1 in the prologue."""
    count = len(sizes) // 3
    deltas = _unsigned_varints(table)
    end = next(deltas, None)
    if end is None or not count:
        return None
    offset, cursor = -1, 0
    while end < pc_offset:
        delta = next(deltas, None)
        if delta is None or cursor >= len(bytecodes):
            return None
        bytecode, prefix, scale = bytecodes[cursor], 0, 0
        if bytecode in PREFIX_SCALES:
            scale, prefix = PREFIX_SCALES[bytecode], 1
            if cursor + 1 >= len(bytecodes):
                return None
            bytecode = bytecodes[cursor + 1]
        if bytecode >= count:
            return None
        offset = cursor
        cursor += prefix + sizes[scale * count + bytecode]
        end += delta
    return offset


def position_entries(table: bytes) -> list[tuple[int, int]]:
    """(code offset, source position) pairs of a source position table, in code order."""
    out: list[tuple[int, int]] = []
    values = _varints(table)
    code = position = 0
    for code_delta in values:
        position_delta = next(values, None)
        if position_delta is None:
            break
        code += code_delta if code_delta >= 0 else -code_delta - 1  # the sign says "is statement"
        position += position_delta
        out.append((code, position))
    return out


def position_at(entries: list[tuple[int, int]], offset: int) -> int | None:
    """The source position of the last entry at or before `offset`."""
    index = bisect.bisect_right(entries, (offset, 1 << 62)) - 1
    return entries[index][1] if index >= 0 else None


def split_position(position: int) -> tuple[int, int]:
    """(script offset or -1, inlining id or -1) of a SourcePosition as position tables keep it."""
    external = position & 1
    offset = -1 if external else ((position >> 1) & 0x3FFFFFFF) - 1
    inlining = ((position >> 31) & 0xFFFF) - 1
    return offset, inlining


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """What a SharedFunctionInfo contributes to its frames."""

    name: str
    script: int  # Script (tagged), 0 when the function has none (a builtin)
    start: int  # script offset the function starts at, -1 when unknown
    bytecode: int  # its BytecodeArray (tagged), 0 when not interpreted


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What an optimized Code contributes to its frames."""

    entries: list[tuple[int, int]]  # its source position table
    inlining: bytes  # InliningPosition records: (SourcePosition of the call, inlined function id)
    literals: tuple[int, ...]  # the deoptimization literals the ids index (weak references)


@dataclass(frozen=True, slots=True)
class ScriptInfo:
    """A script's name and where its lines end."""

    name: str
    line_ends: tuple[int, ...]

    def line(self, offset: int) -> int:
        """The 1-based line holding script offset `offset` (0 when unknown)."""
        if offset < 0 or not self.line_ends:
            return 0
        return bisect.bisect_left(self.line_ends, offset) + 1


class V8Namer:
    """Frames of one process's V8 heap, with caches of functions, scripts and position tables."""

    def __init__(self, mem: MemoryReader, layout: V8Layout, bytecode_sizes: bytes = b"") -> None:
        self.mem = mem
        self.lay = layout
        self.bytecode_sizes = bytecode_sizes
        # Values boxed in a 1-tuple: a cached "could not be read" is (None,).
        self._functions: BoundedLru[int, tuple[FunctionInfo | None]] = BoundedLru(CACHE_SIZE)
        self._scripts: BoundedLru[int, tuple[ScriptInfo | None]] = BoundedLru(1024)
        self._tables: BoundedLru[int, tuple[list[tuple[int, int]] | None]] = BoundedLru(CACHE_SIZE)
        self._codes: BoundedLru[int, tuple[CodeInfo | None, int | None]] = BoundedLru(CACHE_SIZE)
        self._code_spans: dict[int, tuple[int, int]] = {}  # entry -> (end, Code) of JIT code found by pc
        self._code_entries: list[int] = []  # the entries, sorted
        # spans searched in vain, start -> end (the builtins V8 remapped, seen as JIT memory): searched once
        self._no_code: dict[int, int] = {}
        self._no_code_starts: list[int] = []
        self._stream_map = 0  # the map every instruction stream has, once one was found

    # ---- memory ------------------------------------------------------------------------------------

    def _field(self, obj: int, offset: int) -> int | None:
        return self.mem.u64(obj - HEAP_OBJECT_TAG + offset)

    def _read(self, addr: int, size: int) -> bytes | None:
        """`size` bytes at `addr`, read in chunks the reader accepts (a script's source can be megabytes)."""
        if size <= CHUNK:
            return self.mem.read(addr, size)
        parts = self.mem.read_many([(addr + at, min(CHUNK, size - at)) for at in range(0, size, CHUNK)])
        return None if any(part is None for part in parts) else b"".join(parts)  # type: ignore[arg-type]

    def _i32(self, obj: int, offset: int) -> int | None:
        data = self.mem.read(obj - HEAP_OBJECT_TAG + offset, 4)
        return None if data is None else struct.unpack("<i", data)[0]

    def type_of(self, obj: int | None) -> int | None:
        """The instance type of a tagged heap object, None when it is not one."""
        if not _is_object(obj):
            return None
        assert obj is not None
        heap_map = self._field(obj, 0)
        if not _is_object(heap_map):
            return None
        assert heap_map is not None
        data = self.mem.read(heap_map - HEAP_OBJECT_TAG + self.lay.map_instance_type, 2)
        return None if data is None else struct.unpack("<H", data)[0]

    def string(self, obj: int | None, depth: int = 0) -> str | None:
        """A V8 string's text (sequential, cons, thin, sliced, external one-byte), None when not one."""
        kind = self.type_of(obj)
        if kind is None or kind >= FIRST_NONSTRING_TYPE or depth > 8:
            return None
        assert obj is not None
        lay = self.lay
        length = self._i32(obj, lay.string_length)
        if length is None or not 0 <= length <= MAX_SOURCE:
            return None
        one_byte = bool(kind & STRING_ONE_BYTE)
        rep = kind & STRING_REPR_MASK
        if rep == STRING_SEQ:
            data = self._read(obj - HEAP_OBJECT_TAG + lay.seq_string_chars, length * (1 if one_byte else 2))
            if data is None:
                return None
            return data.decode("latin-1") if one_byte else data.decode("utf-16-le", "replace")
        if rep == STRING_CONS:
            first = self.string(self._field(obj, lay.cons_first), depth + 1)
            second = self.string(self._field(obj, lay.cons_second), depth + 1)
            return None if first is None or second is None else first + second
        if rep == STRING_THIN:
            return self.string(self._field(obj, lay.thin_actual), depth + 1)
        if rep == STRING_SLICED:
            parent = self.string(self._field(obj, lay.sliced_parent), depth + 1)
            offset = _smi(self._field(obj, lay.sliced_offset))
            return None if parent is None or offset is None else parent[offset : offset + length]
        if rep == STRING_EXTERNAL:
            data_ptr = self._field(obj, lay.seq_string_chars + 8)  # the cached resource data
            data = self._read(data_ptr, length * (1 if one_byte else 2)) if data_ptr else None
            if data is None:
                return None
            return data.decode("latin-1") if one_byte else data.decode("utf-16-le", "replace")
        return None

    def _fixed_array(self, obj: int | None, limit: int = 1 << 20) -> list[int] | None:
        """A FixedArray's tagged elements."""
        if not _is_object(obj):
            return None
        assert obj is not None
        length = _smi(self._field(obj, self.lay.fixed_array_length))
        if length is None or not 0 <= length <= limit:
            return None
        data = self._read(obj - HEAP_OBJECT_TAG + self.lay.fixed_array_data, 8 * length)
        return None if data is None else list(struct.unpack(f"<{length}Q", data))

    def _slots(self, obj: int | None, count: int) -> list[int] | None:
        """The first `count` tagged elements of a FixedArray that has at least that many."""
        if not _is_object(obj):
            return None
        assert obj is not None
        length = _smi(self._field(obj, self.lay.fixed_array_length))
        if length is None or length < count:
            return None
        data = self.mem.read(obj - HEAP_OBJECT_TAG + self.lay.fixed_array_data, 8 * count)
        return None if data is None else list(struct.unpack(f"<{count}Q", data))

    def _byte_array(self, obj: int | None) -> bytes | None:
        """A ByteArray's (or TrustedByteArray's) bytes (the same header as a FixedArray)."""
        if self.type_of(obj) not in (self.lay.type_byte_array, self.lay.type_trusted_byte_array):
            return None
        assert obj is not None
        length = _smi(self._field(obj, self.lay.fixed_array_length))
        if length is None or not 0 <= length <= MAX_TABLE:
            return None
        return self._read(obj - HEAP_OBJECT_TAG + self.lay.fixed_array_data, length) if length else b""

    # ---- functions and scripts ---------------------------------------------------------------------

    def function(self, shared: int) -> FunctionInfo | None:
        """The name, script, start and bytecode of a SharedFunctionInfo (cached)."""
        cached = self._functions.get(shared)
        if cached is not None:
            return cached[0]
        info = self._read_function(shared)
        self._functions.put(shared, (info,))
        return info

    def _read_function(self, shared: int) -> FunctionInfo | None:
        lay = self.lay
        if self.type_of(shared) != lay.type_shared_function_info:
            return None
        name_or_scope = self._field(shared, lay.sfi_name_or_scope_info)
        name, start = "", -1
        if self.type_of(name_or_scope) == lay.type_scope_info:
            name, start = self._scope_name(name_or_scope or 0)
        else:
            name = self.string(name_or_scope) or ""
        script = self._field(shared, lay.sfi_script_or_debug_info) or 0
        if self.type_of(script) != lay.type_script:
            script = 0
        data = self._field(shared, lay.sfi_function_data)
        kind = self.type_of(data)
        if kind == lay.type_code:  # baseline (Sparkplug) code: its bytecode or interpreter data
            data = self._field(data or 0, lay.code_deopt_data)
            kind = self.type_of(data)
        if kind == lay.type_interpreter_data:
            data = self._field(data or 0, lay.interpreter_data_bytecode)
            kind = self.type_of(data)
        bytecode = data if kind == lay.type_bytecode_array and data else 0
        return FunctionInfo(name=name or ANONYMOUS, script=script, start=start, bytecode=bytecode)

    def _scope_name(self, scope: int) -> tuple[str, int]:
        """(name, start offset) from a function's ScopeInfo: its function name slot, else the inferred
        name; the start from its position info."""
        row = self.lay.scope
        if row.scope_flags_raw:
            raw = self.mem.read(scope - HEAP_OBJECT_TAG + SCOPE_FLAGS, 4)
            flags = None if raw is None else struct.unpack("<I", raw)[0]
        else:
            flags = _smi(self._field(scope, SCOPE_FLAGS))
        count = _smi(self._field(scope, SCOPE_LOCAL_COUNT))
        if flags is None or count is None or not 0 <= count < 1 << 16:
            return "", -1
        slot = (
            self.lay.scope_variable_part // 8 + (count if count < row.scope_max_inlined_locals else 1) + count
        )
        if flags >> row.scope_saved_class_bit & 1:
            slot += 1
        receiver = flags >> row.scope_receiver_shift & 3 if row.scope_receiver_shift >= 0 else 0
        if receiver in (VAR_ALLOCATION_STACK, VAR_ALLOCATION_CONTEXT):
            slot += 1
        name = ""
        if flags >> row.scope_function_variable_shift & 3:
            name = self.string(self._field(scope, 8 * slot)) or ""
            slot += 2
        if flags >> row.scope_inferred_name_bit & 1:
            if not name:
                name = self.string(self._field(scope, 8 * slot)) or ""
            slot += 1
        start = None
        if row.scope_positions_first:
            start = _smi(self._field(scope, SCOPE_START_FIRST))
        elif flags & 0xF in SCOPE_TYPES_WITH_POSITIONS:
            start = _smi(self._field(scope, 8 * slot))
        return name, -1 if start is None else start

    def script(self, script: int) -> ScriptInfo | None:
        """A script's name and line ends (from V8's cache of them, else from its source)."""
        if not script:
            return None
        cached = self._scripts.get(script)
        if cached is not None:
            return cached[0]
        lay = self.lay
        name = self.string(self._field(script, lay.script_name)) or ""
        ends = self._fixed_array(self._field(script, lay.script_line_ends), MAX_SOURCE)
        line_ends: tuple[int, ...] = ()
        if ends:
            line_ends = tuple(v for v in (_smi(e) for e in ends) if v is not None)
        else:
            source = self.string(self._field(script, lay.script_source))
            if source is not None:
                line_ends = (*(m.start() for m in _NEWLINE.finditer(source)), len(source))
        info = ScriptInfo(name=name, line_ends=line_ends)
        self._scripts.put(script, (info,))
        return info

    def _positions(self, table: int | None) -> list[tuple[int, int]] | None:
        if not table:
            return None
        cached = self._tables.get(table)
        if cached is not None:
            return cached[0]
        data = self._byte_array(table)
        entries = position_entries(data) if data is not None else None
        self._tables.put(table, (entries,))
        return entries

    # ---- frames ------------------------------------------------------------------------------------

    def _frame(self, info: FunctionInfo, offset: int, inlined: bool = False) -> Frame:
        script = self.script(info.script)
        file = script.name if script else ""
        start_line = script.line(info.start) if script and info.start >= 0 else 0
        line = script.line(offset) if script and offset >= 0 else start_line
        return Frame(
            kind=FrameKind.INTERPRETED,
            function=info.name,
            file=file,
            line=line,
            start_line=start_line,
            inlined=inlined,
            runtime=RUNTIME,
        )

    def frames(self, shared: int, addr: int, aux: int) -> tuple[Frame, ...] | None:
        """The frames one FRAME_V8 stands for, root first (an optimized frame's inlined callees after it)."""
        info = self.function(shared)
        if info is None:
            return None
        kind = aux & V8_AUX_KIND_MASK
        if kind == V8_FRAME_INTERPRETED and info.bytecode:
            return (self._frame(info, self._bytecode_position(info.bytecode, addr)),)
        if kind == V8_FRAME_CODE and addr:
            compiled = self._compiled(info, addr, aux >> V8_AUX_SHIFT)
            if compiled is not None:
                return compiled
        if kind in (V8_FRAME_FUNCTION, V8_FRAME_JIT_INTERPRETED) and addr:
            # a pc in code the function does not point at (OSR), or whose Code BPF cannot see (13.x)
            found = self.code_at(addr)
            if found is not None:
                code, entry = found
                compiled = self._compiled(info, code, addr - entry)
                if compiled is not None:
                    return compiled
            elif kind == V8_FRAME_JIT_INTERPRETED and info.bytecode:  # not JIT code: remapped builtins
                return (self._frame(info, self._bytecode_position(info.bytecode, aux >> V8_AUX_SHIFT)),)
        return (self._frame(info, -1),)

    def _compiled(self, info: FunctionInfo, code: int, pc_offset: int) -> tuple[Frame, ...] | None:
        """The frames of optimized or baseline Code at `pc_offset`, None for other code."""
        inline = self._optimized(info, code, pc_offset)
        if inline is not None:
            return inline
        offset = self._baseline(code, pc_offset)
        if offset is not None and info.bytecode:
            return (self._frame(info, self._bytecode_position(info.bytecode, offset)),)
        return None

    def code_entry(self, code: int) -> int | None:
        """Where a Code's instructions start: its entry field, or just after it when they follow it inline."""
        if self.lay.code_header:
            return code - HEAP_OBJECT_TAG + self.lay.code_header
        return self._field(code, self.lay.code_entry)

    def _code_before(self, entry: int, header: tuple[int, int]) -> int | None:
        """The Code whose instructions start at `entry`, given the two words at the start of the object
        before them (an instruction stream's map and Code; or, inline, a Code's map): None when not one."""
        heap_map, second = header
        if not _is_object(heap_map) or (self._stream_map and heap_map != self._stream_map):
            return None
        if self.lay.code_header:
            code = entry - self.lay.code_header + HEAP_OBJECT_TAG
            if not self._stream_map and self.type_of(code) != self.lay.type_code:
                return None
            return code
        if not _is_object(second) or self._field(second, self.lay.code_entry) != entry:
            return None
        return second

    def _still_there(self, entry: int, code: int) -> bool:
        """Whether the code found at `entry` still is (JIT memory is reused for new code)."""
        if self.lay.code_header:
            return self._field(code, 0) == self._stream_map
        return self.mem.u64(entry - self.lay.stream_header + 8) == code

    def code_at(self, pc: int) -> tuple[int, int] | None:
        """(Code, its entry) of the JIT code holding `pc`: the code starting at or below it (instructions
        start CODE_ALIGNMENT-aligned, after their instruction stream's header, map and Code, or inline after
        their Code's header) that says it spans `pc`."""
        index = bisect.bisect_right(self._code_entries, pc) - 1
        if index >= 0:
            entry = self._code_entries[index]
            end, code = self._code_spans[entry]
            if pc < end:
                if self._still_there(entry, code):
                    return code, entry
                del self._code_entries[index], self._code_spans[entry]
        lay = self.lay
        header = lay.code_header or lay.stream_header
        if not header or self._searched_in_vain(pc):
            return None
        page = pc & ~(PAGE - 1)
        at = pc & ~(CODE_ALIGNMENT - 1)
        while at > pc - CODE_SEARCH:
            data = self.mem.read(page, PAGE)
            if data is None:
                return None
            for entry in range(at, page - 1, -CODE_ALIGNMENT):
                if entry - header < page:
                    break
                words = struct.unpack_from("<QQ", data, entry - header - page)
                code = self._code_before(entry, words)
                if code is None:
                    continue
                size = self._i32(code, lay.code_size)
                if size is None:
                    return None
                self._stream_map = words[0]
                if len(self._code_spans) >= CACHE_SIZE:
                    self._code_spans.clear()
                    self._code_entries.clear()
                if entry not in self._code_spans:
                    bisect.insort(self._code_entries, entry)
                self._code_spans[entry] = (entry + size, code)
                return (code, entry) if pc < entry + size else None
            page -= PAGE  # entries just above the page boundary have their header on the page before
            at = min(
                page + PAGE + (header - 1) // CODE_ALIGNMENT * CODE_ALIGNMENT, pc & ~(CODE_ALIGNMENT - 1)
            )
        if len(self._no_code) >= CACHE_SIZE:
            self._no_code.clear()
            self._no_code_starts.clear()
        start = pc - CODE_SEARCH
        if start not in self._no_code:
            bisect.insort(self._no_code_starts, start)
        self._no_code[start] = pc + 1
        return None

    def _searched_in_vain(self, pc: int) -> bool:
        """Whether a search for the code below `pc` found none before (the span below a pc in code without
        a header: the builtins' copy, where every leaf pc of the interpreter would search again)."""
        index = bisect.bisect_right(self._no_code_starts, pc) - 1
        return index >= 0 and pc < self._no_code[self._no_code_starts[index]]

    def _bytecode_position(self, bytecode: int, offset: int) -> int:
        """The script offset of a bytecode offset (-1 without positions: Node.js collects them lazily)."""
        entries = self._positions(self._field(bytecode, self.lay.bytecode_positions))
        position = position_at(entries, offset) if entries and offset >= 0 else None
        return -1 if position is None else split_position(position)[0]

    def _baseline(self, code: int, pc_offset: int) -> int | None:
        """The bytecode offset baseline Code runs at `pc_offset`, None for other code."""
        lay = self.lay
        flags = self._i32(code, lay.code_flags)
        if flags is None or flags & lay.code_kind_mask != lay.code_kind_baseline or not self.bytecode_sizes:
            return None
        bytecode = self._field(code, lay.code_deopt_data)  # bytecode_or_interpreter_data
        if self.type_of(bytecode) == lay.type_interpreter_data:
            bytecode = self._field(bytecode or 0, lay.interpreter_data_bytecode)
        if self.type_of(bytecode) != lay.type_bytecode_array:
            return None
        assert bytecode is not None
        length = _smi(self._field(bytecode, lay.fixed_array_length))
        table = self._byte_array(self._field(code, lay.code_positions))
        if length is None or not 0 < length <= MAX_TABLE or table is None:
            return None
        bytecodes = self._read(bytecode - HEAP_OBJECT_TAG + lay.bytecode_header, length)
        if bytecodes is None:
            return None
        return baseline_bytecode_offset(table, bytecodes, self.bytecode_sizes, pc_offset)

    def _code(self, code: int) -> CodeInfo | None:
        """An optimized Code's position table and inlining data, read once per code object (None for other
        code); the entry it was read with tells the same object from one moved into its address since."""
        lay = self.lay
        entry = self.code_entry(code)
        cached = self._codes.get(code)
        if cached is not None and cached[1] == entry:  # the same code: a moved object's address is reused
            return cached[0]
        flags = self._i32(code, lay.code_flags)
        info = None
        if flags is not None and flags & lay.code_kind_mask in (lay.code_kind_turbofan, lay.code_kind_maglev):
            entries = self._positions(self._field(code, lay.code_positions))
            slots = max(lay.deopt_inlining_positions, lay.deopt_literal_array) + 1
            deopt = self._slots(self._field(code, lay.code_deopt_data), slots)
            positions = self._byte_array(deopt[lay.deopt_inlining_positions]) if deopt else None
            literals = self._fixed_array(deopt[lay.deopt_literal_array]) if deopt else None
            info = CodeInfo(entries or [], positions or b"", tuple(literals or ()))
        self._codes.put(code, (info, entry))
        return info

    def _optimized(self, info: FunctionInfo, code: int, pc_offset: int) -> tuple[Frame, ...] | None:
        """The frames of an optimized Code at `pc_offset`: the function, then what it inlined there."""
        found = self._code(code)
        position = position_at(found.entries, pc_offset) if found and found.entries else None
        if found is None or position is None:
            return None
        offset, inlining = split_position(position)
        chain: list[tuple[FunctionInfo, int]] = []  # innermost first
        positions, literals = found.inlining, found.literals
        for _ in range(MAX_INLINE_DEPTH):
            if inlining < 0:
                break
            if (inlining + 1) * 16 > len(positions):
                return None
            parent, function_id = struct.unpack_from("<qi", positions, inlining * 16)
            literal = literals[function_id] & ~WEAK_TAG if 0 <= function_id < len(literals) else 0
            if literal and self.type_of(literal) == self.lay.type_sfi_wrapper:
                literal = self._field(literal, SFI_WRAPPER_SHARED) or 0
            callee = self.function(literal) if literal else None
            if callee is None:
                return None
            chain.append((callee, offset))
            offset, inlining = split_position(parent)
        out = [self._frame(info, offset)]
        out.extend(self._frame(callee, at, inlined=True) for callee, at in reversed(chain))
        return tuple(out)

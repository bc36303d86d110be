"""The V8 namer on a hand-built heap (the objects node 20 lays out, in fake memory): function names from
ScopeInfo, V8's inferred names and plain strings; lines from bytecode and optimized code position tables
(inlined functions expanded), baseline code's bytecode offset table, and the function's first line where
V8 keeps no positions; the code holding a pc found from its instruction stream's header (node 22's is
32 bytes, its code tables trusted) or, in node 18, from the Code that holds its instructions inline; node
24's ScopeInfo and the frames its BPF step sends without the function's Code."""

from __future__ import annotations

import struct
from dataclasses import replace

from go_pclntab_fixture import _uvarint as vlq  # V8's unsigned VLQ is the same encoding
from interp_memory import FakeMemory
from test_v8_procinfo import node20_layout

from fleetprof.interpreters.v8 import symbolizer as names
from fleetprof.interpreters.v8.layouts import CODE_KIND_BASELINE, CODE_KIND_TURBOFAN
from fleetprof.profile.model import FrameKind

LAYOUT = node20_layout()
T_STRING, T_CONS, T_SCOPE, T_SFI, T_SCRIPT = 8, 41, 261, 262, 167
T_BYTECODE, T_BYTES, T_FIXED, T_CODE, T_ODDBALL = 191, 190, 175, 245, 131
SOURCE = "\n".join(
    [
        '"use strict";',  # 1
        "function outer(n) {",  # 2
        "  const x = n + 1;",  # 3
        "  return inner(x);",  # 4
        "}",  # 5
        "function inner(x) {",  # 6
        "  return x * 2;",  # 7
        "}",  # 8
    ]
)
OUTER_START = SOURCE.index("function outer")
CALL_INNER = SOURCE.index("inner(x);")
INNER_START = SOURCE.index("function inner")
INNER_BODY = SOURCE.index("x * 2")


def smi(value: int) -> int:
    return (value << 32) & (2**64 - 1)


def zigzag_vlq(value: int) -> bytes:
    """V8's signed VLQ (source-position-table.cc EncodeInt)."""
    zz = value << 1 if value >= 0 else ((-value) << 1) - 1
    return vlq(zz)


def position(offset: int, inlining: int = -1) -> int:
    """A SourcePosition as tables keep it: script offset + 1 from bit 1, inlining id + 1 from bit 31."""
    return (offset + 1) << 1 | (inlining + 1) << 31


def table(entries: list[tuple[int, int]]) -> bytes:
    """A source position table of (code offset, SourcePosition) entries, all statements."""
    out, code, pos = bytearray(), 0, 0
    for at, value in entries:
        out += zigzag_vlq(at - code) + zigzag_vlq(value - pos)
        code, pos = at, value
    return bytes(out)


class Heap:
    """Objects in fake memory, tagged like V8's (address + 1), each with a map of its instance type."""

    def __init__(self) -> None:
        self.mem = FakeMemory()
        self.next = 0x10_0000_0000
        self.maps: dict[int, int] = {}

    def alloc(self, data: bytes) -> int:
        addr = self.next
        self.mem.put(addr, data)
        self.next += (len(data) + 0xFFF) & ~0xFFF
        return addr + 1

    def map_of(self, kind: int) -> int:
        if kind not in self.maps:
            body = bytearray(16)
            struct.pack_into("<H", body, LAYOUT.map_instance_type, kind)
            self.maps[kind] = self.alloc(bytes(body))
        return self.maps[kind]

    def obj(
        self, kind: int, fields: dict[int, int], size: int = 64, raw: dict[int, bytes] | None = None
    ) -> int:
        body = bytearray(size)
        struct.pack_into("<Q", body, 0, self.map_of(kind))
        for offset, value in fields.items():
            struct.pack_into("<Q", body, offset, value)
        for offset, data in (raw or {}).items():
            body[offset : offset + len(data)] = data
        return self.alloc(bytes(body))

    def string(self, text: str) -> int:
        data = text.encode("latin-1")
        return self.obj(T_STRING, {}, 16 + len(data), {12: struct.pack("<i", len(data)), 16: data})

    def byte_array(self, data: bytes) -> int:
        return self.obj(T_BYTES, {8: smi(len(data))}, 16 + len(data), {16: data})

    def fixed_array(self, values: list[int]) -> int:
        return self.obj(
            T_FIXED,
            {8: smi(len(values)), **{16 + 8 * i: v for i, v in enumerate(values)}},
            16 + 8 * len(values),
        )

    def scope(self, flags: int, locals_: list[str], tail: list[int]) -> int:
        """A ScopeInfo: flags, 0 parameters, the context locals' names and infos, then `tail`'s slots."""
        slots = [smi(flags), smi(0), smi(len(locals_))]
        slots += [self.string(n) for n in locals_] + [smi(0)] * len(locals_) + tail
        return self.obj(T_SCOPE, {8 + 8 * i: v for i, v in enumerate(slots)}, 8 + 8 * len(slots))


FUNCTION_SCOPE = 2
FN_VAR = 3 << 12  # the function variable slot is there (unused)
INFERRED = 1 << 14


def build(heap: Heap, *, positions: bool = True) -> dict[str, int]:
    """outer (interpreted) calling inner; returns the objects by name."""
    undefined = heap.obj(T_ODDBALL, {})
    script = heap.obj(T_SCRIPT, {8: heap.string(SOURCE), 16: heap.string("/srv/app.js"), 56: undefined}, 64)
    bytecode_table = heap.byte_array(
        table([(0, position(OUTER_START)), (5, position(SOURCE.index("n + 1"))), (9, position(CALL_INNER))])
    )
    bytecodes = bytes([0x10] * 20)  # twenty one-byte bytecodes
    bytecode = heap.obj(
        T_BYTECODE,
        {8: smi(len(bytecodes)), 32: bytecode_table if positions else undefined},
        54 + 20,
        {54: bytecodes},
    )
    outer_scope = heap.scope(
        FUNCTION_SCOPE | FN_VAR | INFERRED,
        ["x", "y"],
        [heap.string("outer"), smi(-1), undefined, smi(OUTER_START), smi(OUTER_START + 60)],
    )
    outer = heap.obj(T_SFI, {8: bytecode, 16: outer_scope, 32: script})
    inner_scope = heap.scope(
        FUNCTION_SCOPE | INFERRED,
        [],
        [heap.string("handlers.inner"), smi(INNER_START), smi(INNER_START + 40)],
    )
    inner = heap.obj(T_SFI, {8: undefined, 16: inner_scope, 32: script})
    return {"outer": outer, "inner": inner, "bytecode": bytecode, "script": script, "undefined": undefined}


def test_interpreted_frame_named_with_its_line_from_the_bytecode_positions() -> None:
    heap = Heap()
    objs = build(heap)
    namer = names.V8Namer(heap.mem, LAYOUT)
    (frame,) = namer.frames(objs["outer"], 9, names.V8_FRAME_INTERPRETED) or ()
    assert (frame.function, frame.file, frame.line, frame.start_line) == ("outer", "/srv/app.js", 4, 2)
    assert frame.kind is FrameKind.INTERPRETED and frame.runtime == "v8js" and not frame.inlined
    (early,) = namer.frames(objs["outer"], 6, names.V8_FRAME_INTERPRETED) or ()
    assert early.line == 3


def test_lazily_missing_positions_give_the_first_line() -> None:
    heap = Heap()
    objs = build(heap, positions=False)
    (frame,) = names.V8Namer(heap.mem, LAYOUT).frames(objs["outer"], 9, names.V8_FRAME_INTERPRETED) or ()
    assert (frame.function, frame.line, frame.start_line) == ("outer", 2, 2)


def test_inferred_and_plain_string_names() -> None:
    heap = Heap()
    objs = build(heap)
    namer = names.V8Namer(heap.mem, LAYOUT)
    (inner,) = namer.frames(objs["inner"], 0, names.V8_FRAME_FUNCTION) or ()
    assert (inner.function, inner.line) == ("handlers.inner", 6)
    cons = heap.obj(
        T_CONS, {16: heap.string("Module."), 24: heap.string("_load")}, 32, {12: struct.pack("<i", 12)}
    )
    plain = heap.obj(T_SFI, {8: objs["undefined"], 16: cons, 32: objs["script"]})
    (frame,) = namer.frames(plain, 0, names.V8_FRAME_FUNCTION) or ()
    assert (frame.function, frame.file, frame.line) == ("Module._load", "/srv/app.js", 0)
    nameless = heap.obj(T_SFI, {8: objs["undefined"], 16: heap.string(""), 32: objs["undefined"]})
    (anonymous,) = namer.frames(nameless, 0, names.V8_FRAME_FUNCTION) or ()
    assert (anonymous.function, anonymous.file) == ("(anonymous)", "")
    assert namer.frames(objs["script"], 0, names.V8_FRAME_FUNCTION) is None  # not a SharedFunctionInfo


def optimized_code(heap: Heap, objs: dict[str, int], entry: int) -> int:
    """TurboFan code for outer with inner inlined: pc 0x40.. runs inner's body, inlined at the call."""
    positions = heap.byte_array(
        table([(0, position(SOURCE.index("n + 1"))), (0x40, position(INNER_BODY, inlining=0))])
    )
    inlining = heap.byte_array(struct.pack("<qi4x", position(CALL_INNER), 0))
    weak_inner = objs["inner"] | 2
    literals = heap.fixed_array([weak_inner])
    deopt = heap.fixed_array([0, 0, literals, 0, 0, 0, objs["outer"], inlining])
    return heap.obj(
        T_CODE,
        {16: deopt, 24: positions, 40: entry, 48: CODE_KIND_TURBOFAN, 56: 0x100},
        64,
    )


def test_optimized_frame_expands_its_inlined_functions() -> None:
    heap = Heap()
    objs = build(heap)
    code = optimized_code(heap, objs, 0x7F00_0000_0040)
    namer = names.V8Namer(heap.mem, LAYOUT)
    aux = names.V8_FRAME_CODE | 0x48 << names.V8_AUX_SHIFT
    frames = namer.frames(objs["outer"], code, aux) or ()
    assert [(f.function, f.line, f.inlined) for f in frames] == [
        ("outer", 4, False),
        ("handlers.inner", 7, True),
    ]
    aux = names.V8_FRAME_CODE | 0x10 << names.V8_AUX_SHIFT
    assert [(f.function, f.line) for f in namer.frames(objs["outer"], code, aux) or ()] == [("outer", 3)]


def test_code_holding_a_pc_is_found_from_its_stream_header() -> None:
    """A pc in code the function no longer points at (on-stack replacement): the instruction stream whose
    header (map, Code) sits just below a 64-byte boundary under the pc, and whose Code spans the pc."""
    heap = Heap()
    objs = build(heap)
    stream_map = heap.map_of(300)
    entry = 0x7F00_0000_2040
    code = optimized_code(heap, objs, entry)
    page = bytearray(0x2000)
    struct.pack_into("<QQ", page, 0x40 - 16, stream_map, code)
    struct.pack_into("<QQ", page, 0x1000, stream_map, heap.obj(T_CODE, {40: 0x1234, 56: 8}))  # a decoy
    heap.mem.put(entry - 0x40, bytes(page))
    namer = names.V8Namer(heap.mem, LAYOUT)
    assert namer.code_at(entry + 0x48) == (code, entry)
    frames = namer.frames(objs["outer"], entry + 0x48, names.V8_FRAME_FUNCTION) or ()
    assert [(f.function, f.line) for f in frames] == [("outer", 4), ("handlers.inner", 7)]
    assert namer.code_at(entry + 0x200) is None  # past the code's end


def test_code_starting_on_a_page_boundary_is_found() -> None:
    """Code whose instructions start a page has its stream header at the end of the page before."""
    heap = Heap()
    objs = build(heap)
    entry = 0x7F00_0000_3000
    code = optimized_code(heap, objs, entry)
    pages = bytearray(0x2000)
    struct.pack_into("<QQ", pages, 0x1000 - 16, heap.map_of(300), code)
    heap.mem.put(entry - 0x1000, bytes(pages))
    assert names.V8Namer(heap.mem, LAYOUT).code_at(entry + 0x48) == (code, entry)


def test_baseline_code_maps_pcs_to_bytecode_offsets() -> None:
    """Sparkplug code: one pc delta per bytecode (the prologue first) walks the bytecodes by their sizes."""
    # six bytecodes (0-3 are the scaling prefixes) x three operand scales
    sizes = bytes((1, 1, 1, 1, 3, 2, 1, 1, 1, 1, 5, 3, 1, 1, 1, 1, 9, 5))
    bytecodes = bytes([4, 9, 9, 0, 5, 9, 9, 4, 9, 9])  # 4 (3 bytes) at 0, Wide 5 (1 + 3) at 3, 4 at 7
    offsets = vlq(4) + vlq(10) + vlq(6) + vlq(8)  # the prologue ends at pc 4; the bytecodes at 14, 20, 28
    assert names.baseline_bytecode_offset(offsets, bytecodes, sizes, 2) == -1
    assert names.baseline_bytecode_offset(offsets, bytecodes, sizes, 12) == 0
    assert names.baseline_bytecode_offset(offsets, bytecodes, sizes, 17) == 3
    assert names.baseline_bytecode_offset(offsets, bytecodes, sizes, 27) == 7
    assert names.baseline_bytecode_offset(offsets, bytecodes, sizes, 99) is None


def test_baseline_frame_gets_the_line_of_its_bytecode() -> None:
    heap = Heap()
    objs = build(heap)
    sizes = bytes([1] * 0x11 * 3)  # every bytecode one byte long (0x10, the fake bytecode, included)
    offsets = heap.byte_array(vlq(4) + vlq(3) * 20)  # prologue to 4, then three bytes per bytecode
    code = heap.obj(
        T_CODE, {16: objs["bytecode"], 24: offsets, 40: 0x7F00_0000_1000, 48: CODE_KIND_BASELINE, 56: 0x80}
    )
    namer = names.V8Namer(heap.mem, LAYOUT, sizes)
    at_call = 4 + 3 * 9 + 1  # inside bytecode 9: the call
    (frame,) = namer.frames(objs["outer"], code, names.V8_FRAME_CODE | at_call << names.V8_AUX_SHIFT) or ()
    assert (frame.function, frame.line) == ("outer", 4)


def test_position_tables_decode_as_v8_writes_them() -> None:
    entries = [(0, position(10)), (3, position(4)), (300, position(70000, inlining=2))]
    assert names.position_entries(table(entries)) == entries
    assert names.split_position(position(70000, inlining=2)) == (70000, 2)
    assert names.position_at(entries, 299) == position(4) and names.position_at([(5, 1)], 4) is None
    script = names.ScriptInfo("x.js", (9, 20))
    assert [script.line(o) for o in (0, 9, 10, 20, -1)] == [1, 1, 2, 2, 0]


def test_v10_code_holds_its_instructions_and_is_found_by_its_map() -> None:
    """V8 10.2 (Node.js 18): a Code's instructions follow its 128-byte header; a pc in code the function no
    longer points at finds the Code itself, 64-byte aligned below the pc, by its map."""
    layout = replace(LAYOUT, code_header=128, code_entry=0, stream_header=0, code_size=40)
    heap = Heap()
    objs = build(heap)
    positions = heap.byte_array(
        table([(0, position(SOURCE.index("n + 1"))), (0x40, position(INNER_BODY, inlining=0))])
    )
    inlining = heap.byte_array(struct.pack("<qi4x", position(CALL_INNER), 0))
    deopt = heap.fixed_array([0, 0, heap.fixed_array([objs["inner"] | 2]), 0, 0, 0, objs["outer"], inlining])
    code = heap.obj(T_CODE, {16: deopt, 24: positions, 40: 0x100, 48: CODE_KIND_TURBOFAN}, 0x1000)
    entry = code - 1 + 128
    namer = names.V8Namer(heap.mem, layout)
    assert namer.code_entry(code) == entry
    aux = names.V8_FRAME_CODE | 0x48 << names.V8_AUX_SHIFT
    expanded = [("outer", 4), ("handlers.inner", 7)]
    assert [(f.function, f.line) for f in namer.frames(objs["outer"], code, aux) or ()] == expanded
    assert namer.code_at(entry + 0x48) == (code, entry)
    frames = namer.frames(objs["outer"], entry + 0x48, names.V8_FRAME_FUNCTION) or ()
    assert [(f.function, f.line) for f in frames] == expanded
    assert namer.code_at(entry + 0x180) is None  # past the code's end


def test_v12_trusted_code_tables_and_a_32_byte_stream_header() -> None:
    """V8 12.4 (Node.js 22): Code keeps its deoptimization data and position table one slot lower, the
    table is a TrustedByteArray, CodeKind::TURBOFAN is 12 and the instruction stream's header is 32 bytes."""
    layout = replace(
        LAYOUT,
        stream_header=32,
        code_positions=16,
        code_deopt_data=8,
        code_size=52,
        code_kind_baseline=10,
        code_kind_maglev=11,
        code_kind_turbofan=12,
        type_trusted_byte_array=212,
    )
    heap = Heap()
    objs = build(heap)
    data = table([(0, position(SOURCE.index("n + 1"))), (0x40, position(INNER_BODY, inlining=0))])
    positions = heap.obj(212, {8: smi(len(data))}, 16 + len(data), {16: data})
    inlining = heap.byte_array(struct.pack("<qi4x", position(CALL_INNER), 0))
    deopt = heap.fixed_array([0, 0, heap.fixed_array([objs["inner"] | 2]), 0, 0, 0, objs["outer"], inlining])
    entry = 0x7F00_0000_2040
    code = heap.obj(T_CODE, {8: deopt, 16: positions, 40: entry, 48: 0x100 << 32 | 12}, 64)
    page = bytearray(0x1000)
    struct.pack_into("<QQ", page, 0x40 - 32, heap.map_of(300), code)
    heap.mem.put(entry - 0x40, bytes(page))
    namer = names.V8Namer(heap.mem, layout)
    assert namer.code_at(entry + 0x48) == (code, entry)
    frames = namer.frames(objs["outer"], entry + 0x48, names.V8_FRAME_FUNCTION) or ()
    assert [(f.function, f.line, f.inlined) for f in frames] == [
        ("outer", 4, False),
        ("handlers.inner", 7, True),
    ]


def test_v13_scope_info_keeps_raw_flags_and_its_positions_first() -> None:
    """V8 13.6 (Node.js 24): ScopeInfo's flags are a uint32 (no Smi), start and end follow the counts, and the
    context locals, function variable and inferred name come after them."""
    layout = replace(
        LAYOUT,
        scope_variable_part=48,
        scope=replace(LAYOUT.scope, scope_flags_raw=True, scope_positions_first=True),
    )
    heap = Heap()
    objs = build(heap)

    def scope13(flags: int, locals_: list[str], start: int, tail: list[int]) -> int:
        slots = [flags, smi(0), smi(len(locals_)), smi(start), smi(start + 40)]
        slots += [heap.string(n) for n in locals_] + [smi(0)] * len(locals_) + tail
        return heap.obj(T_SCOPE, {8 + 8 * i: v for i, v in enumerate(slots)}, 8 + 8 * len(slots))

    named = scope13(4 | FN_VAR | INFERRED, ["x", "y"], OUTER_START, [heap.string("outer"), smi(-1), 0])
    inferred = scope13(4 | INFERRED, [], INNER_START, [heap.string("handlers.inner")])
    namer = names.V8Namer(heap.mem, layout)
    for scope, expected in ((named, ("outer", 2)), (inferred, ("handlers.inner", 6))):
        shared = heap.obj(T_SFI, {8: objs["undefined"], 16: scope, 32: objs["script"]})
        (frame,) = namer.frames(shared, 0, names.V8_FRAME_FUNCTION) or ()
        assert (frame.function, frame.line) == expected


def test_jit_interpreted_frames_are_code_where_there_is_some_else_bytecode() -> None:
    """V8_FRAME_JIT_INTERPRETED (13.x: BPF cannot read the function's Code): a pc in JIT code found from its
    stream header is that code's frame (on-stack replacement); a pc elsewhere (the remapped builtins) is the
    interpreter's, at the bytecode offset the frame carries."""
    heap = Heap()
    objs = build(heap)
    entry = 0x7F00_0000_2040
    code = optimized_code(heap, objs, entry)
    page = bytearray(0x1000)
    struct.pack_into("<QQ", page, 0x40 - 16, heap.map_of(300), code)
    heap.mem.put(entry - 0x40, bytes(page))
    namer = names.V8Namer(heap.mem, LAYOUT)
    aux = names.V8_FRAME_JIT_INTERPRETED | 9 << names.V8_AUX_SHIFT
    compiled = namer.frames(objs["outer"], entry + 0x48, aux) or ()
    assert [(f.function, f.line) for f in compiled] == [("outer", 4), ("handlers.inner", 7)]
    (interpreted,) = namer.frames(objs["outer"], 0x7F00_0010_0000, aux) or ()
    assert (interpreted.function, interpreted.line) == ("outer", 4)


def test_inlined_functions_wrapped_in_deoptimization_literals() -> None:
    """V8 13.6 may keep an inlined function's SharedFunctionInfo in a SharedFunctionInfoWrapper."""
    heap = Heap()
    objs = build(heap)
    layout = replace(LAYOUT, type_sfi_wrapper=195)
    wrapped = dict(objs, inner=heap.obj(195, {8: objs["inner"]}))
    code = optimized_code(heap, wrapped, 0x7F00_0000_0040)
    aux = names.V8_FRAME_CODE | 0x48 << names.V8_AUX_SHIFT
    frames = names.V8Namer(heap.mem, layout).frames(objs["outer"], code, aux) or ()
    assert [(f.function, f.line) for f in frames] == [("outer", 4), ("handlers.inner", 7)]


def test_a_span_without_code_is_searched_once() -> None:
    """Readable memory with no code header below a pc (the builtins V8 remapped, before the agent maps them):
    the search gives None, and a pc in the span searched gives None again without reading memory."""
    heap = Heap()
    start = 0x7F00_0100_0000
    heap.mem.put(start, bytes(names.CODE_SEARCH + 0x2000))
    namer = names.V8Namer(heap.mem, LAYOUT)
    pc = start + names.CODE_SEARCH + 0x1000
    assert namer.code_at(pc) is None
    reads: list[int] = []
    read = heap.mem.read
    heap.mem.read = lambda addr, size: reads.append(addr) or read(addr, size)  # type: ignore[method-assign]
    assert namer.code_at(pc - 0x800) is None and namer.code_at(pc) is None
    assert reads == []

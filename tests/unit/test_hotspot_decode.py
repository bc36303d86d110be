"""HotSpot's compressed streams and the namer on hand-built bytes: UNSIGNED5 (both flavours), line number
tables, scope chains, PcDesc lookup, and frames from a fake process memory laid out like JDK 17's."""

from __future__ import annotations

import struct

import pytest
from interp_memory import FakeMemory

from fleetprof.interpreters.hotspot.discovery import (
    META,
    STRUCT_IS_STATIC,
    STRUCT_OFFSET,
    STRUCT_STRIDE,
    TABLES,
    HotSpotBinary,
    StructEntry,
    VMTables,
)
from fleetprof.interpreters.hotspot.layouts import HotSpotLayout, VMValues, layout_from
from fleetprof.interpreters.hotspot.process import layout_from_process, read_values
from fleetprof.interpreters.hotspot.symbolizer import (
    JVM_AUX_COOKIE_SHIFT,
    JVM_AUX_TOP,
    JVM_FRAME_COMPILED,
    JVM_FRAME_INTERPRETED,
    JVM_FRAME_STUB,
    HotSpotNamer,
    external_class_name,
    line_at,
    line_number_table,
    pc_desc_at,
    read_unsigned5,
    scope_chain,
)
from fleetprof.profile.model import FrameKind
from tests.unit.test_hotspot_discovery import _values


def unsigned5(value: int, excludes_zero: bool) -> bytes:
    """UNSIGNED5 encoding, written from the format's definition (L = 256 - 64 - X, 6 bits a byte)."""
    x = 1 if excludes_zero else 0
    low = 256 - 64 - x
    out = []
    for _ in range(4):
        if value < low:
            return bytes([*out, value + x])
        value -= low
        out.append(low + value % 64 + x)
        value >>= 6
    return bytes([*out, value + x])


def signed(value: int, excludes_zero: bool) -> bytes:
    return unsigned5((value << 1) ^ (value >> 63) if value >= 0 else ((-value - 1) << 1) | 1, excludes_zero)


@pytest.mark.parametrize("excludes_zero", [False, True])
def test_unsigned5_roundtrip(excludes_zero: bool) -> None:
    for value in (0, 1, 63, 190, 191, 192, 300, 1000, 12345, 1 << 20, (1 << 31) + 5, 0xFFFFFFFF):
        data = b"\x55" + unsigned5(value, excludes_zero) + b"\x01"
        assert read_unsigned5(data, 1, excludes_zero) == (value, len(data) - 1)
        if excludes_zero:
            assert 0 not in data[1:-1]


def test_unsigned5_known_bytes() -> None:
    assert read_unsigned5(bytes([236, 1]), 0, False) == (300, 2)
    assert read_unsigned5(bytes([237, 2]), 0, True) == (300, 2)
    assert read_unsigned5(bytes([0]), 0, True) is None  # JDK 20+ streams never hold a zero byte
    assert read_unsigned5(bytes([250]), 0, False) is None  # truncated


@pytest.mark.parametrize("excludes_zero", [False, True])
def test_line_number_table(excludes_zero: bool) -> None:
    data = (
        b"\xff"
        + signed(0, excludes_zero)
        + signed(10, excludes_zero)  # (0, 10): line delta over 7 needs the escape
        + bytes([5 << 3 | 2])  # (5, 12)
        + b"\xff"
        + signed(295, excludes_zero)
        + signed(-4, excludes_zero)  # (300, 8)
        + b"\x00junk"
    )
    pairs = line_number_table(data, excludes_zero)
    assert pairs == [(0, 10), (5, 12), (300, 8)]
    assert [line_at(pairs, bci) for bci in (0, 4, 5, 299, 300, 900)] == [10, 10, 12, 12, 8, 8]
    assert line_at([], 3) == 0


@pytest.mark.parametrize("excludes_zero", [False, True])
def test_scope_chain(excludes_zero: bool) -> None:
    outer = unsigned5(0, excludes_zero) + unsigned5(1, excludes_zero) + unsigned5(5 + 1, excludes_zero)
    inner_at = 1 + len(outer)
    inner = unsigned5(1, excludes_zero) + unsigned5(2, excludes_zero) + unsigned5(0 + 1, excludes_zero)
    data = b"\xff" + outer + inner
    assert scope_chain(data, inner_at, excludes_zero) == [(2, 0), (1, 5)]
    assert scope_chain(data, 0, excludes_zero) == []
    assert scope_chain(data[:-1], inner_at, excludes_zero) is None


def test_pc_desc_lookup() -> None:
    pcs = [(-1, 0), (10, 5), (20, 9)]
    assert pc_desc_at(pcs, 10, top=False) == 5  # a return address: the PcDesc recorded at it
    assert pc_desc_at(pcs, 10, top=True) == 9  # an interrupted pc: the next one past it
    assert pc_desc_at(pcs, 12, top=True) == 9
    assert pc_desc_at(pcs, 3, top=False) == 5
    assert pc_desc_at(pcs, 21, top=False) is None


def test_external_class_name() -> None:
    assert external_class_name("java/util/HashMap") == "java.util.HashMap"
    assert external_class_name("a/B$$Lambda+0x0000000800c03000") == "a.B$$Lambda/0x0000000800c03000"


def _layout() -> HotSpotLayout:
    layout = layout_from(_values(), (17, 0, 15, 6))
    assert isinstance(layout, HotSpotLayout)
    return layout


def _symbol(text: str) -> bytes:
    return struct.pack("<IH", 1, len(text)) + text.encode()


def _method(mem: FakeMemory, base: int, name: str, lines: bytes) -> int:
    """A Method at base with its ConstMethod, ConstantPool, Klass and Symbols (JDK 17 offsets)."""
    method, const, pool, klass = base, base + 0x100, base + 0x200, base + 0x400
    code = b"\x00" * 12
    size_words = (48 + len(code) + len(lines) + 7) // 8
    mem.put(method, struct.pack("<QQ", 0, const))
    cm = bytearray(48)
    struct.pack_into("<Q", cm, 8, pool)
    struct.pack_into("<i", cm, 16, size_words)
    struct.pack_into("<H", cm, 28, 1)  # _flags: has a line number table
    struct.pack_into("<HHH", cm, 32, len(code), 1, 2)  # _code_size, _name_index, _signature_index
    mem.put(const, bytes(cm) + code + lines + b"\0" * (size_words * 8 - 48 - len(code) - len(lines)))
    cp = bytearray(72 + 4 * 8)
    struct.pack_into("<Q", cp, 24, klass)
    struct.pack_into("<H", cp, 54, 3)  # source file name index
    struct.pack_into("<QQQ", cp, 72 + 8, base + 0x500, base + 0x540, base + 0x580)
    mem.put(pool, bytes(cp))
    mem.put(klass, b"\0" * 24 + struct.pack("<Q", base + 0x5C0))
    mem.put(base + 0x500, _symbol(name))
    mem.put(base + 0x540, _symbol("()V"))
    mem.put(base + 0x580, _symbol("Demo.java"))
    mem.put(base + 0x5C0, _symbol("org/example/Demo"))
    return method


def test_interpreted_and_stub_frames() -> None:
    mem = FakeMemory()
    method = _method(mem, 0x10000, "run", bytes([0 << 3 | 7, 4 << 3 | 3, 0]))  # (0, 7), (4, 10)
    mem.put(0x20000, b"\0" * 96 + struct.pack("<Q", 0x20100))
    mem.put(0x20100, b"StubRoutines (1)".ljust(256, b"\0"))
    namer = HotSpotNamer(mem, _layout())
    (frame,) = namer.frames(method, 5, JVM_FRAME_INTERPRETED) or ()
    assert (frame.function, frame.file, frame.line, frame.start_line) == (
        "org.example.Demo.run",
        "Demo.java",
        10,
        7,
    )
    assert frame.kind is FrameKind.INTERPRETED and frame.runtime == "jvm" and not frame.inlined
    (stub,) = namer.frames(0x20000, 0x20010, JVM_FRAME_STUB) or ()
    assert stub.function == "[jvm: StubRoutines (1)]"
    assert namer.frames(0x99999, 0, JVM_FRAME_INTERPRETED) is None


def test_compiled_frames_with_inlining() -> None:
    mem = FakeMemory()
    outer = _method(mem, 0x10000, "outer", bytes([0 << 3 | 5, 6 << 3 | 2, 0]))  # (0, 5), (6, 7)
    inner = _method(mem, 0x30000, "inner", bytes([0 << 3 | 3, 0]))  # (0, 3)
    nm, code = 0x50000, 0x50200
    scopes = b"\xff" + bytes([0, 1, 6 + 1]) + bytes([1, 2, 0 + 1])  # outer at bci 6, inner at bci 0
    metadata = struct.pack("<QQ", outer, inner)
    pcs = (
        struct.pack("<iiii", -1, 0, 0, 0)
        + struct.pack("<iiii", 0x40, 4, 0, 0)
        + struct.pack("<iiii", 0x80, 1, 0, 0)
    )
    head = bytearray(512)
    struct.pack_into("<QQ", head, 32, code, code + 0x100)  # CodeBlob::_code_begin, _code_end
    struct.pack_into("<QQ", head, 112, outer, 0x51000)  # CompiledMethod::_method, _scopes_data_begin
    struct.pack_into("<i", head, 260, 0x1000 - 0x10)  # metadata at nm + 0xFF0 (ends at the scopes data)
    struct.pack_into("<ii", head, 268, 0x1010, 0x1010 + len(pcs))  # _scopes_pcs_offset, _dependencies_offset
    struct.pack_into("<i", head, 304, 77)  # _compile_id
    mem.put(nm, bytes(head))
    mem.put(nm + 0xFF0, metadata)  # then scopes data at 0x51000 up to the PcDescs at nm + 0x1010
    mem.put(0x51000, scopes + b"\0" * (0x10 - len(scopes)))
    mem.put(nm + 0x1010, pcs)
    namer = HotSpotNamer(mem, _layout())
    frames = namer.frames(nm, code + 0x40, JVM_FRAME_COMPILED | 77 << JVM_AUX_COOKIE_SHIFT) or ()
    assert [(f.function, f.line, f.inlined) for f in frames] == [
        ("org.example.Demo.outer", 7, False),
        ("org.example.Demo.inner", 3, True),
    ]
    top = namer.frames(nm, code + 0x40, JVM_FRAME_COMPILED | JVM_AUX_TOP) or ()
    assert [(f.function, f.line) for f in top] == [("org.example.Demo.outer", 7)]
    assert (
        namer.frames(nm, code + 0x40, JVM_FRAME_COMPILED | 78 << JVM_AUX_COOKIE_SHIFT) is None
    )  # another compilation


def _binary(meta_values: dict[str, int]) -> tuple[FakeMemory, HotSpotBinary]:
    """A two-entry VMStructs (one field, one static), one type, one int constant, in fake memory."""
    mem = FakeMemory()
    names = list(META)
    meta = {name: 0x1000 + 8 * i for i, name in enumerate(names)}
    mem.put(0x1000, b"".join(struct.pack("<Q", meta_values.get(n, META[n])) for n in names))
    structs = bytearray(3 * STRUCT_STRIDE)
    struct.pack_into("<iQ", structs, STRUCT_IS_STATIC, 0, 0)
    struct.pack_into("<Q", structs, STRUCT_OFFSET, 24)
    struct.pack_into("<i", structs, STRUCT_STRIDE + STRUCT_IS_STATIC, 1)
    mem.put(0x2000, bytes(structs))
    mem.put(0x3000, struct.pack("<QQiiiiQ", 1, 0, 0, 0, 0, 0, 48) + b"\0" * 40)
    mem.put(0x4000, struct.pack("<Qi", 1, -1) + b"\0" * 20)
    mem.put(0x5000, b"\0" * 16)
    tables = VMTables(
        structs=(
            StructEntry("Klass", "_name", "Symbol*", 0),
            StructEntry("CodeCache", "_heaps", "x", 0x9000),
        ),
        types=("ConstMethod",),
        int_constants=("frame::interpreter_frame_sender_sp_offset",),
        long_constants=(),
        arrays=dict(zip(TABLES, (0x2000, 0x3000, 0x4000, 0x5000), strict=True)),
        meta=meta,
    )
    return mem, HotSpotBinary(path="libjvm.so", file_id="f" * 32, version=(17, 0, 1, 1), tables=tables)


def test_read_values_from_process() -> None:
    mem, binary = _binary({})
    values = read_values(mem, 0, binary)
    assert isinstance(values, VMValues)
    assert values.fields == {"Klass::_name": 24} and values.field_types == {"Klass::_name": "Symbol*"}
    assert values.statics == {"CodeCache::_heaps": 0x9000}
    assert values.sizes == {"ConstMethod": 48}
    assert values.constants == {"frame::interpreter_frame_sender_sp_offset": -1}
    mem, binary = _binary({"gHotSpotVMStructEntryArrayStride": 56})
    reason = read_values(mem, 0, binary)
    assert reason == (
        "gHotSpotVMStructEntryArrayStride is 56 in the process, not 48: unknown VMStructs entry layout"
    )
    assert layout_from_process(mem, 0, binary) == reason

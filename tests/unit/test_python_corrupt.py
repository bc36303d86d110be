"""Corrupt and hostile input: cycles, endless chains, unreadable frames, garbage code objects and strings.
Everything stays bounded and nothing raises."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetprof.interpreters.python.discovery import PythonBinary
from fleetprof.interpreters.python.evalloop import EvalRange
from fleetprof.interpreters.python.layouts import PyLayout, table_layout
from fleetprof.interpreters.python.objects import ObjectReader, TypeAddresses
from fleetprof.interpreters.python.process import PythonProcess, proc_info
from fleetprof.interpreters.python.procinfo import PY_LASTI_NONE
from fleetprof.interpreters.python.symbolizer import UNKNOWN_FUNCTION, ProcessSymbolizer
from fleetprof.interpreters.python.walker import thread_states, walk_frames
from fleetprof.process.memory import MemoryReader
from fleetprof.profile.model import FrameKind

CODE_TYPE = 0x7000_0000_1000
UNICODE_TYPE = 0x7000_0000_2000
BYTES_TYPE = 0x7000_0000_3000
RUNTIME = 0x7000_0000_8000


class FakeMemory(MemoryReader):
    """A sparse address space: reads inside one written region succeed, anything else is None."""

    def __init__(self) -> None:
        self.regions: dict[int, bytearray] = {}
        self.last_error = ""

    def write(self, addr: int, data: bytes) -> None:
        self.regions[addr] = bytearray(data)

    def read(self, addr: int, size: int) -> bytes | None:
        for start, data in self.regions.items():
            if start <= addr and addr + size <= start + len(data):
                return bytes(data[addr - start : addr - start + size])
        return None


def _binary(layout: PyLayout) -> PythonBinary:
    return PythonBinary(
        path="/fake/libpython",
        file_id="00" * 16,
        version=(3, layout.minor, 0),
        version_source="test",
        runtime_addr=RUNTIME,
        eval_ranges=(EvalRange(0x1000, 0x2000, "_PyEval_EvalFrameDefault"),),
        layout=layout,
        code_type_addr=CODE_TYPE,
        unicode_type_addr=UNICODE_TYPE,
        bytes_type_addr=BYTES_TYPE,
    )


def _put(buffer: bytearray, offset: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, buffer, offset, value)


def _ascii(mem: FakeMemory, lay: PyLayout, addr: int, text: str) -> None:
    obj = bytearray(lay.unicode_ascii_size + len(text) + 1)
    _put(obj, lay.ob_type, "<Q", UNICODE_TYPE)
    _put(obj, lay.unicode_length, "<q", len(text))
    state = (1 << lay.unicode_kind_bit) | (1 << lay.unicode_compact_bit) | (1 << lay.unicode_ascii_bit)
    _put(obj, lay.unicode_state, "<I", state)
    obj[lay.unicode_ascii_size : lay.unicode_ascii_size + len(text)] = text.encode()
    mem.write(addr, bytes(obj))


def _bytes(mem: FakeMemory, lay: PyLayout, addr: int, data: bytes) -> None:
    obj = bytearray(lay.bytes_sval + len(data) + 1)
    _put(obj, lay.ob_type, "<Q", BYTES_TYPE)
    _put(obj, lay.var_ob_size, "<q", len(data))
    obj[lay.bytes_sval : lay.bytes_sval + len(data)] = data
    mem.write(addr, bytes(obj))


def _code(mem: FakeMemory, lay: PyLayout, addr: int, name: str, firstlineno: int) -> None:
    """A 3.10 code object: name, file, lnotab-free table (one line), 8 bytes of bytecode."""
    obj = bytearray(lay.code_read_size)
    _put(obj, lay.ob_type, "<Q", CODE_TYPE)
    _put(obj, lay.code_firstlineno, "<i", firstlineno)
    _put(obj, lay.code_argcount, "<i", 1)
    for offset, target in ((lay.code_name, addr + 0x1000), (lay.code_filename, addr + 0x2000)):
        _put(obj, offset, "<Q", target)
    _put(obj, lay.code_linetable, "<Q", addr + 0x3000)
    _put(obj, lay.code_code, "<Q", addr + 0x4000)
    mem.write(addr, bytes(obj))
    _ascii(mem, lay, addr + 0x1000, name)
    _ascii(mem, lay, addr + 0x2000, "/app/mod.py")
    _bytes(mem, lay, addr + 0x3000, bytes([8, 1]))
    _bytes(mem, lay, addr + 0x4000, b"\0" * 8)


def _frame(
    mem: FakeMemory, lay: PyLayout, addr: int, code: int, back: int, lasti: int = 2, owner: int = 0
) -> None:
    obj = bytearray(max(lay.frame_lasti, lay.frame_previous, lay.frame_code, lay.frame_entry) + 8)
    _put(obj, lay.frame_code, "<Q", code)
    _put(obj, lay.frame_previous, "<Q", back)
    if lay.semantics.flags & 0x02:  # PY_F_LASTI_PTR
        _put(obj, lay.frame_lasti, "<Q", code + lay.code_adaptive + 2 * lasti)
    else:
        _put(obj, lay.frame_lasti, "<i", lasti)
    if lay.frame_entry >= 0:
        obj[lay.frame_entry] = owner
    mem.write(addr, bytes(obj))


def _setup_310() -> tuple[FakeMemory, PyLayout]:
    lay = table_layout(10)
    assert lay is not None
    mem = FakeMemory()
    _code(mem, lay, 0x5000_0000, "fn", 40)
    return mem, lay


def test_a_cycle_in_the_frame_chain_stops_the_walk() -> None:
    mem, lay = _setup_310()
    info = proc_info(_binary(lay), 0)
    _frame(mem, lay, 0x6000_0000, 0x5000_0000, back=0x6000_1000)
    _frame(mem, lay, 0x6000_1000, 0x5000_0000, back=0x6000_0000)
    frames, error = walk_frames(mem, info, 0x6000_0000)
    assert error == "frame chain has a cycle"
    assert len(frames) == 2
    assert frames[0].lasti == 2 and frames[0].code == 0x5000_0000


def test_an_endless_chain_is_cut_at_the_depth_limit() -> None:
    mem, lay = _setup_310()
    info = proc_info(_binary(lay), 0)
    for i in range(300):
        _frame(mem, lay, 0x6000_0000 + i * 0x100, 0x5000_0000, back=0x6000_0000 + (i + 1) * 0x100)
    frames, error = walk_frames(mem, info, 0x6000_0000, max_depth=200)
    assert (len(frames), error) == (200, "frame chain too deep")


def test_unreadable_and_foreign_frames_stop_the_walk_with_a_reason() -> None:
    mem, lay = _setup_310()
    info = proc_info(_binary(lay), 0)
    mem.write(0x5100_0000, b"\0" * 256)  # zeroed memory: not a code object
    _frame(mem, lay, 0x6000_0000, 0x5000_0000, back=0x6000_1000)
    _frame(mem, lay, 0x6000_1000, 0x5100_0000, back=0)
    assert walk_frames(mem, info, 0x6000_0000)[1] == "frame code is not a code object"
    _frame(mem, lay, 0x6000_1000, 0, back=0)
    assert walk_frames(mem, info, 0x6000_0000)[1] == "frame code unreadable"
    _frame(mem, lay, 0x6000_1000, 0x5000_0000, back=0xDEAD_0000)
    frames, error = walk_frames(mem, info, 0x6000_0000)
    assert (len(frames), error) == (2, "frame unreadable")


def test_shim_frames_are_hidden_and_end_an_eval_call() -> None:
    lay = table_layout(12)
    assert lay is not None
    mem = FakeMemory()
    mem.write(0x5000_0000, struct.pack("<QQ", 0, CODE_TYPE) + b"\0" * 400)
    info = proc_info(_binary(lay), 0)
    _frame(mem, lay, 0x6000_0000, 0x5000_0000, back=0x6000_1000)
    _frame(mem, lay, 0x6000_1000, 0x5000_0000, back=0x6000_2000, owner=3)  # FRAME_OWNED_BY_CSTACK
    _frame(mem, lay, 0x6000_2000, 0x5000_0000, back=0, lasti=-1)  # prev_instr before the first unit
    frames, error = walk_frames(mem, info, 0x6000_0000)
    assert error == ""
    assert [(f.ends_eval_call, f.lasti) for f in frames] == [(True, 2), (False, PY_LASTI_NONE)]


def test_thread_lists_with_cycles_are_bounded() -> None:
    mem, lay = _setup_310()
    info = proc_info(_binary(lay), 0)
    mem.write(RUNTIME, b"\0" * lay.runtime_interp_head + struct.pack("<Q", 0x4000_0000))
    interp = bytearray(64)
    _put(interp, lay.interp_tstate_head, "<Q", 0x4100_0000)
    _put(interp, lay.interp_next, "<Q", 0x4000_0000)  # the interpreter list loops on itself
    mem.write(0x4000_0000, bytes(interp))
    for i, nxt in ((0, 0x4100_1000), (1, 0x4100_0000)):  # two thread states pointing at each other
        tstate = bytearray(256)
        _put(tstate, lay.tstate_next, "<Q", nxt)
        _put(tstate, lay.tstate_thread_id, "<Q", 100 + i)
        mem.write(0x4100_0000 + i * 0x1000, bytes(tstate))
    assert thread_states(mem, info) == [(0x4100_0000, 100, None), (0x4100_1000, 101, None)]


def _symbolizer(mem: FakeMemory, lay: PyLayout) -> ProcessSymbolizer:
    process = PythonProcess(pid=1, binary=_binary(lay), bias=0, start_time=1)
    return ProcessSymbolizer(process, mem)  # type: ignore[arg-type]


def test_symbolizer_reads_a_well_formed_object_and_rejects_a_changed_one() -> None:
    mem, lay = _setup_310()
    symbolizer = _symbolizer(mem, lay)
    info = proc_info(_binary(lay), 0)
    _frame(mem, lay, 0x6000_0000, 0x5000_0000, back=0)
    (raw,), _ = walk_frames(mem, info, 0x6000_0000)
    frame = symbolizer.symbolize(raw.code, raw.lasti, raw.checksum)
    assert (frame.function, frame.file, frame.line, frame.start_line) == ("fn", "/app/mod.py", 41, 40)
    assert symbolizer.symbolize(raw.code, PY_LASTI_NONE, raw.checksum).line == 40
    assert symbolizer.symbolize(raw.code, 4, raw.checksum).line == 0  # past the 8-byte bytecode
    assert symbolizer.symbolize(raw.code, 1, raw.checksum ^ 1).function == UNKNOWN_FUNCTION
    assert symbolizer.stats == {"checksum mismatch": 1, "instruction offset past the bytecode": 1}
    mem.regions.clear()  # the process unmapped everything: the cached object still answers
    assert symbolizer.symbolize(raw.code, 1, raw.checksum).function == "fn"
    assert symbolizer.symbolize(0x5000_0000 + 8, 1, 7).function == UNKNOWN_FUNCTION


@settings(max_examples=200, deadline=None)
@given(
    minor=st.sampled_from([8, 10, 11, 12]),
    code=st.binary(min_size=200, max_size=200),
    other=st.binary(min_size=80, max_size=80),
    typed=st.booleans(),
)
def test_garbage_code_objects_never_raise(minor: int, code: bytes, other: bytes, typed: bool) -> None:
    lay = table_layout(minor)
    assert lay is not None
    mem = FakeMemory()
    # Every pointer field of the garbage code object points into `other`, so strings and tables get read.
    patched = bytearray(code)
    for offset in (lay.code_filename, lay.code_name, lay.code_qualname, lay.code_linetable, lay.code_code):
        if offset >= 0:
            _put(patched, offset, "<Q", 0x5800_0000 + (patched[offset] % 16))
    if typed:
        _put(patched, lay.ob_type, "<Q", CODE_TYPE)
    mem.write(0x5000_0000, bytes(patched))
    mem.write(0x5800_0000, other)
    types = TypeAddresses(CODE_TYPE, UNICODE_TYPE, BYTES_TYPE) if typed else TypeAddresses()
    result = ObjectReader(mem, lay, types).read_code(0x5000_0000)  # type: ignore[arg-type]
    assert isinstance(result, str) or len(result.qualname) <= 4096
    frame = _symbolizer(mem, lay).symbolize(0x5000_0000, 3, 12345)
    assert frame.kind is FrameKind.PYTHON

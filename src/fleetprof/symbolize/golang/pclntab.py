"""Go's pclntab, read as the runtime reads it: function table, names, pc->file/line, inline trees.

Layouts by header magic (see shared/reference/runtimes.md, section 6): 0xFFFFFFFB Go 1.2-1.15,
0xFFFFFFFA 1.16-1.17, 0xFFFFFFF0 1.18-1.19, 0xFFFFFFF1 1.20+. Inline trees (FUNCDATA_InlTree) are not in
the pclntab but in `go:func.*` (1.18+: offsets from moduledata.gofunc; before: absolute addresses); the
caller supplies a `FuncdataReader` for them. Every offset read from the table is bounds-checked, so a
truncated or hostile table raises `PclntabError` (one line), never another exception.
"""

from __future__ import annotations

import bisect
import mmap
import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAGIC_12 = 0xFFFFFFFB
MAGIC_116 = 0xFFFFFFFA
MAGIC_118 = 0xFFFFFFF0
MAGIC_120 = 0xFFFFFFF1
VERSIONS = {MAGIC_12: "1.2", MAGIC_116: "1.16", MAGIC_118: "1.18", MAGIC_120: "1.20"}
PCDATA_INL_TREE_INDEX = 2
FUNCDATA_INL_TREE = 3
_NO_FUNCDATA = 0xFFFFFFFF  # 1.18+: funcdata offset meaning "none"
_MAX_INLINE_DEPTH = 100
_MAX_TABLE_STEPS = 1 << 20  # pcvalue pairs decoded for one table at most
_TABLE_MEMO = 1 << 14  # decoded pcvalue tables kept per pclntab

Buffer = bytes | bytearray | mmap.mmap
FuncdataReader = Callable[[int, int, int], bytes | None]
"""(funcdata value, offset, size) -> bytes of the referenced data, None when unreadable."""


class PclntabError(ValueError):
    """A pclntab that can't be read; the message is one line."""


@dataclass(frozen=True, slots=True)
class GoFrame:
    """One Go frame: function name, source position and (1.20+) the line of its `func` keyword."""

    function: str
    file: str
    line: int
    start_line: int
    inlined: bool


@dataclass(frozen=True, slots=True)
class _Func:
    """The fields of one `_func` record that symbolization reads."""

    entry: int
    end: int
    name_off: int
    pcsp: int
    pcfile: int
    pcln: int
    npcdata: int
    cu_offset: int
    start_line: int
    nfuncdata: int
    pcdata_at: int  # offset in the buffer of the u32 pcdata table offsets
    funcdata_at: int  # offset in the buffer of the funcdata slots


class Pclntab:
    """A parsed pclntab over `buf[base:base + size]` (bytes or an mmap of the ELF file).

    `text_start` is where entry offsets count from for 1.18+ (the header's value may be unrelocated, so
    the locator passes the relocated one); `funcdata` reads inline trees (None: no inlined frames)."""

    def __init__(
        self,
        buf: Buffer,
        base: int = 0,
        size: int | None = None,
        text_start: int | None = None,
        funcdata: FuncdataReader | None = None,
    ) -> None:
        self._buf = buf
        self._base = base
        self.size = (len(buf) - base) if size is None else size
        if base < 0 or self.size < 16 or base + self.size > len(buf):
            raise PclntabError(f"pclntab truncated ({max(self.size, 0)} bytes)")
        magic, pad, quantum, ptrsize = struct.unpack_from("<IHBB", buf, base)
        if magic not in VERSIONS:
            raise PclntabError(f"not a pclntab (magic {magic:#x})")
        if pad != 0 or quantum not in (1, 2, 4) or ptrsize not in (4, 8):
            raise PclntabError(f"bad pclntab header (quantum {quantum}, pointer size {ptrsize})")
        self.magic = magic
        self.version = VERSIONS[magic]
        self.quantum = quantum
        self.ptrsize = ptrsize
        self._word = "<Q" if ptrsize == 8 else "<I"
        self.funcdata = funcdata
        self._tables: dict[int, tuple[list[int], list[int]]] = {}
        self._seen: set[int] = set()  # tables scanned once (decoded whole on their next use)
        self._names: dict[int, str] = {}
        self._old_funcid: bool | None = None  # 1.2 layout: whether _func has funcID (Go 1.12+)
        self.header_text_start = 0
        if magic == MAGIC_12:
            self._parse_12()
        else:
            self._parse_116()
        self.text_start = self.header_text_start if text_start is None else text_start
        if magic in (MAGIC_118, MAGIC_120) and not self.text_start:
            raise PclntabError("pclntab has no text start (unrelocated, and none was given)")
        self._offset = self.text_start if magic in (MAGIC_118, MAGIC_120) else 0
        if any(b > a for a, b in zip(self._entries[1:], self._entries, strict=False)):
            raise PclntabError("function table is not sorted")

    # -- header -------------------------------------------------------------------------------------

    def _word_at(self, off: int) -> int:
        return self._unpack(self._word, off)[0]

    def _unpack(self, fmt: str, off: int) -> tuple:
        end = off + struct.calcsize(fmt)
        if off < 0 or end > self.size:
            raise PclntabError(f"pclntab truncated: read at {off:#x} past its {self.size:#x} bytes")
        return struct.unpack_from(fmt, self._buf, self._base + off)

    def _parse_12(self) -> None:
        ps = self.ptrsize
        self.nfunc = self._word_at(8)
        self._functab = 8 + ps
        self._pclntable = 0
        self._funcnametab = 0
        self._pctab = 0
        self._check_count(self.nfunc, 2 * ps)
        self._entries, self._funcoffs = self._read_functab(self._functab, ps)
        (filetab,) = self._unpack("<I", self._functab + (2 * self.nfunc + 1) * ps)
        self._filetab = filetab
        (self._nfiles,) = self._unpack("<I", filetab)
        self._cutab = 0

    def _parse_116(self) -> None:
        ps = self.ptrsize
        words = [self._word_at(8 + i * ps) for i in range(8 if self.magic != MAGIC_116 else 7)]
        if self.magic == MAGIC_116:
            self.nfunc, self._nfiles, names, cutab, filetab, pctab, pcln = words
        else:
            self.nfunc, self._nfiles, self.header_text_start, names, cutab, filetab, pctab, pcln = words
        for name, value in (("funcname", names), ("cu", cutab), ("file", filetab), ("pc", pctab), ("", pcln)):
            if not 0 < value < self.size:
                raise PclntabError(f"bad pclntab header ({name}tab offset {value:#x})")
        self._funcnametab, self._cutab, self._filetab, self._pctab = names, cutab, filetab, pctab
        self._pclntable = pcln
        width = 4 if self.magic in (MAGIC_118, MAGIC_120) else ps
        self._check_count(self.nfunc, 2 * width, pcln)
        self._entries, self._funcoffs = self._read_functab(pcln, width)

    def _check_count(self, nfunc: int, entry: int, at: int | None = None) -> None:
        start = self._functab if at is None else at
        if nfunc <= 0 or start + (nfunc * entry) > self.size:
            raise PclntabError(f"bad pclntab header ({nfunc} functions in {self.size} bytes)")

    def _read_functab(self, at: int, width: int) -> tuple[array, array]:
        """(entry values with the end sentinel, func offsets) of the function table at `at`."""
        count = 2 * self.nfunc + 1
        if at + count * width > self.size:
            raise PclntabError("pclntab truncated in its function table")
        flat = array("I" if width == 4 else "Q")
        if flat.itemsize != width:
            raise PclntabError(f"unsupported word size {width}")
        start = self._base + at
        flat.frombytes(self._buf[start : start + count * width])
        return flat[0::2], flat[1::2]

    # -- lookups ------------------------------------------------------------------------------------

    def function_range(self) -> tuple[int, int]:
        """[lowest entry, end of the last function) in ELF addresses."""
        return self._entries[0] + self._offset, self._entries[-1] + self._offset

    def functions(self) -> Iterator[tuple[int, int, str]]:
        """(entry, end, name) of every function, in address order."""
        for index in range(self.nfunc):
            func = self._func(index)
            yield func.entry, func.end, self._name(func.name_off)

    def frames(self, pc: int) -> tuple[GoFrame, ...] | None:
        """Frames for ELF address `pc`, outermost first (inlined callees after it); None when no
        function holds it. Raises PclntabError when the table is damaged where `pc` leads."""
        rel = pc - self._offset
        index = bisect.bisect_right(self._entries, rel) - 1
        if index < 0 or index >= self.nfunc or rel >= self._entries[index + 1]:
            return None
        func = self._func(index)
        inner: list[GoFrame] = []
        tree = self._inline_tree(func)
        at = pc
        if tree is not None:
            table, key, entry_size = tree
            for _ in range(_MAX_INLINE_DEPTH):
                ix = self._value(table, func, at)
                if ix < 0:
                    break
                name_off, parent_pc, start_line = self._inlined_call(key, ix, entry_size)
                file, line = self._position(func, at)
                inner.append(GoFrame(self._name(name_off), file, line, start_line, True))
                if not 0 <= parent_pc < func.end - func.entry:
                    raise PclntabError(f"inline tree of {self._name(func.name_off)}: bad parent pc")
                at = func.entry + parent_pc
        file, line = self._position(func, at)
        outer = GoFrame(self._name(func.name_off), file, line, func.start_line, False)
        return (outer, *reversed(inner))

    def sp_deltas(self) -> Iterator[tuple[int, int, str, list[int], list[int]]]:
        """(entry, end, name, run ends, SP deltas) of every function: how far below its entry SP each run
        of its code keeps the stack pointer (the pcsp table), for unwind tables of code without CFI."""
        for index in range(self.nfunc):
            func = self._func(index)
            if not func.pcsp:
                continue
            pcs, values = self._decoded(func.pcsp, func)
            yield func.entry, func.end, self._name(func.name_off), pcs, values

    def raw(self) -> bytes:
        """The table's bytes; 1.16+ tables end at their last `_func` record (a scan may find more)."""
        end = self.size
        if self.magic != MAGIC_12:
            width = 4 if self.magic in (MAGIC_118, MAGIC_120) else self.ptrsize
            last = self._pclntable + (2 * self.nfunc + 1) * width
            for index in range(self.nfunc):
                func = self._func(index)
                last = max(last, func.funcdata_at + width * func.nfuncdata)
            end = min(end, last)
        return bytes(self._buf[self._base : self._base + end])

    def inline_trees(self) -> Iterator[tuple[int, int]]:
        """(funcdata value, size in bytes) of every function's inline tree, for copying into a bundle."""
        for index in range(self.nfunc):
            func = self._func(index)
            tree = self._inline_tree(func)
            if tree is None:
                continue
            table, key, entry_size = tree
            _, values = self._decoded(table, func)
            top = max(values, default=-1)
            if top >= 0:
                yield key, (top + 1) * entry_size

    # -- _func records ------------------------------------------------------------------------------

    def _func(self, index: int) -> _Func:
        off = self._pclntable + self._funcoffs[index]
        entry = self._entries[index] + self._offset
        end = self._entries[index + 1] + self._offset
        ps = self.ptrsize
        if self.magic in (MAGIC_118, MAGIC_120):
            fields = self._unpack("<IiiIIIIII", off)
            at = off + 36
            start_line = 0
            if self.magic == MAGIC_120:
                (start_line,) = self._unpack("<i", at)
                at += 4
            nfuncdata = self._unpack("<4B", at)[3]
            head = at + 4
            npcdata = fields[7]
            return _Func(entry, end, fields[1], fields[4], fields[5], fields[6], npcdata, fields[8],
                         start_line, nfuncdata, head, head + 4 * npcdata)  # fmt: skip
        fields = self._unpack(f"<{'Q' if ps == 8 else 'I'}iiIIIII", off)
        at = off + ps + 28
        if self.magic == MAGIC_116:
            (cu_offset,) = self._unpack("<I", at)
            nfuncdata = self._unpack("<4B", at + 4)[3]
            head = at + 8
        else:
            cu_offset = 0
            nfuncdata = self._nfuncdata_12(at)
            head = at + 4
        npcdata = fields[7]
        slots = head + 4 * npcdata
        if ps == 8 and (self._base + slots) % 8:
            slots += 4
        return _Func(
            entry,
            end,
            fields[1],
            fields[4],
            fields[5],
            fields[6],
            npcdata,
            cu_offset,
            0,
            nfuncdata,
            head,
            slots,
        )

    def _nfuncdata_12(self, at: int) -> int:
        """nfuncdata of a 1.2-layout _func: a u8 after funcID (Go 1.12-1.15) or an int32 (1.2-1.11)."""
        if self._old_funcid is None:
            sample = range(0, self.nfunc, max(1, self.nfunc // 64))
            self._old_funcid = any(
                self._unpack("<4B", self._pclntable + self._funcoffs[i] + self.ptrsize + 28)[3]
                for i in sample
            )
        raw = self._unpack("<4B", at)
        return raw[3] if self._old_funcid else raw[0]

    def _pcdata(self, func: _Func, index: int) -> int:
        if index >= func.npcdata:
            return 0
        return self._unpack("<I", func.pcdata_at + 4 * index)[0]

    def _funcdata_value(self, func: _Func, index: int) -> int | None:
        if index >= func.nfuncdata:
            return None
        if self.magic in (MAGIC_118, MAGIC_120):
            (value,) = self._unpack("<I", func.funcdata_at + 4 * index)
            return None if value == _NO_FUNCDATA else value
        value = self._word_at(func.funcdata_at + self.ptrsize * index)
        return value or None

    def _inline_tree(self, func: _Func) -> tuple[int, int, int] | None:
        """(InlTreeIndex pcdata table, inline tree funcdata value, entry size), None without one."""
        if self.funcdata is None:
            return None
        if self.magic == MAGIC_12 and not self._old_funcid:
            return None  # Go 1.9-1.11 inline trees: another layout, not decoded
        table = self._pcdata(func, PCDATA_INL_TREE_INDEX)
        key = self._funcdata_value(func, FUNCDATA_INL_TREE) if table else None
        if key is None:
            return None
        return table, key, 16 if self.magic == MAGIC_120 else 20

    def _inlined_call(self, key: int, ix: int, entry_size: int) -> tuple[int, int, int]:
        """(name offset, parent pc offset, start line) of inline tree entry `ix`."""
        assert self.funcdata is not None
        raw = self.funcdata(key, ix * entry_size, entry_size)
        if raw is None or len(raw) != entry_size:
            raise PclntabError(f"inline tree at {key:#x} unreadable (entry {ix})")
        if entry_size == 16:  # 1.20+: funcID, pad[3], nameOff, parentPc, startLine
            _, name_off, parent_pc, start_line = struct.unpack("<B3xiii", raw)
            return name_off, parent_pc, start_line
        _, _, _, _, name_off, parent_pc = struct.unpack("<hBxiiii", raw)  # parent, funcID, file, line
        return name_off, parent_pc, 0

    # -- names, files, pcvalue tables ---------------------------------------------------------------

    def name_starts_at(self, off: int) -> bool:
        """Whether function-name offset `off` starts a name (a sanity check on inline tree bases)."""
        at = self._funcnametab + off
        if not 0 <= at < self.size or (at and self._buf[self._base + at - 1] != 0):
            return False
        try:
            name = self._string(at)
        except PclntabError:
            return False
        return bool(name) and name.isprintable()

    def _name(self, off: int) -> str:
        found = self._names.get(off)
        if found is None:
            found = self._names[off] = self._string(self._funcnametab + off)
        return found

    def _string(self, off: int) -> str:
        if not 0 <= off < self.size:
            raise PclntabError(f"pclntab string offset {off:#x} out of range")
        start = self._base + off
        end = self._buf.find(b"\0", start, self._base + self.size)
        if end < 0:
            raise PclntabError(f"pclntab string at {off:#x} is not terminated")
        return bytes(self._buf[start:end]).decode("utf-8", "replace")

    def _file(self, func: _Func, fileno: int) -> str:
        if fileno < 0:
            return ""
        if self.magic == MAGIC_12:
            if fileno >= self._nfiles:
                raise PclntabError(f"file index {fileno} out of range")
            (name_off,) = self._unpack("<I", self._filetab + 4 * fileno)
            return self._string(name_off)
        (off,) = self._unpack("<I", self._cutab + 4 * (func.cu_offset + fileno))
        return "" if off == 0xFFFFFFFF else self._string(self._filetab + off)

    def _position(self, func: _Func, pc: int) -> tuple[str, int]:
        fileno = self._value(func.pcfile, func, pc)
        line = self._value(func.pcln, func, pc)
        return self._file(func, fileno), max(line, 0)

    def _value(self, table: int, func: _Func, pc: int) -> int:
        """Value of pcvalue table `table` at `pc` (-1 when the table is absent or doesn't cover it).

        A table is scanned up to `pc` the first time and decoded whole (kept) from its second use on:
        uniform addresses don't pay for decoding, hot functions are answered by bisection."""
        if not table:
            return -1
        found = self._tables.get(table)
        if found is None:
            if table not in self._seen:
                if len(self._seen) >= _TABLE_MEMO:
                    self._seen.clear()
                self._seen.add(table)
                return self._scan(table, pc - func.entry)
            found = self._decoded(table, func)
        pcs, values = found
        i = bisect.bisect_right(pcs, pc - func.entry)
        return values[i] if i < len(values) else -1

    def _scan(self, table: int, target: int) -> int:
        """Value at pc offset `target` read straight from the table, as the runtime's pcvalue does."""
        for pc, value in self._steps(table):
            if target < pc:
                return value
        return -1

    def _steps(self, table: int) -> Iterator[tuple[int, int]]:
        """(end of the run as an offset from the entry, value) of each run of pcvalue table `table`."""
        buf, limit = self._buf, self._base + self.size
        pos = self._base + self._pctab + table
        if pos >= limit:
            raise PclntabError(f"pcvalue table {table:#x} out of range")
        pc, value, quantum = 0, -1, self.quantum
        for step in range(_MAX_TABLE_STEPS):  # single-byte varints inline: they are nearly all of them
            if pos >= limit:
                raise PclntabError("pcvalue table truncated or malformed")
            uv = buf[pos]
            pos += 1
            if uv & 0x80:
                uv, pos = uvarint(buf, pos - 1, limit)
            if uv == 0 and step:
                return
            if pos >= limit:
                raise PclntabError("pcvalue table truncated")
            pd = buf[pos]
            pos += 1
            if pd & 0x80:
                pd, pos = uvarint(buf, pos - 1, limit)
            value += -((uv + 1) >> 1) if uv & 1 else uv >> 1
            pc += pd * quantum
            yield pc, value
        raise PclntabError("pcvalue table malformed (too long)")

    def _decoded(self, table: int, func: _Func) -> tuple[list[int], list[int]]:
        """(ends of each run as offsets from the entry, value of each run) of a pcvalue table."""
        found = self._tables.get(table)
        if found is not None:
            return found
        pcs: list[int] = []
        values: list[int] = []
        for pc, value in self._steps(table):
            pcs.append(pc)
            values.append(value)
        if len(self._tables) >= _TABLE_MEMO:
            self._tables.clear()
        self._tables[table] = (pcs, values)
        return pcs, values


def uvarint(buf: Buffer, pos: int, limit: int) -> tuple[int, int]:
    """Unsigned LEB128 at `pos` -> (value, next position)."""
    value = shift = 0
    while True:
        if pos >= limit or shift > 35:
            raise PclntabError("pcvalue table truncated or malformed")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7

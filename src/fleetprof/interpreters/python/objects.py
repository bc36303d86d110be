"""Read CPython objects out of another process: code objects, str and bytes, per a PyLayout.

Memory is untrusted (the process runs while we read): every length is bounded, every type pointer is
checked when the type's address is known, and a failure is a reason string, never an exception.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from fleetprof.interpreters.python.layouts import NONE, PyLayout
from fleetprof.interpreters.python.linetable import LineRanges, decode
from fleetprof.interpreters.python.procinfo import code_checksum
from fleetprof.process.memory import MemoryReader

MAX_STRING = 4096  # characters of a name or file name
MAX_TABLE = 1 << 18  # bytes of a line table
MAX_CODE_UNITS = 1 << 22
_ENCODINGS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}


@dataclass(frozen=True, slots=True)
class TypeAddresses:
    """Process addresses of the type objects used to validate what we read; 0 = unknown, not checked."""

    code: int = 0
    unicode: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What symbolization needs from one code object."""

    qualname: str
    filename: str
    firstlineno: int
    checksum: int
    code_units: int  # length of the bytecode in 2-byte units; a lasti must be below it
    lines: LineRanges


class ObjectReader:
    """Reads objects of one process with one layout; `read_code` is the entry point."""

    def __init__(self, mem: MemoryReader, layout: PyLayout, types: TypeAddresses) -> None:
        self.mem = mem
        self.layout = layout
        self.types = types

    def read_code(self, addr: int) -> CodeInfo | str:
        """The code object at `addr`, or a short reason why it cannot be read.

        Three batched reads: the code object, the headers of the objects it points to, their contents.
        """
        lay = self.layout
        raw = self.mem.read(addr, lay.code_read_size)
        if raw is None:
            return "code object unreadable"
        if self.types.code and _ptr(raw, lay.ob_type) != self.types.code:
            return "not a code object"
        firstlineno = struct.unpack_from("<i", raw, lay.code_firstlineno)[0]
        argcount = struct.unpack_from("<i", raw, lay.code_argcount)[0]
        filename_addr, name_addr = _ptr(raw, lay.code_filename), _ptr(raw, lay.code_name)
        qualname_addr = _ptr(raw, lay.code_qualname) if lay.code_qualname != NONE else name_addr
        table_addr = _ptr(raw, lay.code_linetable)
        str_header = lay.unicode_state + 4
        requests = [(filename_addr, str_header), (qualname_addr, str_header), (table_addr, lay.bytes_sval)]
        if lay.code_code != NONE:  # <= 3.10: the bytecode length is co_code's size
            requests.append((_ptr(raw, lay.code_code), lay.bytes_sval))
        headers = self.mem.read_many(requests)
        filename, qualname = self._string_plan(headers[0]), self._string_plan(headers[1])
        table_size = self._bytes_size(headers[2])
        contents = self.mem.read_many(
            [
                (filename_addr + filename[0], filename[1]) if filename else (0, 0),
                (qualname_addr + qualname[0], qualname[1]) if qualname else (0, 0),
                (table_addr + lay.bytes_sval, table_size) if table_size is not None else (0, 0),
            ]
        )
        if filename is None or qualname is None or contents[0] is None or contents[1] is None:
            return "code object names unreadable"
        if table_size is None or contents[2] is None:
            return "line table unreadable"
        if lay.code_code != NONE:
            code_bytes = self._bytes_size(headers[3])
            units = -1 if code_bytes is None else code_bytes // 2
        else:
            units = struct.unpack_from("<q", raw, lay.var_ob_size)[0]
        if not 0 <= units <= MAX_CODE_UNITS:
            return "bytecode length unreadable"
        lines = decode(lay.semantics.line_table, contents[2], firstlineno)
        return CodeInfo(
            qualname=contents[1].decode(qualname[2], errors="replace"),
            filename=contents[0].decode(filename[2], errors="replace"),
            firstlineno=firstlineno,
            checksum=code_checksum(firstlineno, argcount, filename_addr, name_addr),
            code_units=units,
            lines=lines,
        )

    def read_strings(self, addrs: Sequence[int]) -> list[str | None]:
        """Decode several str objects with two batched reads (headers, then characters)."""
        headers = self.mem.read_many([(addr, self.layout.unicode_state + 4) for addr in addrs])
        plans = [self._string_plan(header) for header in headers]
        datas = self.mem.read_many(
            [(addr + plan[0], plan[1]) if plan else (0, 0) for plan, addr in zip(plans, addrs, strict=True)]
        )
        return [
            data.decode(plan[2], errors="replace") if plan and data is not None else None
            for plan, data in zip(plans, datas, strict=True)
        ]

    def _string_plan(self, header: bytes | None) -> tuple[int, int, str] | None:
        """(data offset from the object, data bytes, codec) of a str header, None if it is not a valid str."""
        lay = self.layout
        if header is None:
            return None
        if self.types.unicode and _ptr(header, lay.ob_type) != self.types.unicode:
            return None
        length = struct.unpack_from("<q", header, lay.unicode_length)[0]
        state = struct.unpack_from("<I", header, lay.unicode_state)[0]
        kind = (state >> lay.unicode_kind_bit) & 7
        if not 0 <= length <= MAX_STRING or kind not in _ENCODINGS:
            return None
        if not (state >> lay.unicode_compact_bit) & 1:
            return None  # legacy string: code objects never hold one
        if (state >> lay.unicode_ascii_bit) & 1:
            return (lay.unicode_ascii_size, length, "ascii") if kind == 1 else None
        return lay.unicode_compact_size, length * kind, _ENCODINGS[kind]

    def _bytes_size(self, header: bytes | None) -> int | None:
        """ob_size of a bytes object's header, None if it is not a plausible bytes object."""
        lay = self.layout
        if header is None:
            return None
        if self.types.bytes and _ptr(header, lay.ob_type) != self.types.bytes:
            return None
        size = struct.unpack_from("<q", header, lay.var_ob_size)[0]
        return size if 0 <= size <= MAX_TABLE else None


def linked_list(mem: MemoryReader, first: int, next_offset: int, limit: int) -> list[int]:
    """Nodes of a linked list from `first`, following the pointer at `next_offset`: at most `limit`, up to a
    null, unreadable or already seen pointer (memory is untrusted: lists may loop)."""
    nodes: dict[int, None] = {}  # insertion ordered, O(1) membership
    node = first
    while node and node not in nodes and len(nodes) < limit:
        nodes[node] = None
        node = mem.u64(node + next_offset) or 0
    return list(nodes)


def _ptr(raw: bytes, offset: int) -> int:
    return struct.unpack_from("<Q", raw, offset)[0]

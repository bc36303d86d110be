"""Synthetic pclntabs in every layout (Go 1.2, 1.16, 1.18, 1.20+), written as Go's linker writes them.

Two functions: `main.outer` at 0x1000 (0x40 bytes) with an inline tree `main.callee` <- `main.deeper`,
and `main.inner` at 0x1040 (0x20 bytes) without one. Only Go 1.19 is installed here, so the other
layouts are checked on these tables (and 1.20+ on real binaries where the machine has some).
"""

from __future__ import annotations

import struct

from fleetprof.symbolize.golang.pclntab import MAGIC_12, MAGIC_116, MAGIC_118, MAGIC_120

TEXT = 0x1000
TREE_AT = 0x900000  # where the inline tree "lives" (absolute before 1.18; offset from gofunc after)
NAMES = ["main.outer", "main.inner", "main.callee", "main.deeper"]
FILES = ["/src/a.go", "/src/b.go"]
# (end offset from entry, value) runs of each table of main.outer and main.inner
OUTER_LINES = [(0x10, 10), (0x20, 20), (0x30, 30), (0x40, 11)]
OUTER_FILES = [(0x20, 0), (0x30, 1), (0x40, 0)]
OUTER_INLINE = [(0x10, -1), (0x20, 0), (0x30, 1), (0x40, -1)]
INNER_LINES = [(0x20, 40)]
INNER_FILES = [(0x20, 1)]
# inline tree: (name index, parent pc offset, start line)
TREE = [(2, 0x08, 18), (3, 0x18, 28)]
EXPECTED = {
    0x1004: [("main.outer", "/src/a.go", 10, False)],
    0x1012: [("main.outer", "/src/a.go", 10, False), ("main.callee", "/src/a.go", 20, True)],
    0x1025: [
        ("main.outer", "/src/a.go", 10, False),
        ("main.callee", "/src/a.go", 20, True),
        ("main.deeper", "/src/b.go", 30, True),
    ],
    0x1033: [("main.outer", "/src/a.go", 11, False)],
    0x1050: [("main.inner", "/src/b.go", 40, False)],
}


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pcvalue(runs: list[tuple[int, int]]) -> bytes:
    """A pcvalue table (zig-zag value deltas, pc deltas) for runs of (end pc offset, value)."""
    out = bytearray()
    pc, value = 0, -1
    for end, new in runs:
        delta = new - value
        out += _uvarint(delta << 1 if delta >= 0 else ((-delta - 1) << 1) | 1) + _uvarint(end - pc)
        pc, value = end, new
    return bytes(out + b"\0")


def build(magic: int) -> tuple[bytes, dict[int, bytes]]:
    """(pclntab bytes, inline trees by funcdata value) in the layout of `magic`."""
    if magic == MAGIC_12:
        return _build_12()
    return _build_116(magic)


def _tree(magic: int, name_offsets: list[int]) -> bytes:
    out = b""
    for parent, (name, parent_pc, start) in enumerate(TREE):
        if magic == MAGIC_120:
            out += struct.pack("<B3xiii", 0, name_offsets[name], parent_pc, start)
        else:
            out += struct.pack("<hBxiiii", parent - 1, 0, 0, 0, name_offsets[name], parent_pc)
    return out


def _build_116(magic: int) -> tuple[bytes, dict[int, bytes]]:
    names = b""
    name_offsets = []
    for name in NAMES:
        name_offsets.append(len(names))
        names += name.encode() + b"\0"
    filetab = b""
    file_offsets = []
    for file in FILES:
        file_offsets.append(len(filetab))
        filetab += file.encode() + b"\0"
    cutab = struct.pack("<2I", *file_offsets)
    pctab = bytearray(b"\0")  # offset 0 means "no table"
    offsets = {}
    for key, runs in {
        "ol": OUTER_LINES, "of": OUTER_FILES, "oi": OUTER_INLINE, "il": INNER_LINES, "if": INNER_FILES,
    }.items():  # fmt: skip
        offsets[key] = len(pctab)
        pctab += pcvalue(runs)
    new = magic in (MAGIC_118, MAGIC_120)
    header_words = 8 if new else 7
    head_size = 8 + 8 * header_words
    funcname_off = head_size
    cu_off = funcname_off + len(names)
    file_off = cu_off + len(cutab)
    pc_off = file_off + len(filetab)
    pcln_off = (pc_off + len(pctab) + 7) & ~7
    key = 0x40 if new else TREE_AT
    funcs = [
        (0x1000, name_offsets[0], offsets["of"], offsets["ol"], offsets["oi"], key),
        (0x1040, name_offsets[1], offsets["if"], offsets["il"], 0, None),
    ]
    width = 4 if new else 8
    functab_size = (2 * len(funcs) + 1) * width
    records = b""
    functab = b""
    for entry, name, pcfile, pcln, inl, tree in funcs:
        funcoff = functab_size + len(records)
        if new:
            functab += struct.pack("<II", entry - TEXT, funcoff)
            record = struct.pack("<IiiIIIIII", entry - TEXT, name, 0, 0, 0, pcfile, pcln, 3, 0)
            if magic == MAGIC_120:
                record += struct.pack("<i", 5)
            record += struct.pack("<4B", 0, 0, 0, 4) + struct.pack("<3I", 0, 0, inl)
            record += struct.pack("<4I", *([0xFFFFFFFF] * 3), 0xFFFFFFFF if tree is None else tree)
        else:
            functab += struct.pack("<QQ", entry, funcoff)
            record = struct.pack("<QiiIIIIIII", entry, name, 0, 0, 0, pcfile, pcln, 3, 0, 0)
            record = record[:-4] + struct.pack("<4B", 0, 0, 0, 4) + struct.pack("<3I", 0, 0, inl)
            record += b"\0" * (-(pcln_off + funcoff + len(record)) % 8)
            record += struct.pack("<4Q", 0, 0, 0, tree or 0)
        records += record + b"\0" * (-len(record) % 8)
    functab += struct.pack("<I" if new else "<Q", 0x1060 - (TEXT if new else 0))
    words = [len(funcs), len(FILES)] + ([TEXT] if new else [])
    words += [funcname_off, cu_off, file_off, pc_off, pcln_off]
    head = struct.pack("<IBBBB", magic, 0, 0, 1, 8) + struct.pack(f"<{len(words)}Q", *words)
    body = head + names + cutab + filetab + bytes(pctab)
    body += b"\0" * (pcln_off - len(body))
    return body + functab + records, {key: _tree(magic, name_offsets)}


def _build_12() -> tuple[bytes, dict[int, bytes]]:
    """Go 1.2-1.15: offsets from the table start, file numbers from 1, funcdata as addresses."""
    nfunc = 2
    functab_at = 16
    filetab_ref_at = functab_at + (2 * nfunc + 1) * 8
    blob = bytearray(filetab_ref_at + 4)
    blob += b"\0" * (-len(blob) % 8)

    def put(data: bytes, align: int = 1) -> int:
        blob.extend(b"\0" * (-len(blob) % align))
        at = len(blob)
        blob.extend(data)
        return at

    name_offsets = [put(n.encode() + b"\0") for n in NAMES]
    file_names = [put(f.encode() + b"\0") for f in FILES]
    shifted = {  # file numbers start at 1 in this layout
        "of": [(end, v + 1) for end, v in OUTER_FILES],
        "if": [(end, v + 1) for end, v in INNER_FILES],
    }
    tables = {
        "ol": put(pcvalue(OUTER_LINES)),
        "of": put(pcvalue(shifted["of"])),
        "oi": put(pcvalue(OUTER_INLINE)),
        "il": put(pcvalue(INNER_LINES)),
        "if": put(pcvalue(shifted["if"])),
    }
    filetab = put(struct.pack("<3I", 3, *file_names), 4)
    funcs = [
        (0x1000, name_offsets[0], tables["of"], tables["ol"], tables["oi"], TREE_AT),
        (0x1040, name_offsets[1], tables["if"], tables["il"], 0, 0),
    ]
    functab = b""
    for entry, name, pcfile, pcln, inl, tree in funcs:
        record = struct.pack("<QiiIIIII", entry, name, 0, 0, 0, pcfile, pcln, 3)
        record += struct.pack("<4B", 0, 0, 0, 4) + struct.pack("<3I", 0, 0, inl)
        at = len(blob) + (-len(blob) % 8)
        record += b"\0" * (-(at + len(record)) % 8) + struct.pack("<4Q", 0, 0, 0, tree)
        functab += struct.pack("<QQ", entry, put(record, 8))
    functab += struct.pack("<Q", 0x1060)
    struct.pack_into("<IBBBBQ", blob, 0, MAGIC_12, 0, 0, 1, 8, nfunc)
    blob[functab_at : functab_at + len(functab)] = functab
    struct.pack_into("<I", blob, filetab_ref_at, filetab)
    return bytes(blob), {TREE_AT: _tree(MAGIC_116, name_offsets)}

"""Name Ruby frames from process memory: (iseq, pc, method entry) becomes a Frame.

Names follow CRuby's rb_profile_frame_full_label: the iseq's label with its method part qualified by the
class (`Shapes::Circle#area`, `block in Helper.apply` for a block in a singleton method, `<main>` and
`block in <main>` outside methods); C functions are `Class#method` from the method entry's definition id
and defined class, without a file. Lines come from the iseq's instruction info (succinct bit vector, as
iseq.c succ_index_lookup). Class paths are the class's `__classpath__` instance variable, IDs are named
through the global symbol table. Nothing here raises for bad memory: it returns a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetprof.interpreters.ruby.layouts import (
    FL_SINGLETON,
    ID_ENTRY_SIZE,
    ID_ENTRY_UNIT,
    ID_SCOPE_SHIFT,
    ISEQ_TYPE_METHOD,
    LAST_OP_ID,
    QNIL,
    SUCC_BLOCK_BITS,
    SUCC_BLOCK_BYTES,
    SUCC_BLOCK_SMALL_RANKS,
    SUCC_IMM_BYTES,
    SUCC_IMMEDIATE,
    T_ARRAY,
    T_CLASS,
    T_ICLASS,
    T_MASK,
    T_MODULE,
    T_STRING,
    RubyLayout,
)
from fleetprof.process.memory import MemoryReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.symbolize.lru import BoundedLru

RUNTIME = "ruby"  # Frame.runtime: OTel's profile.frame.type for Ruby frames
MAX_STRING = 4096
MAX_IVARS = 64  # instance variables of a class scanned for __classpath__ / __attached__
MAX_INSNS = 1 << 24
CACHE_SIZE = 16384
CLASSPATH = "__classpath__"
ATTACHED = "__attached__"


@dataclass(frozen=True, slots=True)
class IseqInfo:
    """What an instruction sequence contributes to a frame (its line table is read per pc)."""

    label: str  # "block in area", "area", "<main>"
    base_label: str  # "area"
    path: str
    first_lineno: int
    method_name: str  # the local iseq's base_label when it is a method, else ""


class RubyNamer:
    """Reads iseqs, method entries, classes and IDs of one process, cached by address."""

    def __init__(self, mem: MemoryReader, layout: RubyLayout, global_symbols: int) -> None:
        self.mem = mem
        self.layout = layout
        self.global_symbols = global_symbols  # &ruby_global_symbols in the process, 0 when unknown
        self._iseqs: BoundedLru[int, IseqInfo] = BoundedLru(CACHE_SIZE)
        self._names: BoundedLru[tuple[int, str], str] = BoundedLru(CACHE_SIZE)  # (entry, method) -> name
        self._ids: dict[int, str] = {}

    def _flags(self, value: int) -> int | None:
        """RBasic.flags of heap object `value`; None for immediates and unreadable memory."""
        return self.mem.u64(value) if value and not value & 7 else None

    def string(self, value: int) -> str | None:
        """The text of String `value` (embedded or on the heap), None when it is not a readable String."""
        lay = self.layout
        flags = self._flags(value)
        if flags is None or flags & T_MASK != T_STRING:
            return None
        if flags & lay.str_noembed:
            length, ptr = self.mem.u64(value + lay.str_len), self.mem.u64(value + lay.str_ptr)
        else:
            length, ptr = (flags & lay.str_embed_len_mask) >> lay.str_embed_len_shift, value + lay.str_embed
        if length is None or ptr is None or length > MAX_STRING:
            return None
        data = self.mem.read(ptr, length) if length else b""
        return None if data is None else data.decode("utf-8", "replace")

    def array_item(self, value: int, index: int) -> int | None:
        """Element `index` of Array `value`, None when out of range or unreadable."""
        lay = self.layout
        flags = self._flags(value)
        if flags is None or flags & T_MASK != T_ARRAY:
            return None
        if flags & lay.ary_embed_flag:
            length, ptr = (flags & lay.ary_embed_len_mask) >> lay.ary_embed_len_shift, value + lay.ary_embed
        else:
            length, ptr = self.mem.u64(value + lay.ary_len), self.mem.u64(value + lay.ary_ptr)
        if length is None or ptr is None or not 0 <= index < length:
            return None
        return self.mem.u64(ptr + index * 8)

    def path(self, pathobj: int) -> str | None:
        """The iseq's file: pathobj when a String, else the realpath of its Array [path, realpath] (the
        path as given, often relative, when realpath is nil)."""
        text = self.string(pathobj)
        if text is not None:
            return text
        for index in (1, 0):
            item = self.array_item(pathobj, index)
            text = self.string(item) if item and item != QNIL else None
            if text is not None:
                return text
        return None

    def id_name(self, ident: int) -> str | None:
        """The name of ID `ident` from the global symbol table (rb_id2str), None when unknown."""
        if ident in self._ids:
            return self._ids[ident]
        serial = ident >> ID_SCOPE_SHIFT if ident > LAST_OP_ID else ident
        ids = self.mem.u64(self.global_symbols + self.layout.symbols_ids) if self.global_symbols else None
        chunk = self.array_item(ids, serial // ID_ENTRY_UNIT) if ids else None
        entry = self.array_item(chunk, serial % ID_ENTRY_UNIT * ID_ENTRY_SIZE) if chunk else None
        name = self.string(entry) if entry else None
        if name is not None:
            self._ids[ident] = name
        return name

    def _ivars(self, klass: int) -> dict[str, int]:
        """The named instance variables of class `klass` (__classpath__, __attached__, ...)."""
        lay = self.layout
        ext = self.mem.u64(klass + lay.class_ext)
        table = self.mem.u64(ext + lay.classext_iv_tbl) if ext else None
        head = self.mem.read(table, lay.st_entries + 8) if table else None
        if head is None:
            return {}
        start = int.from_bytes(head[lay.st_entries_start : lay.st_entries_start + 8], "little")
        bound = int.from_bytes(head[lay.st_entries_bound : lay.st_entries_bound + 8], "little")
        entries = int.from_bytes(head[lay.st_entries : lay.st_entries + 8], "little")
        count = min(max(bound - start, 0), MAX_IVARS)
        data = (
            self.mem.read(entries + start * lay.st_entry_size, count * lay.st_entry_size) if count else None
        )
        out: dict[str, int] = {}
        for index in range(count if data else 0):
            assert data is not None
            base = index * lay.st_entry_size
            key = int.from_bytes(data[base + lay.st_entry_key : base + lay.st_entry_key + 8], "little")
            name = self.id_name(key)
            if name is not None:
                record = base + lay.st_entry_record
                out[name] = int.from_bytes(data[record : record + 8], "little")
        return out

    def class_path(self, klass: int) -> tuple[str, bool] | None:
        """(path, singleton) of `klass` as rb_profile_frame_classpath gives it; None when unknown."""
        flags = self._flags(klass)
        if flags is None:
            return None
        if flags & T_MASK == T_ICLASS:  # an included module's proxy: its RBasic.klass is the module
            klass = self.mem.u64(klass + 8) or 0
            flags = self._flags(klass)
            if flags is None:
                return None
        singleton = bool(flags & FL_SINGLETON) and flags & T_MASK == T_CLASS
        ivars = self._ivars(klass)
        if singleton:
            attached = ivars.get(ATTACHED, 0)
            kind = (self._flags(attached) or 0) & T_MASK
            if kind not in (T_CLASS, T_MODULE):
                return f"#<Class:{attached:#x}>", True
            ivars = self._ivars(attached)
            klass = attached
        path = self.string(ivars.get(CLASSPATH, 0))
        return (path if path is not None else f"#<Class:{klass:#x}>"), singleton

    def iseq(self, iseq: int) -> IseqInfo | str:
        """The label, path, first line and method name of `iseq`, or why it cannot be read."""
        found = self._iseqs.get(iseq)
        if found is None:
            found = self._read_iseq(iseq)
            if isinstance(found, str):
                return found
            self._iseqs.put(iseq, found)
        return found

    def _body(self, iseq: int) -> bytes | None:
        lay = self.layout
        body = self.mem.u64(iseq + lay.iseq_body) if iseq else None
        return self.mem.read(body, lay.body_local_iseq + 8) if body else None

    def _read_iseq(self, iseq: int) -> IseqInfo | str:
        lay = self.layout
        body = self._body(iseq)
        if body is None:
            return "iseq unreadable"

        def value(offset: int) -> int:
            return int.from_bytes(body[offset : offset + 8], "little")

        label, base = self.string(value(lay.body_label)), self.string(value(lay.body_base_label))
        path = self.path(value(lay.body_pathobj))
        if label is None or base is None or path is None:
            return "iseq label or path unreadable"
        local = self._body(value(lay.body_local_iseq))
        method_name = ""
        if local is not None and int.from_bytes(local[lay.body_type : lay.body_type + 4], "little") == (
            ISEQ_TYPE_METHOD
        ):
            local_base = int.from_bytes(local[lay.body_base_label : lay.body_base_label + 8], "little")
            method_name = self.string(local_base) or ""
        return IseqInfo(label, base, path, value(lay.body_first_lineno) >> 1, method_name)

    def line(self, iseq: int, pc: int) -> int:
        """The source line of `pc` in `iseq` (rb_vm_get_sourceline); 0 when it cannot be read."""
        lay = self.layout
        body = self._body(iseq)
        if body is None:
            return 0

        def value(offset: int, size: int = 8) -> int:
            return int.from_bytes(body[offset : offset + size], "little")

        encoded, entries = value(lay.body_iseq_encoded), value(lay.body_insns_info)
        size = value(lay.body_insns_info_size, 4)
        position = (pc - encoded) // 8 if pc >= encoded else -1
        if position > 0:
            position -= 1  # pc is the next instruction once the current one started
        if size == 0 or not 0 <= position < MAX_INSNS:
            return 0
        rank = 1 if size == 1 else self._succ_rank(value(lay.body_succ_index_table), position)
        if not 1 <= rank <= size:
            return 0
        entry = entries + (rank - 1) * lay.insn_info_entry_size + lay.insn_info_line_no
        return self.mem.u32(entry) or 0

    def _succ_rank(self, table: int, position: int) -> int:
        """iseq.c succ_index_lookup: how many instruction-info entries start at or before `position`."""
        if not table:
            return 0
        if position < SUCC_IMMEDIATE:
            word = self.mem.u64(table + position // 9 * 8)
            return -1 if word is None else (word >> (position % 9 * 7)) & 0x7F
        bit = position - SUCC_IMMEDIATE
        block = table + SUCC_IMM_BYTES + bit // 512 * SUCC_BLOCK_BYTES
        data = self.mem.read(block, SUCC_BLOCK_BYTES)
        if data is None:
            return -1
        rank = int.from_bytes(data[0:4], "little")
        small = bit % 512 // 64
        ranks = int.from_bytes(data[SUCC_BLOCK_SMALL_RANKS : SUCC_BLOCK_SMALL_RANKS + 8], "little")
        small_rank = 0 if small == 0 else (ranks >> ((small - 1) * 9)) & 0x1FF
        start = SUCC_BLOCK_BITS + small * 8
        bits = int.from_bytes(data[start : start + 8], "little")
        shifted = (bits << (63 - bit % 64)) & (2**64 - 1)
        return rank + small_rank + shifted.bit_count()

    def qualified(self, entry: int, method_name: str) -> str | None:
        """`Class#method` or `Class.method` for method entry `entry` (qualified_method_name)."""
        key = (entry, method_name)
        found = self._names.get(key)
        if found is not None:
            return found
        klass = self.mem.u64(entry + self.layout.me_defined_class) if entry else None
        owner = self.class_path(klass) if klass else None
        if owner is None:
            return None
        path, singleton = owner
        name = f"{path}{'.' if singleton else '#'}{method_name}"
        self._names.put(key, name)
        return name

    def cfunc_name(self, entry: int) -> str | None:
        """The method name of C function entry `entry`: its definition's original id."""
        lay = self.layout
        definition = self.mem.u64(entry + lay.me_def)
        ident = self.mem.u64(definition + lay.def_original_id) if definition else None
        return self.id_name(ident) if ident else None

    def frame(self, iseq: int, pc: int, entry: int) -> Frame | str:
        """The Frame of a Ruby frame (iseq, pc, method entry or 0) or a C function (0, 0, entry)."""
        if not iseq:
            if not self.global_symbols:
                return "no ruby_global_symbols: C functions cannot be named"
            method = self.cfunc_name(entry)
            name = self.qualified(entry, method) if method is not None else None
            if name is None:
                return "C function's method entry unreadable"
            return Frame(kind=FrameKind.INTERPRETED, function=name, runtime=RUNTIME)
        info = self.iseq(iseq)
        if isinstance(info, str):
            return info
        name = info.label
        if info.method_name and entry:
            qualified = self.qualified(entry, info.method_name)
            if qualified is not None and qualified != info.base_label:
                prefix = info.label[: len(info.label) - len(info.base_label)]
                name = prefix + qualified
        return Frame(
            kind=FrameKind.INTERPRETED,
            function=name,
            file=info.path,
            line=self.line(iseq, pc),
            start_line=info.first_lineno,
            runtime=RUNTIME,
        )

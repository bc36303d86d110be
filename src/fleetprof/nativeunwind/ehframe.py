"""Walk `.eh_frame` / `.debug_frame` records: CIEs, FDEs and their pointer encodings.

The walk is the compiler's hot loop: FDE programs are memoized per interpretation context (most functions
share a few prologue patterns), and each FDE is recorded as one (pc_begin, pc_end, program) entry.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass, field

from fleetprof.nativeunwind.cfi import (
    INITIAL_STATE,
    CfiContext,
    CfiError,
    Program,
    SetLoc,
    State,
    read_sleb,
    read_uleb,
    run_cie,
)
from fleetprof.nativeunwind.table import SIGNAL_RULE, RuleSet, UnwindStats

DW_EH_PE_omit = 0xFF
DW_EH_PE_absptr = 0x00
DW_EH_PE_pcrel = 0x10
DW_EH_PE_datarel = 0x30
DW_EH_PE_indirect = 0x80
PCREL_SDATA4 = 0x1B
REG_RA = 16

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FAST_FDE = struct.Struct("<IIiI")
_FIXED = {
    0x02: ("<H", 2),
    0x03: ("<I", 4),
    0x04: ("<Q", 8),
    0x0A: ("<h", 2),
    0x0B: ("<i", 4),
    0x0C: ("<q", 8),
}
_MASK64 = (1 << 64) - 1


class FrameError(Exception):
    """A malformed record; the message is a short reason used as a stats key."""


def read_encoded(data: bytes, i: int, enc: int, vaddr: int, datarel: int | None = None) -> tuple[int, int]:
    """Decode a DW_EH_PE-encoded pointer at data[i]; `vaddr` is the address of data[0].

    Returns (value, next index). pcrel is relative to the field's own address, datarel to `datarel`.
    """
    fmt = enc & 0x0F
    if fmt == DW_EH_PE_absptr:
        if i + 8 > len(data):
            raise FrameError("truncated_pointer")
        value = _U64.unpack_from(data, i)[0]
        nxt = i + 8
    elif fmt == 0x01:
        value, nxt = read_uleb(data, i)
    elif fmt == 0x09:
        value, nxt = read_sleb(data, i)
    else:
        spec = _FIXED.get(fmt)
        if spec is None:
            raise FrameError(f"pointer_format_{fmt:#x}")
        if i + spec[1] > len(data):
            raise FrameError("truncated_pointer")
        value = struct.unpack_from(spec[0], data, i)[0]
        nxt = i + spec[1]
    app = enc & 0x70
    if app == DW_EH_PE_pcrel:
        value += vaddr + i
    elif app == DW_EH_PE_datarel and datarel is not None:
        value += datarel
    elif app != 0:
        raise FrameError(f"pointer_application_{app:#x}")
    if enc & DW_EH_PE_indirect:
        raise FrameError("indirect_pointer")
    return value & _MASK64, nxt


def _read_range(data: bytes, i: int, enc: int) -> tuple[int, int]:
    """Decode an FDE address range: the pointer's value format without its application."""
    return read_encoded(data, i, enc & 0x0F, 0)


@dataclass(slots=True)
class Cie:
    """A parsed Common Information Entry: what its FDEs need to be decoded and interpreted."""

    offset: int
    code_align: int = 1
    data_align: int = -8
    ra_reg: int = REG_RA
    fde_enc: int = DW_EH_PE_absptr
    has_aug_data: bool = False
    signal: bool = False
    error: str = ""
    init: State = INITIAL_STATE


@dataclass(frozen=True, slots=True)
class FrameSection:
    """Bytes of one CFI section and where they live: `vaddr` of data[0] (0 for .debug_frame)."""

    name: str
    data: bytes
    vaddr: int
    is_eh: bool


def parse_cie(data: bytes, offset: int, is_eh: bool) -> Cie:
    """Parse the CIE whose length field is at `offset`; problems are recorded in `Cie.error`."""
    cie = Cie(offset)
    try:
        _parse_cie_into(cie, data, offset, is_eh)
    except (FrameError, CfiError) as exc:
        cie.error = f"cie_{exc}"
    except (IndexError, struct.error):
        cie.error = "cie_truncated"
    return cie


def _parse_cie_into(cie: Cie, data: bytes, offset: int, is_eh: bool) -> None:
    """Fill `cie` from the record at `offset`; raises FrameError/CfiError/IndexError on malformed input."""
    length = _U32.unpack_from(data, offset)[0]
    i = offset + 4
    if length == 0xFFFFFFFF:
        length = _U64.unpack_from(data, i)[0]
        i += 8
        cie_id = _U64.unpack_from(data, i)[0]
        i += 8
        want_id = 0 if is_eh else _MASK64
    else:
        cie_id = _U32.unpack_from(data, i)[0]
        i += 4
        want_id = 0 if is_eh else 0xFFFFFFFF
    end = offset + (12 if data[offset : offset + 4] == b"\xff\xff\xff\xff" else 4) + length
    if end > len(data):
        raise FrameError("truncated")
    if cie_id != want_id:
        raise FrameError("not_a_cie")
    version = data[i]
    i += 1
    if version not in (1, 3, 4):
        raise FrameError(f"version_{version}")
    aug_end = data.find(b"\0", i, end)
    if aug_end < 0:
        raise FrameError("augmentation_unterminated")
    aug = data[i:aug_end].decode("latin-1")
    i = aug_end + 1
    if aug.startswith("eh"):
        i += 8
    if version == 4:
        address_size, segment_size = data[i], data[i + 1]
        i += 2
        if address_size != 8 or segment_size != 0:
            raise FrameError(f"address_size_{address_size}")
    cie.code_align, i = read_uleb(data, i)
    cie.data_align, i = read_sleb(data, i)
    if version == 1:
        cie.ra_reg = data[i]
        i += 1
    else:
        cie.ra_reg, i = read_uleb(data, i)
    if aug.startswith("z"):
        cie.has_aug_data = True
        aug_len, i = read_uleb(data, i)
        aug_data_end = i + aug_len
        for ch in aug[1:]:
            if ch == "R":
                cie.fde_enc = data[i]
                i += 1
            elif ch == "L":
                i += 1
            elif ch == "P":
                _, i = read_encoded(data, i + 1, data[i] & 0x7F, 0)
            elif ch == "S":
                cie.signal = True
            elif ch not in "BG":
                break
        i = aug_data_end
    elif aug not in ("", "eh"):
        shown = aug[:8] if aug[:8].isascii() and aug[:8].isprintable() else aug[:8].encode("latin-1").hex()
        raise FrameError(f"augmentation_{shown}")
    if i > end:
        raise FrameError("truncated")
    if cie.ra_reg != REG_RA:
        raise FrameError(f"ra_register_{cie.ra_reg}")
    if cie.code_align == 0:
        raise FrameError("code_align_0")
    cie.init = run_cie(data[i:end], cie.code_align, cie.data_align)


@dataclass(slots=True)
class RowSink:
    """Where walks put their output: one (pc_begin, pc_end, program) entry per FDE, plus a sort key each.

    Keys are `pc_begin << 32 | entry index`, so sorting the keys orders FDEs by address (and, at equal
    addresses, by discovery) without sorting tuples; rows are laid out later, per FDE, by assemble.py.
    """

    rules: RuleSet
    stats: UnwindStats
    code_lo: int
    code_hi: int
    entries: list[tuple[int, int, Program]] = field(default_factory=list)
    covered: int = 0
    keys: list[int] = field(default_factory=list)
    exclude_starts: list[int] = field(default_factory=list)
    exclude_ends: list[int] = field(default_factory=list)
    contexts: dict[tuple[int, int, State], CfiContext] = field(default_factory=dict)


def walk_frames(sec: FrameSection, sink: RowSink) -> None:
    """Interpret every FDE of `sec` and record it in `sink`; bad records are counted and skipped.

    The hot loop: per-CIE facts are looked up once per FDE as a tuple, and programs come from the memo.
    """
    data = sec.data
    n = len(data)
    is_eh = sec.is_eh
    vaddr = sec.vaddr
    stats = sink.stats
    entries = sink.entries
    add_entry = entries.append
    add_key = sink.keys.append
    code_lo = sink.code_lo
    code_hi = sink.code_hi
    excl_starts = sink.exclude_starts
    excl_ends = sink.exclude_ends
    cies: dict[int, Cie] = {}
    views: dict[int, CieView] = {}
    fast_unpack = _FAST_FDE.unpack_from
    signal_program = Program((sink.rules.add(SIGNAL_RULE) << 32,), 0, (), False)
    skipped = stats.note_skipped
    fde_count = 0
    covered = 0
    pos = 0
    while pos + 4 <= n:
        if pos + 16 <= n:
            length, cie_ptr, rel, pc_range = fast_unpack(data, pos)
            if length == 0xFFFFFFFF or length == 0:
                length, cie_ptr, fields, end = _slow_header(data, pos)
            else:
                fields = pos + 8
                end = fields - 4 + length
        else:
            length, cie_ptr, fields, end = _slow_header(data, pos)
        if end > n or end < fields:
            if length == 0:
                if is_eh:
                    break
                pos += 4
                continue
            skipped("truncated_record")
            break
        if cie_ptr == (0 if is_eh else _CIE_ID[fields - pos]):
            if pos not in cies:
                cies[pos] = parse_cie(data, pos, is_eh)
            pos = end
            continue
        fde_count += 1
        cie_pos = (fields - 4 if fields - pos == 8 else fields - 8) - cie_ptr if is_eh else cie_ptr
        view = views.get(cie_pos)
        if view is None:
            view = views[cie_pos] = _cie_view(cies, data, cie_pos, is_eh, sink)
        ctx, memo, enc, has_aug, signal, error = view
        if error:
            skipped(error)
            pos = end
            continue
        if enc == PCREL_SDATA4 and fields == pos + 8 and length >= 13:
            pc_begin = vaddr + fields + rel
            i = pos + 16
        else:
            try:
                pc_begin, i = read_encoded(data, fields, enc, vaddr)
                pc_range, i = _read_range(data, i, enc)
            except (FrameError, CfiError, IndexError) as exc:
                skipped(f"fde_{exc}" if str(exc) else "fde_truncated")
                pos = end
                continue
        if has_aug:
            i = _skip_augmentation(data, i, end)
            if i > end:
                skipped("fde_truncated")
                pos = end
                continue
        pc_end = pc_begin + pc_range
        if pc_begin < code_lo or pc_end > code_hi or pc_range == 0:
            skipped("fde_empty" if pc_range == 0 else "fde_outside_code")
            pos = end
            continue
        if excl_starts:
            k = bisect_right(excl_starts, pc_begin) - 1
            if k >= 0 and pc_begin < excl_ends[k]:
                skipped("fde_covered_by_earlier_section")
                pos = end
                continue
        if signal:
            prog = signal_program
            # A sample taken inside rt_sigreturn sees the byte after the trampoline's `syscall`, one past
            # the FDE: cover it too (the next function, if it starts there, still wins from its start on).
            pc_end += 1
        else:
            code = data[i:end]
            prog = memo.get(code)  # type: ignore[assignment]
            if prog is None:
                set_loc = _set_loc(enc, vaddr + i, pc_begin) if 1 in code else None
                prog = ctx.program(code, set_loc)  # type: ignore[union-attr]  # ctx is set when error is ""
            if prog.reasons:
                for why in prog.reasons:
                    stats.note_invalid(why)
        add_key(pc_begin << 32 | len(entries))
        add_entry((pc_begin, pc_end, prog))
        covered += pc_range
        pos = end
    sink.covered += covered
    stats.fde_count += fde_count
    stats.cie_count += sum(1 for c in cies.values() if not c.error)


CieView = tuple[CfiContext | None, dict[bytes, Program], int, bool, bool, str]
"""What the walk needs of an FDE's CIE: (context, its memo, fde encoding, 'z', signal frame, error)."""
_CIE_ID = {8: 0xFFFFFFFF, 20: _MASK64}
""".debug_frame CIE ids by header size (32-bit DWARF: 8 bytes to the fields, 64-bit: 20)."""


def _slow_header(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(length, CIE pointer, offset of the fields after it, end) of a 64-bit, zero or tail record.

    A zero length comes back with end < fields, like a truncated record; the caller tells them apart.
    """
    n = len(data)
    length = _U32.unpack_from(data, pos)[0]
    if length == 0:
        return 0, 0, pos + 8, pos + 4
    if length != 0xFFFFFFFF:
        if pos + 8 > n:
            return length, 0, pos + 8, n + 1
        return length, _U32.unpack_from(data, pos + 4)[0], pos + 8, pos + 4 + length
    if pos + 20 > n:
        return length, 0, pos + 20, n + 1
    return (
        length,
        _U64.unpack_from(data, pos + 12)[0],
        pos + 20,
        pos + 12 + _U64.unpack_from(data, pos + 4)[0],
    )


def _cie_view(cies: dict[int, Cie], data: bytes, cie_pos: int, is_eh: bool, sink: RowSink) -> CieView:
    """Parse (once) the CIE at `cie_pos` and bind it to the interpretation context it shares with its kind."""
    cie = cies.get(cie_pos)
    if cie is None:
        cie = cies[cie_pos] = _cie_at(data, cie_pos, is_eh)
    if cie.error:
        return (None, {}, 0, False, False, cie.error)
    key = (cie.code_align, cie.data_align, cie.init)
    ctx = sink.contexts.get(key)
    if ctx is None:
        ctx = sink.contexts[key] = CfiContext(cie.code_align, cie.data_align, cie.init, sink.rules)
    return (ctx, ctx.memo, cie.fde_enc, cie.has_aug_data, cie.signal, "")


def _skip_augmentation(data: bytes, i: int, end: int) -> int:
    """Index past an FDE's augmentation data (its ULEB128 length, then that many bytes); > end if bad."""
    if i >= end:
        return end + 1
    size = data[i]
    if size < 0x80:
        return i + 1 + size
    try:
        size, i = read_uleb(data, i)
    except (IndexError, CfiError):
        return end + 1
    return i + size


def _cie_at(data: bytes, cie_pos: int, is_eh: bool) -> Cie:
    """The CIE an FDE points to, checked to lie inside the section."""
    if not 0 <= cie_pos <= len(data) - 8:
        cie = Cie(cie_pos)
        cie.error = "cie_pointer_outside_section"
        return cie
    return parse_cie(data, cie_pos, is_eh)


def _set_loc(enc: int, code_vaddr: int, pc_begin: int) -> SetLoc:
    """A DW_CFA_set_loc decoder for a program whose first byte is at `code_vaddr`."""

    def decode(code: bytes, i: int) -> tuple[int, int]:
        try:
            return read_encoded(code, i, enc, code_vaddr)
        except FrameError as exc:
            raise CfiError(str(exc)) from None

    return SetLoc(decode, pc_begin)


def covered_ranges(sink: RowSink) -> tuple[list[int], list[int]]:
    """Sorted, merged [start, end) lists of the code covered by the FDEs recorded so far."""
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi, _ in sorted(sink.entries, key=lambda e: e[0]):
        if ends and lo <= ends[-1]:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return starts, ends

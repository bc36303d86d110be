"""The compiled unwind table: the Python mirror of unwind_table.h plus the in-memory table object.

Names and values match the C header exactly; tests compile the header and compare sizes, offsets, constants.
"""

from __future__ import annotations

import bisect
import ctypes
import struct
from array import array
from dataclasses import dataclass, field
from typing import Any

UW_CFA_RSP = 0
UW_CFA_RBP = 1
UW_CFA_RSP_DEREF = 2
UW_CFA_RBP_DEREF = 3
UW_CFA_PLT = 4
UW_CMD_STOP = 5
UW_CMD_SIGNAL = 6
UW_CMD_FRAME_POINTER = 7
UW_CMD_INVALID = 8
UW_CFA_RBX = 9
UW_CFA_REG = 10

UW_RBP_SAME = 0
UW_RBP_AT_CFA = 1
UW_RBP_UNDEFINED = 2
UW_RBP_AT_RBP = 3

UW_RBX_SAME = 0
UW_RBX_LOST = 1

DWARF_REG_NAMES = (
    "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip
"""x86-64 DWARF register numbers 0-15, as readelf names them."""

CFA_KIND_NAMES: dict[int, str] = {
    UW_CFA_RSP: "rsp",
    UW_CFA_RBP: "rbp",
    UW_CFA_RSP_DEREF: "*rsp",
    UW_CFA_RBP_DEREF: "*rbp",
    UW_CFA_PLT: "plt",
    UW_CMD_STOP: "stop",
    UW_CMD_SIGNAL: "signal",
    UW_CMD_FRAME_POINTER: "frame-pointer",
    UW_CMD_INVALID: "invalid",
    UW_CFA_RBX: "rbx",
    UW_CFA_REG: "reg",
}

MAX_PC = 1 << 32
"""Rows hold 32-bit ELF virtual addresses: code at or above 4 GiB cannot be tabled."""
MAX_ROWS = 1 << 24
"""The BPF binary search takes at most 24 steps, so a file's table holds at most 2^24 rows."""


class UnwindRule(ctypes.Structure):
    """struct unwind_rule: how to find the CFA and the caller's rbp and rbx (16 bytes)."""

    _fields_ = [
        ("cfa_kind", ctypes.c_uint8),
        ("rbp_kind", ctypes.c_uint8),
        ("rbx_off", ctypes.c_int16),
        ("cfa_off", ctypes.c_int32),
        ("cfa_aux", ctypes.c_int32),
        ("rbp_off", ctypes.c_int32),
    ]


class UnwindRow(ctypes.Structure):
    """struct unwind_row: the rule for ELF addresses from pc to the next row's pc (8 bytes)."""

    _fields_ = [("pc", ctypes.c_uint32), ("rule", ctypes.c_uint32)]


RULE_STRUCT = struct.Struct("<BBhiii")
ROW_STRUCT = struct.Struct("<II")

Rule = tuple[int, int, int, int, int, int]
"""A rule as (cfa_kind, rbp_kind, cfa_off, cfa_aux, rbp_off, rbx_off)."""

INVALID_RULE: Rule = (UW_CMD_INVALID, UW_RBP_SAME, 0, 0, 0, 0)
STOP_RULE: Rule = (UW_CMD_STOP, UW_RBP_SAME, 0, 0, 0, 0)
SIGNAL_RULE: Rule = (UW_CMD_SIGNAL, UW_RBP_SAME, 0, 0, 0, 0)
FRAME_POINTER_RULE: Rule = (UW_CMD_FRAME_POINTER, UW_RBP_SAME, 0, 0, 0, 0)
GAP_RULE_INDEX = 1  # code no FDE covers (e.g. V8's embedded builtins): follow frame pointers


class RuleSet:
    """Deduplicating rule registry: index 0 is the INVALID rule (it sorts first at equal pcs), index 1 the
    frame-pointer rule used for gaps between FDEs."""

    __slots__ = ("index", "rules")

    def __init__(self) -> None:
        self.rules: list[Rule] = [INVALID_RULE, FRAME_POINTER_RULE]
        self.index: dict[Rule, int] = {INVALID_RULE: 0, FRAME_POINTER_RULE: GAP_RULE_INDEX}

    def add(self, rule: Rule) -> int:
        """Return the index of `rule`, registering it on first sight."""
        idx = self.index.get(rule)
        if idx is None:
            idx = self.index[rule] = len(self.rules)
            self.rules.append(rule)
        return idx


def describe_rule(rule: Rule) -> str:
    """Human-readable form of a rule, for stats, tests and debugging."""
    kind, rbp_kind, off, aux, rbp_off, rbx_off = rule
    if UW_CMD_STOP <= kind <= UW_CMD_INVALID:
        return CFA_KIND_NAMES[kind]
    if kind == UW_CFA_REG:
        reg = DWARF_REG_NAMES[aux] if 0 <= aux < len(DWARF_REG_NAMES) else f"r{aux}"
        cfa = f"{reg}{off:+d}"
    elif kind == UW_CFA_PLT:
        cfa = f"plt(rsp+{off}, >={aux})"
    elif kind in (UW_CFA_RSP_DEREF, UW_CFA_RBP_DEREF):
        cfa = f"*({CFA_KIND_NAMES[kind][1:]}{off:+d}){aux:+d}"
    else:
        cfa = f"{CFA_KIND_NAMES.get(kind, kind)}{off:+d}"
    rbp = {UW_RBP_SAME: "same", UW_RBP_UNDEFINED: "undefined"}.get(rbp_kind, f"c{rbp_off:+d}")
    if rbp_kind == UW_RBP_AT_RBP:
        rbp = f"[rbp{rbp_off:+d}]"
    if rbx_off == UW_RBX_SAME:
        return f"cfa={cfa} rbp={rbp}"
    rbx = "lost" if rbx_off == UW_RBX_LOST else f"c{rbx_off:+d}"
    return f"cfa={cfa} rbp={rbp} rbx={rbx}"


@dataclass(slots=True)
class UnwindStats:
    """What went into a table and what could not be expressed, for logs and the bench."""

    fde_count: int = 0
    cie_count: int = 0
    sources: list[str] = field(default_factory=list)
    eh_frame_bytes: int = 0
    debug_frame_bytes: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    skipped_fdes: dict[str, int] = field(default_factory=dict)

    def note_invalid(self, reason: str, count: int = 1) -> None:
        """Count `count` rows made INVALID for `reason`."""
        self.invalid[reason] = self.invalid.get(reason, 0) + count

    def note_skipped(self, reason: str, count: int = 1) -> None:
        """Count `count` FDEs (or whole CIE groups) that were dropped for `reason`."""
        self.skipped_fdes[reason] = self.skipped_fdes.get(reason, 0) + count

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form, stored in the on-disk cache."""
        return {
            "fde_count": self.fde_count,
            "cie_count": self.cie_count,
            "sources": list(self.sources),
            "eh_frame_bytes": self.eh_frame_bytes,
            "debug_frame_bytes": self.debug_frame_bytes,
            "invalid": dict(self.invalid),
            "skipped_fdes": dict(self.skipped_fdes),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> UnwindStats:
        """Inverse of `to_dict`; unknown keys are ignored."""
        return cls(
            fde_count=int(raw.get("fde_count", 0)),
            cie_count=int(raw.get("cie_count", 0)),
            sources=[str(s) for s in raw.get("sources", [])],
            eh_frame_bytes=int(raw.get("eh_frame_bytes", 0)),
            debug_frame_bytes=int(raw.get("debug_frame_bytes", 0)),
            invalid={str(k): int(v) for k, v in raw.get("invalid", {}).items()},
            skipped_fdes={str(k): int(v) for k, v in raw.get("skipped_fdes", {}).items()},
        )


class UnwindTable:
    """One file's rows (sorted, merged, C layout) and its file-local rules."""

    __slots__ = ("_pcs", "rows", "rules", "stats")

    def __init__(self, rows: array, rules: list[Rule], stats: UnwindStats) -> None:
        if rows.typecode != "Q":
            raise TypeError("rows must be array('Q') of pc | rule << 32")
        self.rows = rows
        self.rules = rules
        self.stats = stats
        self._pcs: array | None = None

    @property
    def row_count(self) -> int:
        """Number of rows, the final INVALID row included."""
        return len(self.rows)

    @property
    def table_bytes(self) -> int:
        """Size of rows plus rules in the C layout."""
        return len(self.rows) * ROW_STRUCT.size + len(self.rules) * RULE_STRUCT.size

    @property
    def bytes_per_fde(self) -> float:
        """Table bytes per FDE: the compactness figure the bench reports."""
        return self.table_bytes / self.stats.fde_count if self.stats.fde_count else 0.0

    def rows_bytes(self) -> bytes:
        """Rows as an array of struct unwind_row (little-endian)."""
        return self.rows.tobytes()

    def rules_bytes(self) -> bytes:
        """Rules as an array of struct unwind_rule (little-endian)."""
        pack = RULE_STRUCT.pack
        return b"".join(pack(k, rk, bx, off, aux, roff) for k, rk, off, aux, roff, bx in self.rules)

    def iter_rows(self) -> list[tuple[int, int]]:
        """Rows as (pc, rule index) pairs."""
        return [(r & 0xFFFFFFFF, r >> 32) for r in self.rows]

    def lookup(self, pc: int) -> Rule | None:
        """The rule for ELF address `pc`, or None before the first row (what the BPF search does)."""
        if self._pcs is None:
            self._pcs = array("I", self.rows.tobytes())[0::2]
        i = bisect.bisect_right(self._pcs, pc) - 1
        if i < 0:
            return None
        return self.rules[self.rows[i] >> 32]

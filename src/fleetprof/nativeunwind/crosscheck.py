"""Cross-check a compiled table against binutils' `readelf --debug-dump=frames-interp`, the reference oracle.

readelf prints each FDE's interpreted rows (CFA and register rules per location); this module parses that,
derives the rule the table should hold, and reports where the two disagree. Used by the tests and the bench.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from fleetprof.nativeunwind.table import (
    DWARF_REG_NAMES,
    INVALID_RULE,
    SIGNAL_RULE,
    STOP_RULE,
    UW_CFA_RBP,
    UW_CFA_RBX,
    UW_CFA_REG,
    UW_CFA_RSP,
    UW_RBP_AT_CFA,
    UW_RBP_SAME,
    UW_RBP_UNDEFINED,
    UW_RBX_LOST,
    UW_RBX_SAME,
    Rule,
    UnwindTable,
    describe_rule,
)

_FDE_RE = re.compile(r"^[0-9a-f]+ [0-9a-f]+ [0-9a-f]+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)")
_CIE_RE = re.compile(r'^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ CIE "([^"]*)"')
_CFA_RE = re.compile(r"^(r[a-z0-9]+)([+-]\d+)$")
_SECTION_RE = re.compile(r"^Contents of the (\S+) section")
_TOKEN_RE = re.compile(r"r\d+ \([a-z0-9]+\)|\S+")
"""readelf prints a register rule as e.g. "r9 (r9)": one value containing a space."""


@dataclass(frozen=True, slots=True)
class OracleRow:
    """One readelf row: the rules for [pc, end) in one FDE of one section."""

    section: str
    pc: int
    end: int
    cfa: str
    rbp: str
    ra: str
    signal: bool
    rbx: str = "u"


@dataclass(slots=True)
class CrossCheck:
    """Outcome of a cross-check: rows compared, rows readelf cannot settle, and disagreements."""

    compared: int = 0
    not_comparable: int = 0
    mismatches: list[str] | None = None


def run_readelf(path: str) -> str:
    """readelf's interpreted frame dump of `path` (no following of debug links)."""
    proc = subprocess.run(
        ["readelf", "--wide", "--debug-dump=frames-interp", "--debug-dump=no-follow-links", path],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout


def parse_readelf(text: str) -> Iterator[OracleRow]:
    """Rows of every FDE in readelf -wF output; an FDE without rows inherits its CIE's initial row."""
    section = ""
    cie_init: dict[tuple[str, int], tuple[list[str], list[str]]] = {}
    cie_signal: dict[tuple[str, int], bool] = {}
    cols: list[str] = []
    pending: list[tuple[int, list[str]]] = []
    fde: tuple[tuple[str, int], int, int] | None = None
    cur_cie: tuple[str, int] | None = None

    def flush() -> Iterator[OracleRow]:
        """Rows of the FDE just finished, with their end addresses."""
        if fde is None:
            return
        cie_off, lo, hi = fde
        signal = cie_signal.get(cie_off, False)
        rows = pending
        header = cols
        if not rows and cie_off in cie_init:
            header, init_vals = cie_init[cie_off]
            rows = [(lo, init_vals)]
        for k, (pc, vals) in enumerate(rows):
            end = rows[k + 1][0] if k + 1 < len(rows) else hi
            if pc >= end:
                continue
            named = dict(zip(header[2:], vals[1:], strict=False))
            rbp, ra, rbx = (named.get(reg, "u") for reg in ("rbp", "ra", "rbx"))
            yield OracleRow(section, pc, end, vals[0], rbp, ra, signal, rbx)

    for line in text.splitlines():
        if m := _SECTION_RE.match(line):
            yield from flush()
            fde = None
            section = m.group(1)
            continue
        if m := _FDE_RE.match(line):
            yield from flush()
            fde = ((section, int(m.group(1), 16)), int(m.group(2), 16), int(m.group(3), 16))
            cur_cie = None
            pending = []
            continue
        if m := _CIE_RE.match(line):
            yield from flush()
            fde = None
            cur_cie = (section, int(m.group(1), 16))
            cie_signal[cur_cie] = "S" in m.group(2)
            continue
        stripped = _TOKEN_RE.findall(line)
        if not stripped or stripped[1:2] == ["ZERO"]:
            continue
        if stripped[0] == "LOC":
            cols = stripped
            continue
        if len(stripped) == len(cols) and re.fullmatch(r"[0-9a-f]+", stripped[0]):
            if fde is not None:
                pending.append((int(stripped[0], 16), stripped[1:]))
            elif cur_cie is not None and cur_cie not in cie_init:
                cie_init[cur_cie] = (cols, stripped[1:])
    yield from flush()


def _rbx_rule(text: str) -> int:
    """rbx_off for readelf's rbx column: unset or same is SAME, a CFA slot its offset, anything else LOST."""
    if text in ("u", "s"):
        return UW_RBX_SAME
    if re.fullmatch(r"c[+-]\d+", text):
        off = int(text[1:])
        if off not in (UW_RBX_SAME, UW_RBX_LOST) and -(1 << 15) <= off < 1 << 15:
            return off
    return UW_RBX_LOST


def expected_rule(row: OracleRow) -> Rule | None:
    """The rule the table must hold for `row`, or None when readelf cannot settle it (expressions)."""
    if row.signal:
        return SIGNAL_RULE
    if row.ra == "u":
        return STOP_RULE
    if row.ra != "c-8":
        return INVALID_RULE
    m = _CFA_RE.match(row.cfa)
    if m is None:
        return None
    reg, off = m.group(1), int(m.group(2))
    if reg not in DWARF_REG_NAMES:
        return INVALID_RULE
    kind, aux = {"rsp": (UW_CFA_RSP, 0), "rbp": (UW_CFA_RBP, 0), "rbx": (UW_CFA_RBX, 0)}.get(
        reg, (UW_CFA_REG, DWARF_REG_NAMES.index(reg))
    )
    rbx = _rbx_rule(row.rbx)
    if row.rbp in ("u", "s"):
        return (kind, UW_RBP_SAME, off, aux, 0, rbx)
    if row.rbp.startswith("c") and re.fullmatch(r"c[+-]\d+", row.rbp):
        return (kind, UW_RBP_AT_CFA, off, aux, int(row.rbp[1:]), rbx)
    if row.rbp == "exp":
        return None  # readelf doesn't print the expression
    return (kind, UW_RBP_UNDEFINED, off, aux, 0, rbx)


def crosscheck(
    table: UnwindTable, rows: Iterator[OracleRow], limit: int = 20, sections: tuple[str, ...] = ()
) -> CrossCheck:
    """Compare `table` at the first and last address of each oracle row (of `sections`, or all)."""
    result = CrossCheck(mismatches=[])
    assert result.mismatches is not None
    for row in rows:
        if sections and row.section not in sections:
            continue
        want = expected_rule(row)
        if want is None:
            result.not_comparable += 1
            continue
        for pc in {row.pc, row.end - 1}:
            got = table.lookup(pc)
            result.compared += 1
            if got != want and len(result.mismatches) < limit:
                shown = describe_rule(got) if got is not None else "no row"
                result.mismatches.append(
                    f"{row.section} {pc:#x}: table {shown}, readelf cfa={row.cfa} rbp={row.rbp} ra={row.ra}"
                    f" (want {describe_rule(want)})"
                )
            elif got != want:
                result.mismatches.append("...")
    return result

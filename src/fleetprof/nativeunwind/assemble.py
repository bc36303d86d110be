"""Lay out rows: FDEs in address order, frame-pointer rows at gaps and at the end, equal rules merged."""

from __future__ import annotations

from array import array

from fleetprof.nativeunwind.ehframe import RowSink
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.table import GAP_RULE_INDEX, MAX_ROWS, UnwindTable

_LOW32 = 0xFFFFFFFF
_GAP = GAP_RULE_INDEX << 32


def assemble_table(sink: RowSink) -> UnwindTable:
    """Build the table from the walked FDEs; Python work is per FDE, rows are moved in whole tuples.

    Overlapping FDEs: the one starting later wins from its start on (the earlier one's remainder becomes
    INVALID), and at equal starts the one found later wins; each overlap is counted in the stats.
    """
    sink.keys.sort()
    entries = sink.entries
    out: list[int] = []
    append = out.append
    extend = out.extend
    last_rule = -1
    cur_end = -1
    overlaps = 0
    for key in sink.keys:
        pc_begin, pc_end, prog = entries[key & _LOW32]
        if pc_begin != cur_end:
            if pc_begin < cur_end:
                overlaps += 1
                while out and out[-1] & _LOW32 >= pc_begin:
                    out.pop()
                last_rule = out[-1] >> 32 if out else -1
            elif last_rule >= 0 and last_rule != GAP_RULE_INDEX:
                append(cur_end | _GAP)  # code without CFI between FDEs: frame pointers
                last_rule = GAP_RULE_INDEX
        rows = prog.rows
        if prog.max_loc >= pc_end - pc_begin:
            span = pc_end - pc_begin
            rows = tuple(r for r in rows if r & _LOW32 < span)
        if rows:
            if rows[0] >> 32 == last_rule:
                rows = rows[1:]
            if len(rows) == 1:
                append(pc_begin + rows[0])
                last_rule = rows[0] >> 32
            elif rows:
                extend([pc_begin + r for r in rows])
                last_rule = rows[-1] >> 32
        cur_end = pc_end
    if last_rule >= 0 and last_rule != GAP_RULE_INDEX:
        append(cur_end | _GAP)
    if overlaps:
        sink.stats.note_skipped("fde_overlap_truncated", overlaps)
    if len(out) > MAX_ROWS:
        raise UnwindTableError(f"table of {len(out)} rows exceeds the {MAX_ROWS}-row limit")
    return UnwindTable(array("Q", out), sink.rules.rules, sink.stats)

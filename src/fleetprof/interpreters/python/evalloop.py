"""Address ranges of CPython's eval loop, including the `.cold` part GCC splits off hot functions.

With a .symtab the `.cold` part is a local symbol. A stripped binary (Debian's python3.11) keeps only
.dynsym, so the cold part is found from .eh_frame: the hot function jumps (jmp/jcc rel32) into it, and
unlike a real function its FDE does not start with CFA = rsp + 8, because it runs inside the hot
function's frame.
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter
from dataclasses import dataclass

from fleetprof.elf.view import ElfView
from fleetprof.nativeunwind.ehframe import RowSink, walk_frames
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.sources import eh_frame_section
from fleetprof.nativeunwind.table import UW_CFA_RSP, UW_CMD_STOP, Rule, RuleSet, UnwindStats

EVAL_FUNCTION = "_PyEval_EvalFrameDefault"
COLD_SUFFIX = ".cold"
_MAX_SCAN = 1 << 20  # bytes of the hot function scanned for jumps
_MIN_HITS = 2  # a single decoded "jump" into a fragment may be a misread byte pattern


@dataclass(frozen=True, slots=True)
class EvalRange:
    """[start, end) in ELF virtual addresses of one part of the eval loop."""

    start: int
    end: int
    name: str  # "_PyEval_EvalFrameDefault" or "_PyEval_EvalFrameDefault.cold"


def eval_ranges(image: ElfView) -> tuple[tuple[EvalRange, ...], str]:
    """The eval loop's ranges, hot part first, and a note when the cold part could not be placed."""
    symbols = image.symbols((EVAL_FUNCTION, EVAL_FUNCTION + COLD_SUFFIX))
    hot = symbols.get(EVAL_FUNCTION)
    if hot is None or hot.size == 0:
        return (), f"no sized {EVAL_FUNCTION} symbol"
    ranges = [EvalRange(hot.value, hot.value + hot.size, EVAL_FUNCTION)]
    cold = symbols.get(EVAL_FUNCTION + COLD_SUFFIX)
    if cold is not None:
        ranges.append(EvalRange(cold.value, cold.value + max(cold.size, 1), EVAL_FUNCTION + COLD_SUFFIX))
        return tuple(ranges), ""
    if ".symtab" in image.sections:
        return tuple(ranges), ""  # GCC always names split parts in .symtab: there is none
    code = image.read_vaddr(hot.value, min(hot.size, _MAX_SCAN))
    outside = [t for t in _jump_targets(code or b"", hot.value) if not hot.value <= t < ranges[0].end]
    if not outside:
        return tuple(ranges), ""  # nothing jumps out of the function: no split part
    found = _fragment_hit_most(image, outside)
    if found is None:
        return tuple(ranges), "eval loop .cold part not found (stripped, no jump into a split fragment)"
    ranges.append(EvalRange(found[0], found[1], EVAL_FUNCTION + COLD_SUFFIX))
    return tuple(ranges), ""


def _fdes(image: ElfView) -> list[tuple[int, int, bool]]:
    """(start, end, starts inside a frame) of every `.eh_frame` FDE, sorted by start; [] when unreadable."""
    try:
        section = eh_frame_section(image)
    except UnwindTableError:
        return []
    if section is None:
        return []
    sink = RowSink(RuleSet(), UnwindStats(), 0, 1 << 64)
    walk_frames(section, sink)
    rules = sink.rules.rules
    fdes = [
        (lo, hi, bool(prog.rows) and _starts_inside_a_frame(rules[prog.rows[0] >> 32]))
        for lo, hi, prog in sink.entries
    ]
    fdes.sort(key=lambda fde: fde[0])
    return fdes


def _jump_targets(code: bytes, start: int) -> list[int]:
    """Targets of every byte pattern that reads as jmp rel32 (E9) or jcc rel32 (0F 80-8F)."""
    targets = []
    for i in range(len(code) - 5):
        if code[i] == 0xE9:
            targets.append(start + i + 5 + struct.unpack_from("<i", code, i + 1)[0])
        elif code[i] == 0x0F and 0x80 <= code[i + 1] <= 0x8F and i + 6 <= len(code):
            targets.append(start + i + 6 + struct.unpack_from("<i", code, i + 2)[0])
    return targets


def _starts_inside_a_frame(first_rule: Rule) -> bool:
    """True when an FDE's first row is not a function entry (CFA = rsp + 8): a split-off fragment.

    A STOP row (return address undefined: `_start`) is an entry too; an INVALID one has a CFA no entry has.
    """
    kind, _rbp, cfa_offset = first_rule[:3]
    return kind != UW_CMD_STOP and not (kind == UW_CFA_RSP and cfa_offset == 8)


def _fragment_hit_most(image: ElfView, outside: list[int]) -> tuple[int, int] | None:
    """The FDE range of the split-off fragment that most jump targets land in."""
    fdes = _fdes(image)
    starts = [start for start, _, _ in fdes]
    hits: Counter[int] = Counter()
    for target in outside:
        index = bisect.bisect_right(starts, target) - 1
        if index >= 0 and target < fdes[index][1]:
            hits[index] += 1
    for index, count in hits.most_common():
        if count >= _MIN_HITS and fdes[index][2]:
            return fdes[index][0], fdes[index][1]
    return None

"""DWARF call-frame-information interpreter that tracks only what the kernel unwinder needs.

It follows the CFA, the return address (column 16), rbp (column 6) and rbx (column 3, for rbx-based CFAs such
as ld.so's `_dl_runtime_resolve`) through a CIE's initial instructions and an FDE's program, and turns each
location's state into a table rule. Everything it cannot express
becomes UW_CMD_INVALID with a reason; it never guesses. Malformed programs end in an INVALID row.

Speed: a program is split by one C-level regex into (instructions, advance) pairs; the effect of each
instruction run on a state is memoized, so most programs cost a few dict lookups. Anything the regex does
not cover (expressions, set_loc, malformed bytes) goes through the plain byte-at-a-time interpreter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fleetprof.nativeunwind.table import (
    STOP_RULE,
    UW_CFA_PLT,
    UW_CFA_RBP,
    UW_CFA_RBP_DEREF,
    UW_CFA_RBX,
    UW_CFA_REG,
    UW_CFA_RSP,
    UW_CFA_RSP_DEREF,
    UW_RBP_AT_CFA,
    UW_RBP_AT_RBP,
    UW_RBP_SAME,
    UW_RBP_UNDEFINED,
    UW_RBX_LOST,
    UW_RBX_SAME,
    RuleSet,
)

REG_RBX = 3
REG_RBP = 6
REG_RSP = 7
REG_RA = 16

CFA_EXPR = -1
"""cfa_reg value meaning "the CFA is given by an expression" (see the cfa_exp field)."""
CFA_UNSET = -2
"""cfa_reg value before any DW_CFA_def_cfa*: no rule yet."""
RA_AT_CFA_MINUS_8 = 0
RA_UNDEFINED = 1

MAX_STATE_STACK = 64
MAX_LOC = 1 << 32
"""Locations past 4 GiB cannot be in any FDE (rows hold 32-bit addresses)."""
MAX_LEB_BYTES = 10
_S32_MIN = -(1 << 31)
_S32_END = 1 << 31
_S16_MIN = -(1 << 15)
_S16_END = 1 << 15

CfaExp = tuple[int, int, int] | str
"""A recognized CFA expression as (cfa_kind, cfa_off, cfa_aux), or the reason it is unsupported."""
RaRule = int | str
"""RA_AT_CFA_MINUS_8, RA_UNDEFINED, or the reason the return-address rule is unsupported."""
Rules = tuple[int, int, CfaExp, int, int, str, RaRule, int]
"""(cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rbx_off): the tracked rules at one location."""
State = tuple[int, int, CfaExp, int, int, str, RaRule, int, tuple[Rules, ...]]
"""Rules plus the DW_CFA_remember_state stack."""

INITIAL_STATE: State = (CFA_UNSET, 0, "", UW_RBP_SAME, 0, "", "ra_unspecified", UW_RBX_SAME, ())


@dataclass(frozen=True, slots=True)
class Program:
    """An interpreted FDE program: rows as rule << 32 | loc (loc relative to the FDE start: add pc_begin)."""

    rows: tuple[int, ...]
    max_loc: int
    reasons: tuple[str, ...]
    position_dependent: bool


@dataclass(frozen=True, slots=True)
class SetLoc:
    """Decodes DW_CFA_set_loc operands, which depend on the FDE's position and pointer encoding."""

    decode: Callable[[bytes, int], tuple[int, int]]
    pc_begin: int


class CfiError(Exception):
    """Malformed CFI; the message is a short reason used as a stats key."""


def _rbx_slot(off: int) -> int:
    """rbx_off for "the caller's rbx is saved at CFA + off": UW_RBX_LOST when the field can't hold it."""
    return off if off != UW_RBX_SAME and off != UW_RBX_LOST and _S16_MIN <= off < _S16_END else UW_RBX_LOST


def read_uleb(data: bytes, i: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 at `i`; returns (value, next index). Raises IndexError when truncated."""
    result = 0
    shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7
        if shift >= 7 * MAX_LEB_BYTES:
            raise CfiError("leb128_too_long")


def read_sleb(data: bytes, i: int) -> tuple[int, int]:
    """Decode a signed LEB128 at `i`; returns (value, next index). Raises IndexError when truncated."""
    result = 0
    shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, i
        if shift >= 7 * MAX_LEB_BYTES:
            raise CfiError("leb128_too_long")


_EXPR_CACHE: dict[bytes, CfaExp] = {}
_PLT_TAIL = (0x80, 0x3F, 0x1A, None, 0x2A, 0x33, 0x24, 0x22)
"""DW_OP_breg16 0; lit15; and; lit11|lit10; ge; lit3; shl; plus — after DW_OP_breg7 off."""


def _decode_expression(block: bytes) -> list[tuple[int, int]] | None:
    """Decode the few DWARF expression ops CFA expressions use; None on any other op."""
    ops: list[tuple[int, int]] = []
    i = 0
    n = len(block)
    while i < n:
        op = block[i]
        i += 1
        if 0x70 <= op <= 0x8F:  # DW_OP_breg0..31 sleb
            arg, i = read_sleb(block, i)
        elif op == 0x23:  # DW_OP_plus_uconst uleb
            arg, i = read_uleb(block, i)
        elif op in (0x06, 0x1A, 0x22, 0x24, 0x2A) or 0x30 <= op <= 0x4F:  # deref and plus shl ge litN
            arg = 0
        else:
            return None
        ops.append((op, arg))
    return ops


def _match_expression(block: bytes) -> CfaExp:
    """Classify a DW_CFA_def_cfa_expression block."""
    try:
        ops = _decode_expression(block)
    except (IndexError, CfiError):
        return "cfa_expression_truncated"
    if not ops:
        return "cfa_expression_unsupported"
    first_op, off = ops[0]
    if not _S32_MIN <= off < _S32_END:
        return "cfa_expression_unsupported"
    tail = tuple(op for op, _ in ops[1:])
    if first_op == 0x73 and not tail:  # DW_OP_breg3 (rbx) off
        return (UW_CFA_RBX, off, 0)
    if first_op not in (0x77, 0x76):  # breg7 (rsp) / breg6 (rbp)
        return "cfa_expression_unsupported"
    rsp = first_op == 0x77
    if not tail:
        return (UW_CFA_RSP if rsp else UW_CFA_RBP, off, 0)
    if tail == (0x06,):
        return (UW_CFA_RSP_DEREF if rsp else UW_CFA_RBP_DEREF, off, 0)
    if tail == (0x06, 0x23) and ops[2][1] < _S32_END:
        return (UW_CFA_RSP_DEREF if rsp else UW_CFA_RBP_DEREF, off, ops[2][1])
    if (
        rsp
        and len(tail) == len(_PLT_TAIL)
        and ops[1][1] == 0
        and tail[3] in (0x3A, 0x3B)
        and all(b is None or a == b for a, b in zip(tail, _PLT_TAIL, strict=True))
    ):
        return (UW_CFA_PLT, off, tail[3] - 0x30)
    return "cfa_expression_unsupported"


def _rbp_relative(block: bytes) -> int | None:
    """The offset of `DW_OP_breg6 off` (rbp saved at rbp + off, as gcc's stack realignment says)."""
    ops = _decode_expression(block)
    if ops is None or len(ops) != 1 or ops[0][0] != 0x76 or not _S32_MIN <= ops[0][1] < _S32_END:
        return None
    return ops[0][1]


def match_cfa_expression(block: bytes) -> CfaExp:
    """Classify a CFA expression (memoized: the same few blocks recur thousands of times)."""
    found = _EXPR_CACHE.get(block)
    if found is None:
        found = _match_expression(block)
        if len(_EXPR_CACHE) < 4096:
            _EXPR_CACHE[bytes(block)] = found
    return found


def rule_index(rules: Rules, table: RuleSet, reasons: list[str]) -> int:
    """Rule index for the tracked `rules`; appends why when the row is INVALID or loses rbp."""
    cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rbx = rules
    if ra != RA_AT_CFA_MINUS_8:
        if ra == RA_UNDEFINED:
            return table.add(STOP_RULE)
        reasons.append(str(ra))
        return 0
    if cfa_reg == REG_RSP:
        kind, aux = UW_CFA_RSP, 0
    elif cfa_reg == REG_RBP:
        kind, aux = UW_CFA_RBP, 0
    elif cfa_reg == CFA_EXPR:
        if isinstance(cfa_exp, str):
            reasons.append(cfa_exp)
            return 0
        kind, cfa_off, aux = cfa_exp
    elif cfa_reg == REG_RBX:
        kind, aux = UW_CFA_RBX, 0
    elif 0 <= cfa_reg < 16:  # usable only where the registers are the sample's (a leaf) or a sigcontext's
        kind, aux = UW_CFA_REG, cfa_reg
    elif cfa_reg == CFA_UNSET:
        reasons.append("cfa_unset")
        return 0
    else:
        reasons.append(f"cfa_register_r{cfa_reg}")
        return 0
    if not (_S32_MIN <= cfa_off < _S32_END and _S32_MIN <= rbp_off < _S32_END):
        reasons.append("offset_out_of_range")
        return 0
    if rbp_why:
        reasons.append(rbp_why)
    keep_off = rbp_kind in (UW_RBP_AT_CFA, UW_RBP_AT_RBP)
    return table.add((kind, rbp_kind, cfa_off, aux, rbp_off if keep_off else 0, rbx))


def interpret(
    code: bytes,
    caf: int,
    daf: int,
    start: State,
    cie_rules: Rules | None,
    table: RuleSet | None,
    set_loc: SetLoc | None = None,
) -> tuple[Program, State]:
    """Byte-at-a-time interpreter: rows (when `table` is given) and the final state; never raises.

    `cie_rules` are what DW_CFA_restore returns to (None inside a CIE). Without `table`, locations are
    ignored (CIE initial instructions, memoized instruction runs). An error ends the rows with INVALID
    at the current location and its reason is the last of `Program.reasons`.
    """
    cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rbx, stack_t = start
    stack = list(stack_t)
    rows: list[int] = []
    reasons: list[str] = []
    posdep = False
    loc = 0
    last_rule = -1
    i = 0
    n = len(code)
    fail = ""
    try:
        while i < n:
            op = code[i]
            i += 1
            delta = 0
            if op >= 0x40:
                reg = op & 0x3F
                if op < 0x80:  # DW_CFA_advance_loc
                    delta = reg * caf
                elif op < 0xC0:  # DW_CFA_offset
                    val, i = read_uleb(code, i)
                    if reg == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_AT_CFA, val * daf, ""
                    elif reg == REG_RA:
                        ra = RA_AT_CFA_MINUS_8 if val * daf == -8 else "ra_not_at_cfa-8"
                    elif reg == REG_RBX:
                        rbx = _rbx_slot(val * daf)
                    continue
                else:  # DW_CFA_restore
                    if cie_rules is not None and reg == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = cie_rules[3:6]
                    elif cie_rules is not None and reg == REG_RA:
                        ra = cie_rules[6]
                    elif cie_rules is not None and reg == REG_RBX:
                        rbx = cie_rules[7]
                    continue
            elif op == 0x00:  # DW_CFA_nop
                continue
            elif op == 0x01:  # DW_CFA_set_loc
                if set_loc is None:
                    fail = "cfi_set_loc_unsupported"
                    break
                target, i = set_loc.decode(code, i)
                posdep = True
                delta = target - set_loc.pc_begin - loc
                if delta < 0:
                    fail = "cfi_set_loc_backwards"
                    break
            elif op <= 0x04:  # DW_CFA_advance_loc1/2/4
                size = 1 << (op - 2)
                if i + size > n:
                    raise IndexError
                delta = int.from_bytes(code[i : i + size], "little") * caf
                i += size
            elif op == 0x0E:  # DW_CFA_def_cfa_offset
                cfa_off, i = read_uleb(code, i)
                continue
            elif op == 0x0D:  # DW_CFA_def_cfa_register
                cfa_reg, i = read_uleb(code, i)
                continue
            elif op == 0x0C or op == 0x12:  # DW_CFA_def_cfa, DW_CFA_def_cfa_sf
                cfa_reg, i = read_uleb(code, i)
                if op == 0x0C:
                    cfa_off, i = read_uleb(code, i)
                else:
                    cfa_off, i = read_sleb(code, i)
                    cfa_off *= daf
                continue
            elif op == 0x0A:  # DW_CFA_remember_state
                if len(stack) >= MAX_STATE_STACK:
                    fail = "cfi_state_stack_overflow"
                    break
                stack.append((cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rbx))
                continue
            elif op == 0x0B:  # DW_CFA_restore_state
                if not stack:
                    fail = "cfi_restore_state_underflow"
                    break
                cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rbx = stack.pop()
                continue
            elif op == 0x2E:  # DW_CFA_GNU_args_size: matters for landing pads only, not for the CFA
                _, i = read_uleb(code, i)
                continue
            elif op == 0x13:  # DW_CFA_def_cfa_offset_sf
                cfa_off, i = read_sleb(code, i)
                cfa_off *= daf
                continue
            elif op == 0x0F:  # DW_CFA_def_cfa_expression
                size, i = read_uleb(code, i)
                if i + size > n:
                    raise IndexError
                cfa_reg = CFA_EXPR
                cfa_exp = match_cfa_expression(code[i : i + size])
                i += size
                continue
            elif op in (0x05, 0x11, 0x14, 0x15, 0x2F):  # offset_ext(_sf), val_offset(_sf), GNU_neg_offset_ext
                reg, i = read_uleb(code, i)
                if op == 0x11 or op == 0x15:
                    val, i = read_sleb(code, i)
                else:
                    val, i = read_uleb(code, i)
                val = -val * daf if op == 0x2F else val * daf
                if op == 0x14 or op == 0x15:
                    if reg == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_UNDEFINED, 0, "rbp_val_offset"
                    elif reg == REG_RA:
                        ra = "ra_val_offset"
                    elif reg == REG_RBX:
                        rbx = UW_RBX_LOST
                elif reg == REG_RBP:
                    rbp_kind, rbp_off, rbp_why = UW_RBP_AT_CFA, val, ""
                elif reg == REG_RA:
                    ra = RA_AT_CFA_MINUS_8 if val == -8 else "ra_not_at_cfa-8"
                elif reg == REG_RBX:
                    rbx = _rbx_slot(val)
                continue
            elif op in (0x06, 0x07, 0x08):  # DW_CFA_restore_extended, undefined, same_value
                reg, i = read_uleb(code, i)
                if op == 0x06:
                    if cie_rules is not None and reg == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = cie_rules[3:6]
                    elif cie_rules is not None and reg == REG_RA:
                        ra = cie_rules[6]
                    elif cie_rules is not None and reg == REG_RBX:
                        rbx = cie_rules[7]
                elif reg == REG_RBP:
                    rbp_kind, rbp_off, rbp_why = (UW_RBP_UNDEFINED if op == 0x07 else UW_RBP_SAME), 0, ""
                elif reg == REG_RA:
                    ra = RA_UNDEFINED if op == 0x07 else "ra_same_value"
                elif reg == REG_RBX:
                    rbx = UW_RBX_LOST if op == 0x07 else UW_RBX_SAME
                continue
            elif op == 0x09:  # DW_CFA_register
                reg, i = read_uleb(code, i)
                other, i = read_uleb(code, i)
                if reg == REG_RBP:
                    if other == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_SAME, 0, ""
                    else:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_UNDEFINED, 0, "rbp_in_register"
                elif reg == REG_RA:
                    ra = "ra_in_register"
                elif reg == REG_RBX:
                    rbx = UW_RBX_SAME if other == REG_RBX else UW_RBX_LOST
                continue
            elif op == 0x10 or op == 0x16:  # DW_CFA_expression, DW_CFA_val_expression
                reg, i = read_uleb(code, i)
                size, i = read_uleb(code, i)
                if i + size > n:
                    raise IndexError
                i += size
                if reg == REG_RBP:
                    at_rbp = _rbp_relative(code[i - size : i]) if op == 0x10 else None
                    if at_rbp is not None:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_AT_RBP, at_rbp, ""
                    else:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_UNDEFINED, 0, "rbp_expression"
                elif reg == REG_RA:
                    ra = "ra_expression"
                elif reg == REG_RBX:
                    rbx = UW_RBX_LOST
                continue
            else:
                fail = f"cfi_unknown_opcode_{op:#04x}"
                break
            if delta and table is not None:
                now = (cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rbx)
                r = rule_index(now, table, reasons)
                if r != last_rule:
                    rows.append(r << 32 | loc)
                    last_rule = r
            loc += delta
            if loc >= MAX_LOC:
                fail = "cfi_location_beyond_4gib"
                break
    except IndexError:
        fail = "cfi_truncated"
    except CfiError as exc:
        fail = f"cfi_{exc}"
    rules: Rules = (cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rbx)
    end: State = (*rules, tuple(stack))
    if fail:
        reasons.append(fail)
        r = 0
    elif table is not None:
        r = rule_index(rules, table, reasons)
    else:
        return Program((), loc, (), posdep), end
    if r != last_rule and loc < MAX_LOC:
        rows.append(r << 32 | loc)
    return Program(tuple(rows), loc, tuple(reasons), posdep), end


_LEB = rb"[\x80-\xff]*+[\x00-\x7f]"
_PLAIN = (
    rb"[\x80-\xbf\x06\x07\x08\x0d\x0e\x13\x2e]" + _LEB  # offset, and the one-operand ops
    + rb"|[\xc0-\xff\x00\x0a\x0b]"  # restore, nop, remember_state, restore_state
    + rb"|[\x05\x09\x0c\x11\x12\x14\x15\x2f]" + _LEB + _LEB  # the two-operand ops
)  # fmt: skip
_ADVANCE = rb"[\x40-\x7f]|\x02.|\x03..|\x04...."
_SPLIT = re.compile(rb"((?:" + _PLAIN + rb")*+)(?:(" + _ADVANCE + rb")|(.)|\Z)", re.DOTALL).findall
"""Program -> [(instruction run, advance, unhandled byte)]: advances and runs found in C."""


def _advance_delta(adv: bytes) -> int:
    """The unfactored delta of an advance instruction matched by _ADVANCE."""
    op = adv[0]
    return op & 0x3F if op >= 0x40 else int.from_bytes(adv[1:], "little")


class CfiContext:
    """Interprets FDE programs for CIEs sharing alignment factors and initial rules; memoizes everything.

    States are interned to ints; `_next[state][run]` is the state after an instruction run, so a program
    costs one regex call plus a dict lookup per advance.
    """

    __slots__ = (
        "_deltas", "_next", "_state_list", "_states", "_why",
        "caf", "cie_rules", "daf", "init", "memo", "rule_of", "table",
    )  # fmt: skip

    def __init__(self, caf: int, daf: int, init: State, table: RuleSet) -> None:
        self.caf = caf
        self.daf = daf
        self.init = init
        self.cie_rules: Rules = init[:8]  # type: ignore[assignment]
        self.table = table
        self.memo: dict[bytes, Program] = {}
        self._states: dict[State, int] = {}
        self._state_list: list[State] = []
        self.rule_of: list[int] = []
        self._why: list[tuple[str, ...]] = []
        self._next: list[dict[bytes, int]] = []
        self._deltas: dict[bytes, int] = {}
        self._intern(init)

    def _intern(self, state: State) -> int:
        """The id of `state`; a new state gets its rule (and reasons) computed once here."""
        sid = self._states.get(state)
        if sid is None:
            sid = self._states[state] = len(self._state_list)
            self._state_list.append(state)
            self._next.append({})
            why: list[str] = []
            self.rule_of.append(rule_index(state[:8], self.table, why))  # type: ignore[arg-type]
            self._why.append(tuple(why))
        return sid

    def program(self, code: bytes, set_loc: SetLoc | None = None) -> Program:
        """Rows of FDE program `code` (memoized unless it uses DW_CFA_set_loc)."""
        prog = self.memo.get(code)
        if prog is not None:
            return prog
        prog = self._fast(code)
        if prog is None:
            prog = interpret(code, self.caf, self.daf, self.init, self.cie_rules, self.table, set_loc)[0]
        if not prog.position_dependent:
            self.memo[code] = prog
        return prog

    def _fast(self, code: bytes) -> Program | None:
        """The memoized path; None when the program needs the byte-at-a-time interpreter."""
        state = 0
        nxt = self._next
        rule_of = self.rule_of
        why_of = self._why
        deltas = self._deltas
        rows: list[int] = []
        reasons: list[str] = []
        last = -1
        loc = 0
        for run, adv, bad in _SPLIT(code):
            if bad:
                return None
            if run:
                new = nxt[state].get(run)
                if new is None:
                    new = self._step(state, run)
                    if new < 0:
                        return None
                state = new
            if adv:
                delta = deltas.get(adv)
                if delta is None:
                    delta = _advance_delta(adv) * self.caf
                    if len(adv) <= 2:  # the 4-byte forms are too varied to be worth keeping
                        deltas[adv] = delta
                if delta:
                    r = rule_of[state]
                    if why_of[state]:
                        reasons.extend(why_of[state])
                    if r != last:
                        rows.append(r << 32 | loc)
                        last = r
                    loc += delta
                    if loc >= MAX_LOC:
                        return None
        r = rule_of[state]
        if why_of[state]:
            reasons.extend(why_of[state])
        if r != last:
            rows.append(r << 32 | loc)
        return Program(tuple(rows), loc, tuple(reasons), False)

    def _step(self, state: int, run: bytes) -> int:
        """Apply an instruction run (no advances) to interned state `state`; -1 if it fails."""
        prog, end = interpret(run, self.caf, self.daf, self._state_list[state], self.cie_rules, None)
        if prog.reasons:
            return -1
        new = self._intern(end)
        self._next[state][run] = new
        return new


def run_cie(initial: bytes, code_align: int, data_align: int) -> State:
    """The state after a CIE's initial instructions; raises CfiError when they are malformed."""
    prog, state = interpret(initial, code_align, data_align, INITIAL_STATE, None, None)
    if prog.reasons:
        raise CfiError(prog.reasons[-1].removeprefix("cfi_"))
    return state

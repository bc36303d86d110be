"""DWARF call-frame-information interpreter that tracks only what the kernel unwinder needs.

It follows the CFA, the return address (column 16) and rbp (column 6) through a CIE's initial instructions
and an FDE's program, and turns each location's state into a table rule. Everything it cannot express
becomes UW_CMD_INVALID with a reason; it never guesses. Malformed programs end in an INVALID row.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetprof.nativeunwind.table import (
    INVALID_RULE,
    STOP_RULE,
    UW_CFA_PLT,
    UW_CFA_RBP,
    UW_CFA_RBP_DEREF,
    UW_CFA_RSP,
    UW_CFA_RSP_DEREF,
    UW_RBP_AT_CFA,
    UW_RBP_SAME,
    UW_RBP_UNDEFINED,
    RuleSet,
)

REG_RBP = 6
REG_RSP = 7
REG_RA = 16

CFA_EXPR = -1
"""cfa_reg value meaning "the CFA is given by an expression" (see State.cfa_exp)."""
CFA_UNSET = -2
"""cfa_reg value before any DW_CFA_def_cfa*: no rule yet."""
RA_AT_CFA_MINUS_8 = 0
RA_UNDEFINED = 1

MAX_STATE_STACK = 256
MAX_LEB_BYTES = 10

CfaExp = tuple[int, int, int] | str
"""A recognized CFA expression as (cfa_kind, cfa_off, cfa_aux), or the reason it is unsupported."""
RaRule = int | str
"""RA_AT_CFA_MINUS_8, RA_UNDEFINED, or the reason the return-address rule is unsupported."""


@dataclass(frozen=True, slots=True)
class State:
    """The register rules the compiler tracks at one location."""

    cfa_reg: int = CFA_UNSET
    cfa_off: int = 0
    cfa_exp: CfaExp = ""
    rbp_kind: int = UW_RBP_SAME
    rbp_off: int = 0
    rbp_why: str = ""
    ra: RaRule = "ra_unspecified"


@dataclass(frozen=True, slots=True)
class Program:
    """The interpreted FDE program: rows relative to the FDE start, packed as loc << 32 | rule index."""

    rows: tuple[int, ...]
    max_loc: int
    reasons: tuple[str, ...]
    position_dependent: bool


class CfiError(Exception):
    """Malformed CFI; the message is a short reason used as a stats key."""


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
        elif op in (0x06, 0x1A, 0x22, 0x24, 0x2A) or 0x30 <= op <= 0x4F:  # deref and ge shl plus litN
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
    if first_op in (0x77, 0x76) and -(1 << 31) <= off < (1 << 31):  # breg7 (rsp) / breg6 (rbp)
        rsp = first_op == 0x77
        tail = [op for op, _ in ops[1:]]
        if not tail:
            return (UW_CFA_RSP if rsp else UW_CFA_RBP, off, 0)
        if tail == [0x06]:
            return (UW_CFA_RSP_DEREF if rsp else UW_CFA_RBP_DEREF, off, 0)
        if tail == [0x06, 0x23] and ops[2][1] < (1 << 31):
            return (UW_CFA_RSP_DEREF if rsp else UW_CFA_RBP_DEREF, off, ops[2][1])
        plt_tail = [0x80, 0x3F, 0x1A, None, 0x2A, 0x33, 0x24, 0x22]
        if rsp and len(tail) == len(plt_tail) and ops[1][1] == 0:
            lit = tail[3]
            if lit in (0x3A, 0x3B) and all(a == b for a, b in zip(tail, plt_tail, strict=True) if b is not None):
                return (UW_CFA_PLT, off, lit - 0x30)
    return "cfa_expression_unsupported"


def match_cfa_expression(block: bytes) -> CfaExp:
    """Classify a CFA expression (memoized: the same few blocks recur thousands of times)."""
    found = _EXPR_CACHE.get(block)
    if found is None:
        found = _match_expression(block)
        if len(_EXPR_CACHE) < 4096:
            _EXPR_CACHE[bytes(block)] = found
    return found


def rule_for(state: State, rules: RuleSet, reasons: list[str]) -> int:
    """Rule index for `state`, appending the reason when it is INVALID or loses rbp."""
    return _rule_index(
        state.cfa_reg, state.cfa_off, state.cfa_exp, state.rbp_kind, state.rbp_off, state.rbp_why, state.ra, rules,
        reasons,
    )  # fmt: skip


def _rule_index(
    cfa_reg: int,
    cfa_off: int,
    cfa_exp: CfaExp,
    rbp_kind: int,
    rbp_off: int,
    rbp_why: str,
    ra: RaRule,
    rules: RuleSet,
    reasons: list[str],
) -> int:
    if ra != RA_AT_CFA_MINUS_8:
        if ra == RA_UNDEFINED:
            return rules.add(STOP_RULE)
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
    elif cfa_reg == CFA_UNSET:
        reasons.append("cfa_unset")
        return 0
    else:
        reasons.append(f"cfa_register_r{cfa_reg}")
        return 0
    if not -(1 << 31) <= cfa_off < (1 << 31) or not -(1 << 31) <= rbp_off < (1 << 31):
        reasons.append("offset_out_of_range")
        return 0
    if rbp_why:
        reasons.append(rbp_why)
    key = (kind, rbp_kind, cfa_off, aux, rbp_off if rbp_kind == UW_RBP_AT_CFA else 0)
    idx = rules.index.get(key)
    if idx is None:
        idx = rules.add(key)
    return idx


def run_cie(initial: bytes, code_align: int, data_align: int) -> State:
    """The state after a CIE's initial instructions (locations are ignored there)."""
    prog, state = _run(initial, code_align, data_align, State(), None, None, None)
    if prog is not None and prog.reasons and prog.reasons[-1].startswith("cfi_"):
        raise CfiError(prog.reasons[-1])
    return state


def run_fde(
    code: bytes,
    code_align: int,
    data_align: int,
    init: State,
    rules: RuleSet,
    set_loc: SetLoc | None = None,
) -> Program:
    """Interpret one FDE program starting from the CIE's state `init`."""
    prog, _ = _run(code, code_align, data_align, init, init, rules, set_loc)
    assert prog is not None
    return prog


class SetLoc:
    """Decodes DW_CFA_set_loc operands, which depend on the FDE's position and pointer encoding."""

    __slots__ = ("decode", "pc_begin")

    def __init__(self, decode: object, pc_begin: int) -> None:
        self.decode = decode  # (code: bytes, index: int) -> (absolute address, next index)
        self.pc_begin = pc_begin


def _run(
    code: bytes,
    caf: int,
    daf: int,
    start: State,
    cie_state: State | None,
    rules: RuleSet | None,
    set_loc: SetLoc | None,
) -> tuple[Program | None, State]:
    """The interpreter loop: local variables for speed, one branch per opcode family."""
    cfa_reg = start.cfa_reg
    cfa_off = start.cfa_off
    cfa_exp = start.cfa_exp
    rbp_kind = start.rbp_kind
    rbp_off = start.rbp_off
    rbp_why = start.rbp_why
    ra = start.ra
    stack: list[tuple[int, int, CfaExp, int, int, str, RaRule]] = []
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
            if op >= 0x40:
                reg = op & 0x3F
                if op < 0x80:  # DW_CFA_advance_loc
                    if reg and rules is not None:
                        r = _rule_index(cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rules, reasons)
                        if r != last_rule:
                            rows.append(loc << 32 | r)
                            last_rule = r
                    loc += reg * caf
                    continue
                if op < 0xC0:  # DW_CFA_offset
                    val = code[i]
                    i += 1
                    if val & 0x80:
                        val, i = read_uleb(code, i - 1)
                    if reg == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_AT_CFA, val * daf, ""
                    elif reg == REG_RA:
                        ra = RA_AT_CFA_MINUS_8 if val * daf == -8 else "ra_not_at_cfa-8"
                    continue
                # DW_CFA_restore
                if cie_state is not None:
                    if reg == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = cie_state.rbp_kind, cie_state.rbp_off, cie_state.rbp_why
                    elif reg == REG_RA:
                        ra = cie_state.ra
                continue
            if op == 0x0E:  # DW_CFA_def_cfa_offset
                cfa_off = code[i]
                i += 1
                if cfa_off & 0x80:
                    cfa_off, i = read_uleb(code, i - 1)
                continue
            if op == 0x00:  # DW_CFA_nop
                continue
            if op <= 0x04:
                if op == 0x01:  # DW_CFA_set_loc
                    if set_loc is None:
                        fail = "cfi_set_loc_unsupported"
                        break
                    target, i = set_loc.decode(code, i)  # type: ignore[operator]
                    new_loc = target - set_loc.pc_begin
                    posdep = True
                    if new_loc < loc:
                        fail = "cfi_set_loc_backwards"
                        break
                    delta = new_loc - loc
                elif op == 0x02:
                    delta = code[i] * caf
                    i += 1
                elif op == 0x03:
                    if i + 2 > n:
                        raise IndexError
                    delta = int.from_bytes(code[i : i + 2], "little") * caf
                    i += 2
                else:
                    if i + 4 > n:
                        raise IndexError
                    delta = int.from_bytes(code[i : i + 4], "little") * caf
                    i += 4
                if delta and rules is not None:
                    r = _rule_index(cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rules, reasons)
                    if r != last_rule:
                        rows.append(loc << 32 | r)
                        last_rule = r
                loc += delta
                continue
            if op == 0x0D:  # DW_CFA_def_cfa_register
                cfa_reg, i = read_uleb(code, i)
                continue
            if op == 0x0C or op == 0x12:  # DW_CFA_def_cfa, DW_CFA_def_cfa_sf
                cfa_reg, i = read_uleb(code, i)
                if op == 0x0C:
                    cfa_off, i = read_uleb(code, i)
                else:
                    cfa_off, i = read_sleb(code, i)
                    cfa_off *= daf
                continue
            if op == 0x0A:  # DW_CFA_remember_state
                if len(stack) >= MAX_STATE_STACK:
                    fail = "cfi_state_stack_overflow"
                    break
                stack.append((cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra))
                continue
            if op == 0x0B:  # DW_CFA_restore_state
                if not stack:
                    fail = "cfi_restore_state_underflow"
                    break
                cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra = stack.pop()
                continue
            if op == 0x2E:  # DW_CFA_GNU_args_size: affects only exception landing, not the CFA
                _, i = read_uleb(code, i)
                continue
            if op == 0x13:  # DW_CFA_def_cfa_offset_sf
                cfa_off, i = read_sleb(code, i)
                cfa_off *= daf
                continue
            if op == 0x0F:  # DW_CFA_def_cfa_expression
                size, i = read_uleb(code, i)
                if i + size > n:
                    raise IndexError
                cfa_reg = CFA_EXPR
                cfa_exp = match_cfa_expression(code[i : i + size])
                i += size
                continue
            if op in (0x05, 0x11, 0x14, 0x15, 0x2F):  # offset_extended(_sf), val_offset(_sf), GNU_neg_offset_ext
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
                elif reg == REG_RBP:
                    rbp_kind, rbp_off, rbp_why = UW_RBP_AT_CFA, val, ""
                elif reg == REG_RA:
                    ra = RA_AT_CFA_MINUS_8 if val == -8 else "ra_not_at_cfa-8"
                continue
            if op in (0x06, 0x07, 0x08):  # restore_extended, undefined, same_value
                reg, i = read_uleb(code, i)
                if reg == REG_RBP:
                    if op == 0x06:
                        if cie_state is not None:
                            rbp_kind, rbp_off, rbp_why = cie_state.rbp_kind, cie_state.rbp_off, cie_state.rbp_why
                    else:
                        rbp_kind, rbp_off, rbp_why = (UW_RBP_UNDEFINED if op == 0x07 else UW_RBP_SAME), 0, ""
                elif reg == REG_RA:
                    if op == 0x06:
                        if cie_state is not None:
                            ra = cie_state.ra
                    else:
                        ra = RA_UNDEFINED if op == 0x07 else "ra_same_value"
                continue
            if op == 0x09:  # DW_CFA_register
                reg, i = read_uleb(code, i)
                other, i = read_uleb(code, i)
                if reg == REG_RBP:
                    if other == REG_RBP:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_SAME, 0, ""
                    else:
                        rbp_kind, rbp_off, rbp_why = UW_RBP_UNDEFINED, 0, "rbp_in_register"
                elif reg == REG_RA:
                    ra = "ra_in_register"
                continue
            if op == 0x10 or op == 0x16:  # DW_CFA_expression, DW_CFA_val_expression
                reg, i = read_uleb(code, i)
                size, i = read_uleb(code, i)
                if i + size > n:
                    raise IndexError
                i += size
                if reg == REG_RBP:
                    rbp_kind, rbp_off, rbp_why = UW_RBP_UNDEFINED, 0, "rbp_expression"
                elif reg == REG_RA:
                    ra = "ra_expression"
                continue
            if op == 0x1D:  # DW_CFA_MIPS_advance_loc8: never valid on x86-64
                fail = "cfi_mips_advance_loc8"
                break
            fail = f"cfi_unknown_opcode_{op:#04x}"
            break
    except IndexError:
        fail = "cfi_truncated"
    except CfiError as exc:
        fail = f"cfi_{exc}"
    state = State(cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra)
    if rules is None:
        if fail:
            return Program((), 0, (fail,), False), state
        return None, state
    if fail:
        reasons.append(fail)
        r = 0
    else:
        r = _rule_index(cfa_reg, cfa_off, cfa_exp, rbp_kind, rbp_off, rbp_why, ra, rules, reasons)
    if r != last_rule:
        rows.append(loc << 32 | r)
    return Program(tuple(rows), loc, tuple(reasons), posdep), state


__all__ = [
    "INVALID_RULE",
    "CfiError",
    "Program",
    "SetLoc",
    "State",
    "match_cfa_expression",
    "read_sleb",
    "read_uleb",
    "rule_for",
    "run_cie",
    "run_fde",
]

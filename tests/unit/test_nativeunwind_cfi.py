"""The CFI interpreter on hand-assembled programs: every DW_CFA_* family, the table semantics, bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetprof.nativeunwind.cfi import (
    CfiContext,
    CfiError,
    SetLoc,
    interpret,
    match_cfa_expression,
    read_sleb,
    read_uleb,
    run_cie,
)
from fleetprof.nativeunwind.table import (
    INVALID_RULE,
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
    Rule,
    RuleSet,
)

CIE_INIT = bytes([0x0C, 7, 8, 0x90, 1])  # def_cfa rsp+8; offset r16 (rip) at cfa-8
PLT_EXPR = bytes([0x77, 8, 0x80, 0, 0x3F, 0x1A, 0x3B, 0x2A, 0x33, 0x24, 0x22])


def rsp(off: int, rbp_kind: int = UW_RBP_SAME, rbp_off: int = 0) -> Rule:
    return (UW_CFA_RSP, rbp_kind, off, 0, rbp_off, 0)


def rbp(off: int, rbp_off: int = -16) -> Rule:
    return (UW_CFA_RBP, UW_RBP_AT_CFA, off, 0, rbp_off, 0)


def make_ctx(caf: int = 1, daf: int = -8, init: bytes = CIE_INIT) -> CfiContext:
    return CfiContext(caf, daf, run_cie(init, caf, daf), RuleSet())


def rows_of(code: bytes, ctx: CfiContext | None = None, set_loc: SetLoc | None = None):
    ctx = ctx or make_ctx()
    prog = ctx.program(code, set_loc)
    return [(r & 0xFFFFFFFF, ctx.table.rules[r >> 32]) for r in prog.rows], prog.reasons


def test_empty_program_is_the_cie_state():
    assert rows_of(b"") == ([(0, rsp(8))], ())


def test_frame_pointer_prologue():
    # advance 1; def_cfa_offset 16; offset rbp at cfa-16; advance 3; def_cfa_register rbp
    code = bytes([0x41, 0x0E, 16, 0x86, 2, 0x43, 0x0D, 6])
    rows, reasons = rows_of(code)
    assert rows == [(0, rsp(8)), (1, rsp(16, UW_RBP_AT_CFA, -16)), (4, rbp(16))]
    assert reasons == ()


def test_remember_restore_state_and_restore():
    code = bytes(
        [0x41, 0x0E, 16, 0x86, 2, 0x0A, 0x41, 0xC6, 0x0E, 8, 0x41, 0x0B, 0x41, 0x07, 6]
    )  # push rbp; remember; pop (restore rbp, cfa 8); restore_state; then rbp undefined
    rows, _ = rows_of(code)
    assert rows == [
        (0, rsp(8)),
        (1, rsp(16, UW_RBP_AT_CFA, -16)),
        (2, rsp(8)),
        (3, rsp(16, UW_RBP_AT_CFA, -16)),
        (4, rsp(16, UW_RBP_UNDEFINED)),
    ]


def test_restore_extended_and_same_value():
    code = bytes([0x41, 0x86, 2, 0x41, 0x06, 6, 0x41, 0x86, 2, 0x41, 0x08, 6])
    rows, _ = rows_of(code)
    assert [r for _, r in rows] == [
        rsp(8),
        rsp(8, UW_RBP_AT_CFA, -16),
        rsp(8),
        rsp(8, UW_RBP_AT_CFA, -16),
        rsp(8),
    ]


def test_undefined_return_address_stops():
    rows, reasons = rows_of(bytes([0x07, 16]))
    assert rows == [(0, STOP_RULE)] and reasons == ()


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (bytes([0x09, 16, 1]), "ra_in_register"),
        (bytes([0x90, 2]), "ra_not_at_cfa-8"),
        (bytes([0x08, 16]), "ra_same_value"),
        (bytes([0x14, 16, 1]), "ra_val_offset"),
        (bytes([0x10, 16, 2, 0x77, 0]), "ra_expression"),
        (bytes([0x0C, 16, 0]), "cfa_register_r16"),
        (bytes([0x0F, 3, 0x77, 8, 0x31]), "cfa_expression_unsupported"),
        (bytes([0x0F, 2, 0x9C, 0x06]), "cfa_expression_unsupported"),
        (bytes([0x0F, 2, 0x77, 0x80]), "cfa_expression_truncated"),
    ],
)
def test_unsupported_rules_are_invalid_with_a_reason(code, reason):
    rows, reasons = rows_of(code)
    assert rows == [(0, INVALID_RULE)]
    assert reasons == (reason,)


def test_invalid_region_inside_a_function_recovers():
    # a CFA in the return-address column for a while, then back to rsp
    code = bytes([0x45, 0x0C, 16, 0, 0x48, 0x0C, 7, 8])
    rows, reasons = rows_of(code)
    assert rows == [(0, rsp(8)), (5, INVALID_RULE), (13, rsp(8))]
    assert reasons == ("cfa_register_r16",)


def test_drap_prologue_cfa_in_r10():
    # gcc's DRAP prologue: CFA = r10 + 0 for a while (valid in the leaf frame only), then rbp-based
    code = bytes([0x45, 0x0C, 10, 0, 0x48, 0x0F, 3, 0x76, 0x78, 0x06])
    rows, reasons = rows_of(code)
    assert rows == [
        (0, rsp(8)),
        (5, (UW_CFA_REG, UW_RBP_SAME, 0, 10, 0, 0)),
        (13, (UW_CFA_RBP_DEREF, UW_RBP_SAME, -8, 0, 0, 0)),
    ]
    assert reasons == ()


@pytest.mark.parametrize(
    ("reg", "kind", "aux"),
    [(0, UW_CFA_REG, 0), (3, UW_CFA_RBX, 0), (5, UW_CFA_REG, 5), (13, UW_CFA_REG, 13), (15, UW_CFA_REG, 15)],
)
def test_cfa_in_other_registers(reg, kind, aux):
    rows, reasons = rows_of(bytes([0x0C, reg, 24]))
    assert rows == [(0, (kind, UW_RBP_SAME, 24, aux, 0, 0))] and reasons == ()


def test_rbx_based_cfa_tracks_the_rbx_save():
    # ld.so's _dl_runtime_resolve_xsavec: push rbx (CFA rsp+32, rbx at CFA-32), mov rbx, rsp (CFA rbx+32)
    code = bytes([0x0E, 24, 0x41, 0x0E, 32, 0x83, 4, 0x43, 0x0D, 3, 0x50, 0x0F, 2, 0x73, 0x20])
    rows, reasons = rows_of(code)
    assert rows == [
        (0, (UW_CFA_RSP, UW_RBP_SAME, 24, 0, 0, 0)),
        (1, (UW_CFA_RSP, UW_RBP_SAME, 32, 0, 0, -32)),
        (4, (UW_CFA_RBX, UW_RBP_SAME, 32, 0, 0, -32)),
    ]
    assert reasons == ()


@pytest.mark.parametrize(
    ("code", "rbx_off"),
    [
        (bytes([0x83, 2]), -16),  # DW_CFA_offset rbx
        (bytes([0x05, 3, 3]), -24),  # offset_extended rbx
        (bytes([0x83, 2, 0xC3]), UW_RBX_SAME),  # then DW_CFA_restore: the CIE's (unchanged)
        (bytes([0x83, 2, 0x08, 3]), UW_RBX_SAME),  # same_value
        (bytes([0x07, 3]), UW_RBX_LOST),  # undefined
        (bytes([0x09, 3, 12]), UW_RBX_LOST),  # in r12
        (bytes([0x09, 3, 3]), UW_RBX_SAME),  # in itself
        (bytes([0x14, 3, 2]), UW_RBX_LOST),  # val_offset
        (bytes([0x10, 3, 2, 0x76, 0x78]), UW_RBX_LOST),  # expression (DRAP: rbx saved at rbp-8)
        (bytes([0x05, 3, 0x80, 0x80, 0x01]), UW_RBX_LOST),  # at CFA-131072: beyond the 16-bit field
        (bytes([0x83, 2, 0x0A, 0x07, 3, 0x0B]), -16),  # remember, undefined, restore_state
    ],
)
def test_rbx_rules(code, rbx_off):
    rows, reasons = rows_of(code)
    assert rows == [(0, (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, rbx_off))] and reasons == ()


@pytest.mark.parametrize("lit", [0x3A, 0x3B])
def test_plt_expression(lit):
    expr = PLT_EXPR[:6] + bytes([lit]) + PLT_EXPR[7:]
    rows, _ = rows_of(bytes([0x0F, len(expr)]) + expr)
    assert rows == [(0, (UW_CFA_PLT, UW_RBP_SAME, 8, lit - 0x30, 0, 0))]


@pytest.mark.parametrize(
    ("expr", "rule"),
    [
        (bytes([0x76, 0x78, 0x06]), (UW_CFA_RBP_DEREF, UW_RBP_SAME, -8, 0, 0, 0)),
        (bytes([0x77, 0x10, 0x06, 0x23, 0x08]), (UW_CFA_RSP_DEREF, UW_RBP_SAME, 16, 8, 0, 0)),
        (bytes([0x77, 0x18]), (UW_CFA_RSP, UW_RBP_SAME, 24, 0, 0, 0)),
        (bytes([0x76, 0x10]), (UW_CFA_RBP, UW_RBP_SAME, 16, 0, 0, 0)),
    ],
)
def test_cfa_expressions(expr, rule):
    assert rows_of(bytes([0x0F, len(expr)]) + expr)[0] == [(0, rule)]
    assert match_cfa_expression(expr) == rule[0:1] + rule[2:4]


def test_def_cfa_offset_after_expression_keeps_the_expression():
    expr = bytes([0x76, 0x78, 0x06])
    rows, _ = rows_of(bytes([0x0F, 3]) + expr + bytes([0x41, 0x0E, 32]))
    assert rows == [(0, (UW_CFA_RBP_DEREF, UW_RBP_SAME, -8, 0, 0, 0))]


def test_def_cfa_register_after_expression_uses_the_old_offset():
    rows, _ = rows_of(bytes([0x0E, 24, 0x0F, 3, 0x76, 0x78, 0x06, 0x41, 0x0D, 7]))
    assert rows[-1] == (1, rsp(24))


def test_rbp_rules_that_cannot_be_expressed_lose_rbp_only():
    code = bytes([0x41, 0x14, 6, 2, 0x41, 0x16, 6, 2, 0x76, 0, 0x41, 0x09, 6, 3, 0x41, 0x09, 6, 6])
    rows, reasons = rows_of(code)
    assert [r for _, r in rows] == [rsp(8), rsp(8, UW_RBP_UNDEFINED), rsp(8)]
    assert [loc for loc, _ in rows] == [0, 1, 4]
    assert set(reasons) == {"rbp_val_offset", "rbp_expression", "rbp_in_register"}


def test_rbp_saved_at_rbp_by_expression():
    rows, reasons = rows_of(bytes([0x41, 0x10, 6, 2, 0x76, 0x70]))  # DW_CFA_expression rbp: breg6 -16
    assert rows[-1] == (1, rsp(8, UW_RBP_AT_RBP, -16))
    assert not reasons


def test_gnu_args_size_and_nops_are_ignored():
    rows, _ = rows_of(bytes([0x2E, 16, 0x00, 0x41, 0x2E, 0, 0x00, 0x00]))
    assert rows == [(0, rsp(8))]


def test_advance_forms_and_alignment_factors():
    code = bytes([0x02, 3, 0x0E, 16, 0x03, 1, 1, 0x0E, 24, 0x04, 0, 0, 1, 0, 0x0E, 32])
    rows, _ = rows_of(code)
    assert [loc for loc, _ in rows] == [0, 3, 3 + 257, 3 + 257 + 65536]
    rows4, _ = rows_of(code, make_ctx(caf=4))
    assert [loc for loc, _ in rows4] == [0, 12, 12 + 4 * 257, 12 + 4 * 257 + 4 * 65536]


def test_factored_and_signed_forms():
    # def_cfa_sf rsp -2 (x -8 = 16); offset_extended_sf rbp 2 (x -8 = -16); def_cfa_offset_sf -3 (= 24)
    code = bytes([0x12, 7, 0x7E, 0x11, 6, 2, 0x41, 0x13, 0x7D])
    rows, _ = rows_of(code)
    assert rows == [(0, rsp(16, UW_RBP_AT_CFA, -16)), (1, rsp(24, UW_RBP_AT_CFA, -16))]
    # GNU_negative_offset_extended rbp 2: saved at cfa+16 (negated factored offset)
    assert rows_of(bytes([0x2F, 6, 2]))[0] == [(0, rsp(8, UW_RBP_AT_CFA, 16))]
    assert rows_of(bytes([0x05, 6, 3]))[0] == [(0, rsp(8, UW_RBP_AT_CFA, -24))]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (bytes([0x41, 0x0E, 16, 0x41, 0x3F]), "cfi_unknown_opcode_0x3f"),
        (bytes([0x41, 0x0E, 16, 0x41, 0x0E]), "cfi_truncated"),
        (bytes([0x41, 0x0E, 16, 0x41, 0x0E, 0x90]), "cfi_truncated"),
        (bytes([0x41, 0x0E, 16, 0x41, 0x0B]), "cfi_restore_state_underflow"),
        (bytes([0x41, 0x0E, 16, 0x41, 0x1D]), "cfi_unknown_opcode_0x1d"),
        (bytes([0x41, 0x0E, 16, 0x41, 0x0E]) + b"\xff" * 12 + b"\x01", "cfi_leb128_too_long"),
        (bytes([0x41, 0x0E, 16, 0x41, 0x0F, 9, 0x77]), "cfi_truncated"),
        (bytes([0x41, 0x0E, 16, 0x41, 0x01, 0, 0, 0, 0]), "cfi_set_loc_unsupported"),
    ],
)
def test_malformed_programs_end_in_invalid(code, reason):
    rows, reasons = rows_of(code)
    assert rows == [(0, rsp(8)), (1, rsp(16)), (2, INVALID_RULE)]
    assert reasons[-1] == reason


def test_state_stack_is_bounded():
    rows, reasons = rows_of(bytes([0x0A]) * 100)
    assert rows == [(0, INVALID_RULE)] and reasons == ("cfi_state_stack_overflow",)


def test_location_beyond_4gib_stops_rows():
    rows, reasons = rows_of(bytes([0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0x41]), make_ctx(caf=2))
    assert rows == [(0, rsp(8))] and reasons == ("cfi_location_beyond_4gib",)


def test_set_loc_is_position_dependent():
    def decode(code: bytes, i: int) -> tuple[int, int]:
        return int.from_bytes(code[i : i + 4], "little"), i + 4

    ctx = make_ctx()
    code = bytes([0x01, 0x08, 0x10, 0, 0, 0x0E, 16])
    rows, _ = rows_of(code, ctx, SetLoc(decode, 0x1000))
    assert rows == [(0, rsp(8)), (8, rsp(16))]
    assert code not in ctx.memo
    backwards = bytes([0x41, 0x01, 0x00, 0x10, 0, 0])
    assert rows_of(backwards, ctx, SetLoc(decode, 0x1000))[1][-1] == "cfi_set_loc_backwards"


def test_cie_errors_raise():
    with pytest.raises(CfiError):
        run_cie(bytes([0x0C, 7]), 1, -8)


def test_leb128():
    assert read_uleb(bytes([0xE5, 0x8E, 0x26]), 0) == (624485, 3)
    assert read_sleb(bytes([0xC0, 0xBB, 0x78]), 0) == (-123456, 3)
    assert read_sleb(bytes([0x7F]), 0) == (-1, 1)
    with pytest.raises(IndexError):
        read_uleb(bytes([0x80]), 0)


def test_memo_is_shared_per_context():
    ctx = make_ctx()
    code = bytes([0x41, 0x0E, 16])
    assert ctx.program(code) is ctx.program(code)


_uleb_small = st.integers(0, 300).map(lambda v: bytes([v]) if v < 128 else bytes([0x80 | (v & 0x7F), v >> 7]))
_reg = st.sampled_from([3, 6, 7, 10, 16])
_instruction = st.one_of(
    st.integers(0x40, 0x7F).map(lambda op: bytes([op])),
    st.tuples(st.integers(0x80, 0xBF), _uleb_small).map(lambda t: bytes([t[0]]) + t[1]),
    st.integers(0xC0, 0xD0).map(lambda op: bytes([op])),
    st.sampled_from([b"\x00", b"\x0a", b"\x0b", b"\x02\x05", b"\x03\x00\x01", b"\x04\x10\x00\x00\x00"]),
    st.tuples(st.sampled_from([0x06, 0x07, 0x08, 0x0D, 0x0E, 0x13, 0x2E]), _reg).map(bytes),
    st.tuples(st.sampled_from([0x05, 0x09, 0x0C, 0x11, 0x12, 0x14, 0x15, 0x2F]), _reg, _uleb_small).map(
        lambda t: bytes(t[:2]) + t[2]
    ),
    st.sampled_from(
        [bytes([0x0F, len(PLT_EXPR)]) + PLT_EXPR, b"\x0f\x03\x76\x78\x06", b"\x10\x06\x02\x76\x00"]
    ),
)


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_instruction, max_size=24).map(b"".join), st.binary(max_size=3))
def test_memoized_path_matches_the_plain_interpreter(code, tail):
    """The regex/memo path and the byte-at-a-time interpreter agree on rows and reasons, garbage included."""
    for program in (code, code + tail):
        ctx = make_ctx()
        fast = ctx._fast(program)
        plain, _ = interpret(program, ctx.caf, ctx.daf, ctx.init, ctx.cie_rules, ctx.table)
        if fast is not None:
            assert fast.rows == plain.rows
            assert fast.reasons == plain.reasons
            assert fast.max_loc == plain.max_loc

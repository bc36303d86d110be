"""The userspace replay of deferred stacks (nativeunwind/replay.py) with CFAs outside rsp/rbp, on hand-built
stacks: rbx restored from a callee's save slot for an rbx-based CFA (ld.so's _dl_runtime_resolve), and a
register CFA usable after a signal frame, whose sigcontext gives every register, but nowhere else; and the
registers the kernel saved with the snapshot (rbx, the leaf's general registers) seed the replay."""

from __future__ import annotations

import struct

from fleetprof.nativeunwind.replay import StackCopy, replay
from fleetprof.nativeunwind.table import (
    SIGNAL_RULE,
    STOP_RULE,
    UW_CFA_RBP,
    UW_CFA_RBX,
    UW_CFA_REG,
    UW_CFA_RSP,
    UW_RBP_AT_CFA,
    UW_RBP_SAME,
    UW_RBX_LOST,
    UW_RBX_SAME,
    Rule,
)
from fleetprof.tracer import layout

KEY, BIAS = 7, 0x1000
BASE = 0x7000
RA = layout.FRAME_FLAG_RETURN_ADDRESS
NATIVE = layout.FRAME_NATIVE


def _stack(words: dict[int, int], size: int = 0x500) -> StackCopy:
    data = bytearray(size)
    for addr, value in words.items():
        struct.pack_into("<Q", data, addr - BASE, value)
    return StackCopy(BASE, bytes(data))


def _run(
    rules: dict[int, Rule], stack: StackCopy, pc: int = BIAS + 0x100, regs: layout.SnapshotRegs | None = None
) -> tuple[list, int]:
    """Replay from a leaf at `pc` with sp = BASE; `rules` by ELF address rounded down to 0x100."""
    regs = regs or layout.SnapshotRegs(pc=pc, sp=BASE, fp=0, return_address=0)

    def mapping(pc: int) -> tuple[int, int, int]:
        return KEY, BIAS, layout.MAPPING_FLAG_HAS_TABLE

    got = replay(regs, stack, None, mapping, lambda key, elf_pc: rules[elf_pc & ~0xFF], 16)
    return got.frames, got.error


def test_rbx_based_cfa_uses_the_rbx_its_callee_saved() -> None:
    """lookup (saved rbx at CFA-16) -> resolver (CFA = rbx + 24, caller's rbx at CFA-24) -> caller."""
    lookup: Rule = (UW_CFA_RSP, UW_RBP_SAME, 16, 0, 0, -16)
    resolver: Rule = (UW_CFA_RBX, UW_RBP_SAME, 24, 0, 0, -24)
    stack = _stack({0x7000: 0x7100, 0x7008: BIAS + 0x210, 0x7100: 0xDEAD, 0x7110: BIAS + 0x321})
    frames, error = _run({0x100: lookup, 0x200: resolver, 0x300: STOP_RULE}, stack)
    assert frames == [(NATIVE, KEY, 0x100, 0), (NATIVE, KEY, 0x210, RA), (NATIVE, KEY, 0x321, RA)]
    assert error == layout.UNWIND_COMPLETE


def test_rbx_based_cfa_without_a_known_rbx_is_an_invalid_rule() -> None:
    """The snapshot holds no rbx: unless a frame below restored it, an rbx CFA can't be followed."""
    for lookup in [(UW_CFA_RSP, UW_RBP_SAME, 16, 0, 0, 0), (UW_CFA_RSP, UW_RBP_SAME, 16, 0, 0, UW_RBX_LOST)]:
        resolver: Rule = (UW_CFA_RBX, UW_RBP_SAME, 24, 0, 0, -24)
        stack = _stack({0x7000: 0x7100, 0x7008: BIAS + 0x210})
        frames, error = _run({0x100: lookup, 0x200: resolver}, stack)
        assert frames == [(NATIVE, KEY, 0x100, 0), (NATIVE, KEY, 0x210, RA)]
        assert error == layout.UNWIND_ERR_INVALID_RULE


def _signal_stack() -> StackCopy:
    """handler (CFA rsp+8) returns into the trampoline at 0x201; its ucontext at 0x7008 holds the registers
    of the interrupted code at 0x300: r11 = 0x7400, rbx = 0x7300, rip = 0x300; main's return at 0x7400."""
    sigcontext = 0x7008 + 40
    names = ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx", "rax"]
    names += ["rcx", "rsp", "rip"]
    values = {"r11": 0x7400, "rbx": 0x7300, "rsp": 0x7200, "rip": BIAS + 0x300}
    words = {sigcontext + 8 * i: values.get(name, 0x1111 * (i + 1)) for i, name in enumerate(names)}
    words |= {0x7000: BIAS + 0x201, 0x7400: BIAS + 0x410, 0x7310: BIAS + 0x410}
    return _stack(words)


def test_register_cfa_after_a_signal_frame_reads_the_sigcontext() -> None:
    """handler -> __restore_rt -> spin (CFA = r11 + 8 from the sigcontext) -> main; the trampoline's own
    frame is not a return address (the handler returned into its first byte)."""
    handler: Rule = (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, 0)
    spin: Rule = (UW_CFA_REG, UW_RBP_SAME, 8, 11, 0, 0)
    rules = {0x100: handler, 0x200: SIGNAL_RULE, 0x300: spin, 0x400: STOP_RULE}
    frames, error = _run(rules, _signal_stack())
    assert frames == [
        (NATIVE, KEY, 0x100, 0),
        (NATIVE, KEY, 0x201, 0),
        (NATIVE, KEY, 0x300, 0),
        (NATIVE, KEY, 0x410, RA),
    ]
    assert error == layout.UNWIND_COMPLETE


def test_rbx_comes_from_the_sigcontext() -> None:
    """After a signal frame rbx is the interrupted code's: CFA = rbx + 24 = 0x7318, returning from 0x7310."""
    rules = {
        0x100: (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, 0),
        0x200: SIGNAL_RULE,
        0x300: (UW_CFA_RBX, UW_RBP_SAME, 24, 0, 0, 0),
        0x400: STOP_RULE,
    }
    frames, error = _run(rules, _signal_stack())
    assert frames[-1] == (NATIVE, KEY, 0x410, RA) and len(frames) == 4
    assert error == layout.UNWIND_COMPLETE


def test_register_cfa_past_a_return_is_an_invalid_rule() -> None:
    """A register CFA holds only for a frame whose registers are known: not for a caller found by a return."""
    rules = {0x100: (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, 0), 0x200: (UW_CFA_REG, UW_RBP_SAME, 8, 11, 0, 0)}
    frames, error = _run(rules, _stack({0x7000: BIAS + 0x210}))
    assert frames == [(NATIVE, KEY, 0x100, 0), (NATIVE, KEY, 0x210, RA)]
    assert error == layout.UNWIND_ERR_INVALID_RULE


def test_snapshot_rbx_seeds_an_rbx_cfa_at_the_leaf() -> None:
    """The kernel deferred at a leaf whose CFA is rbx + 8 (DRAP-style): the rbx it saved is used."""
    regs = layout.SnapshotRegs(pc=BIAS + 0x100, sp=BASE, fp=0, rbx=0x7200, rbx_valid=1)
    rules = {0x100: (UW_CFA_RBX, UW_RBP_SAME, 8, 0, 0, 0), 0x400: STOP_RULE}
    frames, error = _run(rules, _stack({0x7200: BIAS + 0x410}), regs=regs)
    assert frames == [(NATIVE, KEY, 0x100, 0), (NATIVE, KEY, 0x410, RA)]
    assert error == layout.UNWIND_COMPLETE
    regs.rbx_valid = 0
    assert _run(rules, _stack({0x7200: BIAS + 0x410}), regs=regs)[1] == layout.UNWIND_ERR_INVALID_RULE


def test_snapshot_leaf_registers_seed_a_register_cfa() -> None:
    """The leaf's own registers travel with the snapshot: CFA = r11 + 8 (r11 is sigcontext slot 3)."""
    regs = layout.SnapshotRegs(pc=BIAS + 0x100, sp=BASE, fp=0, regs_live=1)
    regs.gprs[3] = 0x7300
    rules = {0x100: (UW_CFA_REG, UW_RBP_SAME, 8, 11, 0, 0), 0x400: STOP_RULE}
    frames, error = _run(rules, _stack({0x7300: BIAS + 0x410}), regs=regs)
    assert frames == [(NATIVE, KEY, 0x100, 0), (NATIVE, KEY, 0x410, RA)]
    assert error == layout.UNWIND_COMPLETE
    regs.regs_live = 0
    assert _run(rules, _stack({0x7300: BIAS + 0x410}), regs=regs)[1] == layout.UNWIND_ERR_INVALID_RULE


def test_epilogue_slots_below_sp_keep_the_registers_already_popped() -> None:
    """GCC's epilogue CFI keeps "rbp/rbx saved at CFA-48" after the pops: those slots lie below sp, outside
    the snapshot, and the registers already hold the caller's values (BPF reads them only at or above sp)."""
    after_pops: Rule = (UW_CFA_RSP, UW_RBP_AT_CFA, 24, 0, -48, -56)
    caller: Rule = (UW_CFA_RBP, UW_RBP_AT_CFA, 16, 0, -16, UW_RBX_SAME)
    stack = _stack({0x7010: BIAS + 0x210, 0x7040: 0, 0x7048: BIAS + 0x321})
    regs = layout.SnapshotRegs(pc=BIAS + 0x100, sp=BASE, fp=0x7040, return_address=0, rbx=0x55, rbx_valid=1)
    frames, error = _run({0x100: after_pops, 0x200: caller, 0x300: STOP_RULE}, stack, regs=regs)
    assert frames == [(NATIVE, KEY, 0x100, 0), (NATIVE, KEY, 0x210, RA), (NATIVE, KEY, 0x321, RA)]
    assert error == layout.UNWIND_COMPLETE

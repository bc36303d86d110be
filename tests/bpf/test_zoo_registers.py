"""CFA outside rsp and rbp: gcc's stack realignment (CFA in r10, then *(rbp - 8)), a signal handler's stacks
through `__restore_rt` into hand-written assembly whose CFA is in r11, and ld.so's lazy binding, whose
`_dl_runtime_resolve_*` keeps its CFA in rbx while `_dl_fixup` and the symbol lookup run below it."""

from __future__ import annotations

import pytest
from zoo.build import Stack, ZooError
from zoo.programs import CATALOG, DRAP_EXE, LAZY_EXE, SIGNAL_EXE, Profiler, evaluate

MIN_SHARE = 0.99
INVALID_RULE = "[unwind: invalid rule]"
RESOLVER = "_dl_runtime_resolve"
ROOT = ("_start", "__libc_start_main", "__libc_start_call_main", "main")


def _stacks(zoo: Profiler, name: str) -> list[Stack]:
    try:
        return zoo.stacks(name)
    except ZooError as exc:
        pytest.fail(str(exc))


def _names(stack: Stack) -> tuple[str, ...]:
    return tuple(f.name for f in stack.user)


def _counts(stacks: list[Stack], process: str) -> dict[tuple[str, ...], int]:
    """Samples per chain of user frame names, root first."""
    out: dict[tuple[str, ...], int] = {}
    for s in stacks:
        if s.process == process:
            out[_names(s)] = out.get(_names(s), 0) + s.count
    return out


def _no_invalid_rule(stacks: list[Stack], process: str) -> None:
    bad = {" ; ".join(_names(s)) for s in stacks if s.process == process and INVALID_RULE in _names(s)}
    assert not bad, f"stacks ending in an invalid rule: {sorted(bad)[:3]}"


def _whole(stacks: list[Stack], name: str, min_selected: dict[str, int]) -> None:
    for what, got in evaluate(CATALOG[name], stacks).items():
        assert got.selected >= min_selected.get(what, 0), f"{what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{what}: {got.summary()}\n{got.worst()}"


def test_stack_realignment_is_whole(zoo: Profiler) -> None:
    """main -> drive -> realigned -> tail_work, whole whether the sample is in realigned's r10 windows, in its
    body (CFA = *(rbp - 8)) or in tail_work below it."""
    stacks = _stacks(zoo, DRAP_EXE)
    _no_invalid_rule(stacks, DRAP_EXE)
    _whole(stacks, DRAP_EXE, {"program": 500, "realigned": 100, "tail_work": 200})
    counts = _counts(stacks, DRAP_EXE)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    assert counts.get((*ROOT, "drive", "realigned"), 0) >= 100, top
    assert counts.get((*ROOT, "drive", "realigned", "tail_work"), 0) >= 200


def test_signal_handler_unwinds_into_the_interrupted_code(zoo: Profiler) -> None:
    """on_alarm -> __restore_rt -> spin_r11 (CFA in r11, read from the sigcontext) -> main, and spin_r11
    sampled directly (r11 from the sample's registers)."""
    stacks = _stacks(zoo, SIGNAL_EXE)
    _no_invalid_rule(stacks, SIGNAL_EXE)
    _whole(stacks, SIGNAL_EXE, {"program": 500, "handler": 100, "spin_r11": 200})
    counts = _counts(stacks, SIGNAL_EXE)
    through_signal = (*ROOT, "spin_r11", "__restore_rt", "on_alarm", "handler_work")
    assert counts.get(through_signal, 0) >= 100, sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    assert counts.get((*ROOT, "spin_r11"), 0) >= 200
    handler = sum(c for chain, c in counts.items() if chain[-1:] == ("handler_work",))
    assert counts[through_signal] >= 0.9 * handler, "the handler mostly interrupts spin_r11"


def test_lazy_binding_unwinds_through_dl_runtime_resolve(zoo: Profiler) -> None:
    """call_all -> _dl_runtime_resolve_* (CFA = rbx + 56) -> _dl_fixup -> the symbol lookup: rbx is
    restored from the slots the functions below saved it in."""
    stacks = _stacks(zoo, LAZY_EXE)
    _no_invalid_rule(stacks, LAZY_EXE)
    _whole(stacks, LAZY_EXE, {"program": 300, "lazy binding": 150})
    counts = _counts(stacks, LAZY_EXE)
    calls = (*ROOT, "call_all")
    below: dict[tuple[str, ...], int] = {}  # what runs under the resolver, below call_all
    for chain, c in counts.items():
        if (
            chain[: len(calls)] == calls
            and chain[len(calls) :][:1]
            and chain[len(calls)].startswith(RESOLVER)
        ):
            below[chain[len(calls) + 1 :]] = below.get(chain[len(calls) + 1 :], 0) + c
    top = sorted(below.items(), key=lambda kv: -kv[1])[:5]
    assert below.get((), 0) >= 50, top  # in the resolver itself: CFA = rbx + 56 from the live rbx
    assert below.get(("_dl_fixup",), 0) >= 10, top  # rbx from _dl_fixup's save slot
    assert below.get(("_dl_fixup", "_dl_lookup_symbol_x", "do_lookup_x"), 0) >= 5, top

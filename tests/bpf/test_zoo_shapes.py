"""Stack shapes without frame pointers: two threads with their own chains, and recursion 150 deep."""

from __future__ import annotations

import pytest
from zoo.build import ZooError
from zoo.programs import CATALOG, RECURSION_DEPTH, Profiler, evaluate

MIN_SHARE = 0.99


def _stacks(zoo: Profiler, name: str) -> list:
    try:
        return zoo.stacks(name)
    except ZooError as exc:
        pytest.fail(str(exc))


def test_threads_are_whole(zoo: Profiler) -> None:
    """Each thread's chain, from clone3 -> start_thread to its spin loop, is whole in >= 99 %."""
    stacks = _stacks(zoo, "zoo_threads")
    for what, got in evaluate(CATALOG["zoo_threads"], stacks).items():
        assert got.selected >= 200, f"{what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{what}: {got.summary()}\n{got.worst()}"
    for s in stacks:
        names = {f.name for f in s.user}
        assert not ({"alpha_main", "beta_main"} <= names), "a stack mixes both threads"


def test_recursion_150_deep_is_whole(zoo: Profiler) -> None:
    """Samples in burn() carry exactly 150 recurse frames between main and burn."""
    stacks = _stacks(zoo, "zoo_recurse")
    for what, got in evaluate(CATALOG["zoo_recurse"], stacks).items():
        assert got.selected >= 300, f"{what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{what}: {got.summary()}\n{got.worst()}"
    burn = [s for s in stacks if s.user and s.user[-1].name == "burn"]
    depths = {sum(1 for f in s.user if f.name == "recurse") for s in burn if not s.has_error}
    assert depths == {RECURSION_DEPTH}, depths

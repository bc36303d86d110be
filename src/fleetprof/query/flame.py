"""Flame graph trees (nested JSON-ready nodes) from a selection's stacks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleetprof.query.selection import Selection
from fleetprof.query.stacks import NodeKey, StackSet, gc_paused

Trie = list[Any]  # [total, self, children: dict[key index, Trie]]


def build_trie(paths: Iterable[tuple[list[int], int]]) -> Trie:
    """Merge (key path, count) pairs into a trie, root first (the cyclic GC is paused: millions of nodes)."""
    with gc_paused():
        return _build_trie(paths)


def _build_trie(paths: Iterable[tuple[list[int], int]]) -> Trie:
    """build_trie's loop."""
    root: Trie = [0, 0, {}]
    for keys, count in paths:
        node = root
        node[0] += count
        for key in keys:
            children = node[2]
            child = children.get(key)
            if child is None:
                child = children[key] = [0, 0, {}]
            child[0] += count
            node = child
        node[1] += count
    return root


def node_dict(key: NodeKey | None, trie: Trie, keys: list[NodeKey], min_total: int = 0) -> dict[str, Any]:
    """The nested node form of a trie: name, kind, module, file, line, self, total, children."""
    if key is None:
        key = NodeKey("root", "root", "root")
    children = sorted(trie[2].items(), key=lambda kv: -kv[1][0])
    return {
        "name": key.name,
        "kind": key.kind,
        "module": key.module,
        "file": key.file,
        "line": key.line,
        "self": trie[1],
        "total": trie[0],
        "children": [node_dict(keys[k], t, keys, min_total) for k, t in children if t[0] >= min_total],
    }


def tree_of(stacks: StackSet, min_fraction: float = 0.0) -> dict[str, Any]:
    """The flame tree of loaded stacks; nodes under `min_fraction` of the total are left out."""
    trie = build_trie(zip(stacks.stacks, stacks.counts, strict=True))
    with gc_paused():
        return node_dict(None, trie, stacks.keys, max(int(stacks.total * min_fraction), 1))


def flame_graph(
    store: Any, sel: Selection, min_fraction: float = 1e-4, long_range: bool = True
) -> dict[str, Any]:
    """Flame graph of `sel`: a root node over the stacks' root frames; nodes under `min_fraction` of all
    samples are left out (0 keeps every node)."""
    from fleetprof.query.longrange import load_for_range

    return tree_of(load_for_range(store, sel, long_range), min_fraction)

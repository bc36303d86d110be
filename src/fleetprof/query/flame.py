"""Flame graph trees from a selection's stacks, built level by level in numpy: nested JSON-ready nodes, or
columns (one array per field in preorder over a string table) that a browser reads without an object per
node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetprof.query.selection import QueryError, Selection
from fleetprof.query.stacks import NodeKey, StackSet

ROOT = NodeKey("root", "root", "root")


@dataclass
class Nodes:
    """A flame tree as arrays: node 0 is the root; parent, key index, total and self per node."""

    parent: np.ndarray
    key: np.ndarray
    total: np.ndarray
    self_: np.ndarray


def build_nodes(flat: np.ndarray, offsets: np.ndarray, counts: np.ndarray, min_total: int = 1) -> Nodes:
    """Merge CSR key paths into a tree one depth at a time; nodes under `min_total` end their paths."""
    n = len(counts)
    lens = offsets[1:] - offsets[:-1]
    key_space = int(flat.max()) + 2 if len(flat) else 2
    parents, keys, totals = [np.array([-1])], [np.array([-1])], [np.array([int(counts.sum())])]
    ends_node, ends_count = [], []
    node_of = np.zeros(n, np.int64)
    active = np.arange(n)
    next_id = 1
    depth = 0
    while len(active):
        ending = lens[active] == depth
        ends_node.append(node_of[active[ending]])
        ends_count.append(counts[active[ending]])
        active = active[~ending]
        if not len(active):
            break
        combo = node_of[active] * key_space + flat[offsets[active] + depth]
        uniq, inverse = np.unique(combo, return_inverse=True)
        total = np.bincount(inverse, weights=counts[active]).astype(np.int64)
        keep = total >= min_total
        ids = np.full(len(uniq), -1, np.int64)
        ids[keep] = next_id + np.arange(int(keep.sum()))
        next_id += int(keep.sum())
        parents.append(uniq[keep] // key_space)
        keys.append(uniq[keep] % key_space)
        totals.append(total[keep])
        node_of[active] = ids[inverse]
        active = active[node_of[active] >= 0]
        depth += 1
    self_ = np.zeros(next_id, np.int64)
    if ends_node:
        np.add.at(self_, np.concatenate(ends_node), np.concatenate(ends_count))
    return Nodes(np.concatenate(parents), np.concatenate(keys), np.concatenate(totals), self_)


def nodes_dict(nodes: Nodes, keys: list[NodeKey], root: NodeKey = ROOT) -> dict[str, Any]:
    """The nested form: name, kind, module, file, line, self, total, children (largest first)."""
    parent = nodes.parent.tolist()
    key = nodes.key.tolist()
    total = nodes.total.tolist()
    self_ = nodes.self_.tolist()
    out = []
    for i in range(len(parent)):
        k = keys[key[i]] if i else root
        node = {
            "name": k.name,
            "kind": k.kind,
            "module": k.module,
            "file": k.file,
            "line": k.line,
            "self": self_[i],
            "total": total[i],
            "children": [],
        }
        out.append(node)
        if i:
            out[parent[i]]["children"].append(node)
    for node in out:
        node["children"].sort(key=lambda c: -c["total"])
    return out[0]


def preorder(nodes: Nodes) -> tuple[list[int], list[int]]:
    """Node ids in preorder, children largest first (ties in id order, as nested), and their depths."""
    n = len(nodes.parent)
    by_parent = np.lexsort((np.arange(n), -nodes.total, nodes.parent)).tolist()  # root (parent -1) first
    parent = nodes.parent.tolist()
    children: list[list[int]] = [[] for _ in range(n)]
    for i in by_parent[1:]:
        children[parent[i]].append(i)
    order: list[int] = []
    depths: list[int] = []
    stack = [(0, 0)]
    while stack:
        i, depth = stack.pop()
        order.append(i)
        depths.append(depth)
        stack.extend((c, depth + 1) for c in reversed(children[i]))
    return order, depths


def nodes_columns(nodes: Nodes, keys: list[NodeKey], root: NodeKey = ROOT) -> dict[str, Any]:
    """The columnar form: `strings`, and per node in preorder name, kind, module and file (indexes into
    `strings`), line, depth, self and total."""
    order, depths = preorder(nodes)
    key, total, self_ = nodes.key.tolist(), nodes.total.tolist(), nodes.self_.tolist()
    strings: dict[str, int] = {}
    columns: dict[str, list[int]] = {c: [] for c in ("name", "kind", "module", "file", "line")}
    for i in order:
        k = keys[key[i]] if i else root
        columns["name"].append(strings.setdefault(k.name, len(strings)))
        columns["kind"].append(strings.setdefault(k.kind, len(strings)))
        columns["module"].append(strings.setdefault(k.module, len(strings)))
        columns["file"].append(strings.setdefault(k.file, len(strings)))
        columns["line"].append(k.line)
    return {
        "shape": "columns",
        "strings": list(strings),
        **columns,
        "depth": depths,
        "self": [self_[i] for i in order],
        "total": [total[i] for i in order],
    }


MAX_NODES = 20_000  # like Pyroscope's max-nodes: a browser draws no more, and the JSON stays small
SHAPES = ("nested", "columns")


def nodes_of(stacks: StackSet, min_fraction: float = 0.0, max_nodes: int = 0) -> Nodes:
    """The flame tree of loaded stacks as arrays; nodes under `min_fraction` of the total are left out, and
    past `max_nodes` nodes (0: no limit) the smallest ones too (a node's total always counts its pruned
    descendants; the threshold keeps the tree connected, since a child never outweighs its parent)."""
    min_total = max(int(stacks.total * min_fraction), 1)
    nodes = build_nodes(stacks.flat, stacks.offsets, stacks.counts, min_total)
    if max_nodes and len(nodes.total) > max_nodes:
        threshold = int(np.partition(nodes.total, -max_nodes)[-max_nodes])
        if int(np.count_nonzero(nodes.total >= threshold)) > 2 * max_nodes:  # many ties: drop them all
            threshold += 1
        nodes = build_nodes(stacks.flat, stacks.offsets, stacks.counts, max(threshold, min_total))
    return nodes


def tree_of(stacks: StackSet, min_fraction: float = 0.0, max_nodes: int = 0) -> dict[str, Any]:
    """The nested flame tree of loaded stacks (pruned as `nodes_of` says)."""
    return nodes_dict(nodes_of(stacks, min_fraction, max_nodes), stacks.keys)


def paths_tree(paths: list[tuple[list[int], int]], keys: list[NodeKey], root: NodeKey) -> dict[str, Any]:
    """A tree of arbitrary key paths (sandwich callers and callees)."""
    offsets = np.zeros(len(paths) + 1, np.int64)
    np.cumsum([len(p) for p, _ in paths], out=offsets[1:])
    flat = np.asarray([k for p, _ in paths for k in p], np.int64)
    counts = np.asarray([c for _, c in paths], np.int64)
    return nodes_dict(build_nodes(flat, offsets, counts), keys, root)


def flame_graph(
    store: Any,
    sel: Selection,
    min_fraction: float = 1e-4,
    long_range: bool = True,
    max_nodes: int = MAX_NODES,
    shape: str = "nested",
) -> dict[str, Any]:
    """Flame graph of `sel`: a root node over the stacks' root frames; nodes under `min_fraction` of all
    samples are left out, and the smallest past `max_nodes` nodes (0 and 0 keep every node). `shape` is
    "nested" (children lists) or "columns" (see `nodes_columns`)."""
    from fleetprof.query.longrange import load_for_range

    if shape not in SHAPES:
        raise QueryError(f"unknown flame graph shape {shape!r} (choose one of {', '.join(SHAPES)})")
    stacks = load_for_range(store, sel, long_range)
    nodes = nodes_of(stacks, min_fraction, max_nodes)
    return nodes_columns(nodes, stacks.keys) if shape == "columns" else nodes_dict(nodes, stacks.keys)

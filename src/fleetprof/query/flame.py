"""Flame graph trees (nested JSON-ready nodes) from a selection's stacks, built level by level in numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetprof.query.selection import Selection
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


MAX_NODES = 20_000  # like Pyroscope's max-nodes: a browser draws no more, and the JSON stays small


def tree_of(stacks: StackSet, min_fraction: float = 0.0, max_nodes: int = 0) -> dict[str, Any]:
    """The flame tree of loaded stacks; nodes under `min_fraction` of the total are left out, and past
    `max_nodes` nodes (0: no limit) the smallest ones too (a node's total always counts its pruned
    descendants; the threshold keeps the tree connected, since a child never outweighs its parent)."""
    min_total = max(int(stacks.total * min_fraction), 1)
    nodes = build_nodes(stacks.flat, stacks.offsets, stacks.counts, min_total)
    if max_nodes and len(nodes.total) > max_nodes:
        threshold = int(np.partition(nodes.total, -max_nodes)[-max_nodes])
        if int(np.count_nonzero(nodes.total >= threshold)) > 2 * max_nodes:  # many ties: drop them all
            threshold += 1
        nodes = build_nodes(stacks.flat, stacks.offsets, stacks.counts, max(threshold, min_total))
    return nodes_dict(nodes, stacks.keys)


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
) -> dict[str, Any]:
    """Flame graph of `sel`: a root node over the stacks' root frames; nodes under `min_fraction` of all
    samples are left out, and the smallest past `max_nodes` nodes (0 and 0 keep every node)."""
    from fleetprof.query.longrange import load_for_range

    return tree_of(load_for_range(store, sel, long_range), min_fraction, max_nodes)

// A flame tree flattened into preorder typed arrays: layout, hit testing, zoom paths and search run over
// these in tight loops, so a 100 k-node graph zooms and searches in a few milliseconds.

import type { FlameNode } from "../api";

export const KINDS = ["root", "process", "native", "kernel", "python", "interpreted", "error"] as const;
export type Kind = (typeof KINDS)[number];

export interface Flat {
  n: number;
  nodes: FlameNode[];
  /** Start offset and width of each node in value units (the root spans [0, value[0])). */
  x: Float64Array;
  value: Float64Array;
  depth: Uint16Array;
  parent: Int32Array;
  /** Preorder index just past the node's subtree. */
  end: Uint32Array;
  kind: Uint8Array;
  /** Index into `names` (distinct display names), for search and colours. */
  nameId: Uint32Array;
  names: string[];
  maxDepth: number;
  /** Change of share per node (diff trees only), in percentage points. */
  delta: Float32Array | null;
}

/** The width of a node: samples, or for diff trees the sum of both sides' shares. */
export type ValueOf = (node: FlameNode) => number;

/** Kind index of an API kind name (unknown kinds count as native). */
export function kindIndex(kind: string): number {
  const i = (KINDS as readonly string[]).indexOf(kind);
  return i < 0 ? 2 : i;
}

/** Flattens a nested tree (iteratively: stacks may be thousands deep) into preorder arrays. */
export function flatten(root: FlameNode, valueOf: ValueOf = (n) => n.total): Flat {
  const nodes: FlameNode[] = [];
  const parents: number[] = [];
  const depths: number[] = [];
  const stack: [FlameNode, number, number][] = [[root, -1, 0]];
  while (stack.length) {
    const [node, parent, depth] = stack.pop()!;
    nodes.push(node);
    parents.push(parent);
    depths.push(depth);
    const me = nodes.length - 1;
    for (let c = node.children.length - 1; c >= 0; c--) stack.push([node.children[c], me, depth + 1]);
  }
  const n = nodes.length;
  const flat: Flat = {
    n,
    nodes,
    x: new Float64Array(n),
    value: new Float64Array(n),
    depth: Uint16Array.from(depths, (d) => Math.min(d, 65535)),
    parent: Int32Array.from(parents),
    end: new Uint32Array(n),
    kind: new Uint8Array(n),
    nameId: new Uint32Array(n),
    names: [],
    maxDepth: 0,
    delta: root.delta_pct === undefined ? null : new Float32Array(n),
  };
  const ids = new Map<string, number>();
  const next = new Float64Array(n); // where the next child of node i starts
  for (let i = 0; i < n; i++) {
    const node = nodes[i];
    flat.value[i] = Math.max(0, valueOf(node));
    flat.kind[i] = i === 0 ? 0 : kindIndex(node.kind);
    let id = ids.get(node.name);
    if (id === undefined) {
      id = flat.names.length;
      ids.set(node.name, id);
      flat.names.push(node.name);
    }
    flat.nameId[i] = id;
    if (flat.delta) flat.delta[i] = node.delta_pct ?? 0;
    const p = flat.parent[i];
    if (p >= 0) {
      flat.x[i] = next[p];
      next[p] += flat.value[i];
    }
    next[i] = flat.x[i];
    if (flat.depth[i] > flat.maxDepth) flat.maxDepth = flat.depth[i];
  }
  // end[i]: one past the last descendant; children come after their parent, so a backward pass suffices.
  for (let i = 0; i < n; i++) flat.end[i] = i + 1;
  for (let i = n - 1; i > 0; i--) {
    const p = flat.parent[i];
    if (flat.end[i] > flat.end[p]) flat.end[p] = flat.end[i];
  }
  return flat;
}

/** The node under value offset `vx` at row `depth`, or -1: a descent from the root through children. */
export function hitTest(flat: Flat, vx: number, depth: number): number {
  if (flat.n === 0 || depth < 0) return -1;
  let i = 0;
  if (vx < flat.x[0] || vx >= flat.x[0] + flat.value[0]) return -1;
  for (let d = 0; d < depth; d++) {
    let child = i + 1;
    let found = -1;
    while (child < flat.end[i]) {
      if (vx >= flat.x[child] && vx < flat.x[child] + flat.value[child]) {
        found = child;
        break;
      }
      child = flat.end[child];
    }
    if (found < 0) return -1;
    i = found;
  }
  return i;
}

/** The chain of node indexes from the root to `i` (inclusive). */
export function ancestors(flat: Flat, i: number): number[] {
  const out: number[] = [];
  for (let at = i; at >= 0; at = flat.parent[at]) out.push(at);
  return out.reverse();
}

/** Names from the root's child down to `i`: how a zoom is kept in the URL. */
export function pathOf(flat: Flat, i: number): string[] {
  return ancestors(flat, i)
    .slice(1)
    .map((a) => flat.nodes[a].name);
}

/** The node a name path leads to (as deep as it still matches), 0 for the root. */
export function findPath(flat: Flat, path: string[]): number {
  let i = 0;
  for (const name of path) {
    let child = i + 1;
    let found = -1;
    while (child < flat.end[i]) {
      if (flat.nodes[child].name === name) {
        found = child;
        break;
      }
      child = flat.end[child];
    }
    if (found < 0) break;
    i = found;
  }
  return i;
}

/** The function name of a display name: without " [module]", "_[k]" or " (file:line)". */
export function functionOf(node: FlameNode): string {
  const name = node.name;
  if (node.kind === "kernel" && name.endsWith("_[k]")) return name.slice(0, -4);
  if (node.module && name.endsWith(` [${node.module}]`)) return name.slice(0, -(node.module.length + 3));
  if (node.file) {
    const suffix = ` (${node.file}:${node.line})`;
    if (name.endsWith(suffix)) return name.slice(0, -suffix.length);
  }
  return name;
}

/** The largest node whose function is `fn` (-1 when none). */
export function largestOf(flat: Flat, fn: string): number {
  let best = -1;
  for (let i = 1; i < flat.n; i++) {
    if ((best < 0 || flat.value[i] > flat.value[best]) && functionOf(flat.nodes[i]) === fn) best = i;
  }
  return best;
}

export interface SearchResult {
  /** Per distinct name: does it match? */
  matched: Uint8Array;
  /** Nodes that match. */
  count: number;
  /** Share of the root's value covered by matching nodes (nested matches counted once), 0..1. */
  share: number;
}

/** Case-insensitive substring search (or /regex/) over distinct names; `null` for an empty query. */
export function search(flat: Flat, query: string): SearchResult | null {
  const text = query.trim();
  if (!text) return null;
  let test: (name: string) => boolean;
  const re = /^\/(.+)\/$/.exec(text);
  if (re) {
    try {
      const rx = new RegExp(re[1], "i");
      test = (name) => rx.test(name);
    } catch {
      const lower = text.toLowerCase();
      test = (name) => name.toLowerCase().includes(lower);
    }
  } else {
    const lower = text.toLowerCase();
    test = (name) => name.toLowerCase().includes(lower);
  }
  const matched = new Uint8Array(flat.names.length);
  flat.names.forEach((name, id) => (matched[id] = test(name) ? 1 : 0));
  let count = 0;
  let covered = 0;
  let until = 0;
  for (let i = 1; i < flat.n; i++) {
    if (!matched[flat.nameId[i]]) continue;
    count++;
    if (i >= until) {
      covered += flat.value[i];
      until = flat.end[i];
    }
  }
  const total = flat.value[0] || 1;
  return { matched, count, share: covered / total };
}

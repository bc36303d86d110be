// A flame tree as preorder typed arrays plus a string table: layout, hit testing, zoom paths and search run
// over these in tight loops, so a 100 k-node graph zooms and searches in a few milliseconds. The server's
// columnar answer becomes these arrays without one object per node; nested trees (diff, sandwich) are
// flattened into the same shape.

import type { FlameColumns, FlameNode } from "../api";

export const KINDS = ["root", "process", "native", "kernel", "python", "interpreted", "error"] as const;
export type Kind = (typeof KINDS)[number];

/** The per-side figures of a diff tree's nodes. */
export interface Sides {
  baseTotal: Float64Array;
  cmpTotal: Float64Array;
  baseSelf: Float64Array;
  cmpSelf: Float64Array;
}

export interface Flat {
  n: number;
  /** Distinct strings (names, modules, files); the *Id arrays index into it. */
  strings: string[];
  nameId: Uint32Array;
  moduleId: Uint32Array;
  fileId: Uint32Array;
  line: Int32Array;
  self: Float64Array;
  total: Float64Array;
  /** Start offset and width of each node in value units (the root spans [0, value[0])). */
  x: Float64Array;
  value: Float64Array;
  depth: Uint16Array;
  parent: Int32Array;
  /** Preorder index just past the node's subtree. */
  end: Uint32Array;
  kind: Uint8Array;
  maxDepth: number;
  /** Change of share per node (diff trees only), in percentage points. */
  delta: Float32Array | null;
  sides: Sides | null;
}

/** One node's fields as the API names them (without children): tooltips, breadcrumbs, function names. */
export type FrameInfo = Omit<FlameNode, "children">;

/** The width of a node: samples, or for diff trees the sum of both sides' shares. */
export type ValueOf = (node: FlameNode) => number;

/** Kind index of an API kind name (unknown kinds count as native). */
export function kindIndex(kind: string): number {
  const i = (KINDS as readonly string[]).indexOf(kind);
  return i < 0 ? 2 : i;
}

/** Empty per-node arrays for `n` nodes over `strings`. */
function alloc(n: number, strings: string[]): Flat {
  return {
    n,
    strings,
    nameId: new Uint32Array(n),
    moduleId: new Uint32Array(n),
    fileId: new Uint32Array(n),
    line: new Int32Array(n),
    self: new Float64Array(n),
    total: new Float64Array(n),
    x: new Float64Array(n),
    value: new Float64Array(n),
    depth: new Uint16Array(n),
    parent: new Int32Array(n),
    end: new Uint32Array(n),
    kind: new Uint8Array(n),
    maxDepth: 0,
    delta: null,
    sides: null,
  };
}

/** Offsets (children side by side from their parent's start, largest first as given), subtree ends and the
 * deepest row, from parent, depth and value. */
function place(flat: Flat): Flat {
  const { n, x, value, parent, end, depth } = flat;
  const next = new Float64Array(n); // where the next child of node i starts
  let maxDepth = 0;
  for (let i = 0; i < n; i++) {
    const p = parent[i];
    if (p >= 0) {
      x[i] = next[p];
      next[p] += value[i];
    }
    next[i] = x[i];
    if (depth[i] > maxDepth) maxDepth = depth[i];
    end[i] = i + 1;
  }
  // Children come after their parent, so one backward pass carries subtree ends up.
  for (let i = n - 1; i > 0; i--) {
    const p = parent[i];
    if (end[i] > end[p]) end[p] = end[i];
  }
  flat.maxDepth = maxDepth;
  return flat;
}

/** Flattens a nested tree (iteratively: stacks may be thousands deep) into preorder arrays. */
export function flatten(root: FlameNode, valueOf: ValueOf = (n) => n.total): Flat {
  const order: FlameNode[] = [];
  const parents: number[] = [];
  const depths: number[] = [];
  const stack: [FlameNode, number, number][] = [[root, -1, 0]];
  while (stack.length) {
    const [node, parent, depth] = stack.pop()!;
    order.push(node);
    parents.push(parent);
    depths.push(depth);
    const me = order.length - 1;
    for (let c = node.children.length - 1; c >= 0; c--) stack.push([node.children[c], me, depth + 1]);
  }
  const strings: string[] = [];
  const ids = new Map<string, number>();
  const intern = (s: string): number => {
    let id = ids.get(s);
    if (id === undefined) {
      id = strings.push(s) - 1;
      ids.set(s, id);
    }
    return id;
  };
  const n = order.length;
  const flat = alloc(n, strings);
  const isDiff = root.delta_pct !== undefined;
  if (isDiff) {
    flat.delta = new Float32Array(n);
    flat.sides = { baseTotal: new Float64Array(n), cmpTotal: new Float64Array(n), baseSelf: new Float64Array(n), cmpSelf: new Float64Array(n) };
  }
  for (let i = 0; i < n; i++) {
    const node = order[i];
    flat.parent[i] = parents[i];
    flat.depth[i] = Math.min(depths[i], 65535);
    flat.nameId[i] = intern(node.name);
    flat.moduleId[i] = intern(node.module ?? "");
    flat.fileId[i] = intern(node.file ?? "");
    flat.line[i] = node.line ?? 0;
    flat.self[i] = node.self ?? 0;
    flat.total[i] = node.total ?? 0;
    flat.kind[i] = i === 0 ? 0 : kindIndex(node.kind);
    flat.value[i] = Math.max(0, valueOf(node));
    if (flat.delta && flat.sides) {
      flat.delta[i] = node.delta_pct ?? 0;
      flat.sides.baseTotal[i] = node.base_total ?? 0;
      flat.sides.cmpTotal[i] = node.cmp_total ?? 0;
      flat.sides.baseSelf[i] = node.base_self ?? 0;
      flat.sides.cmpSelf[i] = node.cmp_self ?? 0;
    }
  }
  return place(flat);
}

/** Error for a columnar answer whose columns do not describe a preorder tree. */
export class ShapeError extends Error {}

/** The arrays of the server's columnar answer (preorder, depth per node, string ids): no object per node.
 * Raises ShapeError for columns of different lengths or depths that skip a level. */
export function fromColumns(c: FlameColumns): Flat {
  const n = c.depth.length;
  for (const key of ["name", "kind", "module", "file", "line", "self", "total"] as const) {
    if (c[key].length !== n) throw new ShapeError(`flame graph answer: column ${key} has ${c[key].length} values, depth ${n}`);
  }
  const flat = alloc(n, c.strings);
  if (n === 0) return flat;
  const kindOf = new Map<number, number>();
  const chain = new Int32Array(Math.min(n, 65536) + 1); // chain[d]: the latest node at depth d
  chain[0] = 0;
  let prev = -1;
  for (let i = 0; i < n; i++) {
    const d = c.depth[i];
    if (!(d >= 0 && d <= prev + 1 && d < chain.length - 1) || (i > 0 && d === 0)) {
      throw new ShapeError(`flame graph answer: node ${i} at depth ${d} after depth ${prev}`);
    }
    chain[d] = i;
    flat.parent[i] = d ? chain[d - 1] : -1;
    flat.depth[i] = d;
    prev = d;
    flat.nameId[i] = c.name[i];
    flat.moduleId[i] = c.module[i];
    flat.fileId[i] = c.file[i];
    flat.line[i] = c.line[i];
    flat.self[i] = c.self[i];
    const total = c.total[i];
    flat.total[i] = total;
    flat.value[i] = total > 0 ? total : 0;
    const k = c.kind[i];
    let kind = kindOf.get(k);
    if (kind === undefined) {
      kind = kindIndex(c.strings[k] ?? "");
      kindOf.set(k, kind);
    }
    flat.kind[i] = i === 0 ? 0 : kind;
  }
  return place(flat);
}

/** The display name of node i. */
export function nameOf(flat: Flat, i: number): string {
  return flat.strings[flat.nameId[i]] ?? "";
}

/** Node i's fields as the API names them. */
export function info(flat: Flat, i: number): FrameInfo {
  const node: FrameInfo = {
    name: nameOf(flat, i),
    kind: KINDS[flat.kind[i]],
    module: flat.strings[flat.moduleId[i]] ?? "",
    file: flat.strings[flat.fileId[i]] ?? "",
    line: flat.line[i],
    self: flat.self[i],
    total: flat.total[i],
  };
  if (flat.delta && flat.sides) {
    node.delta_pct = flat.delta[i];
    node.base_total = flat.sides.baseTotal[i];
    node.cmp_total = flat.sides.cmpTotal[i];
    node.base_self = flat.sides.baseSelf[i];
    node.cmp_self = flat.sides.cmpSelf[i];
  }
  return node;
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
    .map((a) => nameOf(flat, a));
}

/** The node a name path leads to (as deep as it still matches), 0 for the root. */
export function findPath(flat: Flat, path: string[]): number {
  let i = 0;
  if (flat.n === 0) return 0;
  for (const name of path) {
    let child = i + 1;
    let found = -1;
    while (child < flat.end[i]) {
      if (nameOf(flat, child) === name) {
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
export function functionOf(node: Pick<FrameInfo, "name" | "kind" | "module" | "file" | "line">): string {
  const name = node.name;
  if (node.kind === "kernel" && name.endsWith("_[k]")) return name.slice(0, -4);
  if (node.module && name.endsWith(` [${node.module}]`)) return name.slice(0, -(node.module.length + 3));
  if (node.file) {
    const suffix = ` (${node.file}:${node.line})`;
    if (name.endsWith(suffix)) return name.slice(0, -suffix.length);
  }
  return name;
}

/** The largest node whose function is `fn` (-1 when none); only nodes whose name contains `fn` are decoded. */
export function largestOf(flat: Flat, fn: string): number {
  const candidate = new Uint8Array(flat.strings.length);
  flat.strings.forEach((s, id) => (candidate[id] = s.includes(fn) ? 1 : 0));
  let best = -1;
  for (let i = 1; i < flat.n; i++) {
    if (!candidate[flat.nameId[i]] || (best >= 0 && flat.value[i] <= flat.value[best])) continue;
    if (functionOf(info(flat, i)) === fn) best = i;
  }
  return best;
}

export interface SearchResult {
  /** Per string id: does it match? */
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
  const matched = new Uint8Array(flat.strings.length);
  flat.strings.forEach((name, id) => (matched[id] = test(name) ? 1 : 0));
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

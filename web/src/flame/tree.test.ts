import { describe, expect, it } from "vitest";
import type { FlameColumns, FlameNode } from "../api";
import { ShapeError, ancestors, findPath, flatten, fromColumns, functionOf, hitTest, info, largestOf, nameOf, pathOf, search } from "./tree";

function node(name: string, total: number, children: FlameNode[] = [], extra: Partial<FlameNode> = {}): FlameNode {
  const sum = children.reduce((a, c) => a + c.total, 0);
  return { name, kind: "native", module: "", file: "", line: 0, self: total - sum, total, children, ...extra };
}

const tree = node("root", 100, [
  node("proc", 100, [node("main", 60, [node("hot", 40), node("cold", 20)]), node("other", 30, [node("hot", 10)])]),
]);

describe("flatten", () => {
  const f = flatten(tree);
  it("lays out preorder with offsets, depths and subtree ends", () => {
    expect(Array.from(f.nameId, (id) => f.strings[id])).toEqual(["root", "proc", "main", "hot", "cold", "other", "hot"]);
    expect(Array.from(f.x)).toEqual([0, 0, 0, 0, 40, 60, 60]);
    expect(Array.from(f.depth)).toEqual([0, 1, 2, 3, 3, 2, 3]);
    expect(Array.from(f.end)).toEqual([7, 7, 5, 4, 5, 7, 7]);
    expect(f.maxDepth).toBe(3);
    expect(new Set(f.nameId).size).toBe(6);
  });

  it("flattens stacks thousands of frames deep without recursion", () => {
    let deep = node("leaf", 1);
    for (let i = 0; i < 20000; i++) deep = node(`f${i}`, 1, [deep]);
    expect(flatten(deep).maxDepth).toBe(20000);
  });

  it("hit-tests by value offset and depth", () => {
    expect(nameOf(f, hitTest(f, 45, 3))).toBe("cold");
    expect(hitTest(f, 65, 3)).toBe(6);
    expect(hitTest(f, 95, 3)).toBe(-1);
    expect(hitTest(f, 5, 9)).toBe(-1);
  });

  it("keeps zoom as a name path", () => {
    expect(pathOf(f, 6)).toEqual(["proc", "other", "hot"]);
    expect(findPath(f, ["proc", "other", "hot"])).toBe(6);
    expect(findPath(f, ["proc", "missing"])).toBe(1);
    expect(ancestors(f, 4)).toEqual([0, 1, 2, 4]);
  });

  it("finds the largest frame of a function", () => {
    expect(largestOf(f, "hot")).toBe(3);
    expect(largestOf(f, "nope")).toBe(-1);
  });
});

describe("search", () => {
  const f = flatten(tree);
  it("counts matches and their share once for nested matches", () => {
    const r = search(f, "HOT")!;
    expect(r.count).toBe(2);
    expect(r.share).toBeCloseTo(0.5);
    expect(search(f, "o")!.share).toBeCloseTo(1); // proc covers everything
    expect(search(f, "  ")).toBeNull();
  });
  it("accepts /regex/ and falls back to text for bad ones", () => {
    expect(search(f, "/^c.ld$/")!.count).toBe(1);
    expect(search(f, "/(/")!.count).toBe(0);
  });
});

describe("functionOf", () => {
  it("strips module, kernel and file:line decorations", () => {
    expect(functionOf(node("memcpy [libc.so.6]", 1, [], { module: "libc.so.6" }))).toBe("memcpy");
    expect(functionOf(node("do_syscall_64_[k]", 1, [], { kind: "kernel", module: "[kernel]" }))).toBe("do_syscall_64");
    expect(functionOf(node("run (/a.py:3)", 1, [], { kind: "python", file: "/a.py", line: 3 }))).toBe("run");
    expect(functionOf(node("plain", 1))).toBe("plain");
  });
});

/** The columnar answer of the server for a nested tree (what /api/v1/flamegraph?shape=columns sends). */
function columnsOf(root: FlameNode): FlameColumns {
  const c: FlameColumns = { strings: [], name: [], kind: [], module: [], file: [], line: [], depth: [], self: [], total: [] };
  const id = (s: string) => (c.strings.includes(s) ? c.strings.indexOf(s) : c.strings.push(s) - 1);
  const stack: [FlameNode, number][] = [[root, 0]];
  while (stack.length) {
    const [n, d] = stack.pop()!;
    c.name.push(id(n.name));
    c.kind.push(id(n.kind));
    c.module.push(id(n.module));
    c.file.push(id(n.file));
    c.line.push(n.line);
    c.depth.push(d);
    c.self.push(n.self);
    c.total.push(n.total);
    for (let k = n.children.length - 1; k >= 0; k--) stack.push([n.children[k], d + 1]);
  }
  return c;
}

describe("fromColumns", () => {
  const nested = node("root", 100, [
    node("proc", 100, [node("main", 60, [node("hot", 40, [], { kind: "python", file: "/a.py", line: 3 }), node("cold", 20)]), node("other", 30, [node("hot", 10)])]),
  ], { kind: "root" });
  it("gives the same layout as the nested tree", () => {
    const a = flatten(nested);
    const b = fromColumns(columnsOf(nested));
    for (const key of ["x", "value", "depth", "parent", "end", "kind", "self", "total", "line"] as const) {
      expect(Array.from(b[key])).toEqual(Array.from(a[key]));
    }
    expect(b.maxDepth).toBe(a.maxDepth);
    expect(Array.from({ length: b.n }, (_, i) => nameOf(b, i))).toEqual(Array.from({ length: a.n }, (_, i) => nameOf(a, i)));
    expect(info(b, 3)).toMatchObject({ name: "hot", kind: "python", file: "/a.py", line: 3, self: 40, total: 40 });
    expect(search(b, "hot")!.count).toBe(2);
  });

  it("rejects columns that do not describe a preorder tree", () => {
    const good = columnsOf(nested);
    expect(() => fromColumns({ ...good, self: good.self.slice(1) })).toThrow(ShapeError);
    expect(() => fromColumns({ ...good, depth: [0, 1, 3, 3, 3, 2, 3] })).toThrow(/depth 3 after depth 1/);
    expect(() => fromColumns({ ...good, depth: [0, 1, 2, 0, 3, 2, 3] })).toThrow(ShapeError);
    expect(fromColumns({ strings: [], name: [], kind: [], module: [], file: [], line: [], depth: [], self: [], total: [] }).n).toBe(0);
  });

  it("ends each subtree where the next node at its depth or above starts", () => {
    const c: FlameColumns = { strings: ["root", "root", "", "f"], name: [0], kind: [1], module: [2], file: [2], line: [0], depth: [0], self: [0], total: [1000] };
    for (let i = 1; i <= 1000; i++) {
      c.name.push(3); c.kind.push(3); c.module.push(2); c.file.push(2); c.line.push(0);
      c.depth.push(1 + ((i - 1) % 50)); c.self.push(1); c.total.push(50 - ((i - 1) % 50));
    }
    const f = fromColumns(c);
    expect(f.maxDepth).toBe(50);
    expect(f.end[1]).toBe(51);
    expect(f.parent[51]).toBe(0);
    expect(f.x[51]).toBe(50);
  });
});

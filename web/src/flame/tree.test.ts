import { describe, expect, it } from "vitest";
import type { FlameNode } from "../api";
import { ancestors, findPath, flatten, functionOf, hitTest, largestOf, pathOf, search } from "./tree";

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
    expect(f.nodes.map((n) => n.name)).toEqual(["root", "proc", "main", "hot", "cold", "other", "hot"]);
    expect(Array.from(f.x)).toEqual([0, 0, 0, 0, 40, 60, 60]);
    expect(Array.from(f.depth)).toEqual([0, 1, 2, 3, 3, 2, 3]);
    expect(Array.from(f.end)).toEqual([7, 7, 5, 4, 5, 7, 7]);
    expect(f.maxDepth).toBe(3);
    expect(f.names.length).toBe(6);
  });

  it("flattens stacks thousands of frames deep without recursion", () => {
    let deep = node("leaf", 1);
    for (let i = 0; i < 20000; i++) deep = node(`f${i}`, 1, [deep]);
    expect(flatten(deep).maxDepth).toBe(20000);
  });

  it("hit-tests by value offset and depth", () => {
    expect(f.nodes[hitTest(f, 45, 3)].name).toBe("cold");
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

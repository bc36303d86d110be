import { describe, expect, it } from "vitest";
import type { FlameNode } from "../api";
import { diffBucket, diffColor, shadeOf } from "./colors";
import { FlameGraph, fillTooltip, location, truncate } from "./render";
import { flatten } from "./tree";

const EVIL = "<img src=x onerror=alert(1)>";
const tree: FlameNode = {
  name: "root", kind: "root", module: "", file: "", line: 0, self: 0, total: 10,
  children: [{ name: EVIL, kind: "python", module: "", file: "/srv/<b>.py", line: 7, self: 10, total: 10, children: [] }],
};

describe("render helpers", () => {
  it("truncates labels with an ellipsis", () => {
    expect(truncate("abcdef", 4)).toBe("abc…");
    expect(truncate("abc", 4)).toBe("abc");
    expect(truncate("abc", 2)).toBe("");
  });

  it("gives file:line for interpreted frames and the module for native ones", () => {
    const f = flatten(tree);
    expect(location(f, 1)).toBe("/srv/<b>.py:7");
    const n = flatten({ ...tree, children: [{ ...tree.children[0], kind: "native", module: "libc.so.6", file: "" }] });
    expect(location(n, 1)).toBe("libc.so.6");
  });

  it("fills the tooltip with text, never markup", () => {
    const el = document.createElement("div");
    fillTooltip(el, flatten(tree), 1, 0);
    expect(el.querySelector("img")).toBeNull();
    expect(el.textContent).toContain(EVIL);
    expect(el.textContent).toContain("100.0% of all");
  });

  it("exports SVG with names escaped", () => {
    HTMLCanvasElement.prototype.getContext = () => null; // jsdom has no 2D context; the SVG needs none
    const box = document.createElement("div");
    document.body.append(box);
    const g = new FlameGraph(box);
    g.setData(flatten(tree));
    const svg = g.toSvg();
    expect(svg).toContain("&lt;img src=x onerror=alert(1)&gt;");
    expect(svg).not.toContain("<img");
  });

  it("maps changes onto a symmetric red/green scale", () => {
    expect(diffBucket(5, 5)).toBe(10);
    expect(diffBucket(-50, 5)).toBe(-10);
    expect(diffBucket(0, 5)).toBe(0);
    expect(diffColor(10)).toMatch(/^hsl\(0,/);
    expect(diffColor(-10)).toMatch(/^hsl\(120,/);
    expect(shadeOf("main")).toBe(shadeOf("main"));
  });
});

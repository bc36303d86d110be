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

  it("lays out a zoom: ancestors full width, the zoomed subtree scaled, siblings and thin frames left out", () => {
    HTMLCanvasElement.prototype.getContext = () => null;
    const box = document.createElement("div");
    document.body.append(box);
    const leaf = (name: string, total: number): FlameNode => ({ name, kind: "native", module: "", file: "", line: 0, self: total, total, children: [] });
    const big: FlameNode = {
      name: "root", kind: "root", module: "", file: "", line: 0, self: 0, total: 10000,
      children: [{ ...leaf("a", 6000), self: 0, children: [leaf("a1", 5999), leaf("thin", 1)] }, leaf("b", 4000)],
    };
    const g = new FlameGraph(box);
    g.setData(flatten(big));
    const rects = (zoom: number) => {
      g.setZoom(zoom);
      const out: string[] = [];
      g.layout(1000, (r) => out.push(`${g.flat!.strings[g.flat!.nameId[r.i]]}@${r.y / 18}:${Math.round(r.x)}+${Math.round(r.w)}`));
      return out;
    };
    expect(rects(0)).toEqual(["root@0:0+1000", "a@1:0+600", "a1@2:0+600", "b@1:600+400"]);
    expect(rects(1)).toEqual(["root@0:0+1000", "a@1:0+1000", "a1@2:0+1000"]);
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

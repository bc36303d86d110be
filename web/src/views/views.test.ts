import { describe, expect, it } from "vitest";
import { classify } from "../api";
import { h } from "../dom";
import { ago, co2, compact, money, pct } from "../format";
import { diffValue, summarize } from "./diff";
import { lastInterval } from "./hosts";
import { filterRows, sortRows } from "./table";
import { fitRange, stack } from "./series";

const rows = [
  { function: "b", module: "libx.so", file: "", self: 5 },
  { function: "a", module: "", file: "/srv/app.py", self: 5 },
  { function: "c", module: "libc.so.6", file: "", self: 9 },
];

describe("tables", () => {
  it("sorts numbers and text, ties by function", () => {
    expect(sortRows(rows, "self", "desc").map((r) => r.function)).toEqual(["c", "a", "b"]);
    expect(sortRows(rows, "function", "asc").map((r) => r.function)).toEqual(["a", "b", "c"]);
  });
  it("filters by every word over function, module and file", () => {
    expect(filterRows(rows, "app.py").map((r) => r.function)).toEqual(["a"]);
    expect(filterRows(rows, "LIB so").length).toBe(2);
    expect(filterRows(rows, " ").length).toBe(3);
  });
});

describe("timeline range fitting", () => {
  const hour = (values: number[]) => ({
    group_by: "process",
    step_s: 18,
    times_ns: values.map((_, i) => (1_700_000_000_000 + i * 18_000) * 1e6),
    series: [{ group: "p", values, total: values.reduce((a, b) => a + b, 0) }],
  });
  it("narrows a range whose data is a bar at the right edge to the data, with finer buckets", () => {
    const values = new Array(200).fill(0);
    values[199] = 40;
    const fit = fitRange(hour(values))!;
    const end = 1_700_000_000_000 + 200 * 18_000;
    expect(fit.endMs).toBe(end);
    expect(fit.startMs).toBeLessThanOrEqual(end - 18_000);
    expect(fit.startMs).toBeGreaterThan(end - 2 * 18_000);
    expect(fit.stepS).toBe(1);
  });
  it("keeps a range the data spreads over, and empty or already fine ones", () => {
    const spread = new Array(200).fill(0);
    spread[20] = 1;
    spread[199] = 1;
    expect(fitRange(hour(spread))).toBeNull();
    expect(fitRange(hour(new Array(200).fill(0)))).toBeNull();
    const fine = { ...hour([0, 0, 0, 0, 0, 0, 0, 0, 0, 5]), step_s: 1 };
    expect(fitRange(fine)).toBeNull();
  });
});

describe("timeline, hosts, diff", () => {
  it("stacks series cumulatively", () => {
    expect(stack([[1, 2], [3, 4], [0, 1]])).toEqual([[1, 2], [4, 6], [4, 7]]);
  });
  it("takes each host's latest non-empty bucket", () => {
    const t = { group_by: "host", step_s: 5, times_ns: [0, 1, 2], series: [{ group: "a", values: [3, 7, 0], total: 10 }] };
    expect(lastInterval(t).get("a")).toBe(7);
  });
  it("sizes diff nodes by both shares and summarizes per year", () => {
    expect(diffValue(10, 20)({ base_total: 5, cmp_total: 10 })).toBeCloseTo(1);
    const s = summarize({ base_samples: 1, cmp_samples: 1, base_cpu_s: 10, cmp_cpu_s: 20, cpu_change_pct: 100 }, 10, 10);
    expect(s.cpuChangePct).toBeCloseTo(100);
    expect(s.coresDelta).toBeCloseTo(1);
    expect(s.costPerYear).toBeCloseTo(0.0425 * 24 * 365);
  });
});

describe("errors, formatting, DOM", () => {
  it("tells the user what to do", () => {
    expect(classify(400, "bad time").kind).toBe("input");
    expect(classify(413, "").hint).toMatch(/shorter time range/);
    expect(classify(500, "memory limit exceeded").kind).toBe("broad");
    expect(classify(503, "store: down").kind).toBe("server");
  });
  it("formats numbers", () => {
    expect(compact(1_234_567)).toBe("1.23 M");
    expect(pct(0.001)).toBe("<0.01%");
    expect(co2(0.0054)).toBe("5.40 g");
    expect(money(12_345)).toBe("$12.3 k");
    expect(ago(0, 5000)).toBe("5 s ago");
  });
  it("h() renders strings as text", () => {
    const el = h("div", { title: '"><script>' }, "<img src=x onerror=alert(1)>");
    expect(el.children.length).toBe(0);
    expect(el.textContent).toBe("<img src=x onerror=alert(1)>");
  });
});

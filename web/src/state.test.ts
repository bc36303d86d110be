import { describe, expect, it } from "vitest";
import { defaultState, diffParams, durationMs, fromQuery, parseFilter, rangeMs, selectionParams, toQuery } from "./state";

describe("URL state", () => {
  it("round-trips every field through the query string", () => {
    const s = defaultState();
    s.view = "diff";
    s.since = null;
    s.start = 1000;
    s.end = 5000;
    s.filters = [["host", "web-1"], ["thread", "<img src=x onerror=alert(1)>"]];
    s.search = "alpha & beta";
    s.zoom = ["proc", "main [app]"];
    s.group = "thread";
    s.sandwich = "main";
    s.base = { start: 1, end: 2, filters: ["process=a"] };
    s.cmp = { start: null, end: null, filters: ["process=b"] };
    expect(fromQuery(toQuery(s))).toEqual(s);
  });

  it("keeps links short: defaults are left out", () => {
    expect(toQuery(defaultState())).toBe("");
  });

  it("ignores malformed parts", () => {
    const s = fromQuery("?view=nope&since=forever&f=bogus=1&f=host&start=9&end=3&group=x");
    expect(s.view).toBe("flame");
    expect(s.since).toBe("15m");
    expect(s.filters).toEqual([]);
    expect(s.start).toBeNull();
    expect(s.group).toBe("process");
  });

  it("parses filters, values may contain '='", () => {
    expect(parseFilter("executable=/usr/bin/a=b")).toEqual(["executable", "/usr/bin/a=b"]);
    expect(parseFilter("nokey")).toBeNull();
    expect(parseFilter("function=x")).toBeNull();
  });

  it("takes program labels (label.KEY) as filters and timeline groups", () => {
    expect(parseFilter("label.job=resize")).toEqual(["label.job", "resize"]);
    expect(parseFilter("label.=x")).toBeNull();
    const s = fromQuery("?group=label.job&f=label.tenant=acme");
    expect(s.group).toBe("label.job");
    expect(selectionParams(s).getAll("filter")).toEqual(["label.tenant=acme"]);
    expect(fromQuery("?group=label.").group).toBe(defaultState().group);
  });

  it("builds API parameters for selections and diffs", () => {
    const s = fromQuery("?since=1h&f=host=a&bf=process=x&cs=10&ce=20");
    expect(selectionParams(s).toString()).toBe("since=1h&filter=host%3Da");
    const d = diffParams(s);
    expect(d.getAll("base_filter")).toEqual(["process=x"]);
    expect([d.get("cmp_start"), d.get("cmp_end")]).toEqual(["10", "20"]);
    expect(d.get("base_start")).toBeNull();
  });

  it("computes ranges from presets and absolute times", () => {
    expect(durationMs("30d")).toBe(30 * 86400e3);
    expect(rangeMs(fromQuery("?since=1h"), 10_000_000)).toEqual([10_000_000 - 3600e3, 10_000_000]);
    expect(rangeMs(fromQuery("?start=5&end=9"))).toEqual([5, 9]);
  });
});

// The differential view: a baseline and a comparison (two time ranges, or two filters), the flame graph
// coloured red (more CPU) / green (less) with its scale, top deltas and a summary in CPU, CO2 and cost.

import { ApiError, type Diff, getJson } from "../api";
import { annualize, co2Kg, costUsd } from "../cost";
import { h, replace, status } from "../dom";
import { DIFF_STEPS, diffColor } from "../flame/colors";
import { FlameGraph } from "../flame/render";
import { flatten } from "../flame/tree";
import { co2, compact, deltaPp, localInput, money, pct, seconds } from "../format";
import { type Side, type State, diffParams, parseFilter, rangeMs } from "../state";
import type { App } from "../app";

/** Width of a diff node: its share of the baseline plus its share of the comparison. */
export function diffValue(btot: number, ctot: number) {
  return (n: { base_total?: number; cmp_total?: number }) =>
    (n.base_total ?? 0) / (btot || 1) + (n.cmp_total ?? 0) / (ctot || 1);
}

/** The summary's figures: CPU seconds per side, change in %, and the change in CO2 and cost per year. */
export function summarize(d: Diff["summary"], baseRangeS: number, cmpRangeS: number) {
  const baseRate = d.base_cpu_s / (baseRangeS || 1);
  const cmpRate = d.cmp_cpu_s / (cmpRangeS || 1);
  const yearly = annualize(cmpRate - baseRate, 1);
  return {
    cpuChangePct: baseRate > 0 ? (100 * (cmpRate - baseRate)) / baseRate : null,
    coresDelta: cmpRate - baseRate,
    co2PerYearKg: co2Kg(yearly),
    costPerYear: costUsd(yearly),
  };
}

export class DiffView {
  readonly el: HTMLElement;
  private stat = h("div", { class: "status", hidden: true });
  private summaryEl = h("div", { class: "summary", "data-testid": "diff-summary" });
  private scaleEl = h("div", { class: "scale" });
  private body = h("tbody");
  private graph: FlameGraph;
  private form: Record<"b" | "c", { start: HTMLInputElement; end: HTMLInputElement; filters: HTMLInputElement }>;
  private key = "";

  constructor(private app: App) {
    const side = (label: string) => {
      const inputs = {
        start: h("input", { type: "datetime-local", step: "1", "aria-label": `${label} start` }),
        end: h("input", { type: "datetime-local", step: "1", "aria-label": `${label} end` }),
        filters: h("input", {
          type: "text",
          placeholder: "e.g. host=web-1, executable=/usr/bin/app",
          "aria-label": `${label} filters`,
          class: "wide",
        }),
      };
      const box = h(
        "fieldset",
        {},
        h("legend", {}, label),
        h("label", {}, "from ", inputs.start),
        h("label", {}, " to ", inputs.end),
        h("label", {}, " filters ", inputs.filters),
      );
      return { inputs, box };
    };
    const b = side("Baseline");
    const c = side("Comparison");
    this.form = { b: b.inputs, c: c.inputs };
    const graphBox = h("div", { class: "flame-box" });
    this.el = h(
      "section",
      { class: "view diff-view", "data-view": "diff" },
      h(
        "form",
        {
          class: "diff-form",
          onsubmit: (e: Event) => {
            e.preventDefault();
            this.apply();
          },
        },
        b.box,
        c.box,
        h("div", {}, h("button", { type: "submit" }, "Compare"), " ",
          h("button", { type: "button", onclick: () => this.previousPeriod() }, "This range vs the one before"),
          h("p", { class: "muted" }, "Empty ranges use the range above; filters add to the common filters (KEY=VALUE, comma-separated).")),
      ),
      this.stat,
      this.summaryEl,
      this.scaleEl,
      graphBox,
      h("h3", {}, "Largest changes (self)"),
      h(
        "table",
        { class: "grid diff-table" },
        h("thead", {}, h("tr", {}, ...["Function", "Module / file", "Baseline self", "Comparison self", "Change"].map((t) => h("th", {}, t)))),
        this.body,
      ),
    );
    this.graph = new FlameGraph(graphBox);
  }

  /** Baseline: the range before the current one, of the same length; comparison: the current range. */
  private previousPeriod(): void {
    const [start, end] = rangeMs(this.app.state);
    const len = end - start;
    this.app.set({ base: { start: start - len, end: start, filters: this.app.state.base.filters }, cmp: { start, end, filters: this.app.state.cmp.filters } });
  }

  private apply(): void {
    const read = (p: "b" | "c"): Side => {
      const f = this.form[p];
      const start = f.start.value ? new Date(f.start.value).getTime() : null;
      const end = f.end.value ? new Date(f.end.value).getTime() : null;
      const filters = f.filters.value.split(",").map((t) => t.trim()).filter((t) => parseFilter(t) !== null);
      return start !== null && end !== null && end > start ? { start, end, filters } : { start: null, end: null, filters };
    };
    this.app.set({ base: read("b"), cmp: read("c") });
  }

  private fill(s: State): void {
    for (const [p, side] of [["b", s.base], ["c", s.cmp]] as ["b" | "c", Side][]) {
      const f = this.form[p];
      if (document.activeElement && this.el.contains(document.activeElement)) return;
      f.start.value = side.start !== null ? localInput(side.start) : "";
      f.end.value = side.end !== null ? localInput(side.end) : "";
      f.filters.value = side.filters.join(", ");
    }
  }

  update(s: State): void {
    this.fill(s);
    const params = diffParams(s);
    const key = params.toString();
    if (key === this.key && !this.app.refreshing) return;
    this.key = key;
    const sameSides = JSON.stringify(s.base) === JSON.stringify(s.cmp);
    if (sameSides) {
      status(this.stat, "empty", "Choose what to compare",
        "Give the baseline and the comparison different time ranges or filters (two hosts, two executables), or press “This range vs the one before”.");
      replace(this.summaryEl);
      return;
    }
    void this.load(s, params, key);
  }

  private async load(s: State, params: URLSearchParams, key: string): Promise<void> {
    status(this.stat, "loading", "Comparing…");
    try {
      const d = await getJson<Diff>("api/v1/diff", params);
      if (key !== this.key) return;
      if (!d.summary.base_samples && !d.summary.cmp_samples) {
        this.app.noData(this.stat);
        return;
      }
      status(this.stat, "none");
      const flat = flatten(d.tree, diffValue(d.summary.base_samples, d.summary.cmp_samples));
      this.graph.setData(flat);
      this.drawScale(this.graph.diffScale);
      const [ms0, ms1] = rangeMs(s);
      const span = (side: Side) => ((side.start !== null && side.end !== null ? side.end - side.start : ms1 - ms0) / 1000);
      const sum = summarize(d.summary, span(s.base), span(s.cmp));
      replace(
        this.summaryEl,
        h("div", {}, h("span", { class: "muted" }, "Baseline "), `${compact(d.summary.base_samples)} samples · ${seconds(d.summary.base_cpu_s)} CPU`),
        h("div", {}, h("span", { class: "muted" }, "Comparison "), `${compact(d.summary.cmp_samples)} samples · ${seconds(d.summary.cmp_cpu_s)} CPU`),
        h("div", { class: sum.coresDelta > 0 ? "worse" : "better" },
          `CPU ${sum.cpuChangePct === null ? "n/a" : pct(sum.cpuChangePct)} (${sum.coresDelta >= 0 ? "+" : ""}${sum.coresDelta.toFixed(3)} cores) · `,
          `CO2 ${sum.co2PerYearKg >= 0 ? "+" : ""}${co2(sum.co2PerYearKg)}/year · cost ${sum.costPerYear >= 0 ? "+" : ""}${money(sum.costPerYear)}/year`),
      );
      replace(
        this.body,
        ...d.top.slice(0, 50).map((r) =>
          h(
            "tr",
            { class: r.delta_self_pct > 0 ? "worse" : r.delta_self_pct < 0 ? "better" : "" },
            h("td", {}, r.function),
            h("td", {}, r.file || r.module),
            h("td", {}, `${compact(r.base_self)} (${pct(r.base_self_pct)})`),
            h("td", {}, `${compact(r.cmp_self)} (${pct(r.cmp_self_pct)})`),
            h("td", { class: "delta" }, deltaPp(r.delta_self_pct)),
          ),
        ),
      );
    } catch (err) {
      this.app.failed(this.stat, err as ApiError);
    }
  }

  private drawScale(scale: number): void {
    const steps = [];
    for (let b = -DIFF_STEPS; b <= DIFF_STEPS; b += 2) steps.push(h("i", { style: `background:${diffColor(b)}` }));
    replace(
      this.scaleEl,
      h("span", {}, `−${scale.toFixed(2)} pp (less CPU) `),
      ...steps,
      h("span", {}, ` +${scale.toFixed(2)} pp (more CPU)`),
    );
  }
}

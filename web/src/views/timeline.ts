// The timeline: samples over the range stacked by host, process, thread, container, executable or a program
// label (`label.KEY`, a Go pprof label) (uPlot);
// dragging across it (brushing) narrows the time range of every view.

import type uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { ApiError, type Timeline, getJson, labelKeys } from "../api";
import { h, replace, status } from "../dom";
import { clock } from "../format";
import { GROUP_KEYS, type State, selectionParams } from "../state";
import type { App } from "../app";
import { fitRange, stack } from "./series";

const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

export class TimelineView {
  readonly el: HTMLElement;
  private stat = h("div", { class: "status", hidden: true });
  private chartBox = h("div", { class: "chart" });
  private groupSelect: HTMLSelectElement;
  private plot: uPlot | null = null;
  private key = "";
  private raw: number[][] = [];
  private note = h("span", { class: "muted fit-note", "data-testid": "timeline-fit" });

  constructor(private app: App) {
    this.groupSelect = h(
      "select",
      { "aria-label": "stack by", onchange: () => this.app.set({ group: this.groupSelect.value }) },
      ...GROUP_KEYS.map((k) => h("option", { value: k }, k)),
    );
    this.el = h(
      "section",
      { class: "timeline" },
      h(
        "div",
        { class: "toolbar" },
        h("strong", {}, "Samples over time"),
        h("label", {}, " stacked by ", this.groupSelect),
        h("span", { class: "muted" }, " — drag across the chart to narrow the time range "),
        this.note,
      ),
      this.stat,
      this.chartBox,
    );
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(() => this.plot?.setSize({ width: this.width(), height: 140 })).observe(this.chartBox);
    }
  }

  /** Adds the selection's program labels (`label.KEY`) to the groups offered. */
  private offerLabels(params: URLSearchParams): void {
    void labelKeys(params).then((keys) => {
      const known = new Set(Array.from(this.groupSelect.options, (o) => o.value));
      this.groupSelect.append(...keys.filter((k) => !known.has(k)).map((k) => h("option", { value: k }, k)));
      this.groupSelect.value = this.app.state.group;
    });
  }

  private width(): number {
    return Math.max(this.chartBox.clientWidth, 300);
  }

  update(s: State): void {
    const params = selectionParams(s);
    if (!Array.from(this.groupSelect.options, (o) => o.value).includes(s.group)) {
      this.groupSelect.append(h("option", { value: s.group }, s.group));
    }
    this.groupSelect.value = s.group;
    params.set("group_by", s.group);
    params.set("max_series", "10");
    const key = params.toString();
    if (key === this.key && !this.app.refreshing) return;
    this.offerLabels(selectionParams(s));
    this.key = key;
    void this.load(params, key);
  }

  private async load(params: URLSearchParams, key: string): Promise<void> {
    if (!this.plot) status(this.stat, "loading", "Loading the timeline…");
    try {
      let data = await getJson<Timeline>("api/v1/timeline", params);
      if (key !== this.key) return;
      const fit = fitRange(data);
      replace(this.note);
      if (fit) {
        // The data fills little of the range: chart where it is, in finer buckets (the views keep the range).
        const narrow = new URLSearchParams(params);
        narrow.delete("since");
        narrow.set("start", String(fit.startMs));
        narrow.set("end", String(fit.endMs));
        narrow.set("step_s", String(fit.stepS));
        const fitted = await getJson<Timeline>("api/v1/timeline", narrow);
        if (key !== this.key) return;
        if (fitted.series.length) {
          data = fitted;
          replace(this.note, `· showing ${clock(fit.startMs)} → ${clock(fit.endMs)}, where the samples are`);
        }
      }
      if (!data.series.length) {
        this.plot?.destroy();
        this.plot = null;
        replace(this.chartBox);
        this.app.noData(this.stat);
        return;
      }
      // uPlot loads on first use, in its own chunk: the flame graph's start does not wait for it.
      const { default: UPlot } = await import("uplot");
      if (key !== this.key) return;
      status(this.stat, "none");
      this.draw(UPlot, data);
    } catch (err) {
      this.app.failed(this.stat, err as ApiError);
    }
  }

  private draw(UPlot: typeof uPlot, data: Timeline): void {
    this.raw = data.series.map((s) => s.values);
    const stacked = stack(this.raw);
    const xs = data.times_ns.map((t) => t / 1e9);
    // Draw the tallest (cumulative) series first so each smaller one paints over it.
    const order = stacked.map((_, k) => k).reverse();
    const series: uPlot.Series[] = [
      {},
      ...order.map((k) => ({
        label: data.series[k].group || "(none)",
        stroke: COLORS[k % COLORS.length],
        fill: COLORS[k % COLORS.length] + "cc",
        width: 1,
        paths: UPlot.paths.stepped!({ align: 1 }),
        value: (_u: uPlot, _v: number | null, _si: number, idx: number | null) =>
          idx === null ? "--" : String(this.raw[k][idx] ?? 0),
      })),
    ];
    const opts: uPlot.Options = {
      width: this.width(),
      height: 140,
      series,
      scales: { x: { time: true } },
      axes: [{}, { size: 50 }],
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 3) return;
            const t0 = u.posToVal(u.select.left, "x");
            const t1 = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.app.set({ since: null, start: Math.floor(t0 * 1000), end: Math.ceil(t1 * 1000) }, true);
          },
        ],
      },
    };
    this.plot?.destroy();
    replace(this.chartBox);
    this.plot = new UPlot(opts, [xs, ...order.map((k) => stacked[k])], this.chartBox);
  }
}

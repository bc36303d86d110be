// Top functions: self, total, shares, CO2 and cost per year; sortable, filterable; a click focuses the
// flame graph on the function.

import { ApiError, type TopRow, getJson } from "../api";
import { h, replace, status } from "../dom";
import { co2, compact, money, pct } from "../format";
import { type State, selectionParams } from "../state";
import type { App } from "../app";
import { type SortDir, filterRows, sortRows } from "./table";

const COLUMNS: [string, string, (r: TopRow) => string][] = [
  ["function", "Function", (r) => r.function],
  ["kind", "Kind", (r) => r.kind],
  ["module", "Module / file", (r) => r.file || r.module],
  ["self", "Self", (r) => compact(r.self)],
  ["self_pct", "Self %", (r) => pct(r.self_pct)],
  ["total", "Total", (r) => compact(r.total)],
  ["total_pct", "Total %", (r) => pct(r.total_pct)],
  ["annual_self_co2_kg", "CO2 / year", (r) => co2(r.annual_self_co2_kg)],
  ["annual_self_cost", "Cost / year", (r) => money(r.annual_self_cost)],
];
const SHOWN = 500;

export class TopView {
  readonly el: HTMLElement;
  private stat = h("div", { class: "status", hidden: true });
  private body = h("tbody");
  private head = h("tr");
  private filterBox: HTMLInputElement;
  private count = h("span", { class: "muted" });
  private rows: TopRow[] = [];
  private sortKey = "self";
  private dir: SortDir = "desc";
  private key = "";

  constructor(private app: App) {
    this.filterBox = h("input", {
      type: "search",
      placeholder: "Filter functions, modules, files",
      "aria-label": "filter functions",
      class: "search",
      oninput: () => this.draw(),
    });
    this.el = h(
      "section",
      { class: "view top-view", "data-view": "top" },
      h("div", { class: "toolbar" }, this.filterBox, this.count),
      this.stat,
      h("div", { class: "table-wrap" }, h("table", { class: "grid top-table" }, h("thead", {}, this.head), this.body)),
    );
  }

  update(s: State): void {
    const key = selectionParams(s).toString();
    if (key === this.key && !this.app.refreshing) return;
    this.key = key;
    void this.load(s, key);
  }

  private async load(s: State, key: string): Promise<void> {
    if (!this.rows.length) status(this.stat, "loading", "Loading top functions…");
    const params = selectionParams(s);
    params.set("limit", "2000");
    try {
      const data = await getJson<{ functions: TopRow[] }>("api/v1/top", params);
      if (key !== this.key) return;
      this.rows = data.functions;
      if (!this.rows.length) this.app.noData(this.stat);
      else status(this.stat, "none");
      this.draw();
    } catch (err) {
      this.app.failed(this.stat, err as ApiError);
    }
  }

  private draw(): void {
    replace(
      this.head,
      ...COLUMNS.map(([key, label]) =>
        h(
          "th",
          {
            class: key === this.sortKey ? `sorted ${this.dir}` : "",
            "data-key": key,
            "aria-sort": key === this.sortKey ? (this.dir === "asc" ? "ascending" : "descending") : "none",
            onclick: () => {
              const text = key === "function" || key === "kind" || key === "module";
              if (key === this.sortKey) this.dir = this.dir === "asc" ? "desc" : "asc";
              else this.dir = text ? "asc" : "desc";
              this.sortKey = key;
              this.draw();
            },
          },
          label,
        ),
      ),
    );
    const rows = sortRows(filterRows(this.rows, this.filterBox.value), this.sortKey, this.dir);
    replace(this.count, `${rows.length} function${rows.length === 1 ? "" : "s"}${rows.length > SHOWN ? ` (first ${SHOWN} shown)` : ""}`);
    replace(
      this.body,
      ...rows.slice(0, SHOWN).map((r) =>
        h(
          "tr",
          { class: `kind-${r.kind}`, title: "click: focus the flame graph on it", onclick: () => this.app.focus(r.function) },
          ...COLUMNS.map(([key, , fmt]) => h("td", { class: `col-${key}` }, fmt(r))),
        ),
      ),
    );
  }
}

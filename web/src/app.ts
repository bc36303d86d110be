// The application shell: state (kept in the URL), tabs, time-range picker, filters with suggestions, and
// the shared empty/error states; views update when the state changes.

import type { ApiError } from "./api";
import { getJson, labelKeys } from "./api";
import { h, replace, status } from "./dom";
import { clock, localInput } from "./format";
import { FILTER_KEYS, PRESETS, type State, type View, VIEWS, fromQuery, selectionParams, toQuery } from "./state";
import { DiffView } from "./views/diff";
import { FlameView } from "./views/flame";
import { HostsView } from "./views/hosts";
import { TimelineView } from "./views/timeline";
import { TopView } from "./views/top";

const TAB_LABELS: Record<View, string> = { flame: "Flame graph", top: "Top functions", diff: "Differential", hosts: "Hosts" };
const POLL_EMPTY_MS = 5000;

export class App {
  state: State;
  /** True while a refresh re-runs every view's query even when its parameters did not change. */
  refreshing = false;
  private flame: FlameView;
  private top: TopView;
  private diff: DiffView;
  private hosts: HostsView;
  private timeline: TimelineView;
  private tabs = h("nav", { class: "tabs", role: "tablist" });
  private rangeBox = h("div", { class: "range" });
  private filterBox = h("div", { class: "filters" });
  private main = h("main");
  private pollTimer = 0;
  private shellKey = "";

  constructor(root: HTMLElement) {
    this.state = fromQuery(location.search);
    this.flame = new FlameView(this);
    this.top = new TopView(this);
    this.diff = new DiffView(this);
    this.hosts = new HostsView(this);
    this.timeline = new TimelineView(this);
    const refresh = h("button", { class: "refresh", title: "query again", onclick: () => this.refresh() }, "↻ Refresh");
    replace(
      root,
      h("header", {}, h("a", { class: "brand", href: "./" }, "fleetprof"), this.tabs, h("span", { class: "spacer" }), this.rangeBox, refresh),
      this.filterBox,
      this.timeline.el,
      this.main,
    );
    window.addEventListener("popstate", () => {
      this.state = fromQuery(location.search);
      this.render();
    });
    this.render();
  }

  /** Changes the state; `push` adds a history entry (else the URL is replaced). */
  set(patch: Partial<State>, push = true): void {
    this.state = { ...this.state, ...patch };
    const url = `${location.pathname}${toQuery(this.state)}`;
    if (push) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
    this.render();
  }

  /** Shows the flame graph focused on function `fn` (a click in a table). */
  focus(fn: string): void {
    this.set({ view: "flame", search: fn, zoom: [], sandwich: "" });
    this.flame.focus(fn);
  }

  /** Runs every visible query again (the range moves on when it is relative). */
  refresh(): void {
    this.refreshing = true;
    this.render();
    this.refreshing = false;
  }

  /** The "no data" state, and a poll until data arrives (agents report every few seconds). */
  noData(el: HTMLElement): void {
    const filtered = this.state.filters.length > 0;
    status(
      el,
      "empty",
      filtered ? "No samples match these filters in this time range" : "No samples in this time range yet",
      filtered
        ? "Remove a filter or choose a longer time range."
        : "The agent reports every 5 s: start one with `fleetprof up` on this machine (or `fleetprof agent --collector URL` on others) and this page updates by itself.",
    );
    clearTimeout(this.pollTimer);
    if (this.state.start === null) this.pollTimer = window.setTimeout(() => this.refresh(), POLL_EMPTY_MS);
  }

  /** An error state with what to do about it. */
  failed(el: HTMLElement, err: ApiError): void {
    status(el, "error", err.message || "Query failed", err.hint ?? "");
  }

  private render(): void {
    const s = this.state;
    document.body.dataset.view = s.view;
    // The shell (tabs, range, filters) is rebuilt only when what it shows changed: zooming stays cheap.
    const shellKey = JSON.stringify([s.view, s.since, s.start, s.end, s.filters]);
    if (shellKey !== this.shellKey || this.refreshing) {
      this.shellKey = shellKey;
      this.renderShell(s);
    }
    const view = { flame: this.flame, top: this.top, diff: this.diff, hosts: this.hosts }[s.view];
    if (this.main.firstChild !== view.el) replace(this.main, view.el);
    this.timeline.el.hidden = s.view === "hosts";
    this.filterBox.hidden = s.view === "hosts";
    if (s.view !== "hosts") this.timeline.update(s);
    view.update(s);
  }

  private renderShell(s: State): void {
    replace(
      this.tabs,
      ...VIEWS.map((v) =>
        h("button", { role: "tab", class: v === s.view ? "tab active" : "tab", "aria-selected": String(v === s.view), "data-tab": v, onclick: () => this.set({ view: v }) }, TAB_LABELS[v]),
      ),
    );
    this.renderRange();
    this.renderFilters();
  }

  private renderRange(): void {
    const s = this.state;
    const select = h(
      "select",
      {
        "aria-label": "time range",
        onchange: () => {
          if (select.value === "custom") {
            custom.hidden = false;
            return;
          }
          this.set({ since: select.value, start: null, end: null });
        },
      },
      ...PRESETS.map(([v, label]) => h("option", { value: v, selected: s.start === null && s.since === v }, label)),
      h("option", { value: "custom", selected: s.start !== null }, s.start !== null ? `${clock(s.start)} → ${clock(s.end!)}` : "Absolute range…"),
    );
    const from = h("input", { type: "datetime-local", step: "1", "aria-label": "from", value: s.start !== null ? localInput(s.start) : "" });
    const to = h("input", { type: "datetime-local", step: "1", "aria-label": "to", value: s.end !== null ? localInput(s.end) : "" });
    const custom = h(
      "form",
      {
        class: "custom-range",
        hidden: s.start === null,
        onsubmit: (e: Event) => {
          e.preventDefault();
          const start = new Date(from.value).getTime();
          const end = new Date(to.value).getTime();
          if (Number.isFinite(start) && Number.isFinite(end) && end > start) this.set({ since: null, start, end });
          else to.setCustomValidity("the end must be after the start");
        },
      },
      from,
      " → ",
      to,
      h("button", { type: "submit" }, "Apply"),
    );
    replace(this.rangeBox, select, custom);
  }

  private renderFilters(): void {
    const s = this.state;
    const chips = s.filters.map(([key, value], k) =>
      h(
        "span",
        { class: "chip" },
        h("b", {}, key),
        " = ",
        value,
        h("button", { class: "x", title: "remove filter", "aria-label": `remove ${key} filter`, onclick: () => this.set({ filters: s.filters.filter((_, j) => j !== k) }) }, "×"),
      ),
    );
    const keySelect = h("select", { "aria-label": "filter key" }, ...FILTER_KEYS.map((k) => h("option", { value: k }, k)));
    void labelKeys(selectionParams({ ...s, filters: [] })).then((keys) =>
      keySelect.append(...keys.map((k) => h("option", { value: k }, k))),
    );
    const list = h("datalist", { id: "filter-values" });
    const input = h("input", { type: "text", list: "filter-values", placeholder: "value", "aria-label": "filter value" });
    let timer = 0;
    const suggest = () => {
      clearTimeout(timer);
      timer = window.setTimeout(async () => {
        const params = selectionParams({ ...s, filters: [] });
        params.set("prefix", input.value);
        params.set("limit", "30");
        try {
          const data = await getJson<{ values: { value: string; samples: number }[] }>(`api/v1/values/${keySelect.value}`, params);
          replace(list, ...data.values.map((v) => h("option", { value: v.value }, `${v.samples} samples`)));
        } catch {
          replace(list);
        }
      }, 150);
    };
    input.addEventListener("focus", suggest);
    input.addEventListener("input", suggest);
    keySelect.addEventListener("change", () => {
      input.value = "";
      suggest();
    });
    const form = h(
      "form",
      {
        class: "add-filter",
        onsubmit: (e: Event) => {
          e.preventDefault();
          if (input.value.trim()) this.set({ filters: [...s.filters, [keySelect.value, input.value.trim()]] });
        },
      },
      keySelect,
      " = ",
      input,
      list,
      h("button", { type: "submit" }, "Add filter"),
    );
    replace(this.filterBox, h("span", { class: "muted" }, "Filters: "), ...chips, form);
  }
}

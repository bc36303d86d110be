// The flame graph view: search with share, breadcrumb, legend, tooltip, exports, and the sandwich panel.

import { ApiError, type FlameColumns, type Sandwich, getJson } from "../api";
import { h, replace, status } from "../dom";
import { KIND_LABELS, kindColor } from "../flame/colors";
import { FlameGraph } from "../flame/render";
import { type Flat, KINDS, type SearchResult, ancestors, findPath, flatten, fromColumns, functionOf, info, largestOf, nameOf, pathOf, search } from "../flame/tree";
import { compact, pct } from "../format";
import { type State, flameParams, selectionParams } from "../state";
import type { App } from "../app";

export const FLAME_PATH = "api/v1/flamegraph";

/** A legend of frame-kind colours. */
export function legend(): HTMLElement {
  const kinds = KINDS.filter((k) => k !== "root");
  return h(
    "div",
    { class: "legend", "aria-label": "frame kinds" },
    ...kinds.map((k) =>
      h("span", { class: "legend-item" }, h("i", { style: `background:${kindColor(KINDS.indexOf(k), 3)}` }), KIND_LABELS[k]),
    ),
  );
}

/** Offers a Blob as a download. */
export function download(blob: Blob, name: string): void {
  const a = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 1000);
}

export class FlameView {
  readonly el: HTMLElement;
  private graph: FlameGraph;
  private stat = h("div", { class: "status", hidden: true });
  private crumbs = h("nav", { class: "breadcrumb", "aria-label": "zoom path" });
  private matchInfo = h("span", { class: "match-info", "data-testid": "match-info" });
  private searchBox: HTMLInputElement;
  private details = h("div", { class: "details" });
  private sandwichEl = h("section", { class: "sandwich", hidden: true });
  private exportLinks = h("span", { class: "exports" });
  private exportKey = "";
  private crumbKey = "";
  private crumbFlat: Flat | null = null;
  private key = "";
  private sandwichKey = "";
  private sandwichGraphs: FlameGraph[] = [];
  private controller: AbortController | null = null;
  private pendingFocus = "";
  private firstRender = true;
  private searched = "";
  private searchedIn: Flat | null = null;
  private found: SearchResult | null = null;

  constructor(private app: App) {
    this.searchBox = h("input", {
      type: "search",
      placeholder: "Search functions (text or /regex/)",
      "aria-label": "search",
      class: "search",
    });
    let timer = 0;
    this.searchBox.addEventListener("input", () => {
      clearTimeout(timer);
      timer = window.setTimeout(() => this.app.set({ search: this.searchBox.value }), 120);
    });
    const graphBox = h("div", { class: "flame-box" });
    this.el = h(
      "section",
      { class: "view flame-view", "data-view": "flame" },
      h("div", { class: "toolbar" }, this.searchBox, this.matchInfo, h("span", { class: "spacer" }), this.exportLinks),
      legend(),
      this.crumbs,
      this.details,
      this.stat,
      graphBox,
      this.sandwichEl,
    );
    this.graph = new FlameGraph(graphBox, {
      onZoom: (i) => this.zoomed(i),
    });
  }

  /** Focuses the graph on the largest frame of function `fn` (from the top functions table). */
  focus(fn: string): void {
    this.pendingFocus = fn;
    this.applyFocus();
  }

  private applyFocus(): void {
    const flat = this.graph.flat;
    if (!this.pendingFocus || !flat) return;
    const i = largestOf(flat, this.pendingFocus);
    this.pendingFocus = "";
    if (i > 0) {
      this.graph.setZoom(i);
      this.zoomed(i);
    }
  }

  private zoomed(i: number): void {
    const flat = this.graph.flat;
    if (!flat) return;
    this.app.set({ zoom: pathOf(flat, i) }, false);
  }

  update(s: State): void {
    this.renderExports(s);
    if (this.searchBox.value !== s.search && document.activeElement !== this.searchBox) this.searchBox.value = s.search;
    const key = selectionParams(s).toString();
    if (key !== this.key || this.app.refreshing) {
      this.key = key;
      void this.load(s, key);
    } else {
      this.show(s);
    }
    this.updateSandwich(s);
  }

  private async load(s: State, key: string): Promise<void> {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    if (!this.graph.flat) status(this.stat, "loading", "Loading the flame graph…");
    try {
      const columns = await getJson<FlameColumns>(FLAME_PATH, flameParams(s), controller.signal);
      if (key !== this.key) return;
      const t0 = performance.now();
      const flat = fromColumns(columns);
      if (!flat.n || !flat.total[0]) {
        this.graph.setData(flatten({ name: "root", kind: "root", module: "", file: "", line: 0, self: 0, total: 0, children: [] }));
        this.app.noData(this.stat);
        return;
      }
      status(this.stat, "none");
      this.graph.setData(flat, findPath(flat, this.app.state.zoom));
      this.applyFocus();
      this.show(this.app.state);
      if (this.firstRender) {
        this.firstRender = false;
        performance.mark("fleetprof:flame-first-render");
        this.graph.canvas.dataset.firstRenderMs = (performance.now() - t0).toFixed(2);
      }
    } catch (err) {
      if ((err as Error).name === "AbortError") return;
      this.app.failed(this.stat, err instanceof ApiError ? err : new ApiError(String((err as Error).message), "server", "The server's answer was malformed; check its version."));
    }
  }

  /** Applies zoom path and search to the current tree. */
  private show(s: State): void {
    const flat = this.graph.flat;
    if (!flat) return;
    const zoom = findPath(flat, s.zoom);
    if (zoom !== this.graph.zoom) this.graph.setZoom(zoom);
    if (s.search !== this.searched || flat !== this.searchedIn) {
      this.searched = s.search;
      this.searchedIn = flat;
      this.found = search(flat, s.search);
      this.graph.setSearch(this.found);
    }
    const found = this.found;
    replace(
      this.matchInfo,
      found ? `${found.count} matching frame${found.count === 1 ? "" : "s"} · ${pct(100 * found.share)} of samples` : "",
    );
    this.renderCrumbs(ancestors(flat, this.graph.zoom));
  }

  private renderCrumbs(chain: number[]): void {
    const flat = this.graph.flat!;
    const crumbKey = chain.join(",");
    if (crumbKey === this.crumbKey && flat === this.crumbFlat) return;
    this.crumbKey = crumbKey;
    this.crumbFlat = flat;
    const items = chain.map((i, k) => {
      const label = i === 0 ? "all" : nameOf(flat, i);
      const last = k === chain.length - 1;
      return h(
        "button",
        {
          class: last ? "crumb current" : "crumb",
          title: nameOf(flat, i),
          onclick: () => {
            this.graph.setZoom(i);
            this.zoomed(i);
          },
        },
        label,
      );
    });
    replace(this.crumbs, ...items.flatMap((b, k) => (k ? [h("span", { class: "sep" }, "›"), b] : [b])));
    const z = chain[chain.length - 1];
    if (z > 0) {
      const node = info(flat, z);
      const fn = functionOf(node);
      replace(
        this.details,
        h("span", {}, `${compact(node.total)} samples (${pct((100 * node.total) / (flat.value[0] || 1))})`),
        h(
          "button",
          { class: "link", onclick: () => this.app.set({ sandwich: fn }) },
          "Callers & callees (sandwich)",
        ),
      );
    } else {
      replace(this.details, h("span", { class: "muted" }, "Click a frame to zoom in; hover for details."));
    }
  }

  private renderExports(s: State): void {
    const q = selectionParams(s);
    if (q.toString() === this.exportKey) return;
    this.exportKey = q.toString();
    const link = (format: string, label: string) => {
      const p = new URLSearchParams(q);
      p.set("format", format);
      return h("a", { class: "button", href: `api/v1/export?${p}`, download: "" }, label);
    };
    replace(
      this.exportLinks,
      "Export: ",
      link("pprof", "pprof"),
      link("folded", "folded"),
      link("speedscope", "speedscope"),
      h(
        "button",
        {
          onclick: () => this.graph.canvas.toBlob((b) => b && download(b, "fleetprof-flamegraph.png")),
        },
        "PNG",
      ),
      h(
        "button",
        { onclick: () => download(new Blob([this.graph.toSvg()], { type: "image/svg+xml" }), "fleetprof-flamegraph.svg") },
        "SVG",
      ),
    );
  }

  private async updateSandwich(s: State): Promise<void> {
    if (!s.sandwich) {
      this.sandwichEl.hidden = true;
      this.sandwichKey = "";
      return;
    }
    const params = selectionParams(s);
    params.set("function", s.sandwich);
    const key = params.toString();
    if (key === this.sandwichKey) return;
    this.sandwichKey = key;
    this.sandwichEl.hidden = false;
    const stat = h("div", { class: "status" });
    status(stat, "loading", "Loading callers and callees…");
    const close = h("button", { class: "link", onclick: () => this.app.set({ sandwich: "" }) }, "close");
    replace(this.sandwichEl, h("h3", {}, "Sandwich: ", h("code", {}, s.sandwich), " ", close), stat);
    try {
      const data = await getJson<Sandwich>("api/v1/sandwich", params);
      if (key !== this.sandwichKey) return;
      status(stat, "none");
      const share = pct((100 * data.total) / (data.total_samples || 1));
      const callers = h("div", { class: "flame-box small" });
      const callees = h("div", { class: "flame-box small" });
      this.sandwichEl.append(
        h("p", {}, `${compact(data.total)} samples contain it (${share}); ${compact(data.self)} in it.`),
        h("h4", {}, "Callers (read downward: who calls it)"),
        callers,
        h("h4", {}, "Callees (what it calls)"),
        callees,
      );
      for (const old of this.sandwichGraphs) old.destroy();
      this.sandwichGraphs = [new FlameGraph(callers), new FlameGraph(callees)];
      this.sandwichGraphs[0].setData(flatten(data.callers));
      this.sandwichGraphs[1].setData(flatten(data.callees));
    } catch (err) {
      if ((err as Error).name !== "AbortError") this.app.failed(stat, err as ApiError);
    }
  }
}

// The canvas flame graph (icicle: root on top). A layout pass per zoom, width or search walks the preorder
// arrays once, skipping whole subtrees that are off screen or thinner than half a pixel, into typed arrays
// ordered by colour; drawing fills only the rows inside the window (the canvas is at most a window tall
// and sticks to the top of the page while the tree scrolls past), so zooming and scrolling redraw a few
// thousand rectangles. Labels are canvas text (never markup) and the tooltip is filled with textContent.

import { h, replace } from "../dom";
import { compact, deltaPp, pct } from "../format";
import { DIFF_STEPS, HIGHLIGHT, SHADES, diffBucket, diffColor, diffScale, kindColor, shadeOf } from "./colors";
import { type Flat, KINDS, type SearchResult, hitTest, info, nameOf } from "./tree";

export const ROW = 18;
const FONT = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
const MIN_PX = 0.5;
const LABEL_PX = 28;

// Palette layout: kinds x shades, then one dimmed colour per kind, the highlight, then diff buckets.
const DIM0 = KINDS.length * SHADES;
const HL = DIM0 + KINDS.length;
const DIFF0 = HL + 1 + DIFF_STEPS;
const PALETTE: string[] = [];
for (let k = 0; k < KINDS.length; k++) for (let s = 0; s < SHADES; s++) PALETTE.push(kindColor(k, s));
for (let k = 0; k < KINDS.length; k++) PALETTE.push(kindColor(k, 0, true));
PALETTE.push(HIGHLIGHT);
for (let b = -DIFF_STEPS; b <= DIFF_STEPS; b++) PALETTE.push(diffColor(b));

export interface Rect {
  i: number;
  x: number;
  y: number;
  w: number;
  color: number;
}

export interface Options {
  onZoom?: (i: number) => void;
  onSelect?: (i: number) => void;
}

/** The visible rectangles of one zoom and width, in colour order (one fillStyle change per colour). */
interface Layout {
  count: number;
  node: Int32Array;
  x: Float32Array;
  w: Float32Array;
  row: Int32Array;
  color: Uint16Array;
  /** Rows with anything drawn (the height of the graph in rows). */
  rows: number;
}

/** A canvas flame graph bound to a container; setData, setZoom and setSearch redraw it. */
export class FlameGraph {
  readonly canvas: HTMLCanvasElement;
  readonly tooltip: HTMLDivElement;
  /** As tall as the graph; the canvas sticks to the window's top inside it. */
  readonly area: HTMLDivElement;
  flat: Flat | null = null;
  zoom = 0;
  lastRenderMs = 0;
  private colors: Uint16Array = new Uint16Array(0);
  private found: SearchResult | null = null;
  private scale = 0;
  private width = 0;
  private charW = 7.2;
  private observer: ResizeObserver | null = null;
  private laid: Layout | null = null;
  private frame = 0;
  private offset = -1;
  /** The rows drawn last: [first, last). */
  private drawnRows: [number, number] = [0, 0];
  private onScroll = () => this.scrolled();
  private onResize = () => this.laid && this.request(false);

  constructor(
    readonly container: HTMLElement,
    private options: Options = {},
  ) {
    this.canvas = h("canvas", { class: "flame-canvas", role: "img", "aria-label": "flame graph" });
    this.area = h("div", { class: "flame-area" }, this.canvas);
    this.tooltip = h("div", { class: "tooltip", hidden: true });
    container.append(this.area, this.tooltip);
    this.canvas.addEventListener("click", (e) => this.click(e));
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => (this.tooltip.hidden = true));
    if (typeof document !== "undefined") document.addEventListener("scroll", this.onScroll, { capture: true, passive: true });
    if (typeof window !== "undefined") window.addEventListener("resize", this.onResize, { passive: true });
    if (typeof ResizeObserver !== "undefined") {
      this.observer = new ResizeObserver(() => {
        if (this.container.clientWidth !== this.width) this.request(true);
      });
      this.observer.observe(container);
    }
  }

  /** Shows a new tree (drawn now: the first render is timed); diff trees colour by change. */
  setData(flat: Flat, zoom = 0): void {
    this.flat = flat;
    this.zoom = zoom < flat.n ? zoom : 0;
    this.colors = new Uint16Array(flat.n);
    if (flat.delta) {
      this.scale = diffScale(flat.delta);
      for (let i = 0; i < flat.n; i++) this.colors[i] = DIFF0 + diffBucket(flat.delta[i], this.scale);
    } else {
      const shades = new Uint8Array(flat.strings.length);
      const seen = new Uint8Array(flat.strings.length);
      for (let i = 0; i < flat.n; i++) {
        const id = flat.nameId[i];
        if (!seen[id]) {
          seen[id] = 1;
          shades[id] = shadeOf(flat.strings[id]);
        }
        this.colors[i] = flat.kind[i] * SHADES + shades[id];
      }
    }
    this.found = null;
    this.laid = null;
    this.render();
  }

  /** The largest change on the diff colour scale (percentage points), 0 for kind colours. */
  get diffScale(): number {
    return this.flat?.delta ? this.scale : 0;
  }

  /** Zooms to node i (the root for an unknown one), drawn at the next frame. */
  setZoom(i: number): void {
    if (!this.flat) return;
    const zoom = i >= 0 && i < this.flat.n ? i : 0;
    if (zoom === this.zoom && this.laid) return;
    this.zoom = zoom;
    this.request(true);
  }

  /** Highlights the search's matches (dims the rest), drawn at the next frame. */
  setSearch(found: SearchResult | null): void {
    if (found === this.found) return;
    this.found = found;
    this.request(true);
  }

  /** Draws at the next animation frame, once however many changes came before it. */
  private request(relayout: boolean): void {
    if (relayout) this.laid = null;
    if (this.frame || typeof requestAnimationFrame === "undefined") return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private scrolled(): void {
    if (!this.laid || !this.canvas.isConnected) return;
    const v = this.view(this.laid.rows * ROW);
    if (v.offset !== this.offset || v.first < this.drawnRows[0] || v.last > this.drawnRows[1]) this.request(false);
  }

  /** The colour index of node i, after search highlighting. */
  private colorOf(i: number): number {
    const found = this.found;
    if (!found || !this.flat || i === 0) return this.colors[i];
    return found.matched[this.flat.nameId[i]] ? HL : DIM0 + this.flat.kind[i];
  }

  /** Visible rectangles at `width` CSS pixels in preorder (what the SVG export draws). */
  layout(width: number, visit: (r: Rect) => void): void {
    const l = this.compute(width);
    const byNode = Array.from(l.node.subarray(0, l.count), (i, k) => [i, k]).sort((a, b) => a[0] - b[0]);
    for (const [i, k] of byNode) visit({ i, x: l.x[k], y: l.row[k] * ROW, w: l.w[k], color: l.color[k] });
  }

  /** One pass over the zoomed subtree's visible nodes into typed arrays, then a counting sort by colour. */
  private compute(width: number): Layout {
    const f = this.flat;
    const empty: Layout = { count: 0, node: new Int32Array(0), x: new Float32Array(0), w: new Float32Array(0), row: new Int32Array(0), color: new Uint16Array(0), rows: 1 };
    if (!f || f.n === 0) return empty;
    const z = this.zoom;
    const vx0 = f.x[z];
    const scale = width / (f.value[z] || 1);
    const { x, value, end } = f;
    // The zoomed node's ancestors keep their rows above it, drawn full width.
    const chain: number[] = [];
    for (let a = f.parent[z]; a >= 0; a = f.parent[a]) chain.push(a);
    const cap = end[z] - z + chain.length;
    const nodes = new Int32Array(cap);
    const xs = new Float32Array(cap);
    const ws = new Float32Array(cap);
    const colors = new Uint16Array(cap);
    const perColor = new Int32Array(PALETTE.length + 1);
    let m = 0;
    for (const a of chain) {
      nodes[m] = a;
      ws[m] = width;
      colors[m] = this.colorOf(a);
      perColor[colors[m] + 1]++;
      m++;
    }
    let i = z;
    const stop = end[z];
    while (i < stop) {
      const x0 = (x[i] - vx0) * scale;
      const w = value[i] * scale;
      if (w < MIN_PX || x0 + w <= 0 || x0 >= width) {
        i = end[i];
        continue;
      }
      const cx = x0 < 0 ? 0 : x0;
      nodes[m] = i;
      xs[m] = cx;
      ws[m] = (x0 + w > width ? width : x0 + w) - cx;
      const c = this.colorOf(i);
      colors[m] = c;
      perColor[c + 1]++;
      m++;
      i++;
    }
    for (let c = 1; c < perColor.length; c++) perColor[c] += perColor[c - 1];
    let rows = 0;
    const out: Layout = { count: m, node: new Int32Array(m), x: new Float32Array(m), w: new Float32Array(m), row: new Int32Array(m), color: new Uint16Array(m), rows: 1 };
    for (let k = 0; k < m; k++) {
      const at = perColor[colors[k]]++;
      const node = nodes[k];
      const row = f.depth[node];
      out.node[at] = node;
      out.x[at] = xs[k];
      out.w[at] = ws[k];
      out.row[at] = row;
      out.color[at] = colors[k];
      if (row + 1 > rows) rows = row + 1;
    }
    out.rows = Math.max(rows, 1);
    return out;
  }

  /** The canvas's height for a graph `height` pixels tall: at most the window's. */
  private canvasHeight(height: number): number {
    return Math.min(height, Math.max(typeof window === "undefined" ? height : window.innerHeight, ROW));
  }

  /** Pixels of the graph scrolled above the canvas (it sticks to the window's top inside `area`), and the
   * rows [first, last) of the canvas that are inside the window (all of them when it is not laid out). */
  private view(height: number): { offset: number; first: number; last: number } {
    const canvasH = this.canvasHeight(height);
    const box = this.area.getBoundingClientRect();
    if (typeof window === "undefined" || (box.width === 0 && box.height === 0)) {
      return { offset: 0, first: 0, last: Math.ceil(canvasH / ROW) };
    }
    const offset = canvasH < height ? Math.round(Math.max(0, Math.min(-box.top, height - canvasH))) : 0;
    const top = box.top + offset; // the canvas's top in the window
    const from = Math.max(0, -top);
    const to = Math.min(canvasH, window.innerHeight - top);
    if (to <= from) return { offset, first: 0, last: 0 };
    return { offset, first: Math.floor((offset + from) / ROW), last: Math.ceil((offset + to) / ROW) };
  }

  /** Lays out (when the zoom, width, search or data changed) and draws the rows in view; returns the ms. */
  render(): number {
    const t0 = performance.now();
    if (this.frame) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    const f = this.flat;
    const width = Math.max(this.container.clientWidth, 100);
    if (!this.laid || width !== this.width) {
      this.width = width;
      this.laid = this.compute(width);
      this.area.style.height = `${this.laid.rows * ROW}px`;
    }
    const l = this.laid;
    const height = l.rows * ROW;
    const canvasH = this.canvasHeight(height);
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(canvasH * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(canvasH * dpr);
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${canvasH}px`;
    }
    // Only the rows inside the window are drawn; scrolling draws the rest when they come into view.
    const { offset, first, last } = this.view(height);
    this.offset = offset;
    this.drawnRows = [first, last];
    this.canvas.dataset.offset = String(offset);
    const ctx = this.canvas.getContext("2d");
    if (!ctx || !f) return 0;
    ctx.setTransform(dpr, 0, 0, dpr, 0, -offset * dpr);
    ctx.clearRect(0, offset, width, canvasH);
    let color = -1;
    let drawn = 0;
    for (let k = 0; k < l.count; k++) {
      const row = l.row[k];
      if (row < first || row >= last) continue;
      if (l.color[k] !== color) {
        color = l.color[k];
        ctx.fillStyle = PALETTE[color];
      }
      const w = l.w[k] - 0.5;
      ctx.fillRect(l.x[k], row * ROW, w > 0.5 ? w : 0.5, ROW - 1);
      drawn++;
    }
    ctx.font = FONT;
    this.charW = ctx.measureText("MMMMMMMMMM").width / 10 || 7.2;
    ctx.fillStyle = "#111";
    ctx.textBaseline = "middle";
    for (let k = 0; k < l.count; k++) {
      const row = l.row[k];
      if (l.w[k] < LABEL_PX || row < first || row >= last) continue;
      const text = truncate(nameOf(f, l.node[k]), Math.floor((l.w[k] - 6) / this.charW));
      if (text) ctx.fillText(text, l.x[k] + 3, row * ROW + ROW / 2);
    }
    this.canvas.dataset.drawn = String(drawn);
    this.canvas.dataset.zoom = nameOf(f, this.zoom);
    this.lastRenderMs = performance.now() - t0;
    return this.lastRenderMs;
  }

  /** The node under a mouse event, or -1. */
  nodeAt(e: MouseEvent): number {
    const f = this.flat;
    if (!f) return -1;
    const box = this.canvas.getBoundingClientRect();
    const width = box.width || 1;
    const row = Math.floor((e.clientY - box.top + Math.max(this.offset, 0)) / ROW);
    // Within the zoomed node's range, rows above it hit its ancestors (drawn full width).
    const vx = f.x[this.zoom] + ((e.clientX - box.left) / width) * f.value[this.zoom];
    return hitTest(f, vx, row);
  }

  private click(e: MouseEvent): void {
    const i = this.nodeAt(e);
    if (i < 0) return;
    this.setZoom(i);
    this.options.onZoom?.(i);
  }

  private hover(e: MouseEvent): void {
    const i = this.nodeAt(e);
    if (i < 0 || !this.flat) {
      this.tooltip.hidden = true;
      return;
    }
    fillTooltip(this.tooltip, this.flat, i, this.zoom);
    this.tooltip.hidden = false;
    const box = this.container.getBoundingClientRect();
    const left = Math.min(e.clientX - box.left + 14, box.width - 320);
    this.tooltip.style.left = `${Math.max(left, 0)}px`;
    this.tooltip.style.top = `${e.clientY - box.top + 16}px`;
  }

  /** The graph as a standalone SVG document (names as escaped text nodes). */
  toSvg(): string {
    const NS = "http://www.w3.org/2000/svg";
    const width = Math.max(this.container.clientWidth, 100);
    const f = this.flat;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("xmlns", NS);
    svg.setAttribute("width", String(width));
    svg.setAttribute("font-family", "monospace");
    svg.setAttribute("font-size", "12");
    let bottom = ROW;
    if (f) {
      this.layout(width, (r) => {
        bottom = Math.max(bottom, r.y + ROW);
        const g = document.createElementNS(NS, "g");
        const rect = document.createElementNS(NS, "rect");
        for (const [k, v] of [["x", r.x], ["y", r.y], ["width", Math.max(r.w - 0.5, 0.5)], ["height", ROW - 1]]) {
          rect.setAttribute(String(k), String(v));
        }
        rect.setAttribute("fill", PALETTE[r.color]);
        const title = document.createElementNS(NS, "title");
        title.textContent = nameOf(f, r.i);
        g.append(title, rect);
        if (r.w >= LABEL_PX) {
          const text = document.createElementNS(NS, "text");
          text.setAttribute("x", String(r.x + 3));
          text.setAttribute("y", String(r.y + ROW / 2 + 4));
          text.textContent = truncate(nameOf(f, r.i), Math.floor((r.w - 6) / this.charW));
          g.append(text);
        }
        svg.append(g);
      });
    }
    svg.setAttribute("height", String(bottom));
    return new XMLSerializer().serializeToString(svg);
  }

  destroy(): void {
    this.observer?.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    document.removeEventListener("scroll", this.onScroll, { capture: true });
    window.removeEventListener("resize", this.onResize);
  }
}

/** `text` cut to `chars` characters with an ellipsis; "" when fewer than 3 fit. */
export function truncate(text: string, chars: number): string {
  if (chars < 3) return "";
  return text.length <= chars ? text : `${text.slice(0, chars - 1)}…`;
}

/** Where a frame comes from: file:line for interpreted frames, the module for native and kernel ones. */
export function location(flat: Flat, i: number): string {
  const node = info(flat, i);
  const kind = KINDS[flat.kind[i]];
  if ((kind === "python" || kind === "interpreted") && node.file) return `${node.file}:${node.line}`;
  if (node.module) return node.file ? `${node.module} (${node.file}:${node.line})` : node.module;
  return node.file ? `${node.file}:${node.line}` : "";
}

/** The tooltip's lines for node i: name, kind, self and total with shares, location (all as text). */
export function fillTooltip(el: HTMLElement, flat: Flat, i: number, zoom: number): void {
  const node = info(flat, i);
  const rows: [string, string][] = [["kind", KINDS[flat.kind[i]]]];
  if (flat.delta) {
    rows.push(["baseline", `${compact(node.base_total ?? 0)} samples (self ${compact(node.base_self ?? 0)})`]);
    rows.push(["comparison", `${compact(node.cmp_total ?? 0)} samples (self ${compact(node.cmp_self ?? 0)})`]);
    rows.push(["change", deltaPp(node.delta_pct ?? 0)]);
  } else {
    const all = flat.value[0] || 1;
    const inZoom = flat.value[zoom] || 1;
    rows.push(["total", `${compact(node.total)} samples · ${pct((100 * node.total) / all)} of all`]);
    if (zoom !== 0) rows.push(["", `${pct((100 * node.total) / inZoom)} of the zoomed frame`]);
    rows.push(["self", `${compact(node.self)} samples · ${pct((100 * node.self) / all)}`]);
  }
  const where = location(flat, i);
  if (where) rows.push(["at", where]);
  replace(
    el,
    h("div", { class: "tt-name" }, node.name),
    h("table", {}, ...rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))),
    h("div", { class: "tt-hint" }, "click to zoom"),
  );
}

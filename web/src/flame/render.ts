// The canvas flame graph (icicle: root on top). Drawing walks the preorder arrays once and skips whole
// subtrees that are off screen or thinner than half a pixel, batching rectangles by colour; labels are
// drawn as canvas text (never markup) and the tooltip is filled with textContent.

import { h, replace } from "../dom";
import { compact, deltaPp, pct } from "../format";
import { DIFF_STEPS, HIGHLIGHT, SHADES, diffBucket, diffColor, diffScale, kindColor, shadeOf } from "./colors";
import { type Flat, KINDS, type SearchResult, hitTest } from "./tree";

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

/** A canvas flame graph bound to a container; setData, setZoom and setSearch redraw it. */
export class FlameGraph {
  readonly canvas: HTMLCanvasElement;
  readonly tooltip: HTMLDivElement;
  flat: Flat | null = null;
  zoom = 0;
  lastRenderMs = 0;
  private colors: Uint16Array = new Uint16Array(0);
  private found: SearchResult | null = null;
  private scale = 0;
  private width = 0;
  private charW = 7.2;
  private observer: ResizeObserver | null = null;

  constructor(
    readonly container: HTMLElement,
    private options: Options = {},
  ) {
    this.canvas = h("canvas", { class: "flame-canvas", role: "img", "aria-label": "flame graph" });
    this.tooltip = h("div", { class: "tooltip", hidden: true });
    container.append(this.canvas, this.tooltip);
    this.canvas.addEventListener("click", (e) => this.click(e));
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => (this.tooltip.hidden = true));
    if (typeof ResizeObserver !== "undefined") {
      this.observer = new ResizeObserver(() => {
        if (this.container.clientWidth !== this.width) this.render();
      });
      this.observer.observe(container);
    }
  }

  /** Shows a new tree; `diff` colours by change instead of by kind. */
  setData(flat: Flat, zoom = 0): void {
    this.flat = flat;
    this.zoom = zoom < flat.n ? zoom : 0;
    this.colors = new Uint16Array(flat.n);
    if (flat.delta) {
      this.scale = diffScale(flat.delta);
      for (let i = 0; i < flat.n; i++) this.colors[i] = DIFF0 + diffBucket(flat.delta[i], this.scale);
    } else {
      const shades = flat.names.map(shadeOf);
      for (let i = 0; i < flat.n; i++) this.colors[i] = flat.kind[i] * SHADES + shades[flat.nameId[i]];
    }
    this.found = null;
    this.render();
  }

  /** The largest change on the diff colour scale (percentage points), 0 for kind colours. */
  get diffScale(): number {
    return this.flat?.delta ? this.scale : 0;
  }

  setZoom(i: number): void {
    if (!this.flat) return;
    this.zoom = i >= 0 && i < this.flat.n ? i : 0;
    this.render();
  }

  setSearch(found: SearchResult | null): void {
    this.found = found;
    this.render();
  }

  /** The colour index of node i, after search highlighting. */
  private colorOf(i: number): number {
    const found = this.found;
    if (!found || !this.flat || i === 0) return this.colors[i];
    return found.matched[this.flat.nameId[i]] ? HL : DIM0 + this.flat.kind[i];
  }

  /** Visible rectangles at `width` CSS pixels (the layout both the canvas and the SVG export draw). */
  layout(width: number, visit: (r: Rect) => void): void {
    const f = this.flat;
    if (!f || f.n === 0) return;
    const z = this.zoom;
    const vx0 = f.x[z];
    const scale = width / (f.value[z] || 1);
    const { x, value, end, depth } = f;
    let i = 0;
    while (i < f.n) {
      const x0 = (x[i] - vx0) * scale;
      const w = value[i] * scale;
      if (w < MIN_PX || x0 + w <= 0 || x0 >= width) {
        i = end[i];
        continue;
      }
      const cx = x0 < 0 ? 0 : x0;
      const cw = (x0 + w > width ? width : x0 + w) - cx;
      visit({ i, x: cx, y: depth[i] * ROW, w: cw, color: this.colorOf(i) });
      i++;
    }
  }

  /** Redraws the canvas; returns the time it took in ms. */
  render(): number {
    const t0 = performance.now();
    const f = this.flat;
    const width = Math.max(this.container.clientWidth, 100);
    this.width = this.container.clientWidth;
    const buckets: number[][] = PALETTE.map(() => []);
    const labels: Rect[] = [];
    let drawn = 0;
    let bottom = ROW;
    this.layout(width, (r) => {
      buckets[r.color].push(r.x, r.y, r.w);
      if (r.w >= LABEL_PX) labels.push(r);
      if (r.y + ROW > bottom) bottom = r.y + ROW;
      drawn++;
    });
    // The canvas is as tall as the rows drawn (frames thinner than half a pixel are not).
    const height = bottom;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
    }
    const ctx = this.canvas.getContext("2d");
    if (!ctx || !f) return 0;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    this.charW = ctx.measureText("MMMMMMMMMM").width / 10 || 7.2;
    for (let c = 0; c < buckets.length; c++) {
      const b = buckets[c];
      if (!b.length) continue;
      ctx.fillStyle = PALETTE[c];
      ctx.beginPath();
      for (let k = 0; k < b.length; k += 3) ctx.rect(b[k], b[k + 1], Math.max(b[k + 2] - 0.5, 0.5), ROW - 1);
      ctx.fill();
    }
    ctx.fillStyle = "#111";
    ctx.textBaseline = "middle";
    for (const r of labels) {
      const text = truncate(f.nodes[r.i].name, Math.floor((r.w - 6) / this.charW));
      if (text) ctx.fillText(text, r.x + 3, r.y + ROW / 2);
    }
    this.canvas.dataset.drawn = String(drawn);
    this.canvas.dataset.zoom = f.nodes[this.zoom].name;
    this.lastRenderMs = performance.now() - t0;
    return this.lastRenderMs;
  }

  /** The node under a mouse event, or -1. */
  nodeAt(e: MouseEvent): number {
    const f = this.flat;
    if (!f) return -1;
    const box = this.canvas.getBoundingClientRect();
    const width = box.width || 1;
    const vx = f.x[this.zoom] + ((e.clientX - box.left) / width) * f.value[this.zoom];
    return hitTest(f, vx, Math.floor((e.clientY - box.top) / ROW));
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
    svg.setAttribute("height", String(f ? (f.maxDepth + 1) * ROW : ROW));
    svg.setAttribute("font-family", "monospace");
    svg.setAttribute("font-size", "12");
    if (f) {
      this.layout(width, (r) => {
        const g = document.createElementNS(NS, "g");
        const rect = document.createElementNS(NS, "rect");
        for (const [k, v] of [["x", r.x], ["y", r.y], ["width", Math.max(r.w - 0.5, 0.5)], ["height", ROW - 1]]) {
          rect.setAttribute(String(k), String(v));
        }
        rect.setAttribute("fill", PALETTE[r.color]);
        const title = document.createElementNS(NS, "title");
        title.textContent = f.nodes[r.i].name;
        g.append(title, rect);
        if (r.w >= LABEL_PX) {
          const text = document.createElementNS(NS, "text");
          text.setAttribute("x", String(r.x + 3));
          text.setAttribute("y", String(r.y + ROW / 2 + 4));
          text.textContent = truncate(f.nodes[r.i].name, Math.floor((r.w - 6) / this.charW));
          g.append(text);
        }
        svg.append(g);
      });
    }
    return new XMLSerializer().serializeToString(svg);
  }

  destroy(): void {
    this.observer?.disconnect();
  }
}

/** `text` cut to `chars` characters with an ellipsis; "" when fewer than 3 fit. */
export function truncate(text: string, chars: number): string {
  if (chars < 3) return "";
  return text.length <= chars ? text : `${text.slice(0, chars - 1)}…`;
}

/** Where a frame comes from: file:line for interpreted frames, the module for native and kernel ones. */
export function location(flat: Flat, i: number): string {
  const node = flat.nodes[i];
  const kind = KINDS[flat.kind[i]];
  if ((kind === "python" || kind === "interpreted") && node.file) return `${node.file}:${node.line}`;
  if (node.module) return node.file ? `${node.module} (${node.file}:${node.line})` : node.module;
  return node.file ? `${node.file}:${node.line}` : "";
}

/** The tooltip's lines for node i: name, kind, self and total with shares, location (all as text). */
export function fillTooltip(el: HTMLElement, flat: Flat, i: number, zoom: number): void {
  const node = flat.nodes[i];
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

// fleetprof flame graph: decodes the compact node payload, aggregates it, and draws it on a canvas.
// Payload: strings[], and per node (parents before children) name (string index), parent (-1 for the
// root), self (samples ending there) and kind (0 root, 1 native, 2 kernel, 3 python, 4 error, 5 process).
(() => {
  "use strict";

  const ROW = 18;
  const MIN_WIDTH = 0.5;
  const TEXT_MIN = 24;
  const FONT = "12px ui-monospace, Menlo, Consolas, monospace";
  const MATCH_COLOR = "rgb(230, 0, 230)";
  const KINDS = [
    { label: "all", hue: [210, 215], sat: 12, light: [78, 80] },
    { label: "native", hue: [0, 32], sat: 78, light: [56, 68] },
    { label: "kernel", hue: [195, 218], sat: 62, light: [60, 72] },
    { label: "python", hue: [90, 140], sat: 52, light: [52, 66] },
    { label: "error", hue: [0, 0], sat: 0, light: [62, 72] },
    { label: "process", hue: [258, 282], sat: 48, light: [68, 76] },
  ];

  const doc = document.documentElement;
  const payload = JSON.parse(document.getElementById("fg-data").textContent);
  const strings = payload.strings;
  const nameOf = payload.name;
  const parentOf = payload.parent;
  const kindOf = payload.kind;
  const n = nameOf.length;

  // Aggregate: totals bottom-up, then depth and horizontal start top-down; siblings keep payload order.
  const total = new Float64Array(n);
  const start = new Float64Array(n);
  const cursor = new Float64Array(n);
  const depth = new Int32Array(n);
  const firstChild = new Int32Array(n).fill(-1);
  const nextSibling = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    total[i] = payload.self[i];
    if (i > 0 && !(parentOf[i] >= 0 && parentOf[i] < i)) throw new Error("flame graph payload: bad parent at " + i);
  }
  for (let i = n - 1; i > 0; i--) total[parentOf[i]] += total[i];
  let maxDepth = 0;
  for (let i = 1; i < n; i++) {
    const p = parentOf[i];
    depth[i] = depth[p] + 1;
    if (depth[i] > maxDepth) maxDepth = depth[i];
    start[i] = cursor[p];
    cursor[p] += total[i];
    cursor[i] = start[i];
  }
  for (let i = n - 1; i > 0; i--) {
    const p = parentOf[i];
    nextSibling[i] = firstChild[p];
    firstChild[p] = i;
  }
  const grandTotal = n > 0 ? total[0] : 0;

  const canvas = document.getElementById("fg-canvas");
  const ctx = canvas.getContext("2d");
  const tooltip = document.getElementById("fg-tooltip");
  const search = document.getElementById("fg-search");
  const matchedLabel = document.getElementById("fg-matched");
  const colors = new Array(n);
  let zoom = 0;
  let chain = [];
  let matched = null;
  let lowerStrings = null;
  let width = 0;
  let charWidth = 7;

  const fmt = (value) => Math.round(value).toLocaleString("en-US");
  const pct = (part, whole) => (whole > 0 ? ((100 * part) / whole).toFixed(2) : "0.00") + "%";
  const nameOfNode = (i) => strings[nameOf[i]];

  function hash(text) {
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
    return (h >>> 0) / 4294967296;
  }

  function colorOf(i) {
    let color = colors[i];
    if (color === undefined) {
      const kind = KINDS[kindOf[i]] || KINDS[4];
      const r = hash(nameOfNode(i));
      const hue = kind.hue[0] + (kind.hue[1] - kind.hue[0]) * r;
      const light = kind.light[0] + (kind.light[1] - kind.light[0]) * (1 - r);
      color = colors[i] = `hsl(${hue.toFixed(1)}, ${kind.sat}%, ${light.toFixed(1)}%)`;
    }
    return color;
  }

  function ancestors(i) {
    const list = [];
    for (let a = parentOf[i]; a >= 0; a = parentOf[a]) list.push(a);
    return list.reverse();
  }

  function drawBox(i, x, w, faded) {
    const y = depth[i] * ROW;
    ctx.globalAlpha = faded ? 0.55 : 1;
    ctx.fillStyle = matched !== null && matched[i] ? MATCH_COLOR : colorOf(i);
    ctx.fillRect(x, y, w > 2 ? w - 1 : w, ROW - 1);
    if (w >= TEXT_MIN) {
      const room = Math.floor((w - 6) / charWidth);
      if (room >= 2) {
        const name = nameOfNode(i);
        ctx.fillStyle = "#111";
        ctx.fillText(name.length <= room ? name : name.slice(0, room - 1) + "\u2026", x + 3, y + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;
  }

  function render() {
    const dpr = window.devicePixelRatio || 1;
    width = canvas.clientWidth || doc.clientWidth;
    const height = (maxDepth + 1) * ROW;
    canvas.style.height = height + "px";
    canvas.width = Math.max(1, Math.round(width * dpr));
    canvas.height = Math.max(1, Math.round(height * dpr));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    charWidth = ctx.measureText("M").width || 7;
    let drawn = 0;
    for (const a of chain) {
      drawBox(a, 0, width, true);
      drawn++;
    }
    const scale = total[zoom] > 0 ? width / total[zoom] : 0;
    const origin = start[zoom];
    const todo = [zoom];
    while (todo.length > 0) {
      const i = todo.pop();
      const w = total[i] * scale;
      drawBox(i, (start[i] - origin) * scale, w, false);
      drawn++;
      for (let c = firstChild[i]; c !== -1; c = nextSibling[c]) {
        if (total[c] * scale >= MIN_WIDTH) todo.push(c);
      }
    }
    doc.dataset.drawn = String(drawn);
  }

  function nodeAt(px, py) {
    const row = Math.floor(py / ROW);
    if (row < 0 || px < 0 || px >= width) return -1;
    if (row < chain.length) return chain[row];
    if (total[zoom] <= 0) return -1;
    const scale = width / total[zoom];
    const pos = start[zoom] + px / scale;
    let i = zoom;
    while (depth[i] < row) {
      let next = -1;
      for (let c = firstChild[i]; c !== -1; c = nextSibling[c]) {
        if (pos >= start[c] && pos < start[c] + total[c]) {
          next = c;
          break;
        }
      }
      if (next === -1) return -1;
      i = next;
    }
    return total[i] * scale >= MIN_WIDTH ? i : -1;
  }

  function setZoom(i) {
    zoom = i;
    chain = ancestors(i);
    render();
  }

  function runSearch(text) {
    const query = text.trim().toLowerCase();
    if (query === "") {
      matched = null;
      matchedLabel.textContent = "";
      render();
      return;
    }
    if (lowerStrings === null) lowerStrings = strings.map((s) => s.toLowerCase());
    const hit = new Uint8Array(strings.length);
    for (let s = 0; s < strings.length; s++) hit[s] = lowerStrings[s].includes(query) ? 1 : 0;
    matched = new Uint8Array(n);
    const covered = new Uint8Array(n);
    let samples = 0;
    let frames = 0;
    for (let i = 1; i < n; i++) {
      const p = parentOf[i];
      covered[i] = covered[p] | matched[p];
      matched[i] = hit[nameOf[i]];
      if (matched[i]) {
        frames++;
        if (!covered[i]) samples += total[i];
      }
    }
    matchedLabel.textContent =
      frames === 0
        ? "No match"
        : `Matched: ${pct(samples, grandTotal)} (${fmt(samples)} of ${fmt(grandTotal)} samples, ${fmt(frames)} frames)`;
    render();
  }

  function showTooltip(i, clientX, clientY) {
    const parent = parentOf[i];
    const lines = [
      ["fg-name", nameOfNode(i)],
      ["fg-kind", (KINDS[kindOf[i]] || KINDS[4]).label + " frame"],
      ["", `Samples: ${fmt(total[i])} (${pct(total[i], grandTotal)} of total)`],
      ["", parent >= 0 ? `${pct(total[i], total[parent])} of parent` : "whole profile"],
      ["", `Self: ${fmt(payload.self[i])}`],
    ];
    tooltip.replaceChildren(
      ...lines.map(([cls, text]) => {
        const div = document.createElement("div");
        if (cls) div.className = cls;
        div.textContent = text;
        return div;
      }),
    );
    tooltip.hidden = false;
    const box = tooltip.getBoundingClientRect();
    const left = clientX + 14 + box.width > window.innerWidth ? clientX - 14 - box.width : clientX + 14;
    const top = clientY + 14 + box.height > window.innerHeight ? clientY - 14 - box.height : clientY + 14;
    tooltip.style.left = Math.max(0, left) + "px";
    tooltip.style.top = Math.max(0, top) + "px";
  }

  function eventNode(event) {
    const rect = canvas.getBoundingClientRect();
    return nodeAt(event.clientX - rect.left, event.clientY - rect.top);
  }

  function buildLegend() {
    const legend = document.getElementById("fg-legend");
    const entries = [1, 2, 3, 4, 5].map((k) => [KINDS[k].label, `hsl(${KINDS[k].hue[0]}, ${KINDS[k].sat}%, 62%)`]);
    entries.push(["search match", MATCH_COLOR]);
    for (const [label, color] of entries) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = color;
      item.append(swatch, label);
      legend.append(item);
    }
  }

  function buildSummary() {
    const meta = payload.meta || {};
    const parts = [`${fmt(grandTotal)} samples`];
    if (meta.processes) parts.push(`${fmt(meta.processes)} ${meta.processes === 1 ? "process" : "processes"}`);
    if (meta.duration_ns) parts.push(`${(meta.duration_ns / 1e9).toFixed(1)} s`);
    if (meta.frequency_hz) parts.push(`${meta.frequency_hz} Hz`);
    if (meta.hostname) parts.push(meta.hostname);
    if (meta.start_time_ns) parts.push(new Date(meta.start_time_ns / 1e6).toISOString());
    document.getElementById("fg-summary").textContent = parts.join(" \u00b7 ");
  }

  buildLegend();
  buildSummary();
  if (grandTotal <= 0) {
    canvas.hidden = true;
    document.getElementById("fg-empty").hidden = false;
    doc.dataset.drawn = "0";
    return;
  }

  canvas.addEventListener("mousemove", (event) => {
    const i = eventNode(event);
    if (i < 0) tooltip.hidden = true;
    else showTooltip(i, event.clientX, event.clientY);
  });
  canvas.addEventListener("mouseleave", () => {
    tooltip.hidden = true;
  });
  canvas.addEventListener("click", (event) => {
    const i = eventNode(event);
    if (i >= 0) setZoom(i);
  });
  document.getElementById("fg-reset").addEventListener("click", () => setZoom(0));
  search.addEventListener("input", () => runSearch(search.value));
  document.addEventListener("keydown", (event) => {
    if (event.target === search) return;
    if (event.key === "Escape") setZoom(0);
    else if (event.key === "/") {
      event.preventDefault();
      search.focus();
    }
  });
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  });
  setZoom(0);
})();

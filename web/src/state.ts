// The whole UI state, and its round trip through the URL so that any view can be shared as a link.

export type View = "flame" | "top" | "diff" | "hosts";
export const VIEWS: View[] = ["flame", "top", "diff", "hosts"];
export const FILTER_KEYS = ["host", "process", "pid", "thread", "container", "executable"] as const;
export const GROUP_KEYS = ["host", "process", "thread", "container", "executable"] as const;
/** `label.KEY`: a program label of the samples (a Go pprof label), as a filter key or timeline group. */
export const LABEL_PREFIX = "label.";

/** Whether `key` names a program label (`label.KEY`). */
export function isLabelKey(key: string): boolean {
  return key.startsWith(LABEL_PREFIX) && key.length > LABEL_PREFIX.length;
}
export const PRESETS: [string, string][] = [
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
];
export const DEFAULT_SINCE = "15m";

/** One side of a diff: its own absolute range (else the main one) and extra KEY=VALUE filters. */
export interface Side {
  start: number | null;
  end: number | null;
  filters: string[];
}

export interface State {
  view: View;
  since: string | null;
  start: number | null;
  end: number | null;
  filters: [string, string][];
  search: string;
  zoom: string[];
  group: string;
  sandwich: string;
  base: Side;
  cmp: Side;
}

/** The state of a fresh page: flame graph of the last 15 minutes, everything else empty. */
export function defaultState(): State {
  return {
    view: "flame",
    since: DEFAULT_SINCE,
    start: null,
    end: null,
    filters: [],
    search: "",
    zoom: [],
    group: "process",
    sandwich: "",
    base: { start: null, end: null, filters: [] },
    cmp: { start: null, end: null, filters: [] },
  };
}

function num(value: string | null): number | null {
  if (value === null || value.trim() === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/** Parses `KEY=VALUE`; null when malformed or the key is not a filter key. */
export function parseFilter(text: string): [string, string] | null {
  const at = text.indexOf("=");
  if (at <= 0) return null;
  const key = text.slice(0, at).trim();
  if (!(FILTER_KEYS as readonly string[]).includes(key) && !isLabelKey(key)) return null;
  return [key, text.slice(at + 1)];
}

/** The state a URL query string describes; unknown or malformed parts fall back to the defaults. */
export function fromQuery(search: string): State {
  const q = new URLSearchParams(search);
  const s = defaultState();
  const view = q.get("view");
  if (view && (VIEWS as string[]).includes(view)) s.view = view as View;
  const start = num(q.get("start"));
  const end = num(q.get("end"));
  if (start !== null && end !== null && end > start) {
    s.since = null;
    s.start = start;
    s.end = end;
  } else if (q.get("since") && /^\d+(\.\d+)?(s|m|h|d|w)$/.test(q.get("since") ?? "")) {
    s.since = q.get("since");
  }
  s.filters = q
    .getAll("f")
    .map(parseFilter)
    .filter((f): f is [string, string] => f !== null);
  s.search = q.get("q") ?? "";
  s.zoom = q.getAll("z");
  const group = q.get("group");
  if (group && ((GROUP_KEYS as readonly string[]).includes(group) || isLabelKey(group))) s.group = group;
  s.sandwich = q.get("sw") ?? "";
  for (const [side, p] of [
    [s.base, "b"],
    [s.cmp, "c"],
  ] as [Side, string][]) {
    side.start = num(q.get(`${p}s`));
    side.end = num(q.get(`${p}e`));
    if (side.start === null || side.end === null || side.end <= side.start) side.start = side.end = null;
    side.filters = q.getAll(`${p}f`).filter((f) => parseFilter(f) !== null);
  }
  return s;
}

/** The URL query string of a state (defaults left out, so links stay short). */
export function toQuery(s: State): string {
  const q = new URLSearchParams();
  if (s.view !== "flame") q.set("view", s.view);
  if (s.start !== null && s.end !== null) {
    q.set("start", String(Math.round(s.start)));
    q.set("end", String(Math.round(s.end)));
  } else if (s.since && s.since !== DEFAULT_SINCE) {
    q.set("since", s.since);
  }
  for (const [key, value] of s.filters) q.append("f", `${key}=${value}`);
  if (s.search) q.set("q", s.search);
  for (const name of s.zoom) q.append("z", name);
  if (s.group !== "process") q.set("group", s.group);
  if (s.sandwich) q.set("sw", s.sandwich);
  for (const [side, p] of [
    [s.base, "b"],
    [s.cmp, "c"],
  ] as [Side, string][]) {
    if (side.start !== null && side.end !== null) {
      q.set(`${p}s`, String(Math.round(side.start)));
      q.set(`${p}e`, String(Math.round(side.end)));
    }
    for (const f of side.filters) q.append(`${p}f`, f);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** The [start, end] epoch ms the state's range covers at `nowMs`. */
export function rangeMs(s: State, nowMs: number = Date.now()): [number, number] {
  if (s.start !== null && s.end !== null) return [s.start, s.end];
  return [nowMs - durationMs(s.since ?? DEFAULT_SINCE), nowMs];
}

/** Milliseconds of "15m", "2h", "7d", "30s", "1w". */
export function durationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d|w)$/.exec(text.trim());
  if (!m) return 15 * 60_000;
  const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[m[2] as "s" | "m" | "h" | "d" | "w"];
  return Number(m[1]) * unit;
}

/** The query parameters of the state's selection (range and filters) for /api/v1 routes. */
export function selectionParams(s: State): URLSearchParams {
  const q = new URLSearchParams();
  if (s.start !== null && s.end !== null) {
    q.set("start", String(Math.round(s.start)));
    q.set("end", String(Math.round(s.end)));
  } else {
    q.set("since", s.since ?? DEFAULT_SINCE);
  }
  for (const [key, value] of s.filters) q.append("filter", `${key}=${value}`);
  return q;
}

/** The /api/v1/flamegraph parameters: the selection, answered as columns. */
export function flameParams(s: State): URLSearchParams {
  const q = selectionParams(s);
  q.set("shape", "columns");
  return q;
}

/** The /api/v1/diff parameters: the common selection plus each side's range and filters. */
export function diffParams(s: State): URLSearchParams {
  const q = selectionParams(s);
  for (const [side, p] of [
    [s.base, "base"],
    [s.cmp, "cmp"],
  ] as [Side, string][]) {
    if (side.start !== null && side.end !== null) {
      q.set(`${p}_start`, String(Math.round(side.start)));
      q.set(`${p}_end`, String(Math.round(side.end)));
    }
    for (const f of side.filters) q.append(`${p}_filter`, f);
  }
  return q;
}

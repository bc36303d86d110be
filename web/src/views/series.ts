// Pure helpers for the timeline's series (kept apart from uPlot, which needs a browser to load).

import type { Timeline } from "../api";

/** Cumulative sums of the series (largest first), for stacked areas: out[k][t] = sum of series 0..k at t. */
export function stack(series: number[][]): number[][] {
  const out: number[][] = [];
  series.forEach((values, k) => out.push(values.map((v, t) => v + (k ? out[k - 1][t] : 0))));
  return out;
}

/** A narrower range for a timeline whose data fills little of it. */
export interface Fit {
  startMs: number;
  endMs: number;
  stepS: number;
}

/** Buckets the fitted chart aims for, and the share of the range below which the data gets its own. */
const FIT_BUCKETS = 120;
const FIT_SHARE = 0.25;

/** When the samples cover under a quarter of the answer's range (fresh data in "last hour" is one bar at
 * the right edge), the range from a little before the first sample to the range's end, with buckets sized
 * for about 120 bars (at least 1 s); null when the data already spreads over the range, or there is none. */
export function fitRange(t: Timeline): Fit | null {
  const n = t.times_ns.length;
  if (n < 2 || !t.series.length) return null;
  let first = -1;
  for (let i = 0; i < n && first < 0; i++) if (t.series.some((s) => s.values[i] > 0)) first = i;
  if (first < 0) return null;
  const stepMs = t.step_s * 1000;
  const rangeStart = t.times_ns[0] / 1e6;
  const rangeEnd = t.times_ns[n - 1] / 1e6 + stepMs;
  const dataStart = t.times_ns[first] / 1e6;
  const span = rangeEnd - dataStart;
  if (span >= FIT_SHARE * (rangeEnd - rangeStart) || stepMs <= 1000) return null;
  const startMs = Math.max(rangeStart, Math.floor(dataStart - 0.05 * span));
  const stepS = Math.max(1, Math.ceil((rangeEnd - startMs) / 1000 / FIT_BUCKETS));
  return stepS * 1000 < stepMs ? { startMs, endMs: Math.ceil(rangeEnd), stepS } : null;
}

// Colours: by frame kind (a few shades per kind, picked by name so neighbours differ), search highlight
// and dimming, and the red/green scale of differential graphs.

import { KINDS } from "./tree";

export const SHADES = 6;
const HUES: Record<string, [number, number, number]> = {
  // hue, saturation %, lightness %
  root: [0, 0, 72],
  process: [45, 12, 72],
  native: [24, 80, 62],
  kernel: [205, 60, 64],
  python: [110, 45, 58],
  interpreted: [270, 40, 68],
  error: [330, 75, 58],
};
export const KIND_LABELS: Record<string, string> = {
  root: "all samples",
  process: "process",
  native: "native",
  kernel: "kernel",
  python: "Python",
  interpreted: "other runtime",
  error: "error: stack truncated",
};

/** The colour of a kind (index into KINDS) and shade (0..SHADES-1). */
export function kindColor(kind: number, shade: number, dim = false): string {
  const [h, s, l] = HUES[KINDS[kind] ?? "native"];
  if (dim) return `hsl(${h}, ${Math.round(s * 0.15)}%, ${Math.min(92, l + 18)}%)`;
  return `hsl(${h + (shade - SHADES / 2) * 3}, ${s}%, ${l + (shade - SHADES / 2) * 2}%)`;
}

/** A stable shade for a name (FNV-1a hash), so the same function keeps its colour across views. */
export function shadeOf(name: string): number {
  let hash = 2166136261;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 16777619);
  }
  return (hash >>> 0) % SHADES;
}

export const HIGHLIGHT = "#e040fb";
export const DIFF_STEPS = 10;

/** Bucket of a change in percentage points on a scale of ±`scale`: -DIFF_STEPS (green) .. +DIFF_STEPS (red). */
export function diffBucket(delta: number, scale: number): number {
  if (!(scale > 0)) return 0;
  const b = Math.round((delta / scale) * DIFF_STEPS);
  return Math.max(-DIFF_STEPS, Math.min(DIFF_STEPS, b));
}

/** Colour of a diff bucket: red for more CPU in the comparison, green for less, grey for no change. */
export function diffColor(bucket: number): string {
  if (bucket === 0) return "hsl(0, 0%, 82%)";
  const t = Math.abs(bucket) / DIFF_STEPS;
  const hue = bucket > 0 ? 0 : 120;
  return `hsl(${hue}, ${Math.round(35 + 45 * t)}%, ${Math.round(80 - 35 * t)}%)`;
}

/** The scale of a diff graph: the largest change of any node, at least 0.1 pp. */
export function diffScale(delta: Float32Array | null): number {
  if (!delta) return 0;
  let max = 0;
  for (let i = 1; i < delta.length; i++) max = Math.max(max, Math.abs(delta[i]));
  return Math.max(max, 0.1);
}

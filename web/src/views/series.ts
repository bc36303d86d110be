// Pure helpers for the timeline's series (kept apart from uPlot, which needs a browser to load).

/** Cumulative sums of the series (largest first), for stacked areas: out[k][t] = sum of series 0..k at t. */
export function stack(series: number[][]): number[][] {
  const out: number[][] = [];
  series.forEach((values, k) => out.push(values.map((v, t) => v + (k ? out[k - 1][t] : 0))));
  return out;
}

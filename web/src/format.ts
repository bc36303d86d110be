// Number, duration and time formatting for tables, tooltips and summaries.

/** 1234567 -> "1.23 M"; small integers as they are. */
export function compact(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (abs >= 1e4) return `${(n / 1e3).toFixed(1)} k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** A percentage with precision that suits its size. */
export function pct(p: number): string {
  const abs = Math.abs(p);
  if (abs === 0) return "0%";
  if (abs < 0.01) return `${p < 0 ? "-" : ""}<0.01%`;
  if (abs < 10) return `${p.toFixed(2)}%`;
  return `${p.toFixed(1)}%`;
}

/** A signed percentage point change ("+1.20 pp"). */
export function deltaPp(p: number): string {
  return `${p > 0 ? "+" : ""}${p.toFixed(2)} pp`;
}

/** Kilograms of CO2, scaled to g or t. */
export function co2(kg: number): string {
  const abs = Math.abs(kg);
  if (abs >= 1000) return `${(kg / 1000).toFixed(2)} t`;
  if (abs >= 1) return `${kg.toFixed(2)} kg`;
  return `${(kg * 1000).toFixed(abs * 1000 >= 10 ? 0 : 2)} g`;
}

/** Dollars. */
export function money(usd: number): string {
  const abs = Math.abs(usd);
  if (abs >= 1000) return `$${compact(usd)}`;
  if (abs >= 1) return `$${usd.toFixed(2)}`;
  return `$${usd.toFixed(abs >= 0.01 ? 3 : 5)}`;
}

/** Seconds as "12.3 s", "4.5 min", "2.1 h". */
export function seconds(s: number): string {
  const abs = Math.abs(s);
  if (abs >= 7200) return `${(s / 3600).toFixed(1)} h`;
  if (abs >= 120) return `${(s / 60).toFixed(1)} min`;
  return `${s.toFixed(abs >= 10 ? 1 : 2)} s`;
}

/** "5 s ago", "3 min ago", "2 h ago", "4 d ago". */
export function ago(ms: number, nowMs: number = Date.now()): string {
  const s = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** Epoch ms as local "YYYY-MM-DDTHH:MM:SS" (the value of a datetime-local input). */
export function localInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Epoch ms as a short local time for labels. */
export function clock(ms: number): string {
  return localInput(ms).replace("T", " ");
}

// Sorting and filtering of table rows (pure, shared by the top functions and diff tables).

export type SortDir = "asc" | "desc";

/** Rows sorted by `key` (numbers numerically, text by locale), ties by function name. */
export function sortRows<T extends Record<string, unknown>>(rows: T[], key: string, dir: SortDir): T[] {
  const sign = dir === "asc" ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    let c: number;
    if (typeof x === "number" && typeof y === "number") c = x - y;
    else c = String(x ?? "").localeCompare(String(y ?? ""));
    if (c === 0) c = String(a.function ?? "").localeCompare(String(b.function ?? "")) * sign;
    return c * sign;
  });
}

/** Rows whose function, module or file contains every word of `text` (case-insensitive). */
export function filterRows<T extends Record<string, unknown>>(rows: T[], text: string): T[] {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return rows;
  return rows.filter((r) => {
    const hay = `${r.function ?? ""} ${r.module ?? ""} ${r.file ?? ""}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

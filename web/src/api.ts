// Calls to the server's /api/v1 query routes, with errors classified into what the user should do.

export class ApiError extends Error {
  /** kind: unreachable (no server), input (400), broad (too much data / timeout), server (5xx). */
  constructor(
    message: string,
    public kind: "unreachable" | "input" | "broad" | "server",
    public hint: string,
  ) {
    super(message);
  }
}

/** What the user should do about an HTTP error status and the server's one-line message. */
export function classify(status: number, message: string): ApiError {
  if (status === 400 || status === 422) {
    return new ApiError(message, "input", "Check the time range and filters.");
  }
  if (status === 413 || status === 504 || /too (broad|large|many)|memory limit|timeout/i.test(message)) {
    return new ApiError(message, "broad", "The query is too broad: choose a shorter time range or add filters.");
  }
  if (status === 503) {
    return new ApiError(message, "server", "The server's store is unavailable; check the server's log.");
  }
  return new ApiError(message || `HTTP ${status}`, "server", "The server failed this query; check its log.");
}

const early = new Map<string, Promise<Response>>();

function urlOf(path: string, params?: URLSearchParams): string {
  return params && [...params].length ? `${path}?${params}` : path;
}

/** Starts a GET before the page is built (the first view's query); the next getJson of it takes the answer. */
export function prefetch(path: string, params?: URLSearchParams): void {
  const url = urlOf(path, params);
  const started = fetch(url, { headers: { Accept: "application/json" } });
  started.catch(() => undefined); // a failure is reported by the getJson that takes it
  early.set(url, started);
}

/** GET a JSON answer from the API; raises ApiError with a hint on failure (AbortError passes through). */
export async function getJson<T>(path: string, params?: URLSearchParams, signal?: AbortSignal): Promise<T> {
  const url = urlOf(path, params);
  let response: Response;
  try {
    const started = early.get(url);
    early.delete(url);
    response = await (started ?? fetch(url, { signal, headers: { Accept: "application/json" } }));
    signal?.throwIfAborted();
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new ApiError(
      "Cannot reach the fleetprof server",
      "unreachable",
      "Is `fleetprof server` (or `fleetprof up`) still running? Start it again, then reload this page.",
    );
  }
  if (!response.ok) {
    let message = "";
    try {
      message = String(((await response.json()) as { error?: string }).error ?? "");
    } catch {
      message = response.statusText;
    }
    throw classify(response.status, message);
  }
  return (await response.json()) as T;
}

export interface FlameNode {
  name: string;
  kind: string;
  module: string;
  file: string;
  line: number;
  self: number;
  total: number;
  children: FlameNode[];
  base_total?: number;
  cmp_total?: number;
  base_self?: number;
  cmp_self?: number;
  delta_pct?: number;
}

/** The flame graph route's columnar answer (`shape=columns`): one value per node in preorder (children
 * largest first), node 0 the root; name, kind, module and file index `strings`. */
export interface FlameColumns {
  strings: string[];
  name: number[];
  kind: number[];
  module: number[];
  file: number[];
  line: number[];
  depth: number[];
  self: number[];
  total: number[];
}

export interface TopRow {
  function: string;
  kind: string;
  module: string;
  file: string;
  self: number;
  total: number;
  self_pct: number;
  total_pct: number;
  self_cpu_s: number;
  total_cpu_s: number;
  annual_self_co2_kg: number;
  annual_self_cost: number;
  [key: string]: string | number;
}

export interface Timeline {
  group_by: string;
  step_s: number;
  times_ns: number[];
  series: { group: string; values: number[]; total: number }[];
}

export interface DiffRow {
  function: string;
  module: string;
  file: string;
  base_self: number;
  cmp_self: number;
  base_self_pct: number;
  cmp_self_pct: number;
  delta_self_pct: number;
  delta_total_pct: number;
}

export interface Diff {
  tree: FlameNode;
  top: DiffRow[];
  summary: { base_samples: number; cmp_samples: number; base_cpu_s: number; cmp_cpu_s: number; cpu_change_pct: number | null };
}

export interface Host {
  host_name: string;
  host_id: string;
  agent_version: string;
  kernel: string;
  os: string;
  arch: string;
  cpu_model: string;
  cores: number;
  samples: number;
  last_report_ns: number;
}

export interface Sandwich {
  function: string;
  self: number;
  total: number;
  total_samples: number;
  callers: FlameNode;
  callees: FlameNode;
}

/** The program label keys (Go pprof labels) seen in a selection, as `label.KEY` filter keys; [] on failure. */
export async function labelKeys(params: URLSearchParams): Promise<string[]> {
  const q = new URLSearchParams(params);
  q.set("limit", "50");
  try {
    const data = await getJson<{ values: { value: string }[] }>("api/v1/values/label", q);
    return data.values.map((v) => `label.${v.value}`);
  } catch {
    return [];
  }
}

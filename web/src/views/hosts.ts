// The hosts view: every host with agent version, kernel, cores, last report and samples in its latest
// interval, so one sees at a glance which agents are reporting.

import { ApiError, type Host, type Timeline, getJson } from "../api";
import { h, replace, status } from "../dom";
import { ago, clock, compact } from "../format";
import type { App } from "../app";

const STALE_MS = 30_000;

/** Samples in each host's most recent non-empty timeline bucket. */
export function lastInterval(t: Timeline): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of t.series) {
    let last = 0;
    for (let i = s.values.length - 1; i >= 0; i--) {
      if (s.values[i]) {
        last = s.values[i];
        break;
      }
    }
    out.set(s.group, last);
  }
  return out;
}

export class HostsView {
  readonly el: HTMLElement;
  private stat = h("div", { class: "status", hidden: true });
  private body = h("tbody");

  constructor(private app: App) {
    const heads = ["", "Host", "Agent", "Kernel", "OS / arch", "Cores", "Last report", "Samples (last 5 s)", "Samples stored"];
    this.el = h(
      "section",
      { class: "view hosts-view", "data-view": "hosts" },
      this.stat,
      h("table", { class: "grid hosts-table" }, h("thead", {}, h("tr", {}, ...heads.map((t) => h("th", {}, t)))), this.body),
    );
  }

  update(): void {
    void this.load();
  }

  private async load(): Promise<void> {
    status(this.stat, "loading", "Loading hosts…");
    try {
      const params = new URLSearchParams({ since: "2m", group_by: "host", step_s: "5", max_series: "1000" });
      const [hosts, timeline] = await Promise.all([
        getJson<{ hosts: Host[] }>("api/v1/hosts"),
        getJson<Timeline>("api/v1/timeline", params).catch(() => null),
      ]);
      const recent = timeline ? lastInterval(timeline) : new Map<string, number>();
      if (!hosts.hosts.length) {
        this.app.noData(this.stat);
        replace(this.body);
        return;
      }
      status(this.stat, "none");
      const now = Date.now();
      replace(
        this.body,
        ...hosts.hosts.map((host) => {
          const last = host.last_report_ns / 1e6;
          const fresh = now - last < STALE_MS;
          return h(
            "tr",
            { class: fresh ? "fresh" : "stale" },
            h("td", { title: fresh ? "reporting" : "no report in the last 30 s" }, h("span", { class: `dot ${fresh ? "ok" : "late"}` })),
            h("td", { title: host.host_id }, host.host_name),
            h("td", {}, host.agent_version),
            h("td", {}, host.kernel),
            h("td", {}, `${host.os} ${host.arch}`.trim()),
            h("td", { title: host.cpu_model }, String(host.cores)),
            h("td", { title: clock(last) }, ago(last, now)),
            h("td", {}, compact(recent.get(host.host_name) ?? 0)),
            h("td", {}, compact(host.samples)),
          );
        }),
      );
    } catch (err) {
      this.app.failed(this.stat, err as ApiError);
    }
  }
}

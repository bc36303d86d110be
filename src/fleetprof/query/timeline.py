"""Sample counts over time, one series per host, process, thread, container, executable, pid or program
label (`label.KEY`: a Go pprof label)."""

from __future__ import annotations

from typing import Any

from fleetprof.query.selection import LABEL_FILTER, QueryError, Selection, label_column

GROUP_COLUMNS = {
    "host": "host",
    "process": "process",
    "thread": "thread",
    "container": "container",
    "executable": "executable",
    "pid": "toString(pid)",
    "none": "''",
}


def timeline(
    store: Any, sel: Selection, group_by: str = "host", step_s: int = 0, max_series: int = 50
) -> dict[str, Any]:
    """Counts per `step_s` bucket (chosen for ~200 buckets when 0) for the `max_series` largest groups."""
    where, params = sel.where(store)
    column = GROUP_COLUMNS.get(group_by)
    if column is None and group_by.startswith(LABEL_FILTER) and len(group_by) > len(LABEL_FILTER):
        column = label_column(group_by[len(LABEL_FILTER) :], "group_label", params)
    if column is None:
        choices = ", ".join([*GROUP_COLUMNS, f"{LABEL_FILTER}KEY"])
        raise QueryError(f"cannot group by {group_by!r} (choose one of {choices})")
    span_ms = max((sel.end_ns - sel.start_ns) // 1_000_000, 1)
    step_ms = int(step_s * 1000) if step_s > 0 else max(1000, -(-span_ms // 200))
    params.update({"step": step_ms, "max_series": max(int(max_series), 1)})
    table = store.query(
        f"SELECT {column} AS g, intDiv(toUnixTimestamp64Milli(ts), {{step:Int64}}) * {{step:Int64}} AS t, "
        f"sum(count) AS c FROM {store.t('samples')} WHERE {where} AND {column} IN (SELECT {column} FROM "
        f"{store.t('samples')} WHERE {where} GROUP BY {column} ORDER BY sum(count) DESC "
        "LIMIT {max_series:UInt32}) "
        "GROUP BY g, t ORDER BY g, t",
        params,
    )
    start = (sel.start_ns // 1_000_000) // step_ms * step_ms
    n = -(-(sel.end_ns // 1_000_000 - start) // step_ms)
    series: dict[str, list[int]] = {}
    for row in table.to_pylist():
        values = series.setdefault(row["g"], [0] * n)
        i = (row["t"] - start) // step_ms
        if 0 <= i < n:
            values[i] += row["c"]
    ordered = sorted(series.items(), key=lambda kv: -sum(kv[1]))
    return {
        "group_by": group_by,
        "step_s": step_ms / 1000,
        "times_ns": [(start + i * step_ms) * 1_000_000 for i in range(n)],
        "series": [{"group": g, "values": v, "total": sum(v)} for g, v in ordered],
    }

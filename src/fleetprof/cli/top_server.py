"""`fleetprof top --server URL`: the server's top functions over a recent window, as the local `top` table."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Any, TextIO

from fleetprof.cli.serverclient import check_server_url, get_json, selection_query
from fleetprof.cli.stopping import StopRequest


def function_label(row: dict[str, Any]) -> str:
    """How a function is named in the table, as the local `top` names it."""
    name = str(row.get("function", ""))
    kind = row.get("kind", "")
    if kind == "kernel":
        return f"{name}_[k]"
    if kind == "python" and row.get("file"):
        return f"{name} ({row['file']})"
    if row.get("module") and kind == "native":
        return f"{name} [{row['module']}]"
    return name


def render_rows(rows: list[dict[str, Any]], limit: int, width: int, header: str) -> str:
    """The table: SELF% TOTAL% SAMPLES CO2 FUNCTION."""
    lines = [header, f"{'SELF%':>6} {'TOTAL%':>6} {'SAMPLES':>8} {'CO2/yr kg':>10}  FUNCTION"]
    for row in rows[:limit]:
        line = (
            f"{row['self_pct']:6.1f} {row['total_pct']:6.1f} {row['self']:8d} "
            f"{row.get('annual_self_co2_kg', 0.0):10.3f}  {function_label(row)}"
        )
        lines.append(line[:width])
    if not rows:
        lines.append("(no samples in this window)")
    return "\n".join(lines)


def run_server_top(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the server's table once (or --iterations times, every --interval); stdout as it is now."""
    out = out if out is not None else sys.stdout
    server = check_server_url(args.server)
    params = [*selection_query(args, default_since="1m"), ("limit", str(args.limit))]
    iterations = args.iterations or 1
    tty = out.isatty()
    stop = StopRequest()
    with stop.catching():
        for shown in range(iterations):
            if shown:
                stop.event.wait(args.interval)
                if stop.is_set():
                    break
            answer = get_json(server, "/api/v1/top", params)
            rows = answer.get("functions", []) if isinstance(answer, dict) else []
            samples = sum(int(r.get("self", 0)) for r in rows if r.get("kind") != "process")
            width = shutil.get_terminal_size((120, 40)).columns if tty else 200
            header = f"fleetprof top — {server}, {time.strftime('%H:%M:%S')}, top {len(rows)} functions"
            if samples:
                header += f" ({samples} samples self)"
            out.write(
                ("\033[H\033[2J" if tty and shown else "") + render_rows(rows, args.limit, width, header)
            )
            out.write("\n\n" if shown + 1 < iterations else "\n")
            out.flush()
    return 0

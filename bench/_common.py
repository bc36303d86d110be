"""Helpers the benches share: the `fleetprof record` summary line, BPF programs' run time read from
/proc/PID/fdinfo (no bpftool needed), run-time accounting switched on, and medians with their spread."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PROG_TYPE_PERF_EVENT = 7
_NR_BPF = 321  # x86-64
_BPF_ENABLE_STATS = 32
_SUMMARY = re.compile(
    r"^fleetprof: wrote .*: samples ([\d,]+), processes ([\d,]+), ([\d.]+) s, whole stacks ([\d.]+)%\s*$",
    re.M,
)


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures of the line `fleetprof record` ends with (src/fleetprof/cli/record.py)."""

    samples: int
    processes: int
    seconds: float
    whole_pct: float


def parse_summary(stderr: str) -> Summary | None:
    """The last summary line in `stderr`, None when there is none (the run failed, or the format moved)."""
    found = list(_SUMMARY.finditer(stderr))
    if not found:
        return None
    m = found[-1]
    return Summary(
        int(m.group(1).replace(",", "")),
        int(m.group(2).replace(",", "")),
        float(m.group(3)),
        float(m.group(4)),
    )


@dataclass(frozen=True, slots=True)
class ProgRun:
    """Run-time accounting of one BPF program (zero unless BPF stats are on)."""

    prog_type: int
    run_ns: int
    runs: int


def bpf_programs(pid: int | str = "self") -> dict[int, ProgRun]:
    """BPF programs the process holds open, by program id, from the fdinfo of its program fds. Link fds
    (one per CPU's perf event) also name a prog_id but carry no prog_type and are not counted again."""
    out: dict[int, ProgRun] = {}
    base = Path(f"/proc/{pid}/fdinfo")
    try:
        fds = os.listdir(base)
    except OSError:
        return out
    for fd in fds:
        try:
            info = dict(line.split(":", 1) for line in (base / fd).read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if "prog_type" not in info or "prog_id" not in info or "run_time_ns" not in info:
            continue
        out[int(info["prog_id"])] = ProgRun(
            int(info["prog_type"]), int(info["run_time_ns"]), int(info.get("run_cnt", "0"))
        )
    return out


def sampling_run_time(pid: int | str = "self") -> tuple[int, int]:
    """(run time ns, runs) of the perf-event (sampling) programs the process holds. A tail-called
    program's time counts in its caller's run, so this is the whole time of the sampling path."""
    progs = [p for p in bpf_programs(pid).values() if p.prog_type == PROG_TYPE_PERF_EVENT]
    return sum(p.run_ns for p in progs), sum(p.runs for p in progs)


@contextlib.contextmanager
def bpf_stats() -> Iterator[bool]:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME) while inside; yields whether the kernel accepted it."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(16)  # union bpf_attr { struct { __u32 type; } enable_stats; }
    fd = libc.syscall(_NR_BPF, _BPF_ENABLE_STATS, attr, ctypes.sizeof(attr))
    try:
        yield fd >= 0
    finally:
        if fd >= 0:
            os.close(fd)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, lower quartile, upper quartile); all three equal the value when there is one."""
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v, v
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q1, q3


def holds_perf_events(pid: int) -> bool:
    """The process holds perf event fds open: a profiler that has attached and samples."""
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]"
            for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False

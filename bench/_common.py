"""Helpers the benches share: the `fleetprof record` summary line, BPF programs' run time read from
/proc/PID/fdinfo (no bpftool needed), run-time accounting switched on, medians with their spread, and for
the symbolization benches, addresses sampled in function symbols and the peer tools (llvm-symbolizer,
addr2line) run cold or kept warm on stdin."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import random
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetprof.elf.debugfile import find_debug_file
from fleetprof.elf.reader import read_elf_info

PROG_TYPE_PERF_EVENT = 7
_NR_BPF = 321  # x86-64
_BPF_ENABLE_STATS = 32
_SUMMARY = re.compile(
    r"^fleetprof: wrote .*: samples ([\d,]+), processes ([\d,]+), ([\d.]+) s, whole stacks ([\d.]+)%\s*$",
    re.M,
)
CLONE_SUFFIX = re.compile(r"( \[clone [^\]]+\]|\.(cold|constprop|isra|part|lto_priv)(\.\d+)?)+$")


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


def functions(path: str) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """(start, size) of sized text symbols (.symtab, else .dynsym), and demangled name -> start.

    Aliases also come from the separate debug file's .symtab, when there is one.
    """
    info = read_elf_info(path)
    debug = find_debug_file(path, info.build_id, info.debuglink, info.debuglink_crc)
    funcs, starts = _nm(path)
    if debug:
        starts = {**_nm(debug)[1], **starts}
    return funcs, starts


def _nm(path: str) -> tuple[list[tuple[int, int]], dict[str, int]]:
    for flags in (["-S"], ["-D", "-S"]):
        out = subprocess.run(
            ["nm", "-C", *flags, "--defined-only", path], capture_output=True, text=True
        ).stdout
        funcs, starts = [], {}
        for line in out.splitlines():
            parts = line.split(maxsplit=3)
            if len(parts) == 4 and parts[2] in "tTwWi" and int(parts[1], 16) > 0:
                funcs.append((int(parts[0], 16), int(parts[1], 16)))
                starts[CLONE_SUFFIX.sub("", parts[3].split("@")[0])] = int(parts[0], 16)
        if funcs:
            return funcs, starts
    return [], {}


def sample(funcs: list[tuple[int, int]], count: int, seed: int = 42) -> list[int]:
    """`count` distinct addresses inside the functions, drawn with `seed`."""
    rng = random.Random(seed)
    addrs: set[int] = set()
    while len(addrs) < count:
        start, size = rng.choice(funcs)
        addrs.add(start + rng.randrange(size))
    return sorted(addrs)


def run_tool(cmd: list[str], addrs: list[int]) -> tuple[float, str]:
    text = "\n".join(hex(a) for a in addrs) + "\n"
    t0 = time.perf_counter()
    done = subprocess.run(cmd, input=text, capture_output=True, text=True)
    return time.perf_counter() - t0, done.stdout


SENTINEL = 0xFFFF_FFFF_FFF0  # an address no binary here maps: its echo marks the end of a batch


class WarmPeer:
    """A long-running `addr2line -a …` or `llvm-symbolizer --addresses …` fed addresses on stdin, as a
    symbolizer service would keep it: `timed` answers one batch (every address, then the sentinel) and
    returns the seconds it took until the sentinel's echo came back."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def timed(self, addrs: list[int]) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        text = "".join(f"{a:#x}\n" for a in addrs) + f"{SENTINEL:#x}\n"
        writer = threading.Thread(target=self._write, args=(text,))
        t0 = time.perf_counter()
        writer.start()
        ends = {f"{SENTINEL:#x}", f"0x{SENTINEL:016x}"}  # llvm-symbolizer's echo, addr2line's
        for line in self.proc.stdout:
            if line.strip() in ends:
                break
        else:
            raise RuntimeError(f"{self.proc.args[0]} ended before answering")
        took = time.perf_counter() - t0
        writer.join()
        return took

    def _write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


def llvm_symbolizer_cmd(path: str) -> list[str]:
    """llvm-symbolizer reading addresses of `path` on stdin, answering as `addr2line -a -f -i -C` would."""
    return ["llvm-symbolizer", f"--obj={path}", "--addresses", "-f", "-i", "-C"]


def warm_peer_time(cmd: list[str], warmup: list[int], addrs: list[int]) -> float:
    """Seconds a warm peer (it has answered `warmup` already) takes for `addrs`; nan when it fails."""
    peer = WarmPeer(cmd)
    try:
        peer.timed(warmup)
        return peer.timed(addrs)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"  ({cmd[0]} as a warm process failed: {exc})")
        return math.nan
    finally:
        peer.close()


def pin_process(cpus: set[int]) -> set[int]:
    """Keep this process (every thread it has, and so every thread it starts later) on `cpus`: a rate
    measured so is a rate on that many cores, whatever threads the libraries start. Returns `cpus`."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)
    return cpus

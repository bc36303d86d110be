"""JIT symbols from perf maps (`/tmp/perf-PID.map`: "START SIZE name" per line, hex), as written by
`node --perf-basic-prof`, the JVM's perf-map agents, .NET's DOTNET_PerfMapEnabled, Python 3.12's -X perf."""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

MAX_BYTES = 256 << 20  # refuse absurd files rather than load them


@dataclass(slots=True)
class PerfMap:
    """Sorted JIT symbols of one process; later entries for the same start replace earlier ones."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> PerfMap:
        """Parse the file's text; malformed lines are skipped."""
        entries: dict[int, tuple[int, str]] = {}
        for line in text.splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3:
                continue
            try:
                start, size = int(parts[0], 16), int(parts[1], 16)
            except ValueError:
                continue
            if size > 0:
                entries[start] = (start + size, parts[2].strip())
        out = cls()
        for start in sorted(entries):
            end, name = entries[start]
            out.starts.append(start)
            out.ends.append(end)
            out.names.append(name)
        return out

    def lookup(self, addr: int) -> str | None:
        """The JIT function holding `addr`, or None."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.ends[i]:
            return self.names[i]
        return None


def perf_map_paths(pid: int) -> list[str]:
    """Where the perf map of `pid` may be: the host's /tmp, then the process' own /tmp (containers)."""
    paths = [f"/tmp/perf-{pid}.map"]
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    nspid = line.split()[-1]
                    paths.append(f"/proc/{pid}/root/tmp/perf-{nspid}.map")
                    break
    except OSError:
        pass
    return paths


def load_perf_map(pid: int) -> PerfMap | None:
    """The perf map of `pid`, or None when it has none (or it can't be read)."""
    for path in perf_map_paths(pid):
        try:
            if os.path.getsize(path) > MAX_BYTES:
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                return PerfMap.parse(f.read())
        except OSError:
            continue
    return None

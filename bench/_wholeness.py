"""Whether a sample's stack is whole, judged the same way for fleetprof's output and for `perf script`'s:
no unwind-error frame, and the outermost user frame is where a process or thread begins (the entry of the
executable or of the dynamic loader, glibc's start-up under an unnamed entry, or a thread's clone), so a
stack cut short anywhere in between does not count. Used by the benches on new processes."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_LD_SO = re.compile(r"ld-linux[-\w.]*\.so[.\d]*")
_ENTRY = re.compile(r"_start|_dl_start_user|_dl_start")
_LIBC_START = re.compile(r"__libc_start_main.*|__libc_start_call_main")
_THREAD = re.compile(r"(__)?clone3?|start_thread")
PERF_SCRIPT_FLAGS = ("-F", "comm,pid,tid,ip,sym,dso", "--no-inline", "--max-stack", "1024")
_PERF_HEAD = re.compile(r"^(.*\S)\s+(\d+)/(\d+)\s*$")
_PERF_FRAME = re.compile(r"^\s+([0-9a-f]+) (.*) \((.*)\)$")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: kind native | kernel | error | python; `module` is a file's basename ("" if none)."""

    name: str
    module: str = ""
    kind: str = "native"


@dataclass(frozen=True, slots=True)
class Sample:
    """Samples of one process sharing a stack, frames root first."""

    process: str
    pid: int
    frames: tuple[Frame, ...]
    count: int = 1

    @property
    def user(self) -> tuple[Frame, ...]:
        """Every frame but the kernel's, root first (error frames included)."""
        return tuple(f for f in self.frames if f.kind != "kernel")


def root_ok(user: Sequence[Frame]) -> bool:
    """The outermost user frame is where a process or a thread starts: the entry of the executable or of
    the dynamic loader, glibc's start-up (perf's DWARF unwinder ends there: its CFI marks the outermost
    frame; a stripped executable's entry under it is unnamed), or a thread's clone."""
    if not user or user[0].kind != "native":
        return False
    root = user[0]
    if _LD_SO.fullmatch(root.module) or _ENTRY.fullmatch(root.name) or _THREAD.fullmatch(root.name):
        return True
    if root.module.startswith("libc.") and _LIBC_START.fullmatch(root.name):
        return True
    return len(user) > 1 and user[1].module.startswith("libc.") and bool(_LIBC_START.fullmatch(user[1].name))


def verdict(sample: Sample) -> str:
    """Why the stack is not whole ("" when it is): an unwind error, or a root where nothing starts."""
    user = sample.user
    if any(f.kind == "error" for f in user):
        return "unwind error frame"
    return "" if root_ok(user) else "cut short (root is no entry)"


def whole(sample: Sample) -> bool:
    """No unwind error and a root where processes and threads start."""
    return verdict(sample) == ""


@dataclass(slots=True)
class Share:
    """Whole samples among those judged (samples without any user frame are left out, and counted)."""

    whole: int = 0
    judged: int = 0
    no_user: int = 0

    def add(self, ok: bool, count: int) -> None:
        self.judged += count
        self.whole += count if ok else 0

    @property
    def pct(self) -> float:
        return 100 * self.whole / self.judged if self.judged else float("nan")

    def __str__(self) -> str:
        return f"{self.pct:5.1f}% ({self.whole}/{self.judged})"


def perf_samples(data: Path, comms: Iterable[str], perf: str = "/usr/bin/perf") -> list[Sample]:
    """The samples of processes named `comms` in a perf.data file, in time order, via `perf script` (its
    own symbolization and, for --call-graph dwarf, its own unwinding)."""
    text = subprocess.run(
        [perf, "script", "-i", str(data), "--comms", ",".join(comms), *PERF_SCRIPT_FLAGS],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    out = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        head = _PERF_HEAD.match(lines[0]) if lines else None
        if head is None:
            continue
        leaf_first = []
        for line in lines[1:]:
            m = _PERF_FRAME.match(line)
            if m is None:
                continue
            addr, sym, dso = int(m.group(1), 16), m.group(2), m.group(3)
            if dso == "[kernel.kallsyms]" or addr >= 1 << 63:
                leaf_first.append(Frame(sym, "", "kernel"))
                continue
            name = re.sub(r"\+0x[0-9a-f]+$", "", sym)
            leaf_first.append(Frame(name, Path(dso).name if dso.startswith("/") else dso))
        out.append(Sample(head.group(1), int(head.group(2)), tuple(reversed(leaf_first))))
    return out

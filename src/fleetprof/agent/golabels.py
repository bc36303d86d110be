"""Go support for the profiler core: a Go process is registered in `go_procs` (where its g and the
goroutine's labels live) when its binary is mapped, and the label sets BPF points samples at are read from
process memory when a stack is first seen, while the process lives."""

from __future__ import annotations

import struct
import threading

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.interpreters.go.discovery import GoBinary, GoUnsupported, inspect_go_binary
from fleetprof.interpreters.go.labels import ConstStrings, Labels, LabelsError, read_label_sets
from fleetprof.interpreters.go.procinfo import go_proc_info
from fleetprof.process.memory import ProcessMemory
from fleetprof.process.tracker import ExecMapping
from fleetprof.tracer.aggregate import StackKey

SETS_LIMIT = 1 << 14  # label sets remembered (per pid, address and tag); the oldest half goes beyond


class _GoProcess:
    """One registered Go process: its binary, load bias, memory (opened on first use) and literals read."""

    def __init__(self, binary: GoBinary, bias: int) -> None:
        self.binary = binary
        self.bias = bias
        self.mem: ProcessMemory | None = None
        self.constants = ConstStrings([(lo + bias, hi + bias) for lo, hi in binary.read_only])

    def close(self) -> None:
        """Close the memory file (the process is gone, or exec'd another image)."""
        if self.mem is not None:
            self.mem.close()
            self.mem = None


class GoLabelSupport:
    """Registers Go processes for the BPF label reader and names the label sets their samples carry."""

    def __init__(self, procs: Map) -> None:
        self._procs_map = procs
        self._lock = threading.Lock()
        self._procs: dict[int, _GoProcess] = {}
        self._sets: dict[tuple[int, int, int], Labels] = {}  # () for a set that could not be read
        self._pending: dict[tuple[int, int, int], None] = {}  # new stacks' sets, read at the next flush
        self.problems: dict[int, str] = {}  # pid -> why its labels can't be read (its stacks are fine)
        self.read = 0
        self.unreadable = 0

    def interpreter_flags(self, pid: int, m: ExecMapping) -> int:
        """Register `pid` when `m` maps a Go binary; no mapping flag (nothing to unwind differently)."""
        binary = inspect_go_binary(m.open_path or m.path, m.file_id)
        if binary is None:
            return 0
        if isinstance(binary, GoUnsupported):
            self.problems[pid] = binary.reason
            return 0
        with self._lock:
            known = self._procs.get(pid)
            if known is not None and known.binary is binary and known.bias == m.bias:
                return 0
            try:
                self._procs_map.update(struct.pack("<I", pid), bytes(go_proc_info(binary)))
            except BpfError as exc:
                self.problems[pid] = f"go: per-process map full ({exc})"
                return 0
            if known is not None:
                known.close()
            self._procs[pid] = _GoProcess(binary, m.bias)
        return 0

    def on_new_stack(self, key: StackKey) -> None:
        """Queue a new stack's label set, read at the end of this poll while the process lives."""
        if key.labels and (key.pid, key.labels, key.labels_tag) not in self._sets:
            self._pending[(key.pid, key.labels, key.labels_tag)] = None

    def flush(self) -> None:
        """Read the label sets queued since the last call: each process's together, one batch of reads per
        stage (a poll's new stacks cost a few syscalls, not a few per set)."""
        pending, self._pending = self._pending, {}
        by_pid: dict[int, list[tuple[int, int]]] = {}
        for pid, labels, tag in pending:
            by_pid.setdefault(pid, []).append((labels, tag))
        for pid, sets in by_pid.items():
            proc = self._memory(pid)
            if proc is None or proc.mem is None:
                continue
            found = read_label_sets(proc.mem, sets, proc.binary.offsets.form, proc.constants)
            for (labels, tag), result in zip(sets, found, strict=True):
                self._keep((pid, labels, tag), result)

    def label_set(self, pid: int, labels: int, tag: int) -> Labels:
        """The (key, value) pairs of a sample's label set; () when it can't be read."""
        if not labels:
            return ()
        key = (pid, labels, tag)
        if key in self._pending:
            self.flush()
        found = self._sets.get(key)
        if found is not None:
            return found
        proc = self._memory(pid)
        if proc is None or proc.mem is None:
            return ()
        return self._keep(
            key, read_label_sets(proc.mem, [(labels, tag)], proc.binary.offsets.form, proc.constants)[0]
        )

    def _memory(self, pid: int) -> _GoProcess | None:
        """A registered process with its memory open, None when it is not (or no longer) readable."""
        with self._lock:
            proc = self._procs.get(pid)
            if proc is not None and proc.mem is None:
                try:
                    proc.mem = ProcessMemory(pid)
                except OSError:
                    return None
            return proc

    def _keep(self, key: tuple[int, int, int], result: Labels | LabelsError) -> Labels:
        """Remember a set read (or () for one that could not be: it is not read again)."""
        if isinstance(result, LabelsError):
            self.unreadable += 1
            result = ()
        else:
            self.read += 1
        if len(self._sets) >= SETS_LIMIT:
            self._sets = dict(list(self._sets.items())[SETS_LIMIT // 2 :])
        self._sets[key] = result
        return result

    def process_gone(self, pid: int) -> None:
        """Forget a process's registration (exit or exec); its label sets already read stay."""
        with self._lock:
            known = self._procs.pop(pid, None)
            if known is not None:
                known.close()
                self._procs_map.delete(struct.pack("<I", pid))

    def forget(self, pids: set[int]) -> None:
        """Drop the label sets and notes of processes gone for good (the agent, between windows)."""
        self._sets = {k: v for k, v in self._sets.items() if k[0] not in pids}
        self._pending = {k: None for k in self._pending if k[0] not in pids}
        for pid in pids:
            self.problems.pop(pid, None)

    def stats(self) -> dict[str, int]:
        """Label sets read and unreadable (freed before the agent got to them); Go processes registered, and
        those whose labels can't be read (`problems` says why, per pid)."""
        return {
            "go_label_sets_read": self.read,
            "go_label_sets_unreadable": self.unreadable,
            "go_processes": len(self._procs),
            "go_processes_without_labels": len(self.problems),  # a release with no offsets, not x86-64, ...
        }

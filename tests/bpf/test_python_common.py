"""Shared helpers for the CPython BPF tests (no tests here): the interpreters on this machine, running
`fleetprof record` for real into pprof, and reading stacks, thread names and counters back out of it.

The pyenv interpreters named in PYENV and Debian's static python3.11 are used when present; a test of one
that is absent skips, saying which (pyenv builds CPython from python.org sources, which `make setup` cannot
fetch).
"""

from __future__ import annotations

import ast
import atexit
import gzip
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetprof.output.frames import KERNEL_MAPPING_NAME
from fleetprof.output.proto import profile_pb2 as pb

SCRIPTS = Path(__file__).resolve().parent / "pyscripts"
PYENV_ROOT = Path("/root/.pyenv/versions")
PYENV = ("3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0")
DEBIAN_PYTHON = Path("/usr/bin/python3.11")
FREQUENCY = 999
SECONDS = 2.0  # of profiling per case
MIN_SHARE = 0.99


@dataclass(frozen=True)
class Interpreter:
    """One CPython: its executable, the file with its eval loop, whether its static functions are named."""

    name: str
    executable: Path
    minor: int
    module: str  # basename of the ELF file with _PyEval_EvalFrameDefault
    symbols: bool  # .symtab present: static functions (builtin_sorted, list_sort_impl...) are named

    def require(self) -> None:
        """Skip the test when the interpreter is missing (or, for another user, unreadable)."""
        if not os.path.exists(self.executable):
            pytest.skip(f"{self.executable} is missing or unreadable here (pyenv install {self.name})")


def pyenv(version: str) -> Interpreter:
    """The pyenv build of `version` (shared libpython, unstripped)."""
    minor = int(version.split(".")[1])
    return Interpreter(
        version, PYENV_ROOT / version / "bin" / f"python3.{minor}", minor, f"libpython3.{minor}.so.1.0", True
    )


DEBIAN = Interpreter("debian-3.11", DEBIAN_PYTHON, 11, "python3.11", False)
INTERPRETERS = (*(pyenv(v) for v in PYENV), DEBIAN)


def interpreter_params(names: Iterable[str] | None = None) -> list:
    """pytest parameters, one per interpreter (all, or those named); Debian's skips when absent."""
    chosen = [i for i in INTERPRETERS if names is None or i.name in names]
    return [
        pytest.param(
            i,
            id=i.name,
            marks=pytest.mark.skipif(
                i is DEBIAN and not DEBIAN_PYTHON.exists(), reason=f"{DEBIAN_PYTHON} is not installed"
            ),
        )
        for i in chosen
    ]


# ---- the profile, as the tests see it ---------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame: kind python | native | kernel | error; `where` is a Python file or a native module."""

    kind: str
    name: str
    where: str = ""
    line: int = 0

    @property
    def short(self) -> str:
        """The function name without its class (3.11+ qualnames are `Class.method`)."""
        return self.name.rsplit(".", 1)[-1] if self.kind == "python" else self.name

    def __str__(self) -> str:
        if self.kind == "python":
            return f"{self.name} ({os.path.basename(self.where)}:{self.line})"
        return f"{self.name} [{self.where}]" if self.where else self.name


@dataclass(frozen=True)
class Stack:
    """Samples sharing a stack and labels; frames root first."""

    pid: int
    tid: int
    thread: str
    process: str
    frames: tuple[Frame, ...]
    count: int

    @property
    def python(self) -> list[Frame]:
        """The Python frames, root first."""
        return [f for f in self.frames if f.kind == "python"]

    @property
    def leaf_python(self) -> str:
        """Short name of the innermost Python frame, "" when there is none."""
        py = self.python
        return py[-1].short if py else ""

    @property
    def has_error(self) -> bool:
        """An unwind error frame is present."""
        return any(f.kind == "error" for f in self.frames)

    def between(self, outer: int, inner: int) -> list[Frame]:
        """Frames strictly between python frames number `outer` and `inner` (indexes into `python`)."""
        py_positions = [i for i, f in enumerate(self.frames) if f.kind == "python"]
        return list(self.frames[py_positions[outer] + 1 : py_positions[inner]])

    def render(self, edge: int = 12) -> str:
        """Folded-like text for failure messages (the middle of a deep stack elided)."""
        names = [str(f) for f in self.frames]
        if len(names) > 2 * edge + 1:
            names = [*names[:edge], f"<{len(names) - 2 * edge} frames>", *names[-edge:]]
        return ";".join(names) + f" {self.count}"


@dataclass
class Recording:
    """One finished `fleetprof record` into pprof."""

    returncode: int
    stderr: str
    stdout: str  # what the profiled command printed (it inherits fleetprof's stdout)
    stacks: list[Stack]
    stats: dict[str, int] = field(default_factory=dict)

    def describe(self, top: int = 5) -> str:
        """The commonest stacks and the Python counters, for failure messages."""
        common = sorted(self.stacks, key=lambda s: -s.count)[:top]
        counters = {k: v for k, v in self.stats.items() if "python" in k or k.startswith("unwind_error")}
        return "\n".join(
            [f"{sum(s.count for s in self.stacks)} samples; {counters}", *(f"  {s.render()}" for s in common)]
        )

    def of(self, pid: int | None = None, leaf: str | None = None) -> list[Stack]:
        """Stacks of one process and/or whose innermost Python frame is `leaf`."""
        return [
            s
            for s in self.stacks
            if (pid is None or s.pid == pid) and (leaf is None or s.leaf_python == leaf)
        ]


def load_pprof(path: Path) -> tuple[list[Stack], dict[str, int]]:
    """The stacks of a gzipped pprof file written by fleetprof, and the counters in its comments."""
    profile = pb.Profile()
    profile.ParseFromString(gzip.decompress(path.read_bytes()))
    strings = profile.string_table
    functions = {f.id: f for f in profile.function}
    mappings = {m.id: strings[m.filename] for m in profile.mapping}
    locations: dict[int, tuple[Frame, ...]] = {}
    for loc in profile.location:
        frames = []
        for line in reversed(loc.line):  # pprof lists a location's inlined frames leaf first
            function = functions[line.function_id]
            name, filename = strings[function.name], strings[function.filename]
            if loc.mapping_id:
                mapping = mappings[loc.mapping_id]
                if mapping == KERNEL_MAPPING_NAME:
                    frames.append(Frame("kernel", name))
                else:
                    frames.append(Frame("native", name, os.path.basename(mapping)))
            elif name.startswith("[unwind"):
                frames.append(Frame("error", name))
            elif filename or name.startswith("<"):
                frames.append(Frame("python", name, filename, line.line))
            else:
                frames.append(Frame("native", name))
        locations[loc.id] = tuple(frames)
    stacks = []
    for sample in profile.sample:
        labels = {strings[lab.key]: strings[lab.str] if lab.str else lab.num for lab in sample.label}
        frames = tuple(f for lid in reversed(sample.location_id) for f in locations[lid])
        stacks.append(
            Stack(
                pid=int(labels.get("pid", 0)),
                tid=int(labels.get("tid", 0)),
                thread=str(labels.get("thread_name", "")),
                process=str(labels.get("process_name", "")),
                frames=frames,
                count=int(sample.value[0]),
            )
        )
    stats = {}
    for comment in profile.comment:
        name, sep, value = strings[comment].rpartition("=")
        if sep and value.lstrip("-").isdigit():
            stats[name] = int(value)
    return stacks, stats


# ---- running fleetprof ------------------------------------------------------------------------------

_session_dir = Path(tempfile.mkdtemp(prefix="fleetprof-pytests-"))
atexit.register(shutil.rmtree, _session_dir, ignore_errors=True)


def work_dir() -> Path:
    """A directory for this test session's outputs and its cache of unwind tables (shared by runs)."""
    return _session_dir


def fleetprof_command() -> list[str]:
    """The installed CLI (the venv's entry point next to this interpreter)."""
    script = Path(sys.executable).with_name("fleetprof")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fleetprof"]


def record(target: Sequence[str], name: str, timeout: float = 120) -> Recording:
    """`fleetprof record -F 999 --format pprof … TARGET` (`["--", cmd…]`, `["--all", "-d", "2"]`…)."""
    out = work_dir() / f"{name}.pb.gz"
    env = dict(os.environ, FLEETPROF_CACHE_DIR=str(work_dir() / "cache"))
    args = [*fleetprof_command(), "record", "-F", str(FREQUENCY), "--format", "pprof", "-o", str(out)]
    try:
        proc = subprocess.run(
            [*args, *target], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"fleetprof record did not finish in {timeout} s: {exc.stderr!r}")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    stacks, stats = load_pprof(out)
    return Recording(proc.returncode, proc.stderr, proc.stdout, stacks, stats)


def record_script(interp: Interpreter, script: str, *args: str, seconds: float = SECONDS) -> Recording:
    """Profile `interp` running pyscripts/`script` for `seconds` (its argv[1]) from start to exit."""
    interp.require()
    cmd = [str(interp.executable), str(SCRIPTS / script), str(seconds), *args]
    run = record(["--", *cmd], f"{Path(script).stem}-{interp.name}")
    if not run.stacks:
        pytest.fail(f"no samples of {cmd}:\n{run.stderr}")
    return run


# ---- knowing the scripts ------------------------------------------------------------------------------


def call_lines(script: str | Path) -> dict[str, int]:
    """`# calls: f` (or `// calls: f`) markers of a script (a name in pyscripts/, or a path): callee -> the
    line its caller shows while it runs."""
    out = {}
    for number, text in enumerate((SCRIPTS / script).read_text(encoding="utf-8").splitlines(), start=1):
        found = re.search(r"(?:#|//) calls: (\S+)", text)
        if found:
            out[found.group(1)] = number
    return out


def body_lines(script: str, function: str) -> set[int]:
    """Lines `function` can be sampled at: its body's statements, and its first line (co_firstlineno),
    where CPython itself places a frame sampled as it is entered, before its first instruction."""
    tree = ast.parse((SCRIPTS / script).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            first = node.body[0].lineno
            last = node.end_lineno or first
            firstlineno = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return {firstlineno, *range(first, last + 1)}
    raise AssertionError(f"no function {function} in {script}")


Expected = Sequence[tuple[str, set[int] | None]]  # (short name, allowed lines or None for any), root first
Check = Callable[[Stack], str]


def chain(script: str, names: Sequence[str], leaf_lines: set[int] | None) -> Expected:
    """The expected Python frames when `names` (root first) call each other in `script`: each caller at
    the line of its `# calls:` marker for the next name, the leaf on `leaf_lines`."""
    lines = call_lines(script)
    out: list[tuple[str, set[int] | None]] = []
    for caller, callee in itertools.pairwise(names):
        out.append((caller, {lines[callee]} if callee in lines else None))
    out.append((names[-1], leaf_lines))
    return out


def python_mismatch(stack: Stack, expected: Expected, script: str) -> str:
    """Why the stack's Python frames are not exactly `expected` (frames of `script` checked for their file
    and line), "" when they are."""
    got = stack.python
    if [f.short for f in got] != [name for name, _ in expected]:
        return "python frames " + " > ".join(f.short for f in got)
    for frame, (name, lines) in zip(got, expected, strict=True):
        if lines is not None:
            if not frame.where.endswith(script):
                return f"{name} is in {frame.where}"
            if frame.line not in lines:
                return f"{name} at line {frame.line}, expected one of {sorted(lines)}"
    return ""


def chain_check(interp: Interpreter, expected: Expected, script: str) -> Check:
    """A check for a whole stack of `script`: exactly the `expected` Python frames, over the interpreter's
    own native frames down to _start; native frames between Python frames exactly on <= 3.10 (one eval-loop
    call per frame), none on 3.11+ (one eval-loop call runs them all)."""

    def check(stack: Stack) -> str:
        why = python_mismatch(stack, expected, script)
        if why:
            return why
        root = stack.frames[: stack.frames.index(stack.python[0])]
        if not root or root[0].name != "_start":
            return "the native root is not _start"
        if not any(f.name == "PyEval_EvalCode" and f.where == interp.module for f in root):
            return f"no PyEval_EvalCode [{interp.module}] under <module>"
        for i in range(len(expected) - 1):
            pair = f"{expected[i][0]} and {expected[i + 1][0]}"
            natives = stack.between(i, i + 1)
            if interp.minor <= 10 and not natives:
                return f"no native frames between {pair} (<= 3.10: one eval-loop call per frame)"
            if interp.minor >= 11 and natives:
                return f"native frames between {pair} (3.11+: one eval-loop call runs them all)"
        return ""

    return check


@dataclass
class Verdict:
    """How many samples were judged, how many passed, and the commonest failures."""

    selected: int = 0
    good: int = 0
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)  # reason -> (count, example)

    @property
    def share(self) -> float:
        """Share of the judged samples that passed."""
        return self.good / self.selected if self.selected else 0.0

    def summary(self) -> str:
        """One line plus the worst failures with an example stack each."""
        worst = sorted(self.failures.items(), key=lambda kv: -kv[1][0])[:4]
        lines = [f"{self.good}/{self.selected} = {self.share:.2%} pass"]
        lines += [f"  {n} x {reason}\n    e.g. {example}" for reason, (n, example) in worst]
        return "\n".join(lines)


def judge(stacks: Iterable[Stack], check: Check, allow_errors: bool = False) -> Verdict:
    """Apply `check` (returns "" for a good stack, else why not) to every stack, weighted by count; a stack
    with an unwind error fails unless `allow_errors`."""
    verdict = Verdict()
    for stack in stacks:
        verdict.selected += stack.count
        reason = "unwind error" if stack.has_error and not allow_errors else check(stack)
        if not reason:
            verdict.good += stack.count
        else:
            n, example = verdict.failures.get(reason, (0, stack.render()))
            verdict.failures[reason] = (n + stack.count, example)
    return verdict


def assert_share(verdict: Verdict, run: Recording, at_least: int = 300, share: float = MIN_SHARE) -> None:
    """At least `at_least` samples of `run` were judged and `share` of them passed."""
    assert verdict.selected >= at_least, f"{verdict.summary()}\nthe recording:\n{run.describe()}"
    assert verdict.share >= share, verdict.summary()

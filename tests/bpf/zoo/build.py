"""Build the zoo programs, profile them with the real `fleetprof record`, and judge the stacks that come out.

A program's *chains* are the call paths it legitimately takes, root first, written as `Step`s. A sample is
*in the chain* when its user leaf (the deepest non-kernel frame) is a function or module some chain names;
it is *whole* when its user frames, root to leaf, match a prefix of one chain ending at that leaf, with no
error frame. Kernel frames sit leafward of the user frames and are not part of the match.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fleetprof.output.proto import profile_pb2

ZOO_DIR = Path(__file__).resolve().parent
FP_FLAGS = (
    "-O2",
    "-g",
    "-fno-omit-frame-pointer",
    "-mno-omit-leaf-frame-pointer",
    "-fno-optimize-sibling-calls",
)
NOFP_FLAGS = ("-O2", "-g", "-fomit-frame-pointer")
LIBC = r"libc\.so\.6"
LD_SO = r"ld-linux-x86-64\.so\.2"
VDSO = r"\[vdso\]"
PERIOD_NS_999 = 1_000_000_000 // 999


class ZooError(RuntimeError):
    """A zoo program could not be built or profiled."""


# ---- building --------------------------------------------------------------------------------------------


def _run(cmd: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if proc.returncode != 0:
        raise ZooError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")


def build_c(
    name: str,
    sources: Sequence[str],
    out_dir: Path,
    flags: Sequence[str] = NOFP_FLAGS,
    *,
    cxx: bool = False,
    libs: Sequence[str] = (),
) -> Path:
    """Compile zoo sources (file names in this directory) into `out_dir/name` once; return its path."""
    out = out_dir / name
    if not out.exists():
        compiler = "g++" if cxx else "gcc"
        srcs = [str(ZOO_DIR / s) for s in sources]
        _run([compiler, *flags, f"-I{ZOO_DIR}", "-o", str(out), *srcs, *libs])
    return out


def strip_all(binary: Path, name: str) -> Path:
    """A copy of `binary` without .symtab and DWARF (.dynsym and .eh_frame stay)."""
    out = binary.with_name(name)
    if not out.exists():
        _run(["strip", "--strip-all", "-o", str(out), str(binary)])
    return out


def add_minidebuginfo(binary: Path, name: str) -> Path:
    """A stripped copy of `binary` with MiniDebugInfo, as Fedora ships: `.gnu_debugdata` holds an
    xz-compressed ELF whose .symtab has the function symbols `.dynsym` lacks (no DWARF)."""
    out = binary.with_name(name)
    if out.exists():
        return out
    work = binary.with_name(f"{name}.mdi")
    work.mkdir(exist_ok=True)

    def nm(*flags: str) -> list[list[str]]:
        cmd = ["nm", *flags, "--format=posix", "--defined-only", str(binary)]
        return [
            line.split() for line in subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
        ]

    dynamic = {fields[0] for fields in nm("-D") if fields}
    keep = sorted({f[0] for f in nm() if len(f) > 1 and f[1] in ("T", "t")} - dynamic)
    (work / "keep").write_text("".join(f"{symbol}\n" for symbol in keep))
    _run(["objcopy", "--only-keep-debug", str(binary), str(work / "debug")])
    _run(["objcopy", "-S", "--remove-section", ".gdb_index", "--remove-section", ".comment",
          f"--keep-symbols={work / 'keep'}", str(work / "debug"), str(work / "mini")])  # fmt: skip
    (work / "mini.xz").write_bytes(lzma.compress((work / "mini").read_bytes(), preset=2))
    _run(["strip", "--strip-all", "-R", ".comment", "-o", str(work / name), str(binary)])
    _run(["objcopy", "--add-section", f".gnu_debugdata={work / 'mini.xz'}", str(work / name)])
    os.replace(work / name, out)
    return out


def build_rust(name: str, out_dir: Path) -> Path:
    """`cargo build --release` of zoo.rs as a crate without dependencies; return the binary."""
    crate = out_dir / f"{name}-crate"
    binary = crate / "target" / "release" / name
    if binary.exists():
        return binary
    (crate / "src").mkdir(parents=True, exist_ok=True)
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
    )
    shutil.copy(ZOO_DIR / "zoo.rs", crate / "src" / "main.rs")
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    env = dict(os.environ, CARGO_TARGET_DIR=str(crate / "target"))
    _run([cargo, "build", "--release", "--offline", "--quiet"], cwd=crate, env=env)
    return binary


def symbol_range(binary: Path, symbol: str) -> tuple[int, int]:
    """[start, end) ELF addresses of `symbol` per `nm -S` on an unstripped binary."""
    out = subprocess.run(["nm", "-S", str(binary)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == symbol:
            start = int(parts[0], 16)
            return start, start + int(parts[1], 16)
    raise ZooError(f"{symbol} not in {binary}")


def build_ids(path: Path) -> str:
    """The GNU build id of an ELF file per `readelf -n`, "" when it has none."""
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True, check=False).stdout
    m = re.search(r"Build ID:\s*([0-9a-f]+)", out)
    return m.group(1) if m else ""


# ---- running fleetprof ------------------------------------------------------------------------------


def fleetprof_command() -> list[str]:
    """How to start the CLI of the installed package (the venv's entry point when there is one)."""
    script = Path(sys.executable).with_name("fleetprof")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fleetprof"]


@dataclass(slots=True)
class RecordRun:
    """One finished `fleetprof record`."""

    returncode: int
    stderr: str
    output: Path


def record_args(output: Path, frequency: int = 999, fmt: str | None = None) -> list[str]:
    """`fleetprof record` up to the target options."""
    args = [*fleetprof_command(), "record", "-F", str(frequency), "-o", str(output)]
    if fmt:
        args += ["--format", fmt]
    return args


def record_env(cache_dir: Path | None) -> dict[str, str]:
    """The environment for fleetprof: this one, with its cache under `cache_dir` when given."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["FLEETPROF_CACHE_DIR"] = str(cache_dir)
    return env


def record(
    target: Sequence[str],
    output: Path,
    *,
    frequency: int = 999,
    fmt: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    cache_dir: Path | None = None,
) -> RecordRun:
    """Run `fleetprof record … TARGET` (`["--", cmd…]`, `["--pid", …]`, `["--all", …]`) to the end."""
    args = [*record_args(output, frequency, fmt), *target]
    env = record_env(cache_dir)
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ZooError(f"fleetprof record did not finish in {timeout} s: {exc.stderr!r}") from None
    return RecordRun(proc.returncode, proc.stderr, output)


# ---- parsing outputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One rendered frame: function name, module (basename, "" if none) and kind."""

    name: str
    module: str = ""
    kind: str = "native"  # native | kernel | error

    @classmethod
    def parse(cls, text: str) -> Frame:
        """From the folded rendering: `name [module]`, `name_[k]`, `[unwind: why]`."""
        if text.endswith("_[k]"):
            return cls(text[: -len("_[k]")], "", "kernel")
        if text.startswith("[unwind:"):
            return cls(text, "", "error")
        head, sep, tail = text.rpartition(" [")
        if sep and tail.endswith("]"):
            return cls(head, tail[:-1], "native")
        return cls(text, "", "native")


@dataclass(slots=True)
class Stack:
    """Samples sharing a stack: frames root first (no process frame), process/thread labels, a count."""

    process: str
    frames: tuple[Frame, ...]
    count: int
    pid: int = 0
    thread: str = ""
    tid: int = 0

    @property
    def user(self) -> tuple[Frame, ...]:
        """Frames other than kernel ones, root first (error frames included)."""
        return tuple(f for f in self.frames if f.kind != "kernel")

    @property
    def kernel(self) -> tuple[Frame, ...]:
        """Kernel frames, root first."""
        return tuple(f for f in self.frames if f.kind == "kernel")

    @property
    def has_error(self) -> bool:
        """An unwind error frame is present."""
        return any(f.kind == "error" for f in self.frames)


def split_folded(line: str) -> tuple[list[str], int]:
    """A folded line's frames (root first) and count."""
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def parse_folded(text: str) -> list[Stack]:
    """Stacks of a folded file (the first frame is the process name)."""
    out = []
    for line in text.splitlines():
        frames, count = split_folded(line)
        out.append(Stack(frames[0], tuple(Frame.parse(f) for f in frames[1:]), count))
    return out


def parse_speedscope(doc: dict[str, object], period_ns: int = PERIOD_NS_999) -> list[Stack]:
    """Stacks of a speedscope file, in time order per process; `process` comes from `name (pid)`."""
    shared = doc["shared"]
    assert isinstance(shared, dict)
    names = [Frame.parse(f["name"]) for f in shared["frames"]]
    out = []
    profiles = doc["profiles"]
    assert isinstance(profiles, list)
    for prof in profiles:
        m = re.fullmatch(r"(.*) \((\d+)\)", prof["name"])
        process, pid = (m.group(1), int(m.group(2))) if m else (prof["name"], 0)
        for idx, weight in zip(prof["samples"], prof["weights"], strict=True):
            frames = tuple(names[i] for i in idx)
            out.append(Stack(process, frames, max(round(weight / period_ns), 1), pid))
    return out


def load_pprof(path: Path) -> profile_pb2.Profile:
    """The perftools Profile message of a gzipped pprof file."""
    prof = profile_pb2.Profile()
    prof.ParseFromString(gzip.decompress(path.read_bytes()))
    return prof


def pprof_stacks(p: profile_pb2.Profile) -> list[Stack]:
    """Stacks of a pprof Profile, with its pid, thread and process labels; inline lines become frames."""
    st = p.string_table
    funcs = {f.id: f for f in p.function}
    maps = {m.id: m for m in p.mapping}
    locs: dict[int, tuple[Frame, ...]] = {}
    for loc in p.location:
        mapping = maps.get(loc.mapping_id)
        module = os.path.basename(st[mapping.filename]) if mapping is not None else ""
        kernel = module == "[kernel.kallsyms]"
        frames = []
        for line in reversed(loc.line):  # pprof lists a location's lines leaf (innermost inline) first
            name = st[funcs[line.function_id].name]
            if kernel:
                frames.append(Frame(name, "", "kernel"))
            elif name.startswith("[unwind:"):
                frames.append(Frame(name, "", "error"))
            else:
                frames.append(Frame(name, module, "native"))
        locs[loc.id] = tuple(frames)
    out = []
    for s in p.sample:
        labels = {st[lb.key]: (st[lb.str] if lb.str else lb.num) for lb in s.label}
        frames = tuple(f for lid in reversed(s.location_id) for f in locs[lid])
        out.append(
            Stack(
                str(labels.get("process_name", "")),
                frames,
                int(s.value[0]),
                int(labels.get("pid", 0)),
                str(labels.get("thread_name", "")),
                int(labels.get("tid", 0)),
            )
        )
    return out


def load_stacks(path: Path) -> list[Stack]:
    """Stacks of a folded, speedscope or pprof file, by its suffix."""
    if path.suffix == ".folded":
        return parse_folded(path.read_text())
    if path.name.endswith(".json"):
        return parse_speedscope(json.loads(path.read_text()))
    return pprof_stacks(load_pprof(path))


# ---- chains -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """A chain element: a frame whose name (and module) fully match the regexes; `many`: zero or more such
    frames; `inline`: a frame only DWARF inline info produces (absent without DWARF)."""

    name: str = ".*"
    module: str | None = None
    many: bool = False
    inline: bool = False

    def accepts(self, frame: Frame) -> bool:
        """Does `frame` fit this step?"""
        if frame.kind != "native":
            return False
        if self.module is not None and not re.fullmatch(self.module, frame.module):
            return False
        return re.fullmatch(self.name, frame.name) is not None


def fn(name: str, module: str | None = None, *, inline: bool = False) -> Step:
    """Exactly one frame of function `name` (a regex)."""
    return Step(name, module, inline=inline)


def many(module: str | None = None, name: str = ".*") -> Step:
    """Zero or more frames in `module` (and named like `name`)."""
    return Step(name, module, many=True)


Chain = tuple[Step, ...]


def plt(module: str) -> Step:
    """A PLT stub of `module` (a regex): named `sym@plt`, or `module+0x…` when the symbolizer names none."""
    return fn(rf".*@plt|({module})\+0x[0-9a-f]+", module)


def ld_startup() -> Chain:
    """The dynamic loader at process start: its entry (unnamed in .dynsym) -> _dl_start or _dl_init -> …,
    then the libraries' initialisers it calls."""
    libs = r"lib[\w.+-]*\.so[\d.]*"
    return (fn(rf"_start|_dl_start_user|({LD_SO})\+0x[0-9a-f]+", LD_SO), many(LD_SO), many(libs))


def main_root(exe: str) -> Chain:
    """`_start` (in `exe`) -> glibc's start-up -> `main`, for a dynamically linked C program."""
    return (
        fn("_start", exe),
        fn(r"__libc_start_main.*", LIBC),
        fn("__libc_start_call_main", LIBC),
        fn("main", exe),
    )


def thread_root() -> Chain:
    """A thread's outermost frames: clone3 -> start_thread (libc), before the thread function."""
    return (fn(r"(__)?clone3?", LIBC), fn("start_thread", LIBC))


def exit_path(exe: str, libc: str = LIBC) -> Chain:
    """`exit()` after `main` returned: start-up frames, then libc's exit handlers (and _exit)."""
    return (
        fn("_start", exe),
        fn(r"__libc_start_main.*", libc),
        fn("__libc_start_call_main", libc),
        fn(r"(__GI_)?exit", libc),
        many(libc),
    )


def clock_path(root: Chain, exe: str) -> Chain:
    """The zoo's own bookkeeping under the loop: zoo.h's inlined helpers -> clock_gettime (libc) -> vDSO."""
    return (
        *root,
        Step(r"zoo_(more|now|start)", exe, many=True, inline=True),
        many(LIBC, r".*clock_gettime.*"),
        many(VDSO),
    )


def without_inline(chains: Iterable[Chain]) -> list[Chain]:
    """The chains with every inline-only step dropped."""
    return [tuple(s for s in chain if not s.inline) for chain in chains]


def rename_module(chains: Iterable[Chain], old: str, new: str) -> list[Chain]:
    """The chains with steps in module `old` moved to module `new` (e.g. libc linked into a static exe)."""
    return [tuple(replace(s, module=new) if s.module == old else s for s in chain) for chain in chains]


def match_prefix(frames: Sequence[Frame], chain: Chain) -> bool:
    """Do `frames` (root first) match chain[:k] for some k >= 1, consuming every frame?"""
    n = len(frames)
    if n == 0:
        return False
    reach = [True] + [False] * n  # reach[j]: chain[:i] matches frames[:j]
    for step in chain:
        if step.many:
            nxt = list(reach)
            for j in range(n):
                if nxt[j] and step.accepts(frames[j]):
                    nxt[j + 1] = True
        else:
            nxt = [False] + [reach[j] and step.accepts(frames[j]) for j in range(n)]
        reach = nxt
        if reach[n]:
            return True
        if not any(reach):
            return False
    return False


def leaf_in_chains(leaf: Frame, chains: Iterable[Chain]) -> bool:
    """Is `leaf` a frame some chain names (a `many` step counts by its module)?"""
    return any(step.accepts(leaf) for chain in chains for step in chain)


@dataclass(slots=True)
class Completeness:
    """How many samples were in the chain and how many of those were whole."""

    total: int = 0
    selected: int = 0
    whole: int = 0
    broken: Counter[str] = field(default_factory=Counter)  # rendered non-whole stacks -> samples

    @property
    def share(self) -> float:
        """Whole samples / samples in the chain (0 when none were)."""
        return self.whole / self.selected if self.selected else 0.0

    def worst(self, n: int = 5) -> str:
        """The most frequent non-whole stacks, one per line, for assertion messages."""
        return "\n".join(f"{c:6d}  {s}" for s, c in self.broken.most_common(n))

    def summary(self) -> str:
        """`whole/selected (xx.x %) of total`."""
        return f"{self.whole}/{self.selected} ({100 * self.share:.1f} %) of {self.total} samples"


def render(frames: Iterable[Frame]) -> str:
    """Frames as a compact `;`-joined string."""
    out = []
    for f in frames:
        out.append(
            f"{f.name}_[k]" if f.kind == "kernel" else f"{f.name} [{f.module}]" if f.module else f.name
        )
    return ";".join(out)


def judge(
    stacks: Iterable[Stack],
    chains: Sequence[Chain],
    process: str | None = None,
    leaf: str | Sequence[Step] | None = None,
) -> Completeness:
    """Completeness of the stacks of `process` (all when None) against `chains`; with `leaf` (a name regex,
    or steps), only samples whose user leaf fits it count as in the chain."""
    result = Completeness()
    for stack in stacks:
        if process is not None and stack.process != process:
            continue
        result.total += stack.count
        user = stack.user
        if not user or not leaf_in_chains(user[-1], chains):
            continue
        if isinstance(leaf, str) and not re.fullmatch(leaf, user[-1].name):
            continue
        if leaf is not None and not isinstance(leaf, str) and not any(s.accepts(user[-1]) for s in leaf):
            continue
        result.selected += stack.count
        if not stack.has_error and any(match_prefix(user, chain) for chain in chains):
            result.whole += stack.count
        else:
            result.broken[render(user)] += stack.count
    return result


def by_time(
    stacks: Sequence[Stack], chains: Sequence[Chain], process: str, first: int
) -> tuple[Completeness, Completeness]:
    """Completeness of the first `first` samples of `process` (time order, speedscope) and of the rest."""
    early: list[Stack] = []
    late: list[Stack] = []
    seen = 0
    for stack in stacks:
        if stack.process != process:
            continue
        take = max(min(first - seen, stack.count), 0)
        if take:
            early.append(Stack(stack.process, stack.frames, take))
        if stack.count - take:
            late.append(Stack(stack.process, stack.frames, stack.count - take))
        seen += stack.count
    return judge(early, chains), judge(late, chains)

"""Whole stacks from a process's first sample: short-lived programs started by a shell, forked workers that
never exec, and a library dlopen'ed mid-run, each a file the agent has never seen (fresh build, fresh
unwind-table cache), so their first samples arrive before the agent has read their maps or tables."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from zoo.build import (
    LD_SO,
    NOFP_FLAGS,
    Stack,
    ZooError,
    build_c,
    exit_path,
    fn,
    judge,
    load_stacks,
    main_root,
    record,
)

PROGRAMS = 150  # of each kind: 300 short programs in all
MIN_WHOLE = 0.995  # the goal, for every case here
MIN_WHOLE_LOOP = MIN_WHOLE
PYTHON = os.path.realpath(sys.executable)  # the interpreter itself (comm = its file name), not a shim
PY_NAME = os.path.basename(PYTHON)[:15]
PY_SCRIPT = "\n".join(
    [
        "import time",
        "def work(t):",
        "    end = time.time() + t",
        "    while time.time() < end:",
        "        pass",
        "work({})",
    ]
)
LD_ENTRY = re.compile(rf"(_start|_dl_start_user|{LD_SO}\+0x[0-9a-f]+)")


def _build(
    name: str,
    sources: list[str],
    out_dir: Path,
    flags: tuple[str, ...] = NOFP_FLAGS,
    libs: tuple[str, ...] = (),
) -> Path:
    try:
        return build_c(name, sources, out_dir, flags, libs=libs)
    except ZooError as exc:
        pytest.fail(str(exc))


def _record(cmd: list[str], out: Path, cache: Path) -> list[Stack]:
    run = record(["--", *cmd], out, cache_dir=cache, timeout=300)
    assert "Traceback" not in run.stderr
    assert run.returncode == 0, run.stderr
    return load_stacks(out)


def rooted(stack: Stack, exe: str) -> str:
    """ "" when the stack reaches its process's root (the executable's `_start`, or the dynamic loader's entry
    before it ran `_start`; kernel-only inside execve) with every Python frame named, else why not."""
    if stack.has_error:
        return next(f.name for f in stack.frames if f.kind == "error")
    if any(f.kind == "python" and f.name.startswith("<unknown") for f in stack.user):
        return "Python frame unnamed"
    user = stack.user
    if not user:
        return "" if stack.kernel else "empty"
    root = user[0]
    if root.name == "_start" and root.module == exe:
        return ""
    if re.fullmatch(LD_SO, root.module) and LD_ENTRY.fullmatch(root.name):
        return ""
    return f"root {root.name} [{root.module}]"


def whole_share(stacks: list[Stack], process: str, exe: str) -> tuple[float, int, str]:
    """Share of `process`'s samples that are whole, their number, and the commonest broken stacks."""
    total = whole = 0
    broken: dict[str, int] = {}
    for s in stacks:
        if s.process != process:
            continue
        total += s.count
        why = rooted(s, exe)
        if not why:
            whole += s.count
        else:
            key = f"{why}: {';'.join(f.name for f in s.user[:6])}"
            broken[key] = broken.get(key, 0) + s.count
    worst = "\n".join(f"{n:5d} {k}" for k, n in sorted(broken.items(), key=lambda kv: -kv[1])[:6])
    return (whole / total if total else 0.0), total, worst


@pytest.fixture(scope="module")
def shell_loop(tmp_path_factory: pytest.TempPathFactory, build_dir: Path) -> tuple[list[Stack], str]:
    """One recording of `sh -c` running 300 programs of 20-50 ms: a C chain without frame pointers built
    for this module, and `python -c` of a small function, alternating."""
    work = tmp_path_factory.mktemp("short")
    exe = _build("zoo_short", ["fp_chain.c"], work)
    lines = []
    for i in range(PROGRAMS):
        seconds = 0.02 + 0.03 * (i % 7) / 6
        lines.append(f"{exe} {seconds:.3f}")
        lines.append(f"{PYTHON} -c '{PY_SCRIPT.format(f'{seconds:.3f}')}'")
    script = work / "loop.sh"
    script.write_text("\n".join(lines) + "\n")
    cache = tmp_path_factory.mktemp("cache")
    return _record(["sh", str(script)], work / "loop.speedscope.json", cache), exe.name


def test_short_c_programs_are_whole_from_their_first_sample(shell_loop: tuple[list[Stack], str]) -> None:
    stacks, exe = shell_loop
    share, total, worst = whole_share(stacks, exe, exe)
    assert len({s.pid for s in stacks if s.process == exe}) == PROGRAMS
    assert total >= PROGRAMS * 10, f"{total} samples"
    assert share >= MIN_WHOLE_LOOP, f"{100 * share:.2f} % whole of {total}\n{worst}"
    root = main_root(exe)
    hot = (*root, fn("outer", exe), fn("middle", exe), fn("inner", exe), fn("hot", exe))
    got = judge(stacks, [hot, exit_path(exe)], process=exe, leaf="hot")
    assert got.selected >= PROGRAMS * 5 and got.share >= MIN_WHOLE_LOOP, f"{got.summary()}\n{got.worst()}"


def test_short_python_programs_are_whole_and_named(shell_loop: tuple[list[Stack], str]) -> None:
    stacks, _ = shell_loop
    share, total, worst = whole_share(stacks, PY_NAME, os.path.basename(PYTHON))
    assert len({s.pid for s in stacks if s.process == PY_NAME}) == PROGRAMS
    assert total >= PROGRAMS * 10, f"{total} samples"
    assert share >= MIN_WHOLE_LOOP, f"{100 * share:.2f} % whole of {total}\n{worst}"
    # The function runs under its module, named from the short-lived process's memory while it lived.
    in_work = [s for s in stacks if s.process == PY_NAME and any(f.name == "work" for f in s.user)]
    named = sum(s.count for s in in_work if any(f.name == "<module>" for f in s.user))
    total_work = sum(s.count for s in in_work)
    assert total_work >= PROGRAMS * 2
    assert named == total_work


def test_forked_workers_are_whole_from_their_first_sample(build_dir: Path, tmp_path: Path) -> None:
    """Children that fork and never exec: unwound with their parent's mappings until their own are read."""
    exe = _build("zoo_forks", ["forks.c"], tmp_path)
    stacks = _record([str(exe), "0.03", "60"], tmp_path / "forks.speedscope.json", tmp_path / "cache")
    children = {s.pid for s in stacks if s.process == "zoo_forks"}
    assert len(children) >= 60  # 60 workers (and the parent, when sampled)
    share, total, worst = whole_share(stacks, "zoo_forks", "zoo_forks")
    assert share >= MIN_WHOLE, f"{100 * share:.2f} % whole of {total}\n{worst}"
    root = main_root("zoo_forks")
    chain = (*root, fn("worker", "zoo_forks"), fn("outer", "zoo_forks"), fn("middle", "zoo_forks"))
    got = judge(stacks, [(*chain, fn("inner", "zoo_forks"), fn("hot", "zoo_forks"))], "zoo_forks", "hot")
    assert got.selected >= 300 and got.share >= MIN_WHOLE, f"{got.summary()}\n{got.worst()}"


def test_library_dlopened_mid_run_is_whole_from_its_first_sample(tmp_path: Path) -> None:
    """A library no process has mapped before, without frame pointers, loaded after the program started:
    its first samples are whole too (BPF finds it through the vma, the agent finishes them)."""
    host = _build("zoo_dl_nofp", ["dl_host.c"], tmp_path, libs=("-ldl",))
    lib = _build("libzoonofp.so", ["plugin.c"], tmp_path, (*NOFP_FLAGS, "-fPIC", "-shared"))
    stacks = _record([str(host), "0.2", str(lib), "0.6"], tmp_path / "dl.speedscope.json", tmp_path / "cache")
    exe, mod = "zoo_dl_nofp", r"libzoonofp\.so"
    chain = (
        *main_root(exe),
        fn("run_plugin", exe),
        fn("plugin_entry", mod),
        fn("plugin_mid", mod),
        fn("plugin_leaf", mod),
    )
    got = judge(stacks, [chain], process=exe, leaf="plugin_leaf")
    assert got.selected >= 200, got.summary()
    assert got.share >= MIN_WHOLE, f"{got.summary()}\n{got.worst()}"
    share, total, worst = whole_share(stacks, exe, exe)
    assert share >= MIN_WHOLE, f"{100 * share:.2f} % whole of {total}\n{worst}"


def test_tables_evicted_when_space_runs_short_come_back(tmp_path: Path) -> None:
    """Table space for about one program at a time: a C and a C++ program take turns, so each run's
    tables evict the other's (unmapped first) and come back on demand; nothing falls back for good."""
    c_exe = _build("zoo_evict_c", ["fp_chain.c"], tmp_path)
    try:
        cxx_exe = build_c("zoo_evict_cxx", ["stdcxx.cc"], tmp_path, NOFP_FLAGS, cxx=True)
    except ZooError as exc:
        pytest.fail(str(exc))
    script = "; ".join(f"{c_exe} 0.3; {cxx_exe} 0.3" for _ in range(3))
    out = tmp_path / "evict.speedscope.json"
    run = record(
        ["--table-rows", "70000", "--verbose", "--", "sh", "-c", script], out, cache_dir=tmp_path / "c"
    )
    assert run.returncode == 0, run.stderr
    counters = dict(re.findall(r"^fleetprof: ([a-z_ ]+): ([\d,]+)$", run.stderr, re.M))
    evicted = int(counters.get("unwind_tables_evicted", "0").replace(",", ""))
    assert evicted >= 3, run.stderr
    assert "unwind_tables_failed" not in counters, run.stderr  # --verbose prints counters that are not 0
    stacks = load_stacks(out)
    for exe in ("zoo_evict_c", "zoo_evict_cxx"):
        assert len({s.pid for s in stacks if s.process == exe}) == 3
        share, total, worst = whole_share(stacks, exe, exe)
        assert total >= 300 and share >= MIN_WHOLE, f"{exe}: {100 * share:.2f} % whole of {total}\n{worst}"

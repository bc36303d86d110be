"""`fleetprof record -- CMD` on frame-pointer builds: whole chains, kernel frames, children, dlopen and
threads."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from zoo.build import (
    FP_FLAGS,
    LIBC,
    Chain,
    Stack,
    ZooError,
    build_c,
    clock_path,
    exit_path,
    fn,
    judge,
    load_stacks,
    main_root,
    many,
    plt,
    record,
    thread_root,
)

SECONDS = "1.2"
MIN_SHARE = 0.99


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of unwind tables and symbols private to this module's runs."""
    return tmp_path_factory.mktemp("cache")


def _build(name: str, sources: list[str], out_dir: Path, libs: tuple[str, ...] = ()) -> Path:
    try:
        return build_c(name, sources, out_dir, FP_FLAGS, libs=libs)
    except ZooError as exc:
        pytest.fail(str(exc))


def _record(cmd: list[str], out: Path, cache_dir: Path) -> list[Stack]:
    run = record(["--", *cmd], out, cache_dir=cache_dir)
    assert "Traceback" not in run.stderr
    assert run.returncode == 0, run.stderr
    return load_stacks(out)


def chain_of(exe: str) -> list[Chain]:
    """zoo/fp_chain.c: main -> outer -> middle -> inner -> hot, plus the loop's clock and exit()."""
    root = main_root(exe)
    return [
        (*root, fn("outer", exe), fn("middle", exe), fn("inner", exe), fn("hot", exe)),
        clock_path(root, exe),
        exit_path(exe),
    ]


def test_fp_chain_is_whole(build_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """>= 99 % of the samples whose leaf is `hot` carry main -> outer -> middle -> inner -> hot."""
    exe = _build("zoo_fp", ["fp_chain.c"], build_dir)
    stacks = _record([str(exe), SECONDS], tmp_path / "chain.folded", cache_dir)
    got = judge(stacks, chain_of("zoo_fp"), process="zoo_fp", leaf="hot")
    assert got.selected > 300, got.summary()
    assert got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"
    everything = judge(stacks, chain_of("zoo_fp"), process="zoo_fp")
    assert everything.share >= MIN_SHARE, f"{everything.summary()}\n{everything.worst()}"


def test_kernel_frames_join_the_user_stack(build_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A syscall loop shows kernel frames (`_[k]`) leafward of a whole user stack through libc."""
    exe = _build("zoo_fp_sys", ["syscalls.c"], build_dir)
    stacks = _record([str(exe), SECONDS], tmp_path / "sys.folded", cache_dir)
    mine = [s for s in stacks if s.process == "zoo_fp_sys"]
    total = sum(s.count for s in mine)
    in_kernel = [s for s in mine if s.kernel]
    assert sum(s.count for s in in_kernel) >= total // 4, "a syscall loop spends time in the kernel"
    for s in in_kernel:
        kinds = [f.kind for f in s.frames]
        first_kernel = kinds.index("kernel")
        assert all(k == "kernel" for k in kinds[first_kernel:]), f"user frame under a kernel frame: {s}"
    root = main_root("zoo_fp_sys")
    chains = [
        (*root, fn("syscall_loop", "zoo_fp_sys"), plt("zoo_fp_sys")),
        (*root, fn("syscall_loop", "zoo_fp_sys"), many(LIBC)),
        clock_path(root, "zoo_fp_sys"),
        exit_path("zoo_fp_sys"),
    ]
    got = judge(in_kernel, chains)
    assert got.selected >= sum(s.count for s in in_kernel) * 0.9, got.summary()
    assert got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"
    syscalls = [s for s in in_kernel if any(f.name.startswith("entry_SYSCALL_64") for f in s.kernel)]
    assert any(
        any(f.name in ("ksys_write", "vfs_write", "__x64_sys_write") for f in s.kernel) for s in syscalls
    ), "write(2) reaches the kernel's write path"
    assert any(any("getppid" in f.name for f in s.kernel) for s in syscalls), "getppid(2) is seen"


def test_child_process_has_its_own_name(build_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A child forked and exec'd by the command is profiled under its own name, with its own chain."""
    parent = _build("zoo_fp_parent", ["parent.c"], build_dir)
    child = _build("zoo_fp", ["fp_chain.c"], build_dir)
    stacks = _record([str(parent), "0.6", str(child), "0.8"], tmp_path / "child.folded", cache_dir)
    names = {s.process for s in stacks}
    assert {"zoo_fp_parent", "zoo_fp"} <= names, names
    got = judge(stacks, chain_of("zoo_fp"), process="zoo_fp", leaf="hot")
    assert got.selected > 100 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"
    root = main_root("zoo_fp_parent")
    parent_chains = [
        (*root, fn("parent_work", "zoo_fp_parent"), fn("parent_spin", "zoo_fp_parent")),
        (*root, many(LIBC, r".*clock_gettime.*"), many(r"\[vdso\]")),
    ]
    got = judge(stacks, parent_chains, process="zoo_fp_parent", leaf="parent_spin")
    assert got.selected > 100 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"
    assert not any(s.process == "zoo_fp_parent" and any(f.name == "hot" for f in s.frames) for s in stacks)


def test_shell_children_are_seen(build_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """`-- sh -c '…'`: the programs the shell starts are profiled under their names."""
    child = _build("zoo_fp", ["fp_chain.c"], build_dir)
    script = f"{child} 0.6; {child} 0.4; exit 0"
    stacks = _record(["sh", "-c", script], tmp_path / "sh.speedscope.json", cache_dir)
    got = judge(stacks, chain_of("zoo_fp"), process="zoo_fp", leaf="hot")
    assert got.selected > 200 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"
    assert len({s.pid for s in stacks if s.process == "zoo_fp"}) == 2, "two runs, two processes"


def test_library_loaded_later_is_named(build_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A library dlopen'ed after the command started shows its functions under its module name."""
    host = _build("zoo_fp_dl", ["dl_host.c"], build_dir, libs=("-ldl",))
    lib = build_dir / "libzoofp.so"
    if not lib.exists():
        try:
            build_c("libzoofp.so", ["plugin.c"], build_dir, (*FP_FLAGS, "-fPIC", "-shared"))
        except ZooError as exc:
            pytest.fail(str(exc))
    stacks = _record([str(host), "0.3", str(lib), SECONDS], tmp_path / "dl.folded", cache_dir)
    exe, mod = "zoo_fp_dl", r"libzoofp\.so"
    chain = (
        *main_root(exe),
        fn("run_plugin", exe),
        fn("plugin_entry", mod),
        fn("plugin_mid", mod),
        fn("plugin_leaf", mod),
    )
    got = judge(stacks, [chain, exit_path(exe)], process=exe, leaf="plugin_leaf")
    assert got.selected > 300, got.summary()
    assert got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"


def test_threads_keep_their_stacks_and_names(build_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """Two named threads (pthread_setname_np): each thread's samples carry its own chain and name."""
    exe = _build("zoo_fp_threads", ["threads.c"], build_dir, libs=("-lpthread",))
    name = "zoo_fp_threads"
    for _attempt in range(2):  # a thread starved of CPU by something else on the machine: once more
        stacks = _record([str(exe), SECONDS], tmp_path / "threads.pb.gz", cache_dir)
        mine = [s for s in stacks if s.process == name]
        per_thread: Counter[str] = Counter()
        for stack in mine:
            per_thread[stack.thread] += stack.count
        if min(per_thread["zoo-alpha"], per_thread["zoo-beta"]) > 200:
            break
    for thread, own, other in (("zoo-alpha", "alpha", "beta"), ("zoo-beta", "beta", "alpha")):
        samples = [s for s in mine if s.thread == thread]
        root = (*thread_root(), fn(f"{own}_main", name))
        chains = [(*root, fn(f"{own}_work", name), fn(f"{own}_spin", name)), clock_path(root, name)]
        got = judge(samples, chains, leaf=f"{own}_spin")
        assert got.selected > 200, f"{thread}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{thread}: {got.summary()}\n{got.worst()}"
        assert not any(f.name.startswith(other) for s in samples for f in s.frames), thread
    tids = {thread: {s.tid for s in mine if s.thread == thread} for thread in ("zoo-alpha", "zoo-beta")}
    assert len(tids["zoo-alpha"]) == 1 and len(tids["zoo-beta"]) == 1, tids
    assert tids["zoo-alpha"] != tids["zoo-beta"]
    assert all(s.pid == mine[0].pid for s in mine), "threads of one process share its pid"


def test_pid_of_a_running_process(build_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """`--pid PID --duration S` on a process that started before fleetprof: its chain, whole, and only it."""
    exe = _build("zoo_fp", ["fp_chain.c"], build_dir)
    target = subprocess.Popen([str(exe), "5"])
    try:
        time.sleep(0.3)
        out = tmp_path / "pid.folded"
        run = record(["--pid", str(target.pid), "--duration", "1.2"], out, cache_dir=cache_dir)
    finally:
        target.kill()
        target.wait()
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    stacks = load_stacks(out)
    assert {s.process for s in stacks} == {"zoo_fp"}
    got = judge(stacks, chain_of("zoo_fp"), process="zoo_fp", leaf="hot")
    assert got.selected > 300 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"

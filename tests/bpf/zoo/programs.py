"""The zoo: frame-pointer-free programs with known call chains, shared by the tests and the benchmarks.

Each program names the paths its samples may legitimately take (`chains`, root first) and groups of leaves
reported on their own (`groups`), e.g. the four activities of the C++ program.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zoo.build import (
    LD_SO,
    LIBC,
    NOFP_FLAGS,
    VDSO,
    Chain,
    Completeness,
    Stack,
    Step,
    ZooError,
    add_minidebuginfo,
    build_c,
    build_rust,
    clock_path,
    exit_path,
    fn,
    judge,
    ld_startup,
    load_stacks,
    main_root,
    many,
    plt,
    record,
    rename_module,
    strip_all,
    thread_root,
    without_inline,
)

LIBSTDCXX = r"libstdc\+\+\.so\.6.*"
LIBGCC = r"libgcc_s\.so\.1"
RECURSION_DEPTH = 150


@dataclass(frozen=True)
class ZooProgram:
    """A zoo program: how to build and run it, and what its stacks must look like."""

    name: str  # binary and process name (<= 15 characters, the kernel's comm)
    what: str
    command: Callable[[Path, float], list[str]]  # (build dir, seconds) -> argv; builds on first use
    chains: tuple[Chain, ...]
    groups: dict[str, tuple[Step, ...]] = field(default_factory=dict)


def _args(exe: Path, seconds: float) -> list[str]:
    return [str(exe), f"{seconds:g}"]


def _not(*names: str) -> str:
    """A name regex matching anything but these names (regexes) at the start."""
    return rf"(?!({'|'.join(names)})\b).*"


def c_chain(exe: str, *, inline: bool = True, libc: str = LIBC, hidden: str = "hidden") -> tuple[Chain, ...]:
    """zoo/chain.c: main -> outer -> middle -> [blend, inlined] -> inner -> hot -> hidden."""
    root = main_root(exe)
    chains: list[Chain] = [
        (
            *root,
            fn("outer", exe),
            fn("middle", exe),
            fn("blend", exe, inline=True),
            fn("inner", exe),
            fn("hot", exe),
            fn(hidden, exe),
        ),
        clock_path(root, exe),
        exit_path(exe),
    ]
    if not inline:
        chains = without_inline(chains)
    if libc != LIBC:
        return tuple(rename_module(chains, LIBC, libc))
    return (*chains, ld_startup())


def _c_groups(exe: str, hidden: str = "hidden") -> dict[str, tuple[Step, ...]]:
    return {"chain": (fn(rf"outer|middle|blend|inner|hot|{hidden}", exe),)}


def _c(name: str, extra: tuple[str, ...] = ()) -> Callable[[Path, float], list[str]]:
    return lambda out, secs: _args(build_c(name, ["chain.c"], out, (*NOFP_FLAGS, *extra)), secs)


def _stripped(out: Path, secs: float) -> list[str]:
    full = build_c("zoo_c_dyn", ["chain.c"], out, (*NOFP_FLAGS, "-rdynamic"))
    return _args(strip_all(full, "zoo_c_stripped"), secs)


def _cxx_chains() -> tuple[Chain, ...]:
    exe = "zoo_cxx"
    root = main_root(exe)
    internals = many(exe, _not("main", "_start", r"run_\w+", "thrower", r"zoo_cxx\+0x"))
    libs = many(rf"{LIBSTDCXX}|{LIBGCC}|{LIBC}|{LD_SO}")
    return (
        (*root, fn(r"run_sort\(.*", exe), internals, fn(r"run_sort\(.*\)::\{lambda.*", exe)),
        (
            *root,
            fn(r"run_templates\(.*", exe),
            fn(r".*accumulate<Kernel<\d> >\(.*", exe),
            fn(r"Kernel<\d>::.*", exe),
        ),
        (*root, fn(r"run_virtual\(.*", exe), fn(r"(Square|Circle)::area\(.*", exe)),
        (
            *root,
            fn(r"run_throw\(.*", exe),
            Step(r"thrower\(.*", exe, many=True),
            Step(plt(exe).name, exe, many=True),
            libs,
        ),
        # libgcc's uw_install_context_1 (unnamed: libgcc_s.so.1+0x…) copies the handler frame's saved
        # registers, the return-address column among them, into _Unwind_RaiseException's save slots before
        # __builtin_eh_return jumps to the landing pad: while it runs, the stack in memory says that
        # _Unwind_RaiseException returns into run_throw, not __cxa_throw. Any unwinder reads the same.
        (
            *root,
            fn(r"run_throw\(.*", exe),
            Step(r"thrower\(.*", exe, many=True),
            fn(r"run_throw\(.*", exe),
            fn("_Unwind_RaiseException", LIBGCC),
            fn(rf"{LIBGCC}\+0x[0-9a-f]+", LIBGCC),
        ),
        (*root, Step(r"std::.*|operator new.*|.*unique_ptr.*|.*make_unique.*", exe, many=True), libs),
        clock_path(root, exe),
        exit_path(exe),
        ld_startup(),
    )


def _cxx_groups() -> dict[str, tuple[Step, ...]]:
    exe = "zoo_cxx"
    others = (
        r"run_(templates|virtual|throw)",
        "thrower",
        "Kernel",
        "Circle",
        "Square",
        "unsigned long accumulate",
    )
    return {
        "sort+lambda": (fn(_not("main", "_start", *others, r"zoo_cxx\+0x", r"zoo_(more|now|start)"), exe),),
        "templates": (fn(r"run_templates\(.*|.*accumulate<.*|Kernel<\d>::.*", exe),),
        "virtual": (fn(r"run_virtual\(.*|(Square|Circle)::area\(.*", exe),),
        "exceptions": (
            fn(r"run_throw\(.*|thrower\(.*", exe),
            Step(module=rf"{LIBSTDCXX}|{LIBGCC}"),
            fn(r".*(find_object|dlfo).*", LD_SO),
        ),
    }


def _stdcxx_chains() -> tuple[Chain, ...]:
    exe = "zoo_stdcxx"
    root = main_root(exe)
    internals = many(exe, _not("main", "_start", "run_strings", "sort_strings"))
    libs = many(rf"{LIBSTDCXX}|{LIBC}")
    return (
        (*root, fn(r"run_strings\(.*", exe), internals, libs),
        (*root, fn(r"sort_strings\(.*", exe), internals, libs),
        (*root, internals, libs),  # the vector of strings built and freed by main
        clock_path(root, exe),
        exit_path(exe),
        ld_startup(),
    )


def _libc_chains() -> tuple[Chain, ...]:
    exe = "zoo_libc"
    root = main_root(exe)
    stub = Step(plt(exe).name, exe, many=True)
    return (
        (*root, fn("copy_buffers", exe), stub, many(LIBC)),
        (*root, fn("sort_records", exe), stub, many(LIBC), fn("compare_records", exe)),
        (*root, fn("prefault", exe)),
        (*root, many(LIBC, r".*(malloc|mmap).*")),
        clock_path(root, exe),
        exit_path(exe),
        ld_startup(),
    )


def _sys_chains() -> tuple[Chain, ...]:
    exe = "zoo_sys"
    root = main_root(exe)
    return (
        (*root, fn("syscall_loop", exe), plt(exe)),
        (*root, fn("syscall_loop", exe), many(LIBC)),
        (*root, many(LIBC, r".*open.*")),
        clock_path(root, exe),
        exit_path(exe),
        ld_startup(),
    )


def _dl_chains() -> tuple[Chain, ...]:
    exe, lib = "zoo_dl", r"libzooplugin\.so"
    root = main_root(exe)
    return (
        (
            *root,
            fn("run_plugin", exe),
            fn("plugin_entry", lib),
            fn("plugin_mid", lib),
            fn("plugin_leaf", lib),
        ),
        (*root, many(rf"{LIBC}|{LD_SO}")),  # dlopen, dlsym, nanosleep
        (*root, Step(r"zoo_now", exe, many=True, inline=True), many(LIBC, r".*clock_gettime.*"), many(VDSO)),
        exit_path(exe),
        ld_startup(),
    )


def _dl(out: Path, secs: float) -> list[str]:
    exe = build_c("zoo_dl", ["dl_host.c"], out, NOFP_FLAGS, libs=["-ldl"])
    lib = build_c("libzooplugin.so", ["plugin.c"], out, (*NOFP_FLAGS, "-fPIC", "-shared"))
    return [str(exe), "0.3", str(lib), f"{secs:g}"]


def _threads_chains() -> tuple[Chain, ...]:
    exe = "zoo_threads"
    chains: list[Chain] = []
    for who in ("alpha", "beta"):
        root = (*thread_root(), fn(f"{who}_main", exe))
        chains += [(*root, fn(f"{who}_work", exe), fn(f"{who}_spin", exe)), clock_path(root, exe)]
    root = main_root(exe)
    chains += [
        (*root, many(LIBC, r".*pthread.*|.*clone.*|.*mmap.*|.*mprotect.*")),
        exit_path(exe),
        ld_startup(),
    ]
    return tuple(chains)


def _recurse_chains() -> tuple[Chain, ...]:
    exe = "zoo_recurse"
    root = main_root(exe)
    return (
        (*root, *[fn("recurse", exe)] * RECURSION_DEPTH, fn("burn", exe)),
        clock_path(root, exe),
        exit_path(exe),
        ld_startup(),
    )


def _rust_chains() -> tuple[Chain, ...]:
    exe = "zoo_rust"
    runtime = many(exe, r"std::.*|core::.*|<.*>::.*")
    root = (*main_root(exe), runtime, fn("zoo_rust::main", exe))
    work = (*root, fn("zoo_rust::outer", exe), fn("zoo_rust::middle", exe), fn("zoo_rust::inner", exe))
    return (
        (*work, fn("zoo_rust::hot", exe)),
        (*work, fn(r"zoo_rust::fold_squares(::\{closure.*)?", exe), runtime),
        (*root, runtime, many(LIBC), many(VDSO)),  # Instant::now, println!
        (*main_root(exe), runtime, many(LIBC)),  # runtime start-up and exit
        exit_path(exe),
        ld_startup(),
    )


def _rust(out: Path, secs: float) -> list[str]:
    return _args(build_rust("zoo_rust", out), secs)


# ---- symbolization cases: MiniDebugInfo, qualified names of inlined C++ frames --------------------------

MINIDEBUG_EXE = "zoo_c_minidbg"
CXX_INLINE_EXE = "zoo_cxx_inline"
STIR = r"mix::\(anonymous namespace\)::Mixer::stir"
ROTATE = r"mix::detail::rotate"
FOLD = r"mix::Table::fold\(unsigned long\) const"


def _minidebug(out: Path, secs: float) -> list[str]:
    return _args(add_minidebuginfo(build_c("zoo_c_mdi_full", ["chain.c"], out), MINIDEBUG_EXE), secs)


def _cxx_inline_chains() -> tuple[Chain, ...]:
    exe = CXX_INLINE_EXE
    root = (*main_root(exe), fn(r"mix::run_mix\(unsigned long\)", exe))
    return (
        (*root, fn(STIR, exe, inline=True), fn(ROTATE, exe, inline=True)),
        (*root, fn(FOLD, exe, inline=True)),
        clock_path(main_root(exe), exe),
        exit_path(exe),
        ld_startup(),
    )


def _symbol_cases() -> list[ZooProgram]:
    return [
        ZooProgram(
            MINIDEBUG_EXE,
            "C -O2 -fomit-frame-pointer, stripped, with MiniDebugInfo (.gnu_debugdata) as Fedora ships",
            _minidebug,
            c_chain(MINIDEBUG_EXE, inline=False),
            _c_groups(MINIDEBUG_EXE),
        ),
        ZooProgram(
            CXX_INLINE_EXE,
            "C++ hot code inlined from a static function, an anonymous-namespace class and a class",
            lambda out, secs: _args(
                build_c(CXX_INLINE_EXE, ["inline_ns.cc"], out, NOFP_FLAGS, cxx=True), secs
            ),
            _cxx_inline_chains(),
            {"stir": (fn(rf"{STIR}|{ROTATE}", CXX_INLINE_EXE),), "fold": (fn(FOLD, CXX_INLINE_EXE),)},
        ),
    ]


# ---- CFA outside rsp/rbp: stack realignment (DRAP), signal frames, ld.so's lazy binding ------------------

DRAP_EXE = "zoo_drap"
SIGNAL_EXE = "zoo_signals"
LAZY_EXE = "zoo_lazy"
LAZY_LIB = r"libzoolazy\.so"
LAZY_FUNCTIONS = 2000
RESOLVE = r"_dl_runtime_resolve\w*"


def _drap_chains() -> tuple[Chain, ...]:
    exe = DRAP_EXE
    root = main_root(exe)
    return (
        (*root, fn("drive", exe), fn("realigned", exe), fn("tail_work", exe)),
        clock_path(root, exe),
        exit_path(exe),
        ld_startup(),
    )


def _signal_chains() -> tuple[Chain, ...]:
    exe = SIGNAL_EXE
    root = main_root(exe)
    interrupted = (*root, Step(r"spin_r11|zoo_(more|now|start)", exe, many=True), many(LIBC), many(VDSO))
    return (
        (*interrupted, fn("__restore_rt", LIBC), fn("on_alarm", exe), fn("handler_work", exe)),
        clock_path(root, exe),
        (*root, fn("spin_r11", exe)),
        (*root, many(LIBC, r".*(sigaction|setitimer).*")),
        exit_path(exe),
        ld_startup(),
    )


def _lazy_chains() -> tuple[Chain, ...]:
    exe = LAZY_EXE
    root = main_root(exe)
    calls = (*root, fn("call_all", exe))
    return (
        (*calls, fn(RESOLVE, LD_SO), many(LD_SO)),
        (*root, fn(RESOLVE, LD_SO), many(LD_SO)),  # main's own first calls of fork, waitpid, _exit
        (*calls, plt(exe)),
        (*calls, fn(r"lazy_\d+", LAZY_LIB)),
        (*root, many(LIBC)),  # fork, waitpid, _exit
        clock_path(root, exe),
        exit_path(exe),
        ld_startup(),
    )


def _lazy(out: Path, secs: float) -> list[str]:
    """Generate and build libzoolazy.so (LAZY_FUNCTIONS functions) and zoo_lazy, which calls each through
    its PLT with lazy binding."""
    src = out / "lazy-src"
    src.mkdir(exist_ok=True)
    lib_c, calls_c = src / "lazy_lib.c", src / "lazy_calls.c"
    if not lib_c.exists():
        n = LAZY_FUNCTIONS
        lib_c.write_text(
            "".join(
                f"unsigned long lazy_{i}(unsigned long x) {{ return x * {2 * i + 1}UL + {i}UL; }}\n"
                for i in range(n)
            )
        )
        decls = "".join(f"unsigned long lazy_{i}(unsigned long);\n" for i in range(n))
        body = "".join(f"\tx = lazy_{i}(x);\n" for i in range(n))
        head = "__attribute__((noinline)) unsigned long call_all(unsigned long x)"
        calls_c.write_text(f"{decls}{head}\n{{\n{body}\treturn x;\n}}\n")
    build_c("libzoolazy.so", [str(lib_c)], out, (*NOFP_FLAGS, "-fPIC", "-shared"))
    link = [f"-L{out}", "-lzoolazy", f"-Wl,-rpath,{out}", "-Wl,-z,lazy"]
    return _args(build_c(LAZY_EXE, ["lazy_main.c", str(calls_c)], out, NOFP_FLAGS, libs=link), secs)


def _register_cases() -> list[ZooProgram]:
    return [
        ZooProgram(
            DRAP_EXE,
            "gcc stack realignment through a DRAP register (-mavx2, aligned local + VLA): CFA r10, *(rbp-8)",
            lambda out, secs: _args(build_c(DRAP_EXE, ["drap.c"], out, (*NOFP_FLAGS, "-mavx2")), secs),
            _drap_chains(),
            {"realigned": (fn("realigned", DRAP_EXE),), "tail_work": (fn("tail_work", DRAP_EXE),)},
        ),
        ZooProgram(
            SIGNAL_EXE,
            "a busy SIGALRM handler interrupting hand-written assembly whose CFA is in r11",
            lambda out, secs: _args(build_c(SIGNAL_EXE, ["signals.c", "spin_r11.S"], out), secs),
            _signal_chains(),
            {
                "handler": (fn("on_alarm|handler_work", SIGNAL_EXE),),
                "spin_r11": (fn("spin_r11", SIGNAL_EXE),),
            },
        ),
        ZooProgram(
            LAZY_EXE,
            f"forked children calling {LAZY_FUNCTIONS} functions through fresh lazily bound PLT entries",
            _lazy,
            _lazy_chains(),
            {"lazy binding": (fn(rf"{RESOLVE}|_dl_.*|do_lookup_x|check_match|strcmp", LD_SO),)},
        ),
    ]


def catalog() -> dict[str, ZooProgram]:
    """Every zoo program by name."""
    cxx_exe, std_exe = "zoo_cxx", "zoo_stdcxx"
    programs = [
        ZooProgram(
            "zoo_c", "C -O2 -fomit-frame-pointer, PIE", _c("zoo_c"), c_chain("zoo_c"), _c_groups("zoo_c")
        ),
        ZooProgram(
            "zoo_c_nopie",
            "C -O2 -fomit-frame-pointer, non-PIE",
            _c("zoo_c_nopie", ("-no-pie", "-fno-pie")),
            c_chain("zoo_c_nopie"),
            _c_groups("zoo_c_nopie"),
        ),
        ZooProgram(
            "zoo_c_static",
            "C -O2 -fomit-frame-pointer, -static",
            _c("zoo_c_static", ("-static",)),
            c_chain("zoo_c_static", libc=re.escape("zoo_c_static")),
            _c_groups("zoo_c_static"),
        ),
        ZooProgram(
            "zoo_c_stripped",
            "C -O2 -fomit-frame-pointer -rdynamic, stripped of .symtab and DWARF",
            _stripped,
            c_chain("zoo_c_stripped", inline=False, hidden=r"zoo_c_stripped\+0x[0-9a-f]+"),
            _c_groups("zoo_c_stripped", hidden=r"zoo_c_stripped\+0x[0-9a-f]+"),
        ),
        ZooProgram(
            cxx_exe,
            "C++ templates, lambda in std::sort, virtual calls, exceptions",
            lambda out, secs: _args(build_c(cxx_exe, ["cxx.cc"], out, NOFP_FLAGS, cxx=True), secs),
            _cxx_chains(),
            _cxx_groups(),
        ),
        ZooProgram(
            std_exe,
            "libstdc++: ostringstream, std::string, std::hash, std::sort of strings",
            lambda out, secs: _args(build_c(std_exe, ["stdcxx.cc"], out, NOFP_FLAGS, cxx=True), secs),
            _stdcxx_chains(),
            {
                "leaf in libstdc++": (Step(module=LIBSTDCXX),),
                "leaf in libc": (Step(module=LIBC),),
                "leaf in the binary": (Step(module=std_exe),),
            },
        ),
        ZooProgram(
            "zoo_libc",
            "libc: memcpy of 16 MB buffers, qsort with a callback",
            lambda out, secs: _args(build_c("zoo_libc", ["libc_work.c"], out, NOFP_FLAGS), secs),
            _libc_chains(),
            {
                "memcpy": (fn(r".*mem(cpy|move).*", LIBC),),
                "qsort callback": (fn("compare_records", "zoo_libc"),),
                "qsort": (fn(r".*qsort.*|msort_with_tmp.*", LIBC),),
            },
        ),
        ZooProgram(
            "zoo_sys",
            "syscalls: write(/dev/null) and getppid, kernel + user stacks",
            lambda out, secs: _args(build_c("zoo_sys", ["syscalls.c"], out, NOFP_FLAGS), secs),
            _sys_chains(),
            {"syscall wrappers": (fn(r".*(write|getppid).*", LIBC),)},
        ),
        ZooProgram(
            "zoo_dl",
            "a library loaded with dlopen 0.3 s after start",
            _dl,
            _dl_chains(),
            {"in the library": (Step(module=r"libzooplugin\.so"),)},
        ),
        ZooProgram(
            "zoo_threads",
            "two named threads",
            lambda out, secs: _args(
                build_c("zoo_threads", ["threads.c"], out, NOFP_FLAGS, libs=["-lpthread"]), secs
            ),
            _threads_chains(),
            {"alpha": (fn(r"alpha_\w+", "zoo_threads"),), "beta": (fn(r"beta_\w+", "zoo_threads"),)},
        ),
        ZooProgram(
            "zoo_recurse",
            f"recursion {RECURSION_DEPTH} deep",
            lambda out, secs: _args(build_c("zoo_recurse", ["recurse.c"], out, NOFP_FLAGS), secs),
            _recurse_chains(),
            {"recursion": (fn("recurse|burn", "zoo_recurse"),)},
        ),
        ZooProgram(
            "zoo_rust",
            "Rust, cargo --release",
            _rust,
            _rust_chains(),
            {"chain": (fn(r"zoo_rust::(outer|middle|inner|hot|fold_squares).*", "zoo_rust"),)},
        ),
        *_symbol_cases(),
        *_register_cases(),
    ]
    return {p.name: p for p in programs}


def profile(
    program: ZooProgram, build_dir: Path, out_dir: Path, cache_dir: Path, seconds: float
) -> list[Stack]:
    """Build `program`, record it with `fleetprof record -F 999` (speedscope: samples in time order) and
    return its stacks; raises ZooError when the build or the recording fails."""
    argv = program.command(build_dir, seconds)
    out = out_dir / f"{program.name}.speedscope.json"
    run = record(["--", *argv], out, cache_dir=cache_dir)
    if run.returncode != 0 or "Traceback" in run.stderr:
        raise ZooError(f"fleetprof record -- {' '.join(argv)}: exit {run.returncode}\n{run.stderr}")
    return load_stacks(out)


class Profiler:
    """Profiles zoo programs on demand, once each, with one unwind-table cache for all of them."""

    def __init__(self, build_dir: Path, out_dir: Path, cache_dir: Path, seconds: float = 1.5) -> None:
        self.build_dir = build_dir
        self.out_dir = out_dir
        self.cache_dir = cache_dir
        self.seconds = seconds
        self._done: dict[str, list[Stack]] = {}

    def stacks(self, name: str) -> list[Stack]:
        """The stacks of one recording of zoo program `name`."""
        if name not in self._done:
            self._done[name] = profile(
                CATALOG[name], self.build_dir, self.out_dir, self.cache_dir, self.seconds
            )
        return self._done[name]


def evaluate(program: ZooProgram, stacks: list[Stack]) -> dict[str, Completeness]:
    """Completeness of the whole program's samples, then of each leaf group."""
    out = {"program": judge(stacks, program.chains, process=program.name)}
    for group, leaf in program.groups.items():
        out[group] = judge(stacks, program.chains, process=program.name, leaf=leaf)
    return out


CATALOG = catalog()

"""The Perl reference walker on a live perl (a known chain parked reading STDIN, or spinning in a regex match
and stopped), the thread-local route to the interpreter, discovery's one-line reasons, the walk's guards on
fake memory, and a captured walk replayed with no process."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from interp_memory import FakeMemory, RecordingMemory, wait_blocked_on_stdin

from fleetprof.elf.reader import read_elf_info
from fleetprof.elf.view import ElfView
from fleetprof.interpreters.perl.discovery import (
    PerlBinary,
    PerlUnsupported,
    inspect_perl_binary,
    is_perl_name,
)
from fleetprof.interpreters.perl.layouts import (
    PERLSI_MAIN,
    PERLSI_MULTICALL,
    PERLSI_SORT,
    CVf_ANON,
    CXt_EVAL,
    CXt_SUB,
    layout_for,
)
from fleetprof.interpreters.perl.process import PerlProcess, find_perl
from fleetprof.interpreters.perl.symbolizer import RUNTIME, PerlNamer
from fleetprof.interpreters.perl.walker import (
    MAIN,
    PerlStack,
    symbolize,
    walk_interpreter,
    walk_pid,
    walk_process,
)
from fleetprof.process.memory import ProcessMemory
from fleetprof.profile.model import FrameKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "perl"
CHAIN, LIB = FIXTURES / "chain.pl", FIXTURES / "lib.pl"
EVALS, REQUIRED = FIXTURES / "evals.pl", FIXTURES / "required.pl"
THREADS = FIXTURES / "threads.pl"
CAPTURE = FIXTURES / "captured_park.json"
PERL = shutil.which("perl")
LIBPERL = Path("/usr/lib/x86_64-linux-gnu/libperl.so.5.36")

needs_perl = pytest.mark.skipif(PERL is None, reason="perl is not installed (apt-get install perl)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")


def markers(root: Path = FIXTURES) -> dict[str, tuple[str, int]]:
    """`@frame:NAME` marker -> (file under `root`, line) in the fixture scripts."""
    out = {}
    for path in (CHAIN, LIB, EVALS, REQUIRED, THREADS):
        for number, text in enumerate(path.read_text().splitlines(), 1):
            found = re.search(r"@frame:([\w-]+)", text)
            if found:
                out[found.group(1)] = (str(root / path.name), number)
    return out


def expected_chain(root: Path = FIXTURES) -> list[tuple[str, str, int]]:
    """(function, file, line) of the chain above the leaf, root first: main down to Walker::recurse."""
    at = markers(root)
    recurse_self = ("Walker::recurse", *at["recurse-self"])
    return [
        ("main", *at["main"]),
        ("Shapes::Circle::run", *at["run"]),
        ("Helper::apply", *at["block"]),  # its line is the sort block's statement calling area
        ("Shapes::Circle::area", *at["area"]),
        ("Shapes::Circle::__ANON__", *at["anon"]),
        recurse_self,
        recurse_self,
        recurse_self,
        ("Walker::recurse", *at["recurse-leaf"]),
    ]


def expected_park(root: Path = FIXTURES) -> list[tuple[str, str, int]]:
    """The whole parked stack, root first (the lexical `my sub leaf` last)."""
    return [*expected_chain(root), ("Walker::leaf", *markers(root)["leaf-park"])]


def _triples(stack: PerlStack) -> list[tuple[str, str, int]]:
    return [(f.function, f.file, f.line) for f in stack.frames]


@contextmanager
def running_chain(
    mode: str, script: Path = CHAIN, launcher: str | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run `script` under `launcher` (default: perl) in `mode` ("park": blocked reading STDIN; "spin": a
    regex match in a loop) once it is ready."""
    assert PERL is not None
    process = subprocess.Popen(
        [launcher or PERL, str(script), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=FIXTURES,
    )
    try:
        assert process.stdout is not None
        status = process.stdout.readline().strip()
        if status != "ready":
            pytest.fail(f"{script.name} exited with {process.wait(timeout=10)}")
        if mode == "park" and script != THREADS:
            wait_blocked_on_stdin(process.pid)
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


def _save_capture(process: PerlProcess, interp: int, memory: RecordingMemory) -> None:
    """Write the reads of one walk to CAPTURE (FLEETPROF_PERL_RECAPTURE=1 regenerates it)."""
    CAPTURE.write_text(
        json.dumps(
            {
                "perl": ".".join(map(str, process.binary.version)),
                "root": str(FIXTURES),
                "interpreter": interp,
                "blocks": [[addr, data.hex()] for addr, data in sorted(memory.blocks.items())],
            },
            indent=0,
        )
        + "\n"
    )


def _check_parked_raw(stack: PerlStack) -> None:
    """The raw walk of the parked chain (innermost first): kinds, segments and how subs are named."""
    raw = stack.raw
    assert [item.kind for item in raw] == [CXt_SUB] * 9 + [MAIN]
    # Two Perl_runops_standard native frames (checked with gdb): the sort block's (pp_sort ->
    # Perl_sortsv_flags -> S_sortcv -> runops) stands for leaf .. area, perl_run's for apply, run, main.
    assert stack.segments == [7, 3]
    assert [i for i, item in enumerate(raw) if item.ends_native_segment] == [6, 9]
    assert stack.stackinfo_types == [PERLSI_SORT, PERLSI_MAIN]
    # the lexical leaf has no GV (named from its CV's HEK); every other sub is named from its GV
    assert raw[0].is_named_cv and not any(item.is_named_cv for item in raw[1:9])
    assert all(item.cv for item in raw[:9]) and raw[9].cv == raw[9].gv == 0
    assert [item.line for item in raw] == [line for _, _, line in expected_park()[::-1]]


def _callers(process: subprocess.Popen[str]) -> list[tuple[str, str, int]]:
    """What the parked leaf printed from Perl's own `caller` before blocking: (sub, file, line) per level,
    innermost first (each line is where that sub was called)."""
    assert process.stdout is not None
    out = []
    for text in iter(process.stdout.readline, "parked\n"):
        _, sub, file, line = text.split()
        out.append((sub, file, int(line)))
    return out


def _matches_caller(stack: PerlStack, callers: list[tuple[str, str, int]]) -> bool:
    """Whether the walk agrees with `caller`: innermost first, frame i is caller(i)'s sub and frame i+1
    sits at caller(i)'s file and line. `caller` names a lexical sub bare (CVf_LEXICAL), the walker
    qualifies it with its CvSTASH."""
    inner = stack.frames[::-1]
    names = [
        f.function.rsplit("::", 1)[-1] if r.is_named_cv else f.function
        for f, r in zip(inner, stack.raw, strict=True)
    ]
    return len(inner) == len(callers) + 1 and all(
        names[i] == sub and (inner[i + 1].file, inner[i + 1].line) == (file, line)
        for i, (sub, file, line) in enumerate(callers)
    )


@needs_perl
@needs_root
def test_walker_reads_the_parked_chain_exactly() -> None:
    """Every frame, name, file and line of the chain parked reading STDIN, root first: packages, the
    anonymous sub, the lexical sub, the recursion, the frame below the sort block, the main program."""
    with running_chain("park") as process:
        own_view = _callers(process)
        found = find_perl(process.pid)
        assert isinstance(found, PerlProcess), found
        with ProcessMemory(process.pid) as mem:
            interp = found.interpreter(mem)
            assert isinstance(interp, int), interp
            recorder = RecordingMemory(mem)
            stack = walk_process(found, recorder, interp)
            anon_body = mem.u64(stack.raw[5].cv) or 0
            anon_flags = mem.u32(anon_body + found.binary.layout.xcv_flags)
    assert stack.error == ""
    assert _triples(stack) == expected_park()
    assert all(f.kind is FrameKind.INTERPRETED and f.runtime == RUNTIME for f in stack.frames)
    assert anon_flags is not None and anon_flags & CVf_ANON
    assert _matches_caller(stack, own_view)
    _check_parked_raw(stack)
    if os.environ.get("FLEETPROF_PERL_RECAPTURE") == "1":
        _save_capture(found, interp, recorder)


@needs_perl
@needs_root
def test_evals_require_and_c_callbacks_split_into_their_runops_frames() -> None:
    """eval {}, eval '', List::Util::first's MULTICALL block, a named sort sub and a require: names, files
    and lines exact, and the four runops native frames gdb shows (innermost first: docatch's under the
    require, sort's, first's, perl_run's) each get their frames."""
    at = markers()
    wanted = [
        ("main", *at["main-evals"]),
        ("Outer::start", *at["start"]),
        ("(eval)", *at["eval-block"]),
        ("(eval)", "(eval 1)", 1),
        ("Outer::step", *at["step"]),
        ("Outer::__ANON__", *at["step"]),  # first's block, entered by MULTICALL
        ("Outer::pick", *at["pick"]),
        ("Outer::by_value", *at["by-value"]),  # entered by pp_sort
        ("(require)", *at["require"]),
        ("Leaf::park", *at["park"]),
    ]
    with running_chain("park", EVALS) as process:
        stack = walk_pid(process.pid)
    assert isinstance(stack, PerlStack), stack
    assert stack.error == "" and _triples(stack) == wanted
    assert stack.segments == [2, 1, 2, 5]
    assert stack.stackinfo_types == [PERLSI_SORT, PERLSI_MULTICALL, PERLSI_MAIN]
    assert [i for i, item in enumerate(stack.raw) if item.ends_native_segment] == [1, 2, 4, 9]
    assert [i for i, item in enumerate(stack.raw) if item.entered_from_c] == [2, 4]
    assert [item.kind for item in stack.raw].count(CXt_EVAL) == 3


def _stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until `pid` is in state T (stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.005)
    pytest.fail(f"pid {pid} did not stop")


@needs_perl
@needs_root
def test_walker_reads_a_spinning_chain_stopped_anywhere() -> None:
    """SIGSTOP while the leaf spins in a regex match (C code called by pp_match from the same runops
    loop: no segment of its own): every stop reads the whole chain with the leaf's loop line."""
    wanted = [*expected_chain(), ("Walker::leaf", *markers()["leaf-spin"])]
    seen: list[tuple[str, str, int]] = []
    whole_reads = 0
    deadline = time.monotonic() + 30.0  # a loaded machine may take long to get down the chain
    with running_chain("spin") as process:
        while time.monotonic() < deadline:
            os.kill(process.pid, signal.SIGSTOP)
            _stopped(process.pid)
            stack = walk_pid(process.pid)
            os.kill(process.pid, signal.SIGCONT)
            assert isinstance(stack, PerlStack), stack
            assert stack.error == ""
            seen = _triples(stack)
            # still on its way down the chain (the leaf's statements before its loop included), then
            # every stop reads it whole
            if seen != wanted:
                assert not whole_reads, (seen, wanted)
                time.sleep(0.002)
                continue
            whole_reads += 1
            assert stack.segments == [7, 3]
            if whole_reads >= 10:
                return
            time.sleep(0.005)
    pytest.fail(f"never read the whole spinning chain; last: {seen}")


def _fs_base(pid: int) -> int:
    """The thread pointer of thread `pid` (PTRACE_GETREGS: user_regs_struct.fs_base), read attached."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    regs = (ctypes.c_ulonglong * 27)()
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        pytest.skip(f"ptrace attach refused ({os.strerror(ctypes.get_errno())})")
    try:
        os.waitpid(pid, 0x40000000)  # __WALL
        assert libc.ptrace(12, pid, None, ctypes.byref(regs)) == 0  # PTRACE_GETREGS
    finally:
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    return regs[21]


@needs_perl
@needs_root
def test_thread_local_interpreter_is_pl_curinterp() -> None:
    """`PL_current_context` through the thread pointer (the route BPF takes; Debian's perl executable
    reaches it through a TPOFF slot) is PL_curinterp, and walks to the same chain."""
    with running_chain("park") as process:
        found = find_perl(process.pid)
        assert isinstance(found, PerlProcess), found
        assert found.binary.tls is not None
        thread_pointer = _fs_base(process.pid)
        with ProcessMemory(process.pid) as mem:
            by_tls = found.tls_interpreter(mem, thread_pointer)
            assert by_tls == found.interpreter(mem)
            assert isinstance(by_tls, int)
            assert _triples(walk_process(found, mem, by_tls)) == expected_park()


@needs_perl
@needs_root
@pytest.mark.skipif(not LIBPERL.exists(), reason=f"{LIBPERL} is not installed (apt-get install libperl5.36)")
def test_embedded_libperl_is_found_and_walked_through_its_module_id(build_dir: Path) -> None:
    """A program embedding libperl.so (no Perl in its executable): Perl is found in the library, and
    PL_current_context through the thread pointer's DTV entry for libperl's module id is PL_curinterp."""
    flags, core = _perl_ccflags()
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (make setup installs it)")
    embed = build_dir / "embedperl"
    source = FIXTURES / "embed.c"
    built = subprocess.run(
        ["gcc", *flags, f"-I{core}", "-o", str(embed), str(source), str(LIBPERL), "-lm"],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    with running_chain("park", CHAIN, str(embed)) as process:
        found = find_perl(process.pid)
        assert isinstance(found, PerlProcess), found
        assert Path(found.binary.path).name.startswith("libperl.so")
        assert found.binary.tls is not None and found.binary.tls.module_got
        thread_pointer = _fs_base(process.pid)
        with ProcessMemory(process.pid) as mem:
            by_tls = found.tls_interpreter(mem, thread_pointer)
            assert isinstance(by_tls, int) and by_tls == found.interpreter(mem)
            stack = walk_process(found, mem, by_tls)
    assert stack.error == "" and _triples(stack) == expected_park()
    assert stack.segments == [7, 3]


def _perl_ccflags() -> tuple[list[str], Path]:
    """The installed perl's compiler flags and CORE header directory."""
    assert PERL is not None
    out = subprocess.run(
        [PERL, "-MConfig", "-e", "print qq{$Config{ccflags}\\n$Config{archlibexp}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flags, archlib = out.rsplit("\n", 1)
    return flags.split(), Path(archlib) / "CORE"


def _thread_stacks(process: PerlProcess) -> list[tuple[list[tuple[str, str, int]], list[int]]]:
    """(frames, segments) of every thread of `process`, each walked from its own PL_current_context."""
    stacks = []
    for tid in sorted(int(name) for name in os.listdir(f"/proc/{process.pid}/task")):
        thread_pointer = _fs_base(tid)
        with ProcessMemory(process.pid) as mem:
            interp = process.tls_interpreter(mem, thread_pointer)
            assert isinstance(interp, int), interp
            stack = walk_process(process, mem, interp)
        assert stack.error == "", stack.error
        stacks.append((_triples(stack), stack.segments))
    return stacks


@needs_perl
@needs_root
def test_each_ithread_walks_its_own_interpreter() -> None:
    """Three interpreters (use threads): each thread's fs base leads to its own PL_current_context; the
    main thread's is PL_curinterp (main program at the bottom), the others run their sub from C (no
    `main` below it, one runops segment)."""
    at = markers()
    wanted = [
        ([("main", *at["join"])], [1]),
        ([("main::__ANON__", *at["spawn-alpha"]), ("Sleeper::alpha", *at["alpha"])], [2]),
        ([("main::__ANON__", *at["spawn-beta"]), ("Sleeper::beta", *at["beta"])], [2]),
    ]
    with running_chain("park", THREADS) as process:
        found = find_perl(process.pid)
        assert isinstance(found, PerlProcess), found
        for _ in range(100):  # the threads reach their read just after "ready"
            stacks = _thread_stacks(found)
            if sorted(stacks) == sorted(wanted):
                break
            time.sleep(0.02)
    assert sorted(stacks) == sorted(wanted)


def _perl_version() -> tuple[int, int, int]:
    assert PERL is not None
    text = subprocess.run([PERL, "-e", 'printf "%vd", $^V'], capture_output=True, text=True).stdout
    major, minor, patch = (int(part) for part in text.split("."))
    return major, minor, patch


@needs_perl
def test_discovery_reads_version_and_symbols_of_the_installed_perl() -> None:
    """The executable's version matches $^V; PL_curinterp, the TLS slot and both runops loops are found;
    libperl.so (what embedding programs map) is described too, its TLS reached by module id."""
    assert PERL is not None
    found = inspect_perl_binary(os.path.realpath(PERL))
    assert isinstance(found, PerlBinary), found
    assert found.version == _perl_version()
    assert found.layout.version == found.version[:2]
    assert found.curinterp and found.thr_key
    assert found.tls is not None and (found.tls.tpoff_got or found.tls.module_got)
    assert len(found.runops) == 2 and all(size > 0 for _, size in found.runops)
    if LIBPERL.exists():
        shared = inspect_perl_binary(LIBPERL)
        assert isinstance(shared, PerlBinary), shared
        assert shared.version == found.version
        assert shared.tls is not None and shared.tls.module_got and not shared.tls.tpoff_got
    assert is_perl_name("/usr/bin/perl") and is_perl_name("/usr/bin/perl5.36.0")
    assert is_perl_name(str(LIBPERL)) and not is_perl_name("/usr/bin/perldoc")


def _file_offset(path: Path, vaddr: int) -> int:
    """The file offset of ELF virtual address `vaddr` in `path`."""
    for seg in read_elf_info(str(path)).loads:
        if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            return vaddr - seg.vaddr + seg.offset
    raise AssertionError(f"{vaddr:#x} is not in a PT_LOAD of {path}")


@needs_perl
def test_fake_versions_give_one_line_reasons(tmp_path: Path) -> None:
    """A copy of perl whose PL_version byte says 5.99 is unsupported with the covered versions."""
    assert PERL is not None
    real = Path(os.path.realpath(PERL))
    with ElfView(str(real)) as image:
        symbol = image.symbols(["PL_version"])["PL_version"]
    data = bytearray(real.read_bytes())
    data[_file_offset(real, symbol.value)] = 99
    fake = tmp_path / "perl"
    fake.write_bytes(bytes(data))
    found = inspect_perl_binary(fake, file_id="e" * 32)
    assert isinstance(found, PerlUnsupported)
    assert re.fullmatch(r"Perl 5\.99\.\d+ has no struct layout \(covered: 5\.36\)", found.reason)
    assert found.marker == f"[unwind: perl: {found.reason}]" and "\n" not in found.marker


LAYOUT = layout_for(5, 36)
assert LAYOUT is not None


def _interp(mem: FakeMemory, curcop: int, stackinfo: int) -> int:
    """A fake interpreter at 0x1000 whose PL_curcop and PL_curstackinfo are given."""
    assert LAYOUT is not None
    data = bytearray(LAYOUT.interp_read_size)
    data[0:8] = curcop.to_bytes(8, "little")
    at = LAYOUT.interp_curstackinfo - LAYOUT.interp_curcop
    data[at : at + 8] = stackinfo.to_bytes(8, "little")
    mem.put(0x1000 + LAYOUT.interp_curcop, bytes(data))
    return 0x1000


def _stackinfo(mem: FakeMemory, at: int, cxstack: int, prev: int, cxix: int, si_type: int) -> None:
    assert LAYOUT is not None
    data = bytearray(LAYOUT.si_read_size)
    data[LAYOUT.si_cxstack : LAYOUT.si_cxstack + 8] = cxstack.to_bytes(8, "little")
    data[LAYOUT.si_prev : LAYOUT.si_prev + 8] = prev.to_bytes(8, "little")
    data[LAYOUT.si_cxix : LAYOUT.si_cxix + 4] = cxix.to_bytes(4, "little", signed=True)
    data[LAYOUT.si_type : LAYOUT.si_type + 4] = si_type.to_bytes(4, "little", signed=True)
    mem.put(at, bytes(data))


def _context(cx_type: int, oldcop: int = 0, retop: int = 0, cv: int = 0) -> bytes:
    assert LAYOUT is not None
    data = bytearray(LAYOUT.cx_size)
    data[LAYOUT.cx_type] = cx_type
    data[LAYOUT.cx_oldcop : LAYOUT.cx_oldcop + 8] = oldcop.to_bytes(8, "little")
    data[LAYOUT.cx_sub_retop : LAYOUT.cx_sub_retop + 8] = retop.to_bytes(8, "little")
    data[LAYOUT.cx_sub_cv : LAYOUT.cx_sub_cv + 8] = cv.to_bytes(8, "little")
    return bytes(data)


def test_walk_stops_on_bad_memory_and_depth() -> None:
    """An unreadable interpreter, stackinfo, context or CV, and a too-deep context stack each stop the walk
    with a reason; loops and blocks are no frames; an eval scope pushed by C is none either."""
    assert LAYOUT is not None
    mem = FakeMemory()
    assert walk_interpreter(mem, LAYOUT, 0x1000)[3] == "interpreter 0x1000 unreadable"
    interp = _interp(mem, 0, 0x2000)
    assert walk_interpreter(mem, LAYOUT, interp)[3] == "stackinfo 0x2000 unreadable"
    _stackinfo(mem, 0x2000, 0x3000, 0, 2, PERLSI_MAIN)
    assert walk_interpreter(mem, LAYOUT, interp)[3] == "context unreadable (0x3000[2])"
    blocks = [_context(2), _context(8), _context(CXt_EVAL | 0x40)]  # block, loop, C's G_EVAL scope
    mem.put(0x3000, b"".join(blocks))
    frames, segments, types, error = walk_interpreter(mem, LAYOUT, interp)
    assert error == "" and [f.kind for f in frames] == [MAIN] and segments == [1] and types == [PERLSI_MAIN]
    assert walk_interpreter(mem, LAYOUT, interp, max_contexts=2)[3].startswith("context stack deeper")
    mem.put(0x3000, b"".join([_context(2), _context(8), _context(CXt_SUB, cv=0x5000, retop=0x10)]))
    assert walk_interpreter(mem, LAYOUT, interp)[3] == "CV 0x5000 unreadable"


def test_segments_end_at_stackinfos_and_subs_entered_from_c() -> None:
    """A sub whose retop is NULL (entered by call_sv) ends its runops segment on the same stackinfo; a
    stackinfo pushed by C ends one even with no frame of its own (a sort block calling no sub)."""
    assert LAYOUT is not None
    mem = FakeMemory()
    interp = _interp(mem, 0x9000, 0x2000)
    for cv, gv in ((0x5000, 0x6000), (0x5100, 0x6100)):
        body = cv + 0x40
        mem.put(cv, body.to_bytes(8, "little"))
        mem.put(
            body + LAYOUT.xcv_gv, gv.to_bytes(8, "little") + bytes(LAYOUT.xcv_flags + 4 - LAYOUT.xcv_gv - 8)
        )
        mem.put(gv + LAYOUT.sv_u, bytes(8))  # no GP: the GV itself
    _stackinfo(mem, 0x2000, 0x3000, 0x2100, 0, PERLSI_SORT)  # a sort block: CXt_NULL only
    mem.put(0x3000, _context(0, oldcop=0x9100))
    _stackinfo(mem, 0x2100, 0x3100, 0, 1, PERLSI_MAIN)
    mem.put(
        0x3100, _context(CXt_SUB, oldcop=0x9200, retop=0x10, cv=0x5000) + _context(CXt_SUB, 0x9300, 0, 0x5100)
    )
    frames, segments, _, error = walk_interpreter(mem, LAYOUT, interp)
    assert error == ""
    assert [(f.cv, f.gv, f.cop) for f in frames] == [
        (0x5100, 0x6100, 0x9000),
        (0x5000, 0x6000, 0x9300),
        (0, 0, 0x9200),
    ]
    assert segments == [0, 1, 2] and [f.ends_native_segment for f in frames] == [True, False, True]


def test_a_cop_file_name_freed_and_reused_is_read_again() -> None:
    """A threaded perl frees a COP's file name with the COP and malloc hands the address to another's:
    the namer reads the name the COP points at now, not the one first seen there."""
    layout = layout_for(5, 36)
    assert layout is not None
    mem = FakeMemory()
    cop, name = 0x1000, 0x2000
    mem.put(cop + layout.cop_file, name.to_bytes(8, "little"))
    mem.put(name, b"/usr/lib/x86_64-linux-gnu/perl-base/DynaLoader.pm\0")
    namer = PerlNamer(mem, layout)
    assert namer.file(cop) == "/usr/lib/x86_64-linux-gnu/perl-base/DynaLoader.pm"
    mem.put(name, b"/tmp/late.pl\0")
    assert namer.file(cop) == "/tmp/late.pl"
    assert namer.file(0) == "" and namer.file(0x9000) == ""


def test_captured_park_replays_without_a_process() -> None:
    """The bytes one live walk read (tests/fixtures/perl/captured_park.json, Perl 5.36) walk and name to
    the same chain with no process and no root: the oracle the BPF walker's output is checked against."""
    capture = json.loads(CAPTURE.read_text())
    layout = layout_for(*map(int, capture["perl"].split(".")[:2]))
    assert layout is not None
    mem = FakeMemory()
    for addr, data in capture["blocks"]:
        mem.put(addr, bytes.fromhex(data))
    raw, segments, types, error = walk_interpreter(mem, layout, capture["interpreter"])
    assert error == ""
    frames, name_error = symbolize(PerlNamer(mem, layout), raw)
    assert name_error == ""
    stack = PerlStack(raw, frames[::-1], segments, types)
    assert _triples(stack) == expected_park(Path(capture["root"]))
    _check_parked_raw(stack)

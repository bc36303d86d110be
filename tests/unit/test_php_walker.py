"""The PHP reference walker on a live php8.2 (a known chain parked in fgets), discovery's one-line reasons,
and the walk's guards (cycles, bad pointers, depth) on fake memory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from interp_memory import FakeMemory, wait_blocked_on_stdin

from fleetprof.elf.view import Symbol
from fleetprof.interpreters.php.discovery import (
    PhpBinary,
    PhpUnsupported,
    engine_globals,
    inspect_php_binary,
    is_php_name,
    version_of,
)
from fleetprof.interpreters.php.layouts import (
    ZEND_CALL_CODE,
    ZEND_CALL_TOP,
    ZEND_EVAL_CODE,
    ZEND_INTERNAL_FUNCTION,
    ZEND_USER_FUNCTION,
    layout_for,
)
from fleetprof.interpreters.php.symbolizer import EVAL, MAIN, RUNTIME
from fleetprof.interpreters.php.walker import PhpStack, symbolize, walk_execute_data, walk_pid
from fleetprof.profile.model import FrameKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "php"
CHAIN, LIB, RUN = FIXTURES / "chain.php", FIXTURES / "lib.php", FIXTURES / "run.php"
PHP = shutil.which("php8.2") or shutil.which("php")
MODES = {
    "plain": ("-d", "opcache.enable_cli=0"),
    "opcache": ("-d", "opcache.enable_cli=1", "-d", "opcache.jit=off"),
    "jit-tracing": (
        "-d",
        "opcache.enable_cli=1",
        "-d",
        "opcache.jit=tracing",
        "-d",
        "opcache.jit_buffer_size=64M",
    ),
    "jit-function": (
        "-d",
        "opcache.enable_cli=1",
        "-d",
        "opcache.jit=function",
        "-d",
        "opcache.jit_buffer_size=64M",
    ),
}

needs_php = pytest.mark.skipif(PHP is None, reason="php8.2-cli is not installed (apt-get install php8.2-cli)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")


def _markers() -> dict[str, tuple[str, int]]:
    """`@frame:NAME` marker -> (file, line) in the fixture files."""
    out = {}
    for path in (CHAIN, LIB, RUN):
        for number, text in enumerate(path.read_text().splitlines(), 1):
            found = re.search(r"@frame:([\w-]+)", text)
            if found:
                out[found.group(1)] = (str(path), number)
    return out


def _function_line(path: Path, name: str) -> int:
    """The line declaring function `name` in `path` (zend op_array line_start)."""
    lines = path.read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if re.search(rf"function {name}\b", text))


def _expected() -> list[tuple[str, str, int]]:
    """(function, file, line) of every frame of the parked chain, innermost first."""
    at = _markers()
    recurse_self = ("recurse", *at["recurse-self"])
    return [
        ("fgets", "", 0),
        ("leaf", *at["leaf"]),
        ("recurse", *at["recurse-leaf"]),
        recurse_self,
        recurse_self,
        recurse_self,
        ("Util::{closure}", *at["closure"]),
        ("array_map", "", 0),
        ("Util::apply", *at["apply"]),
        ("Shape::run", *at["run"]),
        ("outer", *at["outer"]),
        (MAIN, *at["include"]),
        (MAIN, *at["main"]),
    ]


@contextmanager
def parked_chain(*options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run chain.php under php with `options` until it blocks in fgets(STDIN); (process, status line)."""
    assert PHP is not None
    process = subprocess.Popen(
        [PHP, *options, str(CHAIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        status = process.stdout.readline().strip()
        if process.stdout.readline().strip() != "ready":
            pytest.fail(f"chain.php exited with {process.wait(timeout=10)} ({status!r})")
        wait_blocked_on_stdin(process.pid)
        yield process, status
    finally:
        process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


@needs_php
@needs_root
@pytest.mark.parametrize("mode", list(MODES))
def test_walker_reads_the_parked_chain_exactly(mode: str) -> None:
    """Every frame, name, file and line of the chain, with opcache off, on, and with each JIT mode."""
    with parked_chain(*MODES[mode]) as (process, status):
        stack = walk_pid(process.pid)
    if mode.startswith("jit") and "jit_used=0" in status:
        pytest.skip(f"this php has no JIT ({status})")
    assert ("opcache=1" in status) == (mode != "plain"), status
    assert isinstance(stack, PhpStack), stack
    assert stack.error == ""
    got = [(f.function, f.file, f.line) for f in stack.frames]
    assert got == _expected()
    assert all(f.kind is FrameKind.INTERPRETED and f.runtime == RUNTIME for f in stack.frames)
    # execute_ex native frames stand for the PHP frames up to a ZEND_CALL_TOP one: the closure (entered
    # from array_map through zend_call_function) and the script (entered from php_execute_script).
    tops = [i for i, raw in enumerate(stack.raw) if raw.ends_native_segment]
    assert tops == [6, 12]
    assert [i for i, raw in enumerate(stack.raw) if raw.is_code] == [11, 12]
    assert [raw.fn_type for raw in stack.raw].count(ZEND_INTERNAL_FUNCTION) == 2
    leaf = stack.frames[1]
    assert leaf.start_line == _function_line(LIB, "leaf")


@needs_php
def test_discovery_reads_version_and_engine_of_the_installed_php() -> None:
    """The CLI binary's version matches PHP_VERSION; executor_globals and execute_ex are found."""
    assert PHP is not None
    real = os.path.realpath(PHP)
    found = inspect_php_binary(real)
    assert isinstance(found, PhpBinary), found
    version = subprocess.run([PHP, "-n", "-r", "echo PHP_VERSION;"], capture_output=True, text=True).stdout
    assert ".".join(map(str, found.version)) == version
    assert found.version_source == "X-Powered-By"
    assert found.layout.version == found.version[:2]
    assert found.executor_globals and found.execute_ex[0] and found.execute_ex[1] > 1000
    assert found.vm_kind == 4  # HYBRID, the default VM
    assert is_php_name(real)


@needs_php
def test_fake_versions_give_one_line_reasons(tmp_path: Path) -> None:
    """A patched copy claiming PHP 9.9 is unsupported with the covered versions; without X-Powered-By the
    Zend Engine banner still names the minor."""
    assert PHP is not None
    data = Path(os.path.realpath(PHP)).read_bytes()
    powered = re.search(rb"X-Powered-By: PHP/\d\.\d\.", data)
    assert powered is not None
    fake = tmp_path / "php9.9"
    fake.write_bytes(data.replace(powered.group(0), b"X-Powered-By: PHP/9.9."))
    found = inspect_php_binary(fake, file_id="f" * 32)
    assert isinstance(found, PhpUnsupported)
    assert found.reason == "PHP 9.9 has no struct layout (covered: 7.4, 8.0-8.4)"
    assert found.marker == f"[unwind: php: {found.reason}]" and "\n" not in found.marker
    bannered = tmp_path / "php"
    bannered.write_bytes(data.replace(b"X-Powered-By: PHP/", b"X-Powered-Bz: PHP/"))
    by_banner = inspect_php_binary(bannered, file_id="e" * 32)
    assert isinstance(by_banner, PhpBinary)
    assert by_banner.version_source == "Zend Engine banner"
    assert by_banner.version[2] == -1


def test_version_strings() -> None:
    """X-Powered-By names the release; the Zend banner maps Zend 3.x/4.x to PHP 7.x/8.x."""
    assert version_of(b"\0X-Powered-By: PHP/8.3.4-1+ubuntu\0") == ((8, 3, 4), "X-Powered-By")
    assert version_of(b"Zend Engine v3.4.0, Copyright") == ((7, 4, -1), "Zend Engine banner")
    assert version_of(b"Zend Engine v2.6.0") is None
    assert version_of(b"nothing here") is None


def test_zts_and_stripped_builds_are_named() -> None:
    """NTS: executor_globals' address; ZTS (TLS globals) and stripped symbols: a reason."""
    assert engine_globals({"executor_globals": Symbol(0x1234, 1776, ".dynsym")}) == 0x1234
    zts = engine_globals({"executor_globals_offset": Symbol(0x10, 8, ".dynsym")})
    assert isinstance(zts, str) and zts.startswith("ZTS (thread-safe) build")
    assert engine_globals({}) == "no executor_globals symbol (stripped .dynsym?)"


LAYOUT = layout_for(8, 2)
assert LAYOUT is not None


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def _execute_data(mem: FakeMemory, addr: int, func: int, prev: int, opline: int = 0, info: int = 0) -> None:
    head = bytearray(LAYOUT.ex_read_size)
    head[LAYOUT.ex_opline : LAYOUT.ex_opline + 8] = _u64(opline)
    head[LAYOUT.ex_func : LAYOUT.ex_func + 8] = _u64(func)
    head[LAYOUT.ex_call_info : LAYOUT.ex_call_info + 4] = info.to_bytes(4, "little")
    head[LAYOUT.ex_prev : LAYOUT.ex_prev + 8] = _u64(prev)
    mem.put(addr, bytes(head))


def _string(mem: FakeMemory, addr: int, text: str) -> None:
    raw = text.encode()
    mem.put(addr, bytes(LAYOUT.str_len) + _u64(len(raw)) + raw)


def _function(
    mem: FakeMemory, addr: int, fn_type: int, name: int = 0, scope: int = 0, filename: int = 0, start: int = 0
) -> None:
    data = bytearray(LAYOUT.fn_read_size)
    data[LAYOUT.fn_type] = fn_type
    data[LAYOUT.fn_name : LAYOUT.fn_name + 8] = _u64(name)
    data[LAYOUT.fn_scope : LAYOUT.fn_scope + 8] = _u64(scope)
    data[LAYOUT.fn_filename : LAYOUT.fn_filename + 8] = _u64(filename)
    data[LAYOUT.fn_line_start : LAYOUT.fn_line_start + 4] = start.to_bytes(4, "little")
    mem.put(addr, bytes(data))


def _opline(mem: FakeMemory, addr: int, line: int) -> None:
    mem.put(addr, bytes(LAYOUT.op_lineno) + line.to_bytes(4, "little"))


def test_fake_chain_names_methods_internal_main_and_eval() -> None:
    """Class scope, internal functions, top-level code and eval'd code are named; NULL-func dummy frames
    are skipped; the walk ends at prev_execute_data = NULL."""
    mem = FakeMemory()
    _string(mem, 0x9000, "strlen")
    _string(mem, 0x9100, "run")
    _string(mem, 0x9200, "Shape")
    mem.put(0x9300, bytes(LAYOUT.ce_name) + _u64(0x9200))
    _string(mem, 0x9400, "/app/x.php")
    _string(mem, 0x9500, "/app/x.php(3) : eval()'d code")
    _function(mem, 0x2000, ZEND_INTERNAL_FUNCTION, name=0x9000)
    _function(mem, 0x2100, ZEND_USER_FUNCTION, name=0x9100, scope=0x9300, filename=0x9400, start=10)
    _function(mem, 0x2200, ZEND_EVAL_CODE, filename=0x9500, start=1)
    _function(mem, 0x2300, ZEND_USER_FUNCTION, filename=0x9400, start=1)
    _opline(mem, 0x3100, 12)
    _opline(mem, 0x3200, 1)
    _opline(mem, 0x3300, 3)
    _execute_data(mem, 0x1000, 0x2000, 0x1100, opline=0xDEAD)  # internal: opline not read
    _execute_data(mem, 0x1100, 0x2100, 0x1150, opline=0x3100)
    _execute_data(mem, 0x1150, 0, 0x1200)  # dummy frame
    _execute_data(mem, 0x1200, 0x2200, 0x1300, opline=0x3200, info=ZEND_CALL_CODE)
    _execute_data(mem, 0x1300, 0x2300, 0, opline=0x3300, info=ZEND_CALL_CODE | ZEND_CALL_TOP)
    raw, error = walk_execute_data(mem, LAYOUT, 0x1000)
    assert error == ""
    frames, name_error = symbolize(mem, LAYOUT, raw)
    assert name_error == ""
    assert [f.folded_name() for f in frames] == [
        "strlen",
        "Shape::run (/app/x.php:12)",
        f"{EVAL} (/app/x.php(3) : eval()'d code:1)",
        f"{MAIN} (/app/x.php:3)",
    ]
    assert [r.ends_native_segment for r in raw] == [False, False, False, True]


def test_walk_stops_on_cycles_bad_pointers_and_depth() -> None:
    """A cycle, an unreadable execute_data, a zend_function of no known type, and a too-deep chain each
    stop the walk with a reason, keeping the frames read so far; an unreadable name is an error frame."""
    mem = FakeMemory()
    _function(mem, 0x2000, ZEND_INTERNAL_FUNCTION, name=0x9000)
    _string(mem, 0x9000, "usleep")
    _execute_data(mem, 0x1000, 0x2000, 0x1100)
    _execute_data(mem, 0x1100, 0x2000, 0x1000)
    raw, error = walk_execute_data(mem, LAYOUT, 0x1000)
    assert (len(raw), error) == (2, "execute_data chain has a cycle")
    _execute_data(mem, 0x1100, 0x2000, 0x7777)
    raw, error = walk_execute_data(mem, LAYOUT, 0x1000)
    assert (len(raw), error) == (2, "execute_data 0x7777 unreadable")
    _function(mem, 0x2100, 9)
    _execute_data(mem, 0x1100, 0x2100, 0)
    raw, error = walk_execute_data(mem, LAYOUT, 0x1000)
    assert (len(raw), error) == (1, "zend_function 0x2100 unreadable or of type 9")
    for index in range(10):
        _execute_data(mem, 0x5000 + index * 0x100, 0x2000, 0x5000 + (index + 1) * 0x100)
    raw, error = walk_execute_data(mem, LAYOUT, 0x5000, max_depth=4)
    assert (len(raw), error) == (4, "stack deeper than 4 frames")
    _function(mem, 0x2200, ZEND_INTERNAL_FUNCTION, name=0x8888)
    _execute_data(mem, 0x1100, 0x2200, 0)
    raw, error = walk_execute_data(mem, LAYOUT, 0x1000)
    frames, name_error = symbolize(mem, LAYOUT, raw)
    assert error == "" and name_error == "function name unreadable"
    assert [f.folded_name() for f in frames] == ["usleep", "[unwind: php: function name unreadable]"]
    assert frames[1].kind is FrameKind.ERROR

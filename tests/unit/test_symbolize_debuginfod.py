"""debuginfod client: a stripped binary whose names and lines come only from a server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.symbolize import NativeFile, NativeSymbolizer
from fleetprof.symbolize.debuginfod import DEFAULT_TIMEOUT_S, DebuginfodClient

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(
    not h.have("gcc", "nm", "objcopy", "strip", "addr2line"), reason="needs binutils+gcc"
)
NO_DEBUG_DIRS = ("/nonexistent-debug-dir",)


@dataclass
class Server:
    """A debuginfod stand-in: serves `files[build_id]` at /buildid/<id>/debuginfo, counts requests."""

    files: dict[str, bytes] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    url: str = ""
    _httpd: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                parts = self.path.strip("/").split("/")
                body = (
                    server.files.get(parts[1])
                    if len(parts) == 3 and parts[::2] == ["buildid", "debuginfo"]
                    else None
                )
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@pytest.fixture
def server() -> Iterator[Server]:
    served = Server()
    served.start()
    yield served
    served.stop()


@dataclass(frozen=True)
class Built:
    full: Path
    stripped: Path
    debug: Path
    build_id: str
    static: int  # an address inside helper_static, a function only the debug file names


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    out = tmp_path_factory.mktemp("debuginfod")
    h.run("gcc", "-g", "-O2", "-Wl,--build-id", "-o", out / "cprog", h.FIXTURES / "prog.c")
    h.run("objcopy", "--only-keep-debug", out / "cprog", out / "cprog.debug")
    h.run("strip", "--strip-all", "-o", out / "cprog.stripped", out / "cprog")
    functions = {name: start for start, _, name in h.nm_functions(out / "cprog")}
    build_id = read_elf_info(out / "cprog").build_id
    return Built(
        out / "cprog", out / "cprog.stripped", out / "cprog.debug", build_id, functions["helper_static"] + 4
    )


def nfile(path: Path) -> NativeFile:
    info = read_elf_info(path)
    return NativeFile(file_id(str(path), info.build_id), str(path), str(path), info.build_id)


def client(tmp_path: Path, *urls: str) -> DebuginfodClient:
    return DebuginfodClient(urls, tmp_path / "debuginfod", timeout=5)


def symbolize(
    tmp_path: Path, debuginfod: DebuginfodClient | None, path: Path, addr: int, cache: str = "symbols"
):
    sym = NativeSymbolizer(cache_dir=tmp_path / cache, debug_dirs=NO_DEBUG_DIRS, debuginfod=debuginfod)
    return sym, sym.symbolize(nfile(path), [addr])[addr]


def test_names_and_lines_come_only_through_debuginfod(built, tmp_path, server):
    _, without = symbolize(tmp_path, None, built.stripped, built.static, cache="plain")
    assert without[0].function == f"cprog.stripped+0x{built.static:x}"
    server.files[built.build_id] = built.debug.read_bytes()
    fetcher = client(tmp_path, server.url)
    sym, frames = symbolize(tmp_path, fetcher, built.stripped, built.static)
    [(name, source, line)] = h.addr2line(built.full, [built.static])[built.static]
    assert (frames[0].function, frames[0].line) == ("helper_static", line) == (name, line)
    assert frames[0].file == source
    cached = tmp_path / "debuginfod" / built.build_id / "debuginfo"
    assert cached.read_bytes() == built.debug.read_bytes()
    assert sorted(os.listdir(cached.parent)) == ["debuginfo"]  # no temporary file left behind
    assert server.hits == {f"/buildid/{built.build_id}/debuginfo": 1}
    assert sym.stats["native.debuginfod_downloads"] == 1
    assert str(built.stripped) not in sym.notes


def test_cache_is_used_once_the_server_is_gone(built, tmp_path, server):
    server.files[built.build_id] = built.debug.read_bytes()
    symbolize(tmp_path, client(tmp_path, server.url), built.stripped, built.static, cache="first")
    server.stop()
    sym, frames = symbolize(
        tmp_path, client(tmp_path, server.url), built.stripped, built.static, cache="second"
    )
    assert frames[0].function == "helper_static" and frames[0].file.endswith("prog.c")
    assert sym.stats["native.debuginfod_downloads"] == 0
    assert sum(server.hits.values()) == 1


def test_404_is_asked_once_and_explained(built, tmp_path, server):
    fetcher = client(tmp_path, server.url)
    sym, frames = symbolize(tmp_path, fetcher, built.stripped, built.static, cache="one")
    assert frames[0].function == f"cprog.stripped+0x{built.static:x}"
    assert sym.notes[str(built.stripped)] == (
        f"debuginfod: no debug file for build id {built.build_id} ({server.url}: HTTP 404); "
        "stripped (.dynsym only) and no debug file: exported functions only"
    )
    for cache in ("two", "three"):  # fresh symbol caches: the file is looked up again, the server is not
        symbolize(tmp_path, fetcher, built.stripped, built.static, cache=cache)
    assert [fetcher.debuginfo(built.build_id).path for _ in range(5)] == [""] * 5
    another = client(tmp_path, server.url)  # another process: the empty file on disk is the answer
    assert another.debuginfo(built.build_id).reason.endswith("(cached miss)")
    assert server.hits == {f"/buildid/{built.build_id}/debuginfo": 1}
    marker = tmp_path / "debuginfod" / built.build_id / "debuginfo"
    assert marker.stat().st_size == 0
    (tmp_path / "debuginfod" / "cache_miss_s").write_text("30\n")
    os.utime(marker, (time.time() - 31, time.time() - 31))  # expired: asked again, once
    assert client(tmp_path, server.url).debuginfo(built.build_id).path == ""
    assert server.hits == {f"/buildid/{built.build_id}/debuginfo": 2}


def test_entry_built_without_debug_file_is_rebuilt_once_the_server_has_it(built, tmp_path, server):
    _, before = symbolize(tmp_path, client(tmp_path, server.url), built.stripped, built.static)
    assert before[0].function == f"cprog.stripped+0x{built.static:x}"
    server.files[built.build_id] = built.debug.read_bytes()
    marker = tmp_path / "debuginfod" / built.build_id / "debuginfo"
    os.utime(marker, (time.time() - 601, time.time() - 601))  # elfutils' default 600 s have passed
    sym, after = symbolize(tmp_path, client(tmp_path, server.url), built.stripped, built.static)
    assert after[0].function == "helper_static"
    assert sym.stats["native.cache_builds"] == 1


def test_file_with_another_build_id_is_rejected(built, tmp_path, server):
    other = tmp_path / "other"
    h.run("gcc", "-g", "-O1", "-Wl,--build-id", "-o", other, h.FIXTURES / "prog.c")
    other_id = read_elf_info(other).build_id
    server.files[built.build_id] = other.read_bytes()
    lookup = client(tmp_path, server.url).debuginfo(built.build_id)
    assert lookup.reason == (
        f"debuginfod: debug file for build id {built.build_id} not fetched "
        f"({server.url}: served build id {other_id})"
    )
    assert os.listdir(tmp_path / "debuginfod" / built.build_id) == []  # neither kept nor marked missing


def test_non_elf_answer_is_rejected(built, tmp_path, server):
    server.files[built.build_id] = b"<html>not found</html>"
    lookup = client(tmp_path, server.url).debuginfo(built.build_id)
    assert lookup.path == "" and f"{server.url}: served a file that is not ELF" in lookup.reason


def test_unreachable_server_costs_one_attempt(built, tmp_path, server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed again: nothing listens there
    server.files[built.build_id] = built.debug.read_bytes()
    fetcher = client(tmp_path, dead, server.url)
    assert fetcher.debuginfo(built.build_id).path.endswith("/debuginfo")  # the second URL answered
    missing = fetcher.debuginfo("ab" * 20)
    assert missing.reason == (
        f"debuginfod: debug file for build id {'ab' * 20} not fetched "
        f"({dead} skipped (unreachable recently); {server.url}: HTTP 404)"
    )
    assert fetcher.requests == 3  # dead once, then the live server for each build id
    assert not (tmp_path / "debuginfod" / ("ab" * 20) / "debuginfo").exists()  # no verdict from a dead server


def test_bad_build_id_is_refused_without_a_request(tmp_path, server):
    fetcher = client(tmp_path, server.url)
    assert fetcher.debuginfo("../../etc").reason == "debuginfod: bad build id '../../etc'"
    assert fetcher.requests == 0


def test_environment_follows_elfutils(tmp_path):
    assert DebuginfodClient.from_environment({}) is None
    assert DebuginfodClient.from_environment({"DEBUGINFOD_URLS": "  "}) is None
    env = {
        "DEBUGINFOD_URLS": "http://a.example/ https://b.example",
        "HOME": str(tmp_path),
        "DEBUGINFOD_TIMEOUT": "7",
    }
    found = DebuginfodClient.from_environment(env)
    assert found is not None
    assert (found.urls, found.cache_dir, found.timeout) == (
        ("http://a.example", "https://b.example"),
        tmp_path / ".cache" / "debuginfod_client",
        7.0,
    )
    env |= {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "DEBUGINFOD_TIMEOUT": "soon"}
    found = DebuginfodClient.from_environment(env)
    assert (found.cache_dir, found.timeout) == (tmp_path / "xdg" / "debuginfod_client", DEFAULT_TIMEOUT_S)
    env |= {
        "DEBUGINFOD_CACHE_PATH": str(tmp_path / "own"),
        "DEBUGINFOD_TIMEOUT": "0",
        "DEBUGINFOD_MAXSIZE": "100",
    }
    found = DebuginfodClient.from_environment(env)
    assert (found.cache_dir, found.timeout, found.max_size) == (tmp_path / "own", None, 100)


def test_max_size_skips_large_files(built, tmp_path, server):
    server.files[built.build_id] = built.debug.read_bytes()
    fetcher = DebuginfodClient((server.url,), tmp_path / "cache", timeout=5, max_size=1000)
    lookup = fetcher.debuginfo(built.build_id)
    size = built.debug.stat().st_size
    assert lookup.reason.endswith(f"({server.url}: {size} bytes, over DEBUGINFOD_MAXSIZE)")


@contextlib.contextmanager
def real_debuginfod(folder: Path) -> Iterator[str]:
    """Debian's debuginfod serving the ELF files under `folder` on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        ["debuginfod", "-p", str(port), "-d", ":memory:", "-F", "-t", "1", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(not shutil.which("debuginfod"), reason="Debian's debuginfod server is not installed")
def test_against_elfutils_debuginfod_server(built, tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    shutil.copy(built.debug, folder / "cprog.debug")
    with real_debuginfod(folder) as url:
        probe = f"{url}/buildid/{built.build_id}/debuginfo"
        deadline = time.monotonic() + 60  # it scans the folder in the background
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=5) as response:
                    response.read()
                break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "debuginfod did not index the debug file within 60 s"
                time.sleep(0.2)
        sym, frames = symbolize(tmp_path, client(tmp_path, url), built.stripped, built.static)
    assert frames[0].function == "helper_static" and frames[0].file.endswith("prog.c")
    assert (tmp_path / "debuginfod" / built.build_id / "debuginfo").read_bytes() == built.debug.read_bytes()
    assert sym.stats["native.debuginfod_downloads"] == 1

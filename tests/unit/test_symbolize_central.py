"""Central symbolization from symbol bundles gives the host's frames, on a server without the files."""

from __future__ import annotations

import gc
import http.server
import importlib.util
import random
import shutil
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.profile.model import Frame, Mapping
from fleetprof.symbolize import NativeSymbolizer, symbolize_mapping
from fleetprof.symbolize import bundle as bundle_module
from fleetprof.symbolize.bundle import build_bundle, bundle_info
from fleetprof.symbolize.central import CentralSymbolizer
from fleetprof.symbolize.debuginfod import DebuginfodClient
from fleetprof.symbolize.plt import read_plt_names

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(not h.have("gcc", "g++", "nm", "objcopy"), reason="needs binutils+gcc")
PLT_SOURCE = h.FIXTURES / "prog.c"


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """C and C++ fixtures with inlining (-O2 -g), one with IBT PLT stubs, one built by clang++."""
    out = tmp_path_factory.mktemp("central")
    h.run("gcc", "-g", "-O2", "-Wl,--build-id", "-o", out / "cprog", h.FIXTURES / "prog.c")
    h.run("g++", "-g", "-O2", "-Wl,--build-id", "-o", out / "cxxprog", h.FIXTURES / "prog.cpp")
    h.run("g++", "-g", "-O2", "-Wl,--build-id", "-o", out / "inline_names", h.FIXTURES / "inline_names.cpp")
    flags = ("-fcf-protection=full", "-Wl,-z,ibtplt")
    h.run("gcc", "-g", "-O2", *flags, "-Wl,--build-id", "-o", out / "cprog_ibt", h.FIXTURES / "prog.c")
    if h.have("clang++"):
        h.run(
            "clang++",
            "-g",
            "-O2",
            "-Wl,--build-id",
            "-o",
            out / "inline_clang",
            h.FIXTURES / "inline_names.cpp",
        )
    return out


def identity(path: Path) -> tuple[str, str]:
    build_id = read_elf_info(path).build_id
    return file_id(str(path), build_id), build_id


def every_address(path: Path) -> list[int]:
    """Every byte of every function, the PLT stubs, and the gaps around them."""
    funcs = h.nm_functions(path)
    plt = read_plt_names(str(path))
    low = min([start for start, _, _ in funcs] + list(plt.starts))
    high = max(start + size for start, size, _ in funcs)
    return list(range(low - 0x40, high + 0x40))


def host_frames(path: Path, addrs: list[int], **options: object) -> dict[int, tuple[Frame, ...]]:
    fid, build_id = identity(path)
    sym = NativeSymbolizer(persist=False, debuginfod=None, **options)
    return symbolize_mapping(sym, Mapping(fid, str(path), build_id), addrs)


def resolved(frames: dict[int, tuple[Frame, ...]]) -> dict[int, tuple[Frame, ...]]:
    """The host's answer without its `module+0xADDR` fallbacks (central leaves those out)."""
    return {
        a: fs
        for a, fs in frames.items()
        if not (len(fs) == 1 and not fs[0].file and fs[0].function == f"{fs[0].mapping.name}+0x{a:x}")
    }


def central(tmp_path: Path, bundles: dict[str, bytes], **options: object) -> CentralSymbolizer:
    return CentralSymbolizer(bundles.get, tmp_path / "central-cache", debuginfod=None, **options)


@pytest.mark.parametrize("name", ["cprog", "cxxprog", "inline_names", "cprog_ibt", "inline_clang"])
def test_central_equals_host_on_every_address(bins: Path, tmp_path: Path, name: str) -> None:
    path = bins / name
    if not path.exists():
        pytest.skip("clang++ is not installed")
    fid, build_id = identity(path)
    addrs = every_address(path)
    expected = resolved(host_frames(path, addrs))
    got = central(tmp_path, {fid: build_bundle(str(path))}).symbolize(fid, build_id, addrs)
    assert got == expected
    frames = [f for fs in got.values() for f in fs]
    assert any(f.inlined for f in frames), "inlined frames are compared"
    assert any(f.function.endswith("@plt") for f in frames), "PLT stubs are compared"
    assert sum(1 for f in frames if f.start_line) > len(frames) // 4, "start lines are compared"
    if name.startswith("cxx") or name.startswith("inline"):
        assert any("::" in f.function and f.inlined for f in frames), "inlined C++ frames are compared"


def test_without_start_lines_equals_host_without(bins: Path, tmp_path: Path) -> None:
    path = bins / "inline_names"
    fid, build_id = identity(path)
    addrs = every_address(path)
    got = central(tmp_path, {fid: build_bundle(str(path))}, start_lines=False).symbolize(fid, build_id, addrs)
    assert got == resolved(host_frames(path, addrs, start_lines=False))


def test_server_that_never_saw_the_file(bins: Path, tmp_path: Path) -> None:
    """The binary is gone before the server starts: the uploaded bundle bytes are all it has."""
    path = tmp_path / "host" / "cxxprog"
    path.parent.mkdir()
    shutil.copy(bins / "cxxprog", path)
    fid, build_id = identity(path)
    addrs = every_address(path)
    expected = resolved(host_frames(path, addrs))
    upload = build_bundle(str(path))
    shutil.rmtree(path.parent)
    server = central(tmp_path, {fid: upload})
    assert server.symbolize(fid, build_id, addrs) == expected
    assert server.stats["central.bundles_uploaded"] == 1
    restarted = central(tmp_path, {})  # the store lost it: the disk cache still has it
    assert restarted.symbolize(fid, build_id, addrs) == expected
    assert restarted.stats["central.cache_loads"] == 1


def test_symbols_arriving_later_are_used(bins: Path, tmp_path: Path) -> None:
    path = bins / "cprog"
    fid, build_id = identity(path)
    store: dict[str, bytes] = {}
    server = central(tmp_path, store)
    main = next(s for s, _, n in h.nm_functions(path) if n == "main")
    assert server.symbolize(fid, build_id, [main]) == {}
    store[fid] = build_bundle(str(path))
    assert server.symbolize(fid, build_id, [main])[main][-1].function in ("main", "hot_loop", "mid_inline")
    assert server.symbolize(fid, build_id, [main])[main][0].function == "main"


def test_unknown_addresses_are_left_out(bins: Path, tmp_path: Path) -> None:
    path = bins / "cprog"
    fid, build_id = identity(path)
    server = central(tmp_path, {fid: build_bundle(str(path))})
    assert server.symbolize(fid, build_id, [0x10, 1 << 40]) == {}


def test_frames_carry_the_callers_path(bins: Path, tmp_path: Path) -> None:
    path = bins / "cprog"
    fid, build_id = identity(path)
    server = central(tmp_path, {fid: build_bundle(str(path))})
    main = next(s for s, _, n in h.nm_functions(path) if n == "main")
    frames = server.symbolize(fid, build_id, [main], path="/srv/app/cprog")[main]
    assert frames[0].mapping == Mapping(fid, "/srv/app/cprog", build_id)
    assert server.symbolize(fid, build_id, [main])[main][0].mapping.path == str(path)


class _Debuginfod:
    """A tiny debuginfod: serves `files` by URL path (/buildid/<id>/debuginfo|executable), 404 otherwise."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                data = files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=["debuginfo", "debuginfo+executable"])
def debuginfod_server(
    request: pytest.FixtureRequest, bins: Path, tmp_path: Path
) -> Iterator[tuple[_Debuginfod, Path, bool]]:
    """A server with the debug file (and the stripped binary) of cxxprog: it, the stripped copy, and
    whether it serves the binary too."""
    src = bins / "cxxprog"
    h.run("objcopy", "--only-keep-debug", src, tmp_path / "cxxprog.debug")
    stripped = tmp_path / "cxxprog"
    h.run("objcopy", "--strip-all", src, stripped)
    build_id = read_elf_info(src).build_id
    files = {f"/buildid/{build_id}/debuginfo": (tmp_path / "cxxprog.debug").read_bytes()}
    if request.param == "debuginfo+executable":
        files[f"/buildid/{build_id}/executable"] = stripped.read_bytes()
    server = _Debuginfod(files)
    yield server, stripped, request.param == "debuginfo+executable"
    server.close()


def test_debuginfod_by_build_id(
    bins: Path, tmp_path: Path, debuginfod_server: tuple[_Debuginfod, Path, bool]
) -> None:
    server, stripped, serves_binary = debuginfod_server
    fid, build_id = identity(stripped)
    client = DebuginfodClient((server.url,), tmp_path / "debuginfod-cache")
    host = NativeSymbolizer(persist=False, debuginfod=client, debug_dirs=("/nonexistent",))
    addrs = every_address(bins / "cxxprog")
    expected = resolved(symbolize_mapping(host, Mapping(fid, str(stripped), build_id), addrs))
    assert any(f.inlined for fs in expected.values() for f in fs)
    assert any(fs[0].function.endswith("@plt") for fs in expected.values())
    cold = CentralSymbolizer(lambda _: None, tmp_path / "central", debuginfod=client)
    got = cold.symbolize(fid, build_id, addrs, path=str(stripped))
    assert cold.stats["central.bundles_debuginfod"] == 1
    if serves_binary:
        assert got == expected  # PLT stubs too: their names come from the binary
    else:  # the debug file alone: everything but the PLT stubs, which only the binary describes
        assert got == {a: fs for a, fs in expected.items() if not fs[0].function.endswith("@plt")}
    assert server.hits.count(f"/buildid/{build_id}/debuginfo") == 1  # the host's fetch is in the shared cache
    again = CentralSymbolizer(lambda _: None, tmp_path / "central", debuginfod=None)
    assert again.symbolize(fid, build_id, addrs, path=str(stripped)) == got  # from its disk cache


def test_debuginfod_without_the_file_leaves_addresses_out(
    tmp_path: Path, debuginfod_server: tuple[_Debuginfod, Path, bool]
) -> None:
    server, _, _ = debuginfod_server
    client = DebuginfodClient((server.url,), tmp_path / "debuginfod-cache")
    sym = CentralSymbolizer(lambda _: None, tmp_path / "central", debuginfod=client)
    unknown = "ab" * 20
    assert sym.symbolize("ab" * 16, unknown, [0x1000]) == {}
    assert "no debug file" in sym.problems["ab" * 16]


def test_memory_is_bounded_and_answers_stay_the_same(bins: Path, tmp_path: Path) -> None:
    bundles = {identity(bins / n)[0]: build_bundle(str(bins / n)) for n in ("cprog", "cxxprog")}
    addrs = {n: h.sample(h.nm_functions(bins / n), step=1) for n in ("cprog", "cxxprog")}
    roomy = central(tmp_path / "a", bundles)
    tight = central(tmp_path / "b", bundles, max_files=1, memo_entries=64)
    for _ in range(2):
        for name in ("cprog", "cxxprog"):
            fid, build_id = identity(bins / name)
            assert tight.symbolize(fid, build_id, addrs[name]) == roomy.symbolize(fid, build_id, addrs[name])
    assert tight._memo_size <= 64 and len(tight._files) == 1


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_disk_cache_read_in_place_survives_garbage_cycles(
    bins: Path, tmp_path: Path, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bundles mapped from the disk cache, dropped inside garbage cycles and tracebacks, then collected.
    An upload is kept as it came; a zlib one (an agent without zstd) is kept uncompressed, read in place,
    once read back."""
    path = bins / "cxxprog"
    fid, build_id = identity(path)
    addrs = h.sample(h.nm_functions(path), step=4)
    if codec == "zlib":
        monkeypatch.setattr(bundle_module, "_zstd", None)
    upload = build_bundle(str(path))
    monkeypatch.undo()
    if codec not in {s["method"] for s in bundle_info(upload)["sections"]}:
        pytest.skip(f"no {codec} module here")
    first = central(tmp_path, {fid: upload})
    expected = first.symbolize(fid, build_id, addrs)
    first.flush()  # the disk cache is written in the background
    [cached] = list((tmp_path / "central-cache").rglob("*.fpsb"))
    assert cached.read_bytes() == upload
    for _ in range(3):
        server = central(tmp_path, {})
        try:
            assert server.symbolize(fid, build_id, addrs) == expected
            assert server.stats["central.cache_loads"] == 1
            raise RuntimeError("a traceback holding the frames")
        except RuntimeError as exc:
            kept = [exc, server, exc]
        server.flush()
        if codec == "zlib":
            assert cached.stat().st_size > len(upload)  # kept uncompressed from the first reload on
        else:
            assert cached.read_bytes() == upload
        del server, kept
        gc.collect()


def _real_binaries() -> list[Path]:
    """Libraries of this machine: libpython (DWARF, inlined C) and libstdc++ (C++ names, symbols only)."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    found = [Path(libdir) / (sysconfig.get_config_var("INSTSONAME") or "none")]
    found += [
        Path(p)
        for p in ("/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6")
    ]
    return [p.resolve() for p in found if p.is_file()]


def _functions(path: Path) -> list[tuple[int, int]]:
    """(start, size) of the sized text symbols of `path` (.symtab, else .dynsym)."""
    for flags in (("-S",), ("-D", "-S")):
        out = h.run("nm", *flags, "--defined-only", path).splitlines()
        funcs = [(int(p[0], 16), int(p[1], 16)) for p in (line.split() for line in out) if len(p) >= 4]
        funcs = [(start, size) for start, size in funcs if size]
        if funcs:
            return funcs
    return []


@pytest.mark.parametrize("path", _real_binaries(), ids=lambda p: p.name)
def test_central_equals_host_on_a_real_binary(path: Path, tmp_path: Path) -> None:
    """Batches of a real library's addresses (new ones, then some again mixed with more new ones, as a
    warm server gets them) give the host's frames."""
    funcs = _functions(path)
    if not funcs:
        pytest.skip(f"{path} has no sized function symbols")
    rng = random.Random(9)
    hot = rng.sample(funcs, min(len(funcs), 40))  # profile-shaped: many addresses in a few functions
    first = sorted({s + rng.randrange(n) for s, n in rng.sample(funcs, min(len(funcs), 1500))})
    second = [s + rng.randrange(n) for s, n in hot for _ in range(20)] + first[::7] + [0x10, 1 << 40]
    fid, build_id = identity(path)
    expected = resolved(host_frames(path, sorted(set(first + second))))
    server = central(tmp_path, {fid: build_bundle(str(path))})
    assert server.symbolize(fid, build_id, first) == {a: expected[a] for a in first if a in expected}
    assert server.symbolize(fid, build_id, second) == {a: expected[a] for a in second if a in expected}
    frames = [f for fs in expected.values() for f in fs]
    assert len(expected) > len(first) // 2 and len({f.function for f in frames}) > 100

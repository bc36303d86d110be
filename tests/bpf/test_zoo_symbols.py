"""Symbolization cases in a real `fleetprof record`: a stripped binary with MiniDebugInfo names every
function of its chain (static ones too), C++ code inlined from namespaces and classes keeps them, and a
stripped binary gets names, lines and inline frames from a debuginfod server given by DEBUGINFOD_URLS."""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest
from zoo.build import ZooError, build_ids, fn, judge, load_stacks, record
from zoo.programs import (
    CATALOG,
    CXX_INLINE_EXE,
    FOLD,
    MINIDEBUG_EXE,
    ROTATE,
    STIR,
    Profiler,
    c_chain,
    evaluate,
)

MIN_SHARE = 0.99
MIN_SAMPLES = 300  # of the whole program (1.5 s at 999 Hz)
MIN_GROUP = 100  # of one leaf group


def _stacks(zoo: Profiler, name: str) -> list:
    try:
        return zoo.stacks(name)
    except ZooError as exc:
        pytest.fail(str(exc))


def _whole(zoo: Profiler, name: str) -> None:
    for what, got in evaluate(CATALOG[name], _stacks(zoo, name)).items():
        floor = MIN_SAMPLES if what == "program" else MIN_GROUP
        assert got.selected >= floor, f"{name} {what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{name} {what}: {got.summary()}\n{got.worst()}"


def test_minidebuginfo_build_is_what_it_claims(build_dir: Path) -> None:
    """No .symtab, no DWARF, a .gnu_debugdata section; `hidden` is in neither symbol table of the file."""
    try:
        exe = Path(CATALOG[MINIDEBUG_EXE].command(build_dir, 1)[0])
    except ZooError as exc:
        pytest.fail(str(exc))
    sections = subprocess.run(["readelf", "-SW", str(exe)], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_" not in sections and ".gnu_debugdata" in sections
    dynsym = subprocess.run(["nm", "-D", str(exe)], capture_output=True, text=True, check=False).stdout
    assert not re.search(r"\b(hidden|hot|main)\b", dynsym)


def test_minidebuginfo_names_the_whole_chain(zoo: Profiler) -> None:
    """main -> outer -> middle -> inner -> hot -> hidden, named from .gnu_debugdata, whole in >= 99 %."""
    _whole(zoo, MINIDEBUG_EXE)
    stacks = _stacks(zoo, MINIDEBUG_EXE)
    leaves = {s.user[-1].name for s in stacks if s.user and s.user[-1].module == MINIDEBUG_EXE}
    assert {"hot", "hidden"} <= leaves  # hidden is static: only the embedded .symtab names it
    unnamed = sum(s.count for s in stacks for f in s.user if f.name.startswith(f"{MINIDEBUG_EXE}+0x"))
    assert unnamed == 0


def test_inlined_cxx_frames_carry_namespaces_and_classes(zoo: Profiler) -> None:
    """run_mix -> [Mixer::stir] -> [detail::rotate] and run_mix -> [Table::fold], whole in >= 99 %, and no
    inlined frame under its bare name."""
    _whole(zoo, CXX_INLINE_EXE)
    stacks = _stacks(zoo, CXX_INLINE_EXE)
    names = {f.name for s in stacks for f in s.user if f.module == CXX_INLINE_EXE}
    assert {n for n in names if re.fullmatch(rf"{STIR}|{ROTATE}|{FOLD}", n)} == {
        "mix::(anonymous namespace)::Mixer::stir",
        "mix::detail::rotate",
        "mix::Table::fold(unsigned long) const",
    }
    assert not names & {"stir", "rotate", "fold", "Mixer::stir", "detail::rotate"}
    nested = sum(
        s.count
        for s in stacks
        if [f.name for f in s.user[-3:]]
        == ["mix::run_mix(unsigned long)", "mix::(anonymous namespace)::Mixer::stir", "mix::detail::rotate"]
    )
    assert nested >= MIN_GROUP


def _serve(files: dict[str, bytes], hits: Counter[str]) -> http.server.ThreadingHTTPServer:
    """A debuginfod stand-in on 127.0.0.1: `files[build id]` at /buildid/<id>/debuginfo, else 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] += 1
            parts = self.path.strip("/").split("/")
            body = files.get(parts[1]) if len(parts) == 3 and parts[::2] == ["buildid", "debuginfo"] else None
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_record_fetches_debug_files_from_debuginfod(build_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """zoo_c_stripped (no .symtab, no DWARF; `hidden` is static) recorded with DEBUGINFOD_URLS: the whole
    chain comes out named, `hidden` and the inlined `blend` included, from one request to the server."""
    name = "zoo_c_stripped"
    try:
        argv = CATALOG[name].command(build_dir, 1.5)
    except ZooError as exc:
        pytest.fail(str(exc))
    debug = tmp_path / "zoo_c.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(build_dir / "zoo_c_dyn"), str(debug)], check=True)
    build_id = build_ids(Path(argv[0]))
    hits: Counter[str] = Counter()
    httpd = _serve({build_id: debug.read_bytes()}, hits)
    try:
        monkeypatch.setenv("DEBUGINFOD_URLS", f"http://127.0.0.1:{httpd.server_address[1]}")
        monkeypatch.setenv("DEBUGINFOD_CACHE_PATH", str(tmp_path / "debuginfod"))
        run = record(["--", *argv], tmp_path / "out.speedscope.json", cache_dir=tmp_path / "cache")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.returncode == 0, run.stderr
    stacks = load_stacks(run.output)
    chains = c_chain(name)  # with the inlined blend and a named hidden: only the debug file has them
    for leaf in (None, (fn("outer|middle|blend|inner|hot|hidden", name),)):
        got = judge(stacks, chains, process=name, leaf=leaf)
        assert got.selected >= MIN_SAMPLES and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"
    leaves = {s.user[-1].name for s in stacks if s.user and s.user[-1].module == name}
    assert {"hot", "hidden"} <= leaves
    assert hits[f"/buildid/{build_id}/debuginfo"] == 1
    assert (tmp_path / "debuginfod" / build_id / "debuginfo").read_bytes() == debug.read_bytes()

"""Symbol bundles: compact, versioned, and refused with a one-line reason when damaged."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest
from symbolic import SymCache

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.symbolize import bundle as bundle_module
from fleetprof.symbolize.bundle import (
    MAGIC,
    BundleError,
    _pack,
    _unpack,
    build_bundle,
    bundle_info,
    load_bundle,
    repack,
)
from fleetprof.symbolize.central import CentralSymbolizer
from fleetprof.symbolize.lookup import FileSymbols, Part
from fleetprof.symbolize.symcache_reader import make_reader, symcache_lookup

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(not h.have("gcc", "g++", "nm"), reason="needs binutils+gcc")


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "cxxprog"
    h.run("g++", "-g", "-O2", "-Wl,--build-id", "-o", out, h.FIXTURES / "prog.cpp")
    return out


@pytest.fixture(scope="module")
def bundle(binary: Path) -> bytes:
    return build_bundle(str(binary))


def test_identity_and_sections(binary: Path, bundle: bytes) -> None:
    info = read_elf_info(binary)
    loaded = load_bundle(bundle)
    assert loaded.file_id == file_id(str(binary), info.build_id) and loaded.build_id == info.build_id
    assert loaded.module == "cxxprog" and loaded.path == str(binary)
    assert [role for role, _, _ in loaded.parts] == ["self"]
    assert loaded.lines is not None and loaded.plt.names and len(loaded.extents.starts) > 10
    header = bundle_info(bundle)
    assert {s["name"] for s in header["sections"]} == {"symcache.0", "extents", "plt", "lines", "names"}
    assert header["version"] == 2 and loaded.outer_names is not None


def _version_1(data: bytes) -> bytes:
    """`data` as an agent of format 1 built it: no `names` section, version 1."""
    header, sections, _ = _unpack(data)
    del sections["names"]
    repacked = _pack(header, list(sections.items()), compress=True)
    _, _, reserved, length = struct.unpack_from("<4sHHI", repacked)
    text = json.loads(repacked[12 : 12 + length])
    text["version"] = 1
    encoded = json.dumps(text).encode()
    encoded += b" " * (-(12 + len(encoded)) % 8)
    out = struct.pack("<4sHHI", MAGIC, 1, reserved, len(encoded)) + encoded + repacked[12 + length : -4]
    return out + struct.pack("<I", zlib.crc32(out))


def test_zlib_where_the_builder_has_no_zstd(
    binary: Path, bundle: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent without zstd uploads zlib sections, read alike; a server without zstd refuses a zstd
    bundle in one line."""
    methods = {s["method"] for s in bundle_info(bundle)["sections"]}
    monkeypatch.setattr(bundle_module, "_zstd", None)
    with pytest.raises(BundleError, match="zstd-compressed and this server has no zstd module"):
        load_bundle(bundle) if "zstd" in methods else pytest.skip("no zstd module here")
    plain = build_bundle(str(binary))
    assert {s["method"] for s in bundle_info(plain)["sections"]} <= {"zlib", "none"}
    loaded = load_bundle(plain)
    monkeypatch.undo()
    assert loaded.parts == load_bundle(bundle).parts and loaded.names_raw == load_bundle(bundle).names_raw


def test_repack_picks_the_codec(bundle: bytes) -> None:
    zlib_only = repack(bundle, compress="zlib")
    assert {s["method"] for s in bundle_info(zlib_only)["sections"]} <= {"zlib", "none"}
    assert load_bundle(zlib_only).parts == load_bundle(bundle).parts


def test_version_1_uploads_answer_as_version_2(binary: Path, bundle: bytes, tmp_path: Path) -> None:
    """A bundle from an agent of the previous format (names demangled where looked up) gives the same
    frames as one that carries them."""
    old = _version_1(bundle)
    assert bundle_info(old)["version"] == 1 and load_bundle(old).outer_names is None
    fid = load_bundle(bundle).file_id
    addrs = [a for start, size, _ in h.nm_functions(binary) for a in range(start, start + size, 2)]
    answers = []
    for data in (old, bundle):
        central = CentralSymbolizer({fid: data}.get, tmp_path / str(len(answers)), debuginfod=None)
        answers.append(central.symbolize(fid, "", addrs))
        central.close()
    assert answers[0] == answers[1] and len(answers[0]) > len(addrs) // 2


def test_compact_against_the_binary(binary: Path, bundle: bytes) -> None:
    """Smaller than the -g binary it describes (bench/bench_central_symbolize.py sizes large ones)."""
    assert len(bundle) < binary.stat().st_size / 3
    raw = repack(bundle, compress=False)
    assert len(bundle) < len(raw) and load_bundle(raw).file_id == load_bundle(bundle).file_id


def test_from_an_open_fd(binary: Path, bundle: bytes) -> None:
    with open(binary, "rb") as stream:
        from_fd = load_bundle(build_bundle(stream.fileno()))
    assert (from_fd.file_id, from_fd.path) == (load_bundle(bundle).file_id, str(binary))


def test_the_callers_file_id_is_kept(binary: Path) -> None:
    assert load_bundle(build_bundle(str(binary), file_id="cd" * 16)).file_id == "cd" * 16


def test_not_elf_is_a_bundle_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an elf file")
    with pytest.raises(BundleError) as err:
        build_bundle(str(junk))
    assert "\n" not in str(err.value)


def _resealed(data: bytes, header_edit=None, body: bytes | None = None) -> bytes:
    """`data` with its JSON header edited and/or body replaced, CRC recomputed (a well-formed wrapper)."""
    _, version, reserved, length = struct.unpack_from("<4sHHI", data)
    header = json.loads(data[12 : 12 + length])
    if header_edit is not None:
        header_edit(header)
    text = json.dumps(header).encode()
    out = struct.pack("<4sHHI", MAGIC, version, reserved, len(text)) + text
    out += data[12 + length : -4] if body is None else body
    return out + struct.pack("<I", zlib.crc32(out))


def _damage(bundle: bytes) -> dict[str, bytes]:
    flipped = bytearray(bundle)
    flipped[len(bundle) // 2] ^= 0xFF

    def bad_extents(header: dict) -> None:
        for section in header["sections"]:
            if section["name"] == "extents":
                section["raw"] += 8

    def zip_bomb(header: dict) -> None:
        header["sections"][0]["raw"] = 1 << 40

    def foreign(header: dict) -> None:
        header["parts"] = [{"role": "self"}]

    def short_names(header: dict) -> None:
        for section in header["sections"]:
            if section["name"] == "names":
                section["raw"] -= 4

    raw = repack(bundle, compress=False)
    header_len = struct.unpack_from("<I", raw, 8)[0]
    table = json.loads(raw[12 : 12 + header_len])["sections"]
    symc = next(s for s in table if s["name"] == "symcache.0")
    garbage_symcache = bytearray(raw[12 + header_len : -4])
    garbage_symcache[symc["offset"] : symc["offset"] + 64] = bytes(range(64))
    return {
        "empty": b"",
        "garbage": bytes(range(256)) * 4,
        "truncated": bundle[: len(bundle) // 2],
        "one byte short": bundle[:-1],
        "flipped byte": bytes(flipped),
        "wrong magic": b"XXXX" + bundle[4:],
        "future version": bundle[:4] + struct.pack("<H", 99) + bundle[6:],
        "section size lies": _resealed(bundle, bad_extents),
        "zip bomb claim": _resealed(bundle, zip_bomb),
        "missing field": _resealed(bundle, foreign),
        "names size lies": _resealed(raw, short_names),
        "garbage SymCache": _resealed(raw, body=bytes(garbage_symcache)),
        "header not JSON": MAGIC + struct.pack("<HHI", 1, 0, 4) + b"{{{{" + struct.pack("<I", 0),
    }


DAMAGES = [
    "empty", "garbage", "truncated", "one byte short", "flipped byte", "wrong magic", "future version",
    "section size lies", "zip bomb claim", "missing field", "names size lies", "garbage SymCache",
    "header not JSON",
]  # fmt: skip


def test_every_damage_is_listed(bundle: bytes) -> None:
    assert sorted(_damage(bundle)) == sorted(DAMAGES)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_bundles_raise_one_line_errors(bundle: bytes, damage: str) -> None:
    data = _damage(bundle)[damage]
    with pytest.raises(BundleError) as err:
        load_bundle(data)
    assert "\n" not in str(err.value) and str(err.value).startswith("bad bundle")


def test_central_survives_a_damaged_upload(binary: Path, bundle: bytes, tmp_path: Path) -> None:
    fid = load_bundle(bundle).file_id
    store = {fid: bundle[:-100]}
    server = CentralSymbolizer(store.get, tmp_path, debuginfod=None)
    assert server.symbolize(fid, "", [0x1000, 0x2000]) == {}
    assert server.problems[fid].startswith("bad bundle") and "\n" not in server.problems[fid]
    store[fid] = bundle  # a good upload replaces it
    main = next(s for s, _, n in h.nm_functions(binary) if n == "main")
    assert server.symbolize(fid, "", [main])[main][0].function == "main"


def test_damaged_disk_cache_is_rebuilt(binary: Path, bundle: bytes, tmp_path: Path) -> None:
    fid = load_bundle(bundle).file_id
    main = next(s for s, _, n in h.nm_functions(binary) if n == "main")
    server = CentralSymbolizer({fid: bundle}.get, tmp_path, debuginfod=None)
    first = server.symbolize(fid, "", [main])
    server.flush()  # the disk cache is written in the background
    [cached] = list(tmp_path.rglob("*.fpsb"))
    cached.write_bytes(cached.read_bytes()[:50])
    assert CentralSymbolizer({fid: bundle}.get, tmp_path, debuginfod=None).symbolize(fid, "", [main]) == first


def test_direct_reads_give_the_answers_of_symbolic(binary: Path, bundle: bytes) -> None:
    """Reading the SymCache's arrays (one chain per range, memoized) changes no answer."""
    loaded = load_bundle(bundle)
    (_, load, data) = loaded.parts[0]
    cache = SymCache.from_bytes(data)
    reader = make_reader(cache, data)
    assert reader is not None and len(reader.starts) > 50
    assert make_reader(SymCache.from_bytes(data)).starts == reader.starts  # through symbolic's buffer
    funcs = h.nm_functions(binary)
    rels = range(min(s for s, _, _ in funcs) - load - 0x100, max(s + n for s, n, _ in funcs) - load + 0x40)
    for rel in rels:
        expected = symcache_lookup(cache, rel)
        assert reader.chain(reader.find(rel), rel) == expected, hex(rel)
        assert [(x.sym_addr, x.line, x.lang, x.symbol, x.full_path) for x in expected] == [
            (x.sym_addr, x.line, x.lang, x.symbol, x.full_path or "") for x in cache.lookup(rel)
        ]
    assert reader.trusted

    def table(direct: object) -> FileSymbols:
        return FileSymbols(
            loaded.module, [Part(load, SymCache.from_bytes(data), direct)], loaded.extents,
            open_lines=lambda: loaded.lines, open_plt=lambda: loaded.plt, stats=Counter(),
        )  # fmt: skip

    with_reader, without = table(make_reader(cache, data)), table(None)
    addrs = [rel + load for rel in rels]
    assert [with_reader.lookup(a) for a in addrs] == [without.lookup(a) for a in addrs]


def test_a_reader_that_disagrees_turns_itself_off(bundle: bytes) -> None:
    (_, _, data) = load_bundle(bundle).parts[0]
    cache = SymCache.from_bytes(data)
    reader = make_reader(cache, data)
    index = len(reader.starts) // 2
    reader._names = {offset: "wrong" for offset in range(1 << 20)}  # names decoded wrongly from now on
    reader._paths = {0xFFFFFFFF: ""}  # forces symbolic to be asked again, and compared
    rel = reader.starts[index]
    assert reader.chain(index, rel) == symcache_lookup(cache, rel)
    assert not reader.trusted and reader.chain(index, rel) is None


def test_other_formats_are_not_read(bundle: bytes) -> None:
    cache = SymCache.from_bytes(load_bundle(bundle).parts[0][2])
    assert make_reader(cache, b"SYMC" + struct.pack("<I", 7) + b"\0" * 200) is None
    assert make_reader(cache, b"short") is None
    assert make_reader(cache, b"SYMC" + struct.pack("<I", 9) + b"\xff" * 200) is None

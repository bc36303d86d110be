"""Symbol bundles: one native file's symbol data, built on the host, symbolized anywhere.

A bundle holds everything `lookup.FileSymbols` reads, so a server that has never seen the file gives
the frames host-side symbolization gives: the SymCaches (binary, debug file, MiniDebugInfo), the code
extents (symbol sizes and names), the PLT stub names and, precomputed from DWARF, the start lines and
scopes of every compile unit (`startline.UnitLines`), and for Go binaries the pclntab and its inline
trees (`golang.GoSymbols`), and each symbol's demangled name (`outer_names`). It is a fraction of the
binary's size.

Format (version 2, little-endian): `FPSB`, u16 version, u16 reserved, u32 header length, a JSON header
(identity, parts, and each section's offset, stored size, raw size and compression: zstd where the
builder has the module, which inflates in half zlib's time, else zlib; none in a server's disk cache),
the sections
(each 8-aligned in the file, so a cached uncompressed bundle is read in place through mmap), and a
CRC-32 of everything before it. `load_bundle` checks all of it and raises `BundleError` with a
one-line reason for anything wrong; it never crashes on hostile bytes. Version 1 (agents before the
`names` section) is read too: its names are demangled where they are looked up.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import threading
import zlib
from array import array
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from symbolic import SymCache
from symbolic._lowlevel import ffi, lib
from symbolic.exceptions import SymbolicError
from symbolic.utils import attached_refs, rustcall

try:  # zstd: the standard library's from Python 3.14, else the backport (a server dependency)
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:
    try:
        from backports import zstd as _zstd  # type: ignore[import-not-found,no-redef]
    except ImportError:
        _zstd = None

from fleetprof.elf.debugfile import DEFAULT_DEBUG_DIRS
from fleetprof.elf.reader import ElfError, read_elf_info
from fleetprof.process.fileid import file_id as compute_file_id
from fleetprof.symbolize.debuginfod import DebuginfodClient
from fleetprof.symbolize.extents import CodeExtents
from fleetprof.symbolize.golang.pclntab import PclntabError
from fleetprof.symbolize.golang.symbols import GoSymbols, open_go_symbols
from fleetprof.symbolize.lookup import FileSymbols, Part
from fleetprof.symbolize.native import NativeFile, collect_symbols
from fleetprof.symbolize.outer_names import OuterNames, encode_outer_names
from fleetprof.symbolize.plt import PltNames, read_plt_names
from fleetprof.symbolize.startline import StartLines, UnitIndex, UnitLines
from fleetprof.symbolize.symcache_reader import make_reader

MAGIC = b"FPSB"
VERSION = 2
READABLE = (1, 2)  # versions `load_bundle` reads: 1 has no `names` section
MAX_SECTION_BYTES = 1 << 30  # a raw section larger than this is refused (a corrupt or hostile bundle)
_PREFIX = struct.Struct("<4sHHI")
_CRC = struct.Struct("<I")
_UNIT_HEAD = struct.Struct("<III")  # entries, names, scoped
_LEVEL = 6  # zlib's
_ZSTD_LEVEL = 9  # as small as zlib -9 on SymCaches, compressed faster than zlib -6
_GO_PCLNTAB = "go.pclntab"  # a Go binary's pclntab, verbatim
_GO_INLINE = "go.inline"  # its inline trees (from go:func.*), by funcdata value
_NAMES = "names"  # each symbol's shown (demangled) name, `outer_names`
_ALIGN = 8
_PARALLEL_BYTES = 4 << 20  # compressed sections inflated in two threads past this many bytes in all


class BundleError(ValueError):
    """A bundle that can't be built or read; the message is one line."""


@dataclass(slots=True)
class Bundle:
    """A decoded bundle: identity, SymCache parts, extents, PLT names and start-line tables."""

    file_id: str
    build_id: str
    path: str  # the file's path on the host that built the bundle
    module: str  # basename, for `module+0xADDR`
    note: str  # why symbols are limited ("" when complete)
    parts: list[tuple[str, int, bytes]]  # (role, load address, SymCache bytes)
    extents: CodeExtents
    plt: PltNames
    lines: BundledLines | None = None
    source: str = "upload"  # "upload" (built on a host) or "debuginfod"
    caches: list[SymCache] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    lines_raw: bytes | memoryview = b""
    go: GoSymbols | None = None  # a Go binary's pclntab and inline trees
    go_raw: tuple[bytes | memoryview, bytes | memoryview] = (b"", b"")  # (pclntab, inline trees)
    outer_names: OuterNames | None = None  # the symbols' demangled names (None: version 1)
    names_raw: bytes | memoryview = b""
    extents_raw: bytes | memoryview = b""  # the extents and PLT sections as read (written again as such)
    plt_raw: bytes | memoryview = b""

    def to_bytes(self, compress: bool) -> bytes:
        """This bundle serialized again (e.g. uncompressed for a disk cache), without re-reading it."""
        return _pack(*self._contents(), compress)

    def _contents(self) -> tuple[dict[str, Any], list[tuple[str, bytes | memoryview]]]:
        """The header fields and sections this bundle was read from."""
        sections: list[tuple[str, bytes | memoryview]] = [
            (f"symcache.{index}", data) for index, (_, _, data) in enumerate(self.parts)
        ]
        sections += [
            ("extents", self.extents_raw or self.extents.to_bytes()),
            ("plt", self.plt_raw or _encode_plt(self.plt)),
        ]
        if self.lines_raw:
            sections.append(("lines", self.lines_raw))
        if self.names_raw:
            sections.append((_NAMES, self.names_raw))
        if self.go is not None:
            sections += [(_GO_PCLNTAB, self.go_raw[0]), (_GO_INLINE, self.go_raw[1])]
        header = {k: v for k, v in self.header.items() if k not in ("version", "sections")}
        return header, sections

    @property
    def inflates_fast(self) -> bool:
        """Whether every section was stored raw or zstd-compressed (none with zlib)."""
        return all(entry.get("method") in ("none", "zstd") for entry in self.header["sections"])

    def write_uncompressed(self, path: Path) -> None:
        """This bundle, uncompressed (read in place when mapped), written to `path` atomically piece by
        piece: nothing is joined in memory, and the GIL is let go while the bytes are summed and written."""
        pieces = _pieces(*self._contents(), compress=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        crc = 0
        with open(tmp, "wb") as out:
            for piece in pieces:
                out.write(piece)
                crc = zlib.crc32(piece, crc)
            out.write(_CRC.pack(crc))
        os.replace(tmp, path)

    def file_symbols(self, want_start_lines: bool = True, stats: Counter[str] | None = None) -> FileSymbols:
        """Lookup tables over this bundle (the same lookup code the host path uses)."""
        return FileSymbols(
            module=self.module,
            parts=[
                Part(load, cache, make_reader(cache, data))
                for (_, load, data), cache in zip(self.parts, self.caches, strict=True)
            ],
            extents=self.extents,
            open_lines=lambda: self.lines,
            open_plt=lambda: self.plt,
            want_start_lines=want_start_lines,
            stats=stats if stats is not None else Counter(),
            go=self.go,
        )


class BundledLines(UnitLines):
    """Start lines and scopes from a bundle's precomputed tables, decoded one unit at a time."""

    def __init__(
        self, ranges: list[tuple[int, int, int]], units: list[bytes | memoryview], strings: list[str]
    ) -> None:
        super().__init__()
        self._set_ranges(ranges)
        self._blobs = units
        self._strings = strings

    def _unit_at(self, offset: int) -> UnitIndex:
        try:
            return _decode_unit(self._blobs[offset], self._strings)
        except (IndexError, struct.error, ValueError):  # checked at load; a bad unit is just unknown
            return UnitIndex()


def build_bundle(
    source: NativeFile | str | os.PathLike[str] | int,
    *,
    debug_dirs: tuple[str, ...] = DEFAULT_DEBUG_DIRS,
    debuginfod: DebuginfodClient | None = None,
    debug_path: str = "",
    start_lines: bool = True,
    compress: bool = True,
    origin: str = "upload",
    file_id: str = "",
) -> bytes:
    """The bundle of a native file: a `NativeFile` (as the agent has it), a path, or an open fd.

    Debug files are found as host-side symbolization finds them (build-id directories, `.gnu_debuglink`,
    `debuginfod` when given; `debug_path` names one directly). `file_id` overrides the id computed for
    a path or fd (`fleetprof.process.fileid.file_id`). Raises BundleError when the file can't be read.
    """
    file = _native_file(source)
    if file_id:
        file = replace(file, file_id=file_id)
    stored = collect_symbols(file, debug_dirs, debuginfod, debug_path=debug_path)
    if isinstance(stored, str):
        raise BundleError(f"{file.path}: {stored}".splitlines()[0][:300])
    read_path = file.open_path or file.path
    dwarf = read_path if stored.dwarf_path == "self" else stored.dwarf_path
    sections: list[tuple[str, bytes]] = []
    parts = []
    for index, (info, cache) in enumerate(zip(stored.parts, stored.symcaches, strict=True)):
        with cache.open_stream() as stream:
            sections.append((f"symcache.{index}", stream.read()))
        parts.append({"role": info.role, "load_address": info.load_address})
    sections.append(("extents", stored.extents.to_bytes()))
    sections.append((_NAMES, encode_outer_names(stored.extents)))
    sections.append(("plt", _encode_plt(read_plt_names(read_path))))
    if dwarf and start_lines:
        lines = StartLines(dwarf)
        try:
            sections.append(("lines", _encode_lines(*lines.export())))
        finally:
            lines.close()
    note = stored.note
    go, problem = open_go_symbols(read_path)
    header: dict[str, Any] = {}
    if go is not None:
        try:
            header["go"], pclntab, trees = go.export()
            sections += [(_GO_PCLNTAB, pclntab), (_GO_INLINE, trees)]
            note = ""
        except PclntabError as exc:
            note = f"{note}; Go pclntab unusable ({exc})" if note else f"Go pclntab unusable ({exc})"
        finally:
            go.close()
    elif problem:
        note = f"{note}; {problem}" if note else problem
    header |= {
        "file_id": file.file_id,
        "build_id": stored.build_id,
        "path": file.path,
        "module": file.module,
        "note": note,
        "source": origin,
        "parts": parts,
    }
    return _pack(header, sections, compress)


def load_bundle(data: bytes | memoryview | mmap.mmap) -> Bundle:
    """Decode and check a bundle; raises BundleError (one line) for bad, truncated or foreign bytes.

    From an mmap, stored sections are read in place: SymCaches stay in the page cache, not the heap."""
    header, sections, offsets = _unpack(data)
    mapped = ffi.from_buffer(data) if isinstance(data, mmap.mmap) else None
    try:
        parts = []
        caches = []
        for index, part in enumerate(header["parts"]):
            raw = sections[f"symcache.{index}"]
            caches.append(_symcache(raw, mapped, offsets[f"symcache.{index}"], data))
            parts.append((str(part["role"]), int(part["load_address"]), raw))
        extents = CodeExtents.from_bytes(sections["extents"])
        names_raw = sections.get(_NAMES, b"")
        outer_names = OuterNames(names_raw, len(extents.starts)) if _NAMES in sections else None
        plt = _decode_plt(sections["plt"])
        lines = _decode_lines(sections["lines"]) if "lines" in sections else None
        go, go_raw = _decode_go(header, sections)
        return Bundle(
            file_id=_text(header["file_id"]),
            build_id=_text(header.get("build_id", "")),
            path=_text(header.get("path", "")),
            module=_text(header.get("module", "")) or "unknown",
            note=_text(header.get("note", "")),
            parts=parts,
            extents=extents,
            plt=plt,
            lines=lines,
            source=_text(header.get("source", "upload")),
            caches=caches,
            header=header,
            lines_raw=sections.get("lines", b""),
            go=go,
            go_raw=go_raw,
            outer_names=outer_names,
            names_raw=names_raw,
            extents_raw=sections["extents"],
            plt_raw=sections["plt"],
        )
    except SymbolicError as exc:
        raise BundleError(f"bad bundle: SymCache does not parse ({_first_line(exc)})") from None
    except (KeyError, TypeError, ValueError, struct.error, IndexError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"bad bundle: {type(exc).__name__}: {_first_line(exc)}") from None


def repack(data: bytes | memoryview, compress: bool | str) -> bytes:
    """The same bundle with its sections (re)compressed or stored raw (raw loads faster from a cache);
    `compress` "zlib" or "zstd" picks the codec (True: zstd when this host has it)."""
    header, sections, _ = _unpack(data)
    return _pack(header, list(sections.items()), compress)


def bundle_info(data: bytes | memoryview) -> dict[str, Any]:
    """The header of a bundle (identity and section sizes) without decoding its sections."""
    header, _, _ = _split(data)
    return header


def _native_file(source: NativeFile | str | os.PathLike[str] | int) -> NativeFile:
    if isinstance(source, NativeFile):
        return source
    if isinstance(source, int):
        path = f"/proc/self/fd/{source}"
        name = os.readlink(path) if os.path.islink(path) else path
    else:
        path = name = os.fspath(source)
    try:
        build_id = read_elf_info(path).build_id
        fid = compute_file_id(path, build_id)
    except (ElfError, OSError) as exc:
        raise BundleError(f"{name}: {_first_line(exc)}") from None
    return NativeFile(fid, name, path, build_id)


def _pack(
    header: dict[str, Any], sections: list[tuple[str, bytes | memoryview]], compress: bool | str
) -> bytes:
    out = b"".join(_pieces(header, sections, compress))
    return out + _CRC.pack(zlib.crc32(out))


def _pieces(
    header: dict[str, Any], sections: list[tuple[str, bytes | memoryview]], compress: bool | str
) -> list[bytes | memoryview]:
    """A bundle's bytes before its CRC, in pieces (prefix and header, then each section after its
    padding), so that a disk cache is written without joining them."""
    table = []
    body: list[bytes | memoryview] = []
    size = 0
    for name, raw in sections:
        stored, method = _compress(raw, compress) if compress else (raw, "none")
        if compress and len(stored) >= len(raw):
            stored, method = raw, "none"
        if size % _ALIGN:  # sections start 8-aligned: SymCaches are read in place
            body.append(bytes(-size % _ALIGN))
            size += len(body[-1])
        table.append({"name": name, "offset": size, "size": len(stored), "raw": len(raw), "method": method})
        body.append(stored)
        size += len(stored)
    text = json.dumps({"version": VERSION, **header, "sections": table}, separators=(",", ":")).encode()
    text += b" " * (-(_PREFIX.size + len(text)) % _ALIGN)  # and so does the body
    return [_PREFIX.pack(MAGIC, VERSION, 0, len(text)) + text, *body]


def _split(data: bytes | memoryview | mmap.mmap) -> tuple[dict[str, Any], memoryview, int]:
    """(header, body, body offset) of a bundle after the magic, version, length and CRC checks."""
    view = memoryview(data)
    if len(view) < _PREFIX.size + _CRC.size:
        raise BundleError(f"bad bundle: {len(view)} bytes is too short")
    magic, version, _, length = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise BundleError("bad bundle: not a fleetprof symbol bundle (wrong magic)")
    if version not in READABLE:
        readable = ", ".join(map(str, READABLE))
        raise BundleError(f"bad bundle: format version {version}, this build reads {readable}")
    end = len(view) - _CRC.size
    if _PREFIX.size + length > end:
        raise BundleError("bad bundle: truncated header")
    (crc,) = _CRC.unpack_from(view, end)
    if zlib.crc32(view[:end]) != crc:
        raise BundleError("bad bundle: checksum mismatch (truncated or damaged)")
    try:
        header = json.loads(bytes(view[_PREFIX.size : _PREFIX.size + length]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"bad bundle: header is not JSON ({_first_line(exc)})") from None
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
        raise BundleError("bad bundle: header lacks a section table")
    if not isinstance(header.get("parts"), list) or not isinstance(header.get("file_id"), str):
        raise BundleError("bad bundle: header lacks file id or parts")
    return header, view[_PREFIX.size + length : end], _PREFIX.size + length


def _unpack(
    data: bytes | memoryview | mmap.mmap,
) -> tuple[dict[str, Any], dict[str, bytes | memoryview], dict[str, int]]:
    """Header, sections and where each starts in `data`; stored sections of a memoryview or mmap stay
    views into it."""
    header, body, body_at = _split(data)
    sections: dict[str, bytes | memoryview] = {}
    offsets: dict[str, int] = {}
    packed: list[tuple[str, memoryview, int, str]] = []  # compressed: name, stored bytes, raw size, method
    for entry in header["sections"]:
        try:
            name, offset, size, raw = (
                str(entry["name"]),
                int(entry["offset"]),
                int(entry["size"]),
                int(entry["raw"]),
            )
            method = entry["method"]
        except (KeyError, TypeError, ValueError):
            raise BundleError("bad bundle: malformed section table") from None
        if offset < 0 or size < 0 or offset + size > len(body) or not 0 <= raw <= MAX_SECTION_BYTES:
            raise BundleError(f"bad bundle: section {name} out of bounds")
        chunk = body[offset : offset + size]
        if method == "none":
            sections[name] = bytes(chunk) if isinstance(data, bytes) else chunk
        elif method in ("zlib", "zstd"):
            sections[name] = b""
            packed.append((name, chunk, raw, method))
        else:
            raise BundleError(f"bad bundle: section {name}: unknown compression {method!r}")
        offsets[name] = body_at + offset
    sections |= _inflate_all(packed)
    for entry in header["sections"]:
        name, raw = str(entry["name"]), int(entry["raw"])
        if len(sections[name]) != raw:
            raise BundleError(f"bad bundle: section {name} is {len(sections[name])} bytes, header says {raw}")
    for name in ("extents", "plt"):
        if name not in sections:
            raise BundleError(f"bad bundle: no {name} section")
    return header, sections, offsets


def _inflate_all(packed: list[tuple[str, memoryview, int, str]]) -> dict[str, bytes]:
    """The compressed sections inflated; large ones two at a time (zlib and zstd let the GIL go),
    largest first."""
    if len(packed) < 2 or sum(job[2] for job in packed) < _PARALLEL_BYTES:
        return {job[0]: _inflate(*job) for job in packed}
    ordered = sorted(packed, key=lambda job: -job[2])
    with ThreadPoolExecutor(2) as pool:
        inflated = pool.map(lambda job: _inflate(*job), ordered)
        return dict(zip([job[0] for job in ordered], inflated, strict=True))


def _compress(raw: bytes | memoryview, codec: bool | str = True) -> tuple[bytes | memoryview, str]:
    """(stored bytes, method) of a section: zstd when this host has it (or `codec` says so), else zlib;
    raw when that doesn't make it smaller."""
    if codec == "zstd" and _zstd is None:
        raise BundleError("zstd asked for, and this host has no zstd module (pip install backports.zstd)")
    if _zstd is not None and codec != "zlib":
        stored, method = _zstd.compress(raw, _ZSTD_LEVEL), "zstd"
    else:
        stored, method = zlib.compress(raw, _LEVEL), "zlib"
    return (raw, "none") if len(stored) >= len(raw) else (stored, method)


def _inflate(name: str, chunk: memoryview, raw: int, method: str = "zlib") -> bytes:
    """A section's raw bytes; BundleError when they don't decompress to `raw` bytes and end there."""
    if method == "zstd":
        if _zstd is None:
            raise BundleError(
                f"bad bundle: section {name} is zstd-compressed and this server has no zstd module "
                "(pip install backports.zstd)"
            )
        inflater: Any = _zstd.ZstdDecompressor()
        errors: tuple[type[Exception], ...] = (_zstd.ZstdError, EOFError)
    else:
        inflater, errors = zlib.decompressobj(), (zlib.error,)
    try:
        content = inflater.decompress(chunk, raw + 1)
    except errors as exc:
        raise BundleError(f"bad bundle: section {name} does not decompress ({_first_line(exc)})") from None
    if not inflater.eof:
        raise BundleError(f"bad bundle: section {name} is larger than its header says")
    return content


def _symcache(
    data: bytes | memoryview, mapped: Any = None, offset: int = 0, owner: object = None
) -> SymCache:
    """A SymCache over `data`; one stored in the mmap `owner` (cffi buffer `mapped`) is read in place.

    Only the mmap object itself is lent to cffi: a memoryview lent out and then torn down inside a
    garbage cycle crashes CPython; an mmap, which the collector does not track, does not."""
    if mapped is None or not isinstance(data, memoryview) or offset % _ALIGN:
        return SymCache.from_bytes(data if isinstance(data, bytes) else bytes(data))
    cache = SymCache._from_objptr(rustcall(lib.symbolic_symcache_from_bytes, mapped + offset, len(data)))
    attached_refs[cache] = (mapped, owner)  # symbolic reads the bytes in place: keep them alive
    return cache


def _encode_plt(plt: PltNames) -> bytes:
    names = "\0".join(plt.names).encode()
    head = struct.pack("<QQ", len(plt.starts), len(names))
    return head + array("Q", plt.starts).tobytes() + array("Q", plt.ends).tobytes() + names


def _decode_plt(data: bytes | memoryview) -> PltNames:
    data = bytes(data)
    count, length = struct.unpack_from("<QQ", data)
    if len(data) != 16 + 16 * count + length:
        raise BundleError("bad bundle: PLT section size mismatch")
    starts, ends = array("Q"), array("Q")
    starts.frombytes(data[16 : 16 + 8 * count])
    ends.frombytes(data[16 + 8 * count : 16 + 16 * count])
    names = data[16 + 16 * count :].decode("utf-8", "replace").split("\0") if count else []
    if len(names) != count or any(a > b for a, b in pairwise(starts)):
        raise BundleError("bad bundle: PLT section is inconsistent")
    return PltNames(list(starts), list(ends), names)


def _encode_lines(ranges: list[tuple[int, int, int]], units: dict[int, UnitIndex]) -> bytes:
    """Unit ranges (by unit number), each unit's index, and one string table for all names."""
    strings: dict[str, int] = {}

    def sid(text: str) -> int:
        found = strings.get(text)
        if found is None:
            found = strings[text] = len(strings)
        return found

    numbers = {offset: n for n, offset in enumerate(sorted(units))}
    blobs = []
    for offset in sorted(units):
        unit = units[offset]
        scoped = [(sid(bare), line, sid(full)) for bare, found in unit.scoped.items() for line, full in found]
        parts = [
            _UNIT_HEAD.pack(len(unit.by_entry), len(unit.by_name), len(scoped)),
            array("Q", unit.by_entry).tobytes(),
            array("I", unit.by_entry.values()).tobytes(),
            array("I", [sid(name) for name in unit.by_name]).tobytes(),
            array("I", unit.by_name.values()).tobytes(),
            array("I", [v for triple in scoped for v in triple]).tobytes(),
        ]
        blobs.append(b"".join(parts))
    kept = [(start, end, numbers[offset]) for start, end, offset in ranges if offset in numbers]
    table = "\0".join(strings).encode()
    blob_sizes = array("Q", [len(b) for b in blobs])
    head = struct.pack("<QQQ", len(kept), len(blobs), len(table))
    return b"".join(
        [
            head,
            array("Q", [v for start, end, _ in kept for v in (start, end)]).tobytes(),
            array("I", [n for _, _, n in kept]).tobytes(),
            blob_sizes.tobytes(),
            table,
            *blobs,
        ]
    )


def _decode_lines(data: bytes | memoryview) -> BundledLines:
    nranges, nunits, table_len = struct.unpack_from("<QQQ", data)
    pos = 24
    bounds = array("Q")
    bounds.frombytes(data[pos : pos + 16 * nranges])
    pos += 16 * nranges
    owners = array("I")
    owners.frombytes(data[pos : pos + 4 * nranges])
    pos += 4 * nranges
    sizes = array("Q")
    sizes.frombytes(data[pos : pos + 8 * nunits])
    pos += 8 * nunits
    if len(bounds) != 2 * nranges or len(owners) != nranges or len(sizes) != nunits:
        raise BundleError("bad bundle: lines section truncated")
    if pos + table_len + sum(sizes) != len(data) or any(n >= nunits for n in owners):
        raise BundleError("bad bundle: lines section is inconsistent")
    strings = bytes(data[pos : pos + table_len]).decode("utf-8", "replace").split("\0") if table_len else []
    pos += table_len
    blobs = []
    for size in sizes:
        blobs.append(data[pos : pos + size])
        pos += size
    ranges = sorted((bounds[2 * i], bounds[2 * i + 1], owners[i]) for i in range(nranges))
    return BundledLines(ranges, blobs, strings)


def _decode_unit(blob: bytes | memoryview, strings: list[str]) -> UnitIndex:
    entries, names, scoped = _UNIT_HEAD.unpack_from(blob)
    pos = _UNIT_HEAD.size
    expected = pos + 12 * entries + 8 * names + 12 * scoped
    if len(blob) != expected:
        raise ValueError("unit size mismatch")
    addrs, lines = array("Q"), array("I")
    addrs.frombytes(blob[pos : pos + 8 * entries])
    pos += 8 * entries
    lines.frombytes(blob[pos : pos + 4 * entries])
    pos += 4 * entries
    name_ids, name_lines = array("I"), array("I")
    name_ids.frombytes(blob[pos : pos + 4 * names])
    pos += 4 * names
    name_lines.frombytes(blob[pos : pos + 4 * names])
    pos += 4 * names
    flat = array("I")
    flat.frombytes(blob[pos : pos + 12 * scoped])
    index = UnitIndex(
        by_entry=dict(zip(addrs, lines, strict=True)),
        by_name={strings[i]: line for i, line in zip(name_ids, name_lines, strict=True)},
    )
    grouped: dict[str, list[tuple[int, str]]] = {}
    for i in range(0, len(flat), 3):
        grouped.setdefault(strings[flat[i]], []).append((flat[i + 1], strings[flat[i + 2]]))
    index.scoped = grouped
    return index


def _decode_go(
    header: dict[str, Any], sections: dict[str, bytes | memoryview]
) -> tuple[GoSymbols | None, tuple[bytes | memoryview, bytes | memoryview]]:
    """The Go table of a bundle that has one (bundles from before Go support have none)."""
    meta = header.get("go")
    if meta is None:
        return None, (b"", b"")
    if not isinstance(meta, dict) or _GO_PCLNTAB not in sections or _GO_INLINE not in sections:
        raise BundleError("bad bundle: Go header without its pclntab and inline tree sections")
    raw = (sections[_GO_PCLNTAB], sections[_GO_INLINE])
    try:
        return GoSymbols.from_export(meta, *raw), raw
    except PclntabError as exc:
        raise BundleError(f"bad bundle: Go pclntab: {_first_line(exc)}") from None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise BundleError(f"bad bundle: expected text in header, got {type(value).__name__}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def write_bundle(path: Path, data: bytes) -> None:
    """Write bundle bytes to `path` atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

"""The shared ELF reader: agrees with pyelftools on compiled binaries, inflates compressed sections, reads
both classes and byte orders, and turns damaged files into one-line ElfErrors."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from fleetprof.elf.view import ElfError, ElfView
from tests.conftest import compile_c

SRC = r"""
int counter = 3;
static int twice(int x) { return 2 * x + counter; }
int main(int argc, char **argv) { (void)argv; return twice(argc); }
"""


_SEGMENT_KEYS = ("p_offset", "p_vaddr", "p_filesz", "p_memsz", "p_flags", "p_align")
_SECTION_KEYS = ("sh_addr", "sh_offset", "sh_size", "sh_flags", "sh_link", "sh_entsize")


@pytest.fixture(scope="module")
def binaries(build_dir: Path) -> dict[str, Path]:
    out = {
        "pie": compile_c(SRC, build_dir / "view_pie", "-O1", "-g", "-Wl,--build-id"),
        "zlib": compile_c(SRC, build_dir / "view_zlib", "-O1", "-g", "-gz=zlib"),
        "zlib-gnu": compile_c(SRC, build_dir / "view_zgnu", "-O1", "-g", "-gz=zlib-gnu"),
    }
    for name in ("zlib", "zlib-gnu"):
        plain = build_dir / f"view_{name}_plain"
        subprocess.run(["objcopy", "--decompress-debug-sections", str(out[name]), str(plain)], check=True)
        out[f"{name}-plain"] = plain
    elf32 = build_dir / "view_32.so"
    flags = ["-m32", "-nostdlib", "-shared", "-fpic", "-Wl,--build-id", "-x", "c", "-o", str(elf32), "-"]
    built = subprocess.run(["gcc", *flags], input=SRC, text=True, capture_output=True)
    if built.returncode == 0:
        out["elf32"] = elf32
    return out


@pytest.mark.parametrize("name", ["pie", "elf32"])
def test_agrees_with_pyelftools(binaries: dict[str, Path], name: str) -> None:
    if name not in binaries:
        pytest.skip("gcc cannot build 32-bit objects here")
    path = str(binaries[name])
    with open(path, "rb") as stream, ElfView(path) as view:
        oracle = ELFFile(stream)
        assert view.elf_class == oracle.elfclass and view.little_endian == oracle.little_endian
        segs = [tuple(s[k] for k in _SEGMENT_KEYS) for s in oracle.iter_segments()]
        assert [(s.offset, s.vaddr, s.filesz, s.memsz, s.flags, s.align) for s in view.segments] == segs
        secs = [(s.name, *(s[k] for k in _SECTION_KEYS)) for s in oracle.iter_sections()]
        assert [
            (s.name, s.addr, s.offset, s.size, s.flags, s.link, s.entsize) for s in view.section_list
        ] == secs
        build_id = next(n["n_desc"] for n in oracle.get_section_by_name(".note.gnu.build-id").iter_notes())
        assert view.build_id() == build_id
        symtab = oracle.get_section_by_name(".symtab")
        expected = [
            (s["st_name"], s["st_info"]["bind"], s["st_value"], s["st_size"]) for s in symtab.iter_symbols()
        ]
        table = view.symbol_table(".symtab")
        assert table is not None and len(table) == len(expected)
        binds = {"STB_LOCAL": 0, "STB_GLOBAL": 1, "STB_WEAK": 2}
        got = [(n, info >> 4, value, size) for n, info, _, value, size in table.entries()]
        assert got == [(n, binds.get(b, b), value, size) for n, b, value, size in expected]
        assert [table.string(n) for n, *_ in got] == [s.name for s in symtab.iter_symbols()]
        found = view.symbols(["counter", "main"])
        assert {n: s.value for n, s in found.items()} == {
            n: symtab.get_symbol_by_name(n)[0]["st_value"] for n in ("counter", "main")
        }
        counter = found["counter"]
        assert view.read_vaddr(counter.value, 4) == struct.pack("<i", 3)


@pytest.mark.parametrize(("name", "section"), [("zlib", ".debug_info"), ("zlib-gnu", ".zdebug_info")])
def test_compressed_sections(binaries: dict[str, Path], name: str, section: str) -> None:
    with ElfView(str(binaries[f"{name}-plain"])) as plain:
        expected = plain.section_data(".debug_info")
    assert expected
    with ElfView(str(binaries[name])) as view:
        assert view.sections[section].size < len(expected)
        assert view.section_data(section) == expected


def _synthetic(elf64: bool, order: str) -> bytes:
    """A tiny ELF file: one PT_LOAD, .text, .symtab/.strtab with two symbols, one RELA entry."""
    ehdr = struct.Struct(order + ("16sHHIQQQIHHHHHH" if elf64 else "16sHHIIIIIHHHHHH"))
    phdr = struct.Struct(order + ("IIQQQQQQ" if elf64 else "IIIIIIII"))
    shdr = struct.Struct(order + ("IIQQQQIIQQ" if elf64 else "IIIIIIIIII"))
    sym = struct.Struct(order + ("IBBHQQ" if elf64 else "IIIBBH"))
    rela = struct.Struct(order + ("QQq" if elf64 else "IIi"))
    base = 0x400000
    text_off = ehdr.size + phdr.size
    text = b"\x90" * 16 + b"ABCDEFGH"
    strtab = b"\0main\0data_obj\0"
    names = b"\0.text\0.symtab\0.strtab\0.rela.plt\0.shstrtab\0"
    main_sym, data_sym = (1, 0x12, 1, base + text_off, 16), (6, 0x11, 1, base + text_off + 16, 8)
    syms = bytes(sym.size)
    for name, info, shndx, value, size in (main_sym, data_sym):
        fields = (name, info, 0, shndx, value, size) if elf64 else (name, value, size, info, 0, shndx)
        syms += sym.pack(*fields)
    relocs = rela.pack(0x1234, 2 << 32 | 7 if elf64 else 2 << 8 | 7, 0)
    blobs = [text, syms, strtab, relocs, names]
    offsets = []
    pos = text_off
    for blob in blobs:
        offsets.append(pos)
        pos += len(blob)
    shoff = pos
    ident = b"\x7fELF" + bytes([2 if elf64 else 1, 1 if order == "<" else 2, 1]) + bytes(9)
    out = ehdr.pack(ident, 3, 62, 1, 0, ehdr.size, shoff, 0, ehdr.size, phdr.size, 1, shdr.size, 6, 5)
    load = (1, 5, 0, base, base, shoff, shoff, 0x1000)
    out += phdr.pack(*(load if elf64 else (1, 0, base, base, shoff, shoff, 5, 0x1000)))
    out += b"".join(blobs) + bytes(shdr.size)
    for name, stype, flags, index, link, entsize in (
        (1, 1, 6, 0, 0, 0), (7, 2, 0, 1, 3, sym.size), (15, 3, 0, 2, 0, 0), (23, 4, 0, 3, 2, rela.size),
        (33, 3, 0, 4, 0, 0),
    ):  # fmt: skip
        addr = base + offsets[index] if flags else 0
        out += shdr.pack(name, stype, flags, addr, offsets[index], len(blobs[index]), link, 0, 1, entsize)
    return out


@pytest.mark.parametrize("elf64", [True, False], ids=["elf64", "elf32"])
@pytest.mark.parametrize("order", ["<", ">"], ids=["little", "big"])
def test_both_classes_and_byte_orders(tmp_path: Path, elf64: bool, order: str) -> None:
    path = tmp_path / "synthetic"
    path.write_bytes(_synthetic(elf64, order))
    with ElfView(str(path)) as view:
        assert (view.elf_class, view.little_endian, view.problem) == (64 if elf64 else 32, order == "<", "")
        assert [(s.type, s.flags, s.vaddr) for s in view.segments] == [(1, 5, 0x400000)]
        assert list(view.sections) == [".text", ".symtab", ".strtab", ".rela.plt", ".shstrtab"]
        found = view.symbols(["main", "data_obj", "absent"])
        assert {n: (s.size, s.table) for n, s in found.items()} == {
            "main": (16, ".symtab"),
            "data_obj": (8, ".symtab"),
        }
        assert view.read_vaddr(found["main"].value, 16) == b"\x90" * 16
        assert view.read_vaddr(found["data_obj"].value, 8) == b"ABCDEFGH"
        assert view.read_vaddr(found["data_obj"].value, 4096) is None
        (relocs,) = view.relocation_tables()
        ((offset, info, addend),) = list(relocs.entries())
        entry = relocs.symbols.entry(relocs.symbol_index(info))
        assert (offset, addend, entry and relocs.symbols.string(entry[0])) == (0x1234, 0, "data_obj")
        assert view.build_id() == "" and view.debuglink() == ("", 0)


def test_damaged_files_raise_one_line_elf_errors(binaries: dict[str, Path], tmp_path: Path) -> None:
    data = binaries["pie"].read_bytes()
    path = tmp_path / "damaged"
    for cut in (3, 40, 63, 200, len(data) // 2):
        path.write_bytes(data[:cut])
        try:
            with ElfView(str(path)) as view:
                assert cut >= 64 and view.problem
        except ElfError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    positions = [*range(0, 64 + 56 * 13), *range(shoff, len(data), 3)]
    for pos in positions:
        blob = bytearray(data)
        blob[pos] ^= 0xFF
        path.write_bytes(bytes(blob))
        try:
            with ElfView(str(path)) as view:
                view.build_id()
                view.debuglink()
                view.symbols(["main", "counter"])
                for relocs in view.relocation_tables():
                    list(relocs.entries())
                for section in view.section_list:
                    view.section_data(section)
        except ElfError as exc:
            assert "\n" not in str(exc), pos

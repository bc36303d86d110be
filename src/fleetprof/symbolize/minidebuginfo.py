"""MiniDebugInfo: the xz-compressed ELF in `.gnu_debugdata` that Fedora, RHEL and others ship.

A stripped binary keeps `.dynsym` (exported functions only); its `.gnu_debugdata` section holds a small
ELF whose `.symtab` names the rest (static functions included), at the binary's own addresses. The
native symbolizer decompresses it into a temporary file and uses it as one more symbol source.
"""

from __future__ import annotations

import lzma
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from fleetprof.elf.view import ELF_MAGIC, ElfError, ElfView

SECTION = ".gnu_debugdata"
MAX_BYTES = 256 << 20
"""Largest decompressed size accepted: a symbol table is a few MB; more is a corrupt or hostile file."""


def read_minidebuginfo(path: str) -> bytes | None:
    """The decompressed embedded ELF of `path`, None when it has no `.gnu_debugdata`; raises ElfError."""
    with ElfView(path) as elf:
        if SECTION not in elf.sections:
            return None
        packed = elf.section_data(SECTION)
    if not packed:
        return None
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        data = decompressor.decompress(packed, max_length=MAX_BYTES)
    except lzma.LZMAError as exc:
        raise ElfError(f"{path}: {SECTION} does not decompress ({exc})") from None
    if not decompressor.eof:
        if len(data) >= MAX_BYTES:
            raise ElfError(f"{path}: {SECTION} decompresses to more than {MAX_BYTES >> 20} MiB")
        raise ElfError(f"{path}: {SECTION} is truncated")
    if not data.startswith(ELF_MAGIC):
        raise ElfError(f"{path}: {SECTION} does not hold an ELF file")
    return data


@contextmanager
def minidebuginfo_file(path: str) -> Iterator[str | None]:
    """Path of a temporary file holding the embedded ELF of `path` (None when absent); removed on exit.

    Raises ElfError for a corrupt section or OSError when the temporary file can't be written.
    """
    data = read_minidebuginfo(path)
    if data is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="fleetprof-minidebuginfo-", suffix=".elf")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        yield name
    finally:
        os.unlink(name)

"""PLT stubs are named `function@plt`, as objdump names them, for .plt, .plt.sec (IBT) and .plt.got."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from fleetprof.symbolize.native import NativeFile, NativeSymbolizer
from fleetprof.symbolize.plt import read_plt_names
from tests.conftest import compile_c

SRC = r"""
#include <unistd.h>
#include <stdlib.h>
int main(int argc, char **argv) { write(1, "", 0); return (int)strtol(argc > 1 ? argv[1] : "0", 0, 10); }
"""


def _objdump_plt(exe: Path) -> dict[int, str]:
    out = subprocess.run(["objdump", "-d", str(exe)], capture_output=True, text=True, check=True).stdout
    return {int(a, 16): n for a, n in re.findall(r"^([0-9a-f]+) <([^>+]+@plt)>:", out, re.M)}


@pytest.mark.parametrize("flags", [(), ("-fcf-protection=full", "-Wl,-z,ibtplt"), ("-no-pie", "-Wl,-z,now")])
def test_plt_names_match_objdump(build_dir: Path, tmp_path: Path, flags: tuple[str, ...]) -> None:
    exe = compile_c(SRC, build_dir / f"plt{len(flags)}", "-O1", *flags)
    expected = _objdump_plt(exe)
    assert expected, "the test binary has PLT stubs"
    names = read_plt_names(str(exe))
    for addr, name in expected.items():
        assert names.lookup(addr) == name
        assert names.lookup(addr + 5) == name
    symbolizer = NativeSymbolizer(cache_dir=tmp_path, persist=False)
    got = symbolizer.symbolize(NativeFile(file_id="ab" * 16, path=str(exe)), [a + 2 for a in expected])
    assert sorted(f[0].function for f in got.values()) == sorted(expected.values())


def test_files_without_plt_or_not_elf(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 10)
    assert read_plt_names(str(junk)).names == []
    assert read_plt_names(str(tmp_path / "missing")).names == []

"""Compile and run a probe C program against a shared-layout header (no tests here): how the unit tests
check a header's structs, constants and inline helpers against their Python mirrors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PRELUDE = "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n"


def run_c(tmp_path: Path, header: Path, body: list[str]) -> list[str]:
    """The output lines of `main() { body }` compiled with `header` included."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (make setup installs it)")
    src = tmp_path / f"{header.stem}_probe.c"
    src.write_text(f'{PRELUDE}#include "{header}"\nint main(void) {{\n' + "\n".join(body) + "\nreturn 0; }\n")
    exe = tmp_path / f"{header.stem}_probe"
    built = subprocess.run(
        ["gcc", "-Wall", "-Werror", "-o", str(exe), str(src)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()


def struct_layout(tmp_path: Path, header: Path, name: str, fields: list[str]) -> list[int]:
    """sizeof(struct `name`) and the offset of each of `fields`, as the C compiler lays them out."""
    body = [f'printf("%zu\\n", sizeof(struct {name}));']
    body += [f'printf("%zu\\n", offsetof(struct {name}, {field}));' for field in fields]
    return [int(v) for v in run_c(tmp_path, header, body)]

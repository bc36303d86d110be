"""`record -- CMD` prewarms the files the command will map. The oracle is the command itself: each case
starts it for real and compares what prewarm resolved with the files in its /proc/PID/maps."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from fleetprof.agent.prewarm import MAX_SHEBANG_DEPTH, file_identity, files_for_command
from tests.conftest import compile_c

# Says it is ready once the loader has mapped everything, then waits for stdin; needs libm (cos).
PROG = r"""
#include <math.h>
#include <stdio.h>
int main(int argc, char **argv) {
    char buf[4];
    printf("ready %f\n", cos((double)argc));
    fflush(stdout);
    return fread(buf, 1, 1, stdin) == 1 ? 0 : 1;
}
"""
STATIC = "int main(void) { return 0; }\n"


@pytest.fixture(scope="module")
def prog(build_dir: Path) -> Path:
    """PROG, dynamically linked against libm and libc."""
    return compile_c(PROG, build_dir / "prewarm_prog", "-O0", "-Wl,--no-as-needed", "-lm")


def mapped_files(argv: list[str]) -> list[str]:
    """The files (real paths) mapped by the process `argv` starts, once it is ready; the first is the
    executable the kernel ran."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready"), "the command started"
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        exe = os.readlink(f"/proc/{proc.pid}/exe")
    finally:
        proc.communicate("x")
    files = [exe]
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            real = os.path.realpath(parts[5])
            if real not in files:
                files.append(real)
    return files


def write_script(path: Path, text: str) -> Path:
    """An executable script."""
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_elf_executable_and_its_libraries(prog: Path) -> None:
    """The executable first, then exactly the libraries the loader maps (libm, libc, ld.so itself)."""
    files = files_for_command(str(prog))
    assert files[0] == os.path.realpath(prog)
    assert sorted(files) == sorted(mapped_files([str(prog)]))
    names = {re.sub(r"\.so.*", ".so", os.path.basename(f)) for f in files[1:]}
    assert names == {"libm.so", "libc.so", "ld-linux-x86-64.so"}


def test_shebang_script_resolves_to_its_interpreter(tmp_path: Path) -> None:
    """A `#!/bin/sh` script: the shell's binary (through its symlink) and the shell's libraries."""
    script = write_script(tmp_path / "s.sh", "#!/bin/sh\necho ready\nread x\n")
    files = files_for_command(str(script))
    assert files[0] == os.path.realpath("/bin/sh")
    assert sorted(files) == sorted(mapped_files([str(script)]))


@pytest.mark.parametrize(
    "shebang",
    [
        "#!/usr/bin/env prewarm_prog",
        "#!/usr/bin/env -S prewarm_prog -x",
        "#!/usr/bin/env -S -u HOME A=1 prewarm_prog",
    ],
    ids=["env", "env-S", "env-options"],
)
def test_env_indirection(prog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shebang: str) -> None:
    """`env` runs the first word after its options and assignments, found on PATH."""
    monkeypatch.setenv("PATH", f"{prog.parent}:{os.environ['PATH']}")
    script = write_script(tmp_path / "s", f"{shebang}\n")
    files = files_for_command(str(script))
    assert files[0] == os.path.realpath(prog)
    assert sorted(files) == sorted(mapped_files([str(script)]))


def test_script_interpreting_a_script(prog: Path, tmp_path: Path) -> None:
    """A script whose interpreter is itself a script: followed to the ELF file the kernel runs."""
    inner = write_script(tmp_path / "inner", f"#!{prog}\n")
    outer = write_script(tmp_path / "outer", f"#!{inner}\n")
    files = files_for_command(str(outer))
    assert files[0] == os.path.realpath(prog)
    assert sorted(files) == sorted(mapped_files([str(outer)]))


def test_static_executable_is_alone(build_dir: Path) -> None:
    """A static executable maps no library; `ld.so --list` failing on it (it crashes) changes nothing."""
    exe = compile_c(STATIC, build_dir / "prewarm_static", "-static")
    assert files_for_command(str(exe)) == [os.path.realpath(exe)]


def test_shebang_loop_ends(tmp_path: Path) -> None:
    """A script naming itself as interpreter is followed at most MAX_SHEBANG_DEPTH times."""
    script = tmp_path / "loop"
    write_script(script, f"#!{script}\n")
    assert MAX_SHEBANG_DEPTH == 4
    assert files_for_command(str(script)) == [str(script)]


@pytest.mark.parametrize("text", ["plain text\n", "#!\n", "#!/usr/bin/env\n", "#!/usr/bin/env -i A=1\n"])
def test_unresolvable_scripts_stay_themselves(tmp_path: Path, text: str) -> None:
    """No interpreter to follow: the file itself is all there is to prewarm."""
    script = write_script(tmp_path / "s", text)
    assert files_for_command(str(script)) == [str(script)]


def test_file_identity(prog: Path, tmp_path: Path) -> None:
    """An ELF file's identity carries its GNU build id; a script has none."""
    readelf = subprocess.run(["readelf", "-n", str(prog)], capture_output=True, text=True, check=True).stdout
    build_id = re.search(r"Build ID:\s*([0-9a-f]+)", readelf)
    assert build_id is not None
    ident = file_identity(str(prog))
    assert ident is not None and ident[1] == build_id.group(1)
    assert file_identity(str(write_script(tmp_path / "s", "#!/bin/sh\n"))) is None

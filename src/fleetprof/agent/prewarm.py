"""Before `record` starts a command, find the files it will map (the executable or script interpreter and
the shared libraries the dynamic loader resolves) so their unwind tables are ready at its first sample."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from fleetprof.elf.reader import ElfError, read_elf_info
from fleetprof.process.fileid import file_id

_LD_SO_CANDIDATES = ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
_LIST_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")
MAX_SHEBANG_DEPTH = 4
_ENV_OPTIONS_WITH_ARG = frozenset({"-u", "--unset", "-C", "--chdir"})


def _interpreter(path: str) -> str | None:
    """The interpreter named by a script's `#!` line, resolved through `env`."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":
        command = _env_command(words[1:])
        return shutil.which(command) if command else None
    return words[0]


def _env_command(words: list[str]) -> str | None:
    """The command that `env WORDS…` runs: the first word after env's options (`-S` included, which is how
    a shebang line passes several arguments) and NAME=VALUE assignments."""
    rest = iter(words)
    for word in rest:
        if word in _ENV_OPTIONS_WITH_ARG:
            next(rest, None)
        elif not word.startswith("-") and "=" not in word:
            return word
    return None


def files_for_command(exe: str) -> list[str]:
    """The executable (after `#!` indirections) and the libraries ld.so would load for it."""
    path = exe
    for _ in range(MAX_SHEBANG_DEPTH):
        interp = _interpreter(path)
        if interp is None:
            break
        path = interp
    files = [os.path.realpath(path)]
    ld_so = next((p for p in _LD_SO_CANDIDATES if os.path.exists(p)), None)
    if ld_so is None:
        return files
    try:
        out = subprocess.run(
            [ld_so, "--list", path], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return files
    for match in _LIST_LINE.finditer(out):
        real = os.path.realpath(match.group(1))
        if real not in files and os.path.isfile(real):
            files.append(real)
    return files


def file_identity(path: str) -> tuple[str, str] | None:
    """(file id, build id) of an ELF file, or None when it is not one."""
    try:
        info = read_elf_info(path)
        return file_id(path, info.build_id), info.build_id
    except (ElfError, OSError):
        return None

"""The userspace unwinder that finishes deferred stacks (nativeunwind/replay.py), checked against gdb.

gdb stops a program built without frame pointers in a leaf function and in libc, captures its registers,
its stack (as the kernel's snapshot would hold it) and its own backtrace; replaying the capture with tables
compiled from the mapped files must give gdb's frames, pc for pc, and go on to `_start`.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.nativeunwind.compiler import compile_unwind_table
from fleetprof.nativeunwind.replay import NotReady, StackCopy, replay
from fleetprof.nativeunwind.table import FRAME_POINTER_RULE, STOP_RULE, UW_CFA_RSP, UW_RBP_SAME
from fleetprof.process.bias import load_bias
from fleetprof.process.maps import parse_maps
from fleetprof.tracer import layout

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nativeunwind"

CAPTURE = r"""
import gdb, json, os
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("set backtrace past-main on")
gdb.execute("set backtrace past-entry on")
gdb.execute("break " + os.environ["CAP_BREAK"])
gdb.execute("run 200")
if os.environ.get("CAP_THEN"):
    gdb.execute("delete")
    gdb.execute("break " + os.environ["CAP_THEN"])
    gdb.execute("continue")
f = gdb.newest_frame()
inf = gdb.selected_inferior()
rsp = int(f.read_register("rsp"))
maps = open("/proc/%d/maps" % inf.pid).read()
end = next(int(l.split()[0].split("-")[1], 16) for l in maps.splitlines()
           if int(l.split()[0].split("-")[0], 16) <= rsp < int(l.split()[0].split("-")[1], 16))
data = bytes(inf.read_memory(rsp, min(end - rsp, 32768)))
pcs = []
fr = f
while fr is not None and len(pcs) < 64:
    pcs.append([int(fr.pc()), fr.name() or ""])
    fr = fr.older()
json.dump({"rip": int(f.read_register("rip")), "rsp": rsp, "rbp": int(f.read_register("rbp")),
           "maps": maps, "stack": data.hex(), "frames": pcs}, open(os.environ["CAP_OUT"], "w"))
gdb.execute("kill")
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or shutil.which("gdb") is None:
        pytest.fail("gcc and gdb are not installed (make setup installs them)")
    out = tmp_path_factory.mktemp("replay") / "chain"
    subprocess.run(
        ["gcc", "-O2", "-fomit-frame-pointer", "-o", str(out), str(FIXTURES / "chain.c")], check=True
    )
    return out


def _capture(binary: Path, first: str, then: str = "") -> dict:
    """Stop at `first` (then, if given, at the next `then`) and capture the thread."""
    script = binary.parent / "capture.py"
    script.write_text(CAPTURE)
    out = binary.parent / f"capture-{first}-{then}.json"
    env = {**os.environ, "CAP_BREAK": first, "CAP_THEN": then, "CAP_OUT": str(out)}
    subprocess.run(
        ["gdb", "-q", "-batch", "-nx", "-x", str(script), str(binary)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return json.loads(out.read_text())


class _Tables:
    """Mappings and compiled tables of the captured process, keyed like the agent's (one key per file)."""

    def __init__(self, maps_text: str) -> None:
        self.mappings: list[tuple[int, int, int, int]] = []  # start, end, key, bias
        self.tables = {}
        self.paths: dict[int, str] = {}
        entries, _ = parse_maps(maps_text)
        for m in entries:
            if not m.path.startswith("/") or "x" not in m.perms:
                continue
            key = len(self.paths) + 1
            for k, p in self.paths.items():
                if p == m.path:
                    key = k
            self.paths[key] = m.path
            bias = load_bias(read_elf_info(m.path), m.start, m.offset)
            assert bias is not None
            self.mappings.append((m.start, m.end, key, bias))
        self.loaded: set[int] = set()

    def mapping(self, pc: int) -> tuple[int, int, int] | None:
        for start, end, key, bias in self.mappings:
            if start <= pc < end:
                return key, bias, layout.MAPPING_FLAG_HAS_TABLE
        return None

    def rule(self, key: int, elf_pc: int):
        if key not in self.loaded:
            raise KeyError(key)
        if key not in self.tables:
            self.tables[key] = compile_unwind_table(self.paths[key])
        return self.tables[key].lookup(elf_pc)


def _regs(cap: dict) -> layout.SnapshotRegs:
    regs = layout.SnapshotRegs()
    regs.pc, regs.sp, regs.fp = cap["rip"], cap["rsp"], cap["rbp"]
    regs.stack_size = len(cap["stack"]) // 2
    return regs


def _replay(cap: dict, tables: _Tables) -> list[int]:
    """Runtime pcs of the replayed frames (the first is the interrupted pc itself)."""
    regs = _regs(cap)
    got = replay(
        regs, StackCopy(cap["rsp"], bytes.fromhex(cap["stack"])), None, tables.mapping, tables.rule, 128
    )
    assert got.error == layout.UNWIND_COMPLETE, got
    bias = {key: b for _, _, key, b in tables.mappings}
    assert all(kind == layout.FRAME_NATIVE for kind, _, _, _ in got.frames)
    return [addr + bias[key] for _, key, addr, _ in got.frames]


@pytest.mark.parametrize(
    ("first", "then", "names"),
    [
        ("leaf", "", ["leaf", "level3", "level2", "level1", "main"]),
        ("level2", "malloc", ["malloc", "level2", "level1", "main"]),
    ],
    ids=["leaf-in-exe", "leaf-in-libc"],
)
def test_replay_matches_gdb_frame_for_frame(chain: Path, first: str, then: str, names: list[str]) -> None:
    cap = _capture(chain, first, then)
    gdb_pcs = [pc for pc, _ in cap["frames"]]
    gdb_names = [name for _, name in cap["frames"]]
    assert [n.removeprefix("__GI___libc_") for n in gdb_names[: len(names)]] == names
    assert gdb_names[-1] == "_start"
    tables = _Tables(cap["maps"])
    tables.loaded = set(tables.paths)
    assert _replay(cap, tables) == gdb_pcs


def test_replay_waits_for_a_table_not_loaded(chain: Path) -> None:
    """NotReady names the file whose table is missing; with it loaded, the replay completes."""
    cap = _capture(chain, "leaf")
    tables = _Tables(cap["maps"])
    exe = next(k for k, p in tables.paths.items() if p == str(chain))
    libc = next(k for k, p in tables.paths.items() if "libc" in os.path.basename(p))
    tables.loaded = {exe}
    with pytest.raises(NotReady) as err:
        _replay(cap, tables)
    assert err.value.file_key == libc
    tables.loaded.add(libc)
    assert len(_replay(cap, tables)) == len(cap["frames"])


def test_truncated_copy_ends_in_unreadable_memory(chain: Path) -> None:
    """A copy that stops short of the callers (the stack ran past the snapshot) is an error, not a guess."""
    cap = _capture(chain, "leaf")
    tables = _Tables(cap["maps"])
    tables.loaded = set(tables.paths)
    regs = _regs(cap)
    short = bytes.fromhex(cap["stack"])[:64]
    got = replay(regs, StackCopy(cap["rsp"], short), None, tables.mapping, tables.rule, 128)
    assert got.error == layout.UNWIND_ERR_READ_FAILED
    assert 1 <= len(got.frames) < len(cap["frames"])


def _stack(base: int, words: list[int]) -> StackCopy:
    return StackCopy(base, struct.pack(f"<{len(words)}Q", *words))


def test_pushed_first_frame_is_not_repeated() -> None:
    """A frame BPF already emitted (table missing after the push) is not emitted twice."""
    regs = layout.SnapshotRegs(pc=0x1010, sp=0x7000, fp=0, pushed=1)
    rsp8 = (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, *STOP_RULE[5:])  # the rule's remaining fields: unchanged
    rules = {0x10: rsp8, 0x20: STOP_RULE}

    def mapping(pc: int) -> tuple[int, int, int]:
        return 7, 0x1000, layout.MAPPING_FLAG_HAS_TABLE

    def rule(key: int, elf_pc: int):
        return rules[elf_pc & ~0xF]

    got = replay(regs, _stack(0x7000, [0x1021]), mapping(0), mapping, rule, 16)
    assert got.frames == [(layout.FRAME_NATIVE, 7, 0x21, layout.FRAME_FLAG_RETURN_ADDRESS)]
    assert got.error == layout.UNWIND_COMPLETE


def test_unknown_pc_falls_back_to_frame_pointers_and_says_so() -> None:
    """A pc no mapping explains is kept raw and walked by rbp; a broken chain ends in `no mapping`."""
    regs = layout.SnapshotRegs(pc=0x5000, sp=0x7000, fp=0x7010, return_address=1)
    stack = _stack(0x7000, [0, 0, 0x7FFF, 0x6000])  # [fp] = 0x7fff (misaligned), [fp+8] = 0x6000
    got = replay(regs, stack, None, lambda pc: None, lambda k, pc: FRAME_POINTER_RULE, 16)
    assert got.frames == [
        (layout.FRAME_NATIVE_RAW, 0, 0x5000, layout.FRAME_FLAG_RETURN_ADDRESS),
        (layout.FRAME_NATIVE_RAW, 0, 0x6000, layout.FRAME_FLAG_RETURN_ADDRESS),
    ]
    assert got.error == layout.UNWIND_ERR_NO_MAPPING

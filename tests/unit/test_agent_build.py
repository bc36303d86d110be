"""The profile builder on recorded sample records: native frames symbolized by file and ELF address (return
addresses inside the call), kernel frames from a kallsyms text, error frames where unwinding stopped."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from fleetprof.agent.build import ProfileBuilder
from fleetprof.output.folded import folded_lines
from fleetprof.process.fileid import file_id, file_id_u64
from fleetprof.profile.model import Mapping
from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.symbolize.native import NativeFile, NativeSymbolizer
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import Aggregator
from tests.conftest import compile_c

SRC = r"""
__attribute__((noinline)) int leaf(int x) { return x * 3 + 1; }
__attribute__((noinline)) int caller(int x) { return leaf(x) + 2; }
int main(void) { return caller(4); }
"""


def _symbols(exe: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    return {
        parts[2]: int(parts[0], 16) for parts in (ln.split() for ln in out.splitlines()) if len(parts) == 3
    }


def _call_site(exe: Path, fn_start: int, callee: int) -> int:
    """The return address of the call to `callee` inside the function starting at `fn_start`."""
    dis = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(exe)], capture_output=True, text=True
    ).stdout
    lines = dis.splitlines()
    for i, line in enumerate(lines):
        if f"call   {callee:x}" in line:
            addr = int(line.split(":")[0], 16)
            if addr >= fn_start:
                return int(lines[i + 1].split(":")[0], 16)
    raise AssertionError("call not found")


@dataclass
class _Options:
    frequency_hz: int = 99
    cache_dir: Path = Path("/nonexistent")


@dataclass
class FakeCore:
    """What ProfileBuilder reads from a ProfilerCore."""

    aggregator: Aggregator
    files: dict[int, NativeFile]
    options: _Options = field(default_factory=_Options)
    own_pid: int = -1
    started_ns: int = 1
    stopped_ns: int = 2

    def mapping_model(self, pid: int, key: int) -> Mapping:
        ref = self.files[key]
        return Mapping(file_id=ref.file_id, path=ref.path, build_id=ref.build_id)

    def container_id(self, pid: int) -> str:
        return ""

    def anonymous_name(self, pid: int, addr: int) -> str:
        return "[anonymous]"

    def stats(self) -> dict[str, int]:
        return {}


def test_builder_symbolizes_recorded_samples(build_dir: Path, tmp_path: Path) -> None:
    exe = compile_c(SRC, build_dir / "rec", "-O1", "-g", "-fno-inline")
    sym = _symbols(exe)
    fid = file_id(str(exe), "")
    key = file_id_u64(fid)
    ret_in_caller = _call_site(exe, sym["caller"], sym["leaf"])
    kallsyms = "ffffffff81000000 T do_syscall_64\nffffffff81000100 T _etext\n"
    kernel = KernelSymbols("ffffffff80000000 T _stext\n" + kallsyms)
    frames = [
        (0, 0xFFFFFFFF81000010, 0, layout.FRAME_KERNEL, 0),
        (key, sym["leaf"] + 1, 0, layout.FRAME_NATIVE, 0),
        (key, ret_in_caller, 0, layout.FRAME_NATIVE, layout.FRAME_FLAG_RETURN_ADDRESS),
    ]
    agg = Aggregator()
    hdr = layout.HEADER_STRUCT.pack(5, 42, 43, 0, 1, 2, 0, 0, 0, 0, b"worker", b"rec")
    agg.add_bytes(hdr + b"".join(layout.FRAME_STRUCT.pack(f, a, x, k, fl, 0) for f, a, x, k, fl in frames))
    err_hdr = layout.HEADER_STRUCT.pack(
        6, 42, 43, 0, 0, 1, layout.UNWIND_ERR_NO_TABLE_ENTRY, 0, 0, 0, b"worker", b"rec"
    )
    agg.add_bytes(err_hdr + layout.FRAME_STRUCT.pack(key, sym["leaf"], 0, layout.FRAME_NATIVE, 0, 0))
    core = FakeCore(agg, {key: NativeFile(fid, str(exe), str(exe), "")})
    native = NativeSymbolizer(cache_dir=tmp_path, persist=False)
    profile = ProfileBuilder(core, native=native, kernel=kernel).build()  # type: ignore[arg-type]
    lines = sorted(folded_lines(profile))
    assert lines == [
        "rec;[unwind: no table entry];leaf [rec] 1",
        "rec;caller [rec];leaf [rec];do_syscall_64_[k] 1",
    ]
    sample = next(s for s in profile.samples if s.count and len(s.stack) == 4)
    assert (sample.pid, sample.tid, sample.thread_name, sample.process_name) == (42, 43, "worker", "rec")
    caller = sample.stack[1]
    assert caller.address == ret_in_caller - 1, "return addresses are symbolized inside the call"
    assert caller.file.endswith("rec.c") and caller.line == 3

"""The two stages on synthetic input: the raw stage leaves native frames as file + ELF address (kernel, JIT,
error frames named; executable, pod uid and host resource filled), and `symbolize_profile` turns that into
the symbolized profile (inline chains, `module+0x…` for unknown addresses, the unwalkable-CPython marker
under the eval loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetprof.agent.hostinfo import host_resource
from fleetprof.agent.raw import ProcessLabels, RawProfileBuilder, python_marker
from fleetprof.output.folded import folded_lines
from fleetprof.process.container import pod_uid_from_cgroup
from fleetprof.process.fileid import file_id_u64
from fleetprof.process.tracker import ProcessInfo
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.symbolize.native import NativeFile
from fleetprof.symbolize.profile import STAT_FAILED_FILES, raw_addresses, symbolize_profile
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import Aggregator

CGROUPS = Path(__file__).resolve().parents[1] / "fixtures" / "process" / "cgroup"
POD = "0c4f9d2e-51a7-4b83-9f0e-2d6c8a1b3e5f"
FID = "12" * 16
KEY = file_id_u64(FID)
APP = Mapping(file_id=FID, path="/opt/app/bin/server", build_id="ab" * 20, start=0x400000, limit=0x500000)
KALLSYMS = "ffffffff80000000 T _stext\nffffffff81000000 T do_syscall_64\nffffffff81000100 T _etext\n"
RESOURCE: dict[str, str | int] = {"host.name": "h1", "os.version": "6.1.0-test", "host.id": "m1"}


@dataclass
class _Options:
    frequency_hz: int = 99
    cache_dir: Path = Path("/nonexistent")


@dataclass
class FakeTracker:
    """The part of ProcessTracker ProcessLabels reads."""

    infos: dict[int, ProcessInfo] = field(default_factory=dict)
    listeners: list[object] = field(default_factory=list)

    def process(self, pid: int) -> ProcessInfo | None:
        return self.infos.get(pid)

    def add_listener(self, listener: object) -> None:
        self.listeners.append(listener)


@dataclass
class FakeCore:
    """What the raw stage reads from a ProfilerCore."""

    aggregator: Aggregator
    files: dict[int, NativeFile] = field(default_factory=dict)
    options: _Options = field(default_factory=_Options)
    tracker: FakeTracker = field(default_factory=FakeTracker)
    own_pid: int = -1
    started_ns: int = 1_000
    stopped_ns: int = 3_000

    def mapping_model(self, pid: int, key: int) -> Mapping | None:
        return APP if key == KEY else None

    def container_id(self, pid: int) -> str:
        return "c" * 64 if pid == 42 else ""

    def anonymous_name(self, pid: int, addr: int) -> str:
        return "[jit]"

    def stats(self) -> dict[str, int]:
        return {"lost_samples": 3}


def _record(agg: Aggregator, pid: int, frames: list[tuple[int, int, int, int]], error: int = 0) -> None:
    """Add one sample record: frames are (file key, address, kind, flags), kernel frames first."""
    nk = sum(1 for f in frames if f[2] == layout.FRAME_KERNEL)
    complete = layout.UNWIND_COMPLETE if error == 0 else error
    hdr = layout.HEADER_STRUCT.pack(
        5, pid, pid + 1, 0, nk, len(frames) - nk, complete, 0, 0, 0, b"worker", b"srv"
    )
    agg.add_bytes(hdr + b"".join(layout.FRAME_STRUCT.pack(k, a, 0, kind, fl, 0) for k, a, kind, fl in frames))


def _info(pid: int, exe: str) -> ProcessInfo:
    return ProcessInfo(pid=pid, start_time=1, ppid=1, comm="srv", exe=exe, container_id="", mappings=())


def _raw_profile(tmp_path: Path, problem: str = "") -> Profile:
    agg = Aggregator()
    _record(
        agg,
        42,
        [
            (0, 0xFFFFFFFF81000010, layout.FRAME_KERNEL, 0),
            (KEY, 0x401000, layout.FRAME_NATIVE, 0),
            (KEY, 0x402005, layout.FRAME_NATIVE, layout.FRAME_FLAG_RETURN_ADDRESS),
            (0, 0x7F0000001000, layout.FRAME_NATIVE, 0),
            (99, 0x1234, layout.FRAME_NATIVE, 0),
        ],
    )
    _record(agg, 42, [(KEY, 0x401000, layout.FRAME_NATIVE, 0)], error=layout.UNWIND_ERR_NO_TABLE_ENTRY)
    core = FakeCore(agg)
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text((CGROUPS / "containerd_kubepods_v2.txt").read_text())
    labels = ProcessLabels(core.tracker, proc_root=str(proc))
    core.tracker.add_listener(labels)
    core.tracker.infos[42] = _info(42, "/opt/app/bin/server")
    labels.mappings_added(42, [])
    builder = RawProfileBuilder(
        core,  # type: ignore[arg-type]
        kernel=KernelSymbols(KALLSYMS),
        labels=labels,
        resource=RESOURCE,
        python_problem=(lambda pid: problem) if problem else None,
    )
    return builder.build()


def test_raw_stage_leaves_native_frames_unsymbolized(tmp_path: Path) -> None:
    profile = _raw_profile(tmp_path)
    whole = next(s for s in profile.samples if len(s.stack) > 3)
    process, unknown, jit, caller, leaf, kernel = whole.stack
    assert process == Frame(FrameKind.PROCESS, "srv")
    assert leaf == Frame(FrameKind.NATIVE, "", mapping=APP, address=0x401000)
    assert caller.address == 0x402004, "return addresses are moved inside the call"
    assert caller.is_raw and leaf.is_raw
    assert unknown == Frame(FrameKind.NATIVE, "[unknown]+0x1234", address=0x1234)
    assert jit.function == "[jit]+0x7f0000001000" and jit.mapping is not None and not jit.is_raw
    assert kernel == Frame(FrameKind.KERNEL, "do_syscall_64", address=0xFFFFFFFF81000010)
    partial = next(s for s in profile.samples if len(s.stack) == 3)
    assert partial.stack[1] == Frame(FrameKind.ERROR, "[unwind: no table entry]")
    assert (whole.executable, whole.pod_uid, whole.container_id) == ("/opt/app/bin/server", POD, "c" * 64)
    assert (whole.pid, whole.tid, whole.process_name, whole.thread_name) == (42, 43, "srv", "worker")
    assert profile.resource == RESOURCE
    assert (profile.hostname, profile.kernel_release) == ("h1", "6.1.0-test")
    assert (profile.start_time_ns, profile.duration_ns, profile.stats) == (1_000, 2_000, {"lost_samples": 3})
    assert raw_addresses(profile) == {FID: (APP.build_id, APP.path, {0x401000, 0x402004})}
    assert "server+0x401000 [server]" in next(iter(folded_lines(profile)))


def _lookup(file_id: str, build_id: str, path: str, addresses: list[int]) -> dict[int, tuple[Frame, ...]]:
    """A server-style lookup: knows 0x401000 (an inline chain), not 0x402004."""
    assert (file_id, build_id, path) == (FID, APP.build_id, APP.path)
    return {
        0x401000: (
            Frame(FrameKind.NATIVE, "outer", file="a.c", line=7, start_line=5),
            Frame(FrameKind.NATIVE, "inner", file="b.h", line=3, inlined=True, system_name="_Z5innerv"),
        )
    }


def test_symbolize_profile_names_raw_frames(tmp_path: Path) -> None:
    raw = _raw_profile(tmp_path)
    done = symbolize_profile(raw, _lookup)
    whole = next(s for s in done.samples if len(s.stack) > 3)
    names = [f.function for f in whole.stack]
    assert names == ["srv", "[unknown]+0x1234", "[jit]+0x7f0000001000", "server+0x402004", "outer", "inner",
                     "do_syscall_64"]  # fmt: skip
    outer, inner = whole.stack[4:6]
    assert (outer.mapping, outer.address, outer.inlined, outer.file, outer.line) == (
        APP,
        0x401000,
        0,
        "a.c",
        7,
    )
    assert (inner.mapping, inner.address, inner.inlined, inner.system_name) == (APP, 0x401000, 1, "_Z5innerv")
    assert whole.stack[3].mapping == APP and whole.stack[3].address == 0x402004
    assert not any(f.is_raw for s in done.samples for f in s.stack)
    assert (whole.executable, whole.pod_uid) == ("/opt/app/bin/server", POD)
    assert done.resource == raw.resource and done.stats == raw.stats
    assert any(f.is_raw for s in raw.samples for f in s.stack), "the raw profile is left as it was"


def test_failing_lookup_degrades_to_module_offsets(tmp_path: Path) -> None:
    def broken(file_id: str, build_id: str, path: str, addresses: list[int]) -> dict[int, tuple[Frame, ...]]:
        raise RuntimeError("symbol store down")

    done = symbolize_profile(_raw_profile(tmp_path), broken)
    partial = next(s for s in done.samples if len(s.stack) == 3)
    assert partial.stack[2].function == "server+0x401000"
    assert done.stats[STAT_FAILED_FILES] == 1


def _eval_lookup(
    file_id: str, build_id: str, path: str, addresses: list[int]
) -> dict[int, tuple[Frame, ...]]:
    return {0x401000: (Frame(FrameKind.NATIVE, "_PyEval_EvalFrameDefault"),)}


def test_unwalkable_python_marker_moves_under_the_eval_loop(tmp_path: Path) -> None:
    raw = _raw_profile(tmp_path, problem="CPython 3.7 is not supported")
    marker = python_marker("CPython 3.7 is not supported")
    whole = next(s for s in raw.samples if len(s.stack) > 4)
    assert whole.stack[1] == marker, "the raw stage can only put it under the root"
    done = symbolize_profile(raw, _eval_lookup)
    whole = next(s for s in done.samples if len(s.stack) > 4)
    names = [f.function for f in whole.stack]
    assert names.index(marker.function) == names.index("_PyEval_EvalFrameDefault") + 1
    none = symbolize_profile(raw, lambda *_: {})
    assert all(marker not in s.stack for s in none.samples), "no eval loop: no marker, as before the split"


def test_labels_outlive_the_process_for_one_window(tmp_path: Path) -> None:
    tracker = FakeTracker({7: _info(7, "/usr/bin/python3.12")})
    labels = ProcessLabels(tracker, proc_root=str(tmp_path))
    labels.mappings_added(7, [])
    tracker.infos.clear()
    labels.process_exited(7)
    assert labels.get(7) == ("/usr/bin/python3.12", "")
    labels.end_window()  # the window the process exited in
    assert labels.get(7) == ("/usr/bin/python3.12", "")
    labels.end_window()
    assert len(labels) == 0
    assert labels.get(7) == ("", "")


def test_labels_attach_to_the_core_tracker(tmp_path: Path) -> None:
    core = FakeCore(Aggregator())
    labels = ProcessLabels.attach(core)
    assert core.tracker.listeners == [labels]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ((CGROUPS / "containerd_kubepods_v2.txt").read_text(), POD),
        ((CGROUPS / "kubepods_cgroupfs_v1.txt").read_text(), POD),
        (
            f"0::/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/cri-containerd-{'a' * 64}.scope",
            POD,
        ),
        ((CGROUPS / "docker_v2.txt").read_text(), ""),
        (f"0::/user.slice/pod{POD}", ""),
        ("", ""),
    ],
)
def test_pod_uid_from_cgroup(text: str, expected: str) -> None:
    assert pod_uid_from_cgroup(text) == expected


def test_host_resource_from_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "proc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "etc" / "os-release").write_text('ID=debian\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n")
    resource = host_resource("node-7", root=str(tmp_path))
    assert resource["host.name"] == "node-7"
    assert resource["host.id"] == "0123456789abcdef0123456789abcdef"
    assert resource["os.description"] == "Debian GNU/Linux 12 (bookworm)"
    assert resource["host.cpu.model.name"] == "Test CPU @ 3.0GHz"
    assert resource["os.type"] == "linux"
    assert isinstance(resource["host.cpu.count"], int) and resource["host.cpu.count"] > 0
    assert "fleetprof.agent.version" in resource and "host.arch" in resource
    bare = host_resource(root=str(tmp_path / "nothing"))
    assert "host.id" not in bare and "host.cpu.model.name" not in bare and bare["host.name"]


def test_sample_defaults_keep_old_constructors() -> None:
    sample = Sample(stack=(), pid=1, tid=1, process_name="p", thread_name="t")
    assert (sample.executable, sample.pod_uid) == ("", "")
    assert Profile(samples=[], frequency_hz=1, start_time_ns=0, duration_ns=0).resource == {}


def test_php_and_ruby_markers_move_under_their_vm_loops() -> None:
    """An unwalkable PHP or Ruby engine's error frame goes under that engine's VM loop, like CPython's."""
    from fleetprof.symbolize.profile import _place_python_marker

    def native(name: str) -> Frame:
        return Frame(FrameKind.NATIVE, name)

    php = Frame(FrameKind.ERROR, "[unwind: php: PHP 9.9 has no struct layout (covered: 7.4, 8.0-8.4)]")
    ruby = Frame(FrameKind.ERROR, "[unwind: ruby: Ruby 3.9 has no struct layout (covered: 3.1)]")
    root = Frame(FrameKind.PROCESS, "php")
    stack = [root, php, native("_start"), native("zend_execute"), native("execute_ex"), native("zif_usleep")]
    _place_python_marker(stack)
    assert [f.function for f in stack] == [
        "php",
        "_start",
        "zend_execute",
        "execute_ex",
        php.function,
        "zif_usleep",
    ]
    stack = [
        root,
        ruby,
        native("_start"),
        native("ruby_run_node"),
        native("rb_vm_exec"),
        native("rb_ary_sort"),
    ]
    _place_python_marker(stack)
    assert stack.index(ruby) == 4 and stack[3].function == "rb_vm_exec"
    outside = [root, ruby, native("_start"), native("main")]
    _place_python_marker(outside)
    assert ruby not in outside, "a stack that never enters the VM loop gets no marker"

"""Each output format of a real `fleetprof record` run: the folded contract, pprof through the protobuf schema
with the right build ids, speedscope against its schema, the self-contained HTML flame graph (its embedded
call tree decoded), and the OTLP request through opentelemetry-proto: each carries the program's whole
chains."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from zoo.build import (
    FP_FLAGS,
    ZOO_DIR,
    Frame,
    Stack,
    ZooError,
    build_c,
    build_ids,
    clock_path,
    exit_path,
    fn,
    judge,
    load_pprof,
    main_root,
    parse_folded,
    parse_speedscope,
    pprof_stacks,
    record,
    split_folded,
)

from fleetprof import __version__
from fleetprof.output.proto import profile_pb2
from fleetprof.profile.model import FrameKind

EXE = "zoo_fp"
SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "output" / "speedscope-file-format.schema.json"
MIN_SHARE = 0.99
KERNEL_SUFFIX = "_[k]"
BARE_ADDRESS = re.compile(r"(\[unknown\]\+)?0x[0-9a-f]+")
HTML_DATA = re.compile(r'<script type="application/json" id="fg-data">(.*?)</script>', re.DOTALL)
KERNEL_MAPPING = "[kernel.kallsyms]"


@pytest.fixture(scope="module")
def exe(build_dir: Path) -> Path:
    """zoo/fp_chain.c with frame pointers."""
    try:
        return build_c(EXE, ["fp_chain.c"], build_dir, FP_FLAGS)
    except ZooError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def outputs(exe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One recording per format, named by suffix so `--output` picks the format."""
    out_dir = tmp_path_factory.mktemp("formats")
    cache = tmp_path_factory.mktemp("cache")
    files = {
        "folded": out_dir / "p.folded",
        "pprof": out_dir / "p.pb.gz",
        "speedscope": out_dir / "p.speedscope.json",
        "html": out_dir / "p.html",
        "otlp": out_dir / "p.otlp",
    }
    for fmt, path in files.items():
        run = record(["--", str(exe), "1"], path, cache_dir=cache)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        assert f"({fmt})" in run.stderr, "the suffix chose the format"
    return files


def chains() -> list[tuple]:
    """fp_chain.c's paths."""
    root = main_root(EXE)
    return [
        (*root, fn("outer", EXE), fn("middle", EXE), fn("inner", EXE), fn("hot", EXE)),
        clock_path(root, EXE),
        exit_path(EXE),
    ]


def _source_line(pattern: str) -> int:
    for number, line in enumerate((ZOO_DIR / "fp_chain.c").read_text().splitlines(), 1):
        if pattern in line:
            return number
    raise AssertionError(pattern)


def test_folded_follows_the_contract(outputs: dict[str, Path]) -> None:
    """One line per unique stack, `;`-joined root first, a space and a count; process name first; native
    frames `name [module]`, kernel frames `name_[k]` leafward of user frames; a whole stack (no error
    frame) names no bare address."""
    lines = outputs["folded"].read_text().splitlines()
    assert lines
    seen: set[str] = set()
    for line in lines:
        assert re.fullmatch(r"\S.* [1-9]\d*", line), line
        frames, _ = split_folded(line)
        stack = ";".join(frames)
        assert stack not in seen, f"stack listed twice: {stack}"
        seen.add(stack)
        assert all(frames), line
        process, rest = frames[0], frames[1:]
        assert " [" not in process and not process.endswith(KERNEL_SUFFIX), line
        kinds = []
        for frame in rest:
            if frame.endswith(KERNEL_SUFFIX):
                kinds.append("k")
            elif frame.startswith("[unwind:"):
                kinds.append("e")
            else:
                assert re.fullmatch(r".+ \[[^\[\]]+\]|.+ \[\[[^\[\]]+\]\]", frame), f"no [module]: {frame!r}"
                name = frame.rpartition(" [")[0]
                whole = "e" not in kinds  # an error frame sits before every other frame of its stack
                assert not (whole and BARE_ADDRESS.fullmatch(name)), f"bare address {frame!r} in {line}"
                kinds.append("u")
        assert "".join(kinds) == "".join(sorted(kinds, key="eu k".index)), f"frame order: {line}"
    stacks = parse_folded(outputs["folded"].read_text())
    assert {s.process for s in stacks} <= {EXE, "fleetprof"}, "only the command's processes"
    got = judge(stacks, chains(), process=EXE)
    assert got.selected > 300 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"


def test_pprof_round_trips_and_names_build_ids(outputs: dict[str, Path], exe: Path) -> None:
    """The pprof file parses with profile.proto, re-encodes to the same message, references only what it
    defines, labels samples, gives DWARF start lines, and names each file's GNU build id."""
    prof = load_pprof(outputs["pprof"])
    assert isinstance(prof, profile_pb2.Profile)
    again = profile_pb2.Profile()
    again.ParseFromString(prof.SerializeToString())
    assert again == prof
    st = prof.string_table
    assert st[0] == ""
    assert ("samples", "count") in [(st[t.type], st[t.unit]) for t in prof.sample_type]
    assert (st[prof.period_type.type], st[prof.period_type.unit]) == ("cpu", "nanoseconds")
    assert prof.period == 1_000_000_000 // 999
    mappings = {m.id: m for m in prof.mapping}
    functions = {f.id: f for f in prof.function}
    locations = {loc.id: loc for loc in prof.location}
    assert len(mappings) == len(prof.mapping) and 0 not in mappings
    for f in prof.function:
        assert max(f.name, f.system_name, f.filename) < len(st)
    for loc in prof.location:
        assert loc.mapping_id == 0 or loc.mapping_id in mappings
        assert all(line.function_id in functions for line in loc.line)
    for s in prof.sample:
        assert len(s.value) == len(prof.sample_type)
        assert all(lid in locations for lid in s.location_id)
        labels = {st[lb.key] for lb in s.label}
        assert {"pid", "tid", "thread_name"} <= labels, labels
    on_disk = [m for m in prof.mapping if st[m.filename].startswith("/") and os.path.exists(st[m.filename])]
    exe_maps = [m for m in on_disk if st[m.filename] == str(exe)]
    assert exe_maps, [st[m.filename] for m in prof.mapping]
    assert any(os.path.basename(st[m.filename]) == "libc.so.6" for m in on_disk)
    for m in on_disk:
        expected = build_ids(Path(st[m.filename]))
        assert expected and st[m.build_id] == expected, st[m.filename]
    by_name = {st[f.name]: f for f in prof.function}
    assert by_name["hot"].start_line == _source_line("unsigned long hot(")
    assert st[by_name["hot"].filename].endswith("fp_chain.c")
    got = judge(pprof_stacks(prof), chains(), process=EXE)
    assert got.selected > 300 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"


def test_speedscope_validates(outputs: dict[str, Path]) -> None:
    """speedscope output validates against the schema and carries the same whole chains."""
    doc = json.loads(outputs["speedscope"].read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    names = [p["name"] for p in doc["profiles"]]
    assert any(re.fullmatch(rf"{EXE} \(\d+\)", n) for n in names), names
    got = judge(parse_speedscope(doc), chains(), process=EXE)
    assert got.selected > 300 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"


def html_stacks(payload: dict[str, Any]) -> list[Stack]:
    """The stacks of the page's call tree (strings, name, parent, self, kind per node; parents first), as
    the page's script reads it: a node's path from the root is a stack, its self count the samples."""
    strings, names, parents, kinds = payload["strings"], payload["name"], payload["parent"], payload["kind"]
    paths: list[tuple[tuple[str, int], ...]] = []
    out = []
    for i, parent in enumerate(parents):
        assert -1 <= parent < i, "parents come before their children"
        path = () if parent < 0 else (*paths[parent], (strings[names[i]], kinds[i]))
        paths.append(path)
        if payload["self"][i] and path:
            (process, kind), *frames = path
            assert kind == FrameKind.PROCESS, path
            out.append(Stack(process, tuple(Frame.parse(name) for name, _ in frames), payload["self"][i]))
    return out


def test_html_is_self_contained_and_embeds_the_stacks(outputs: dict[str, Path]) -> None:
    """The HTML flame graph loads nothing from the network, and the call tree it embeds holds the program's
    whole chains with the recording's metadata."""
    text = outputs["html"].read_text()
    assert text.lstrip().lower().startswith("<!doctype html")
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']?https?:""", text, re.IGNORECASE)
    (data,) = HTML_DATA.findall(text)
    payload = json.loads(data)
    assert payload["meta"]["frequency_hz"] == 999
    assert payload["meta"]["hostname"] == socket.gethostname()
    stacks = html_stacks(payload)
    assert payload["meta"]["processes"] == 1, "one process: the command (exec keeps the forked pid)"
    assert {s.process for s in stacks} <= {EXE, "fleetprof"}, "only the command's processes"
    assert sum(payload["self"]) == sum(s.count for s in stacks)
    got = judge(stacks, chains(), process=EXE)
    assert got.selected > 300 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"


def _any(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpView:
    """One ExportProfilesServiceRequest with its dictionary indexes resolved."""

    def __init__(self, path: Path) -> None:
        self.request = ExportProfilesServiceRequest()
        self.request.ParseFromString(path.read_bytes())
        self.d = self.request.dictionary
        self.s = self.d.string_table

    def attrs(self, indices: Any) -> dict[str, Any]:
        """Attribute table entries as a dict."""
        out = {}
        for i in indices:
            kv = self.d.attribute_table[i]
            out[self.s[kv.key_strindex]] = _any(kv.value)
        return out

    def frames(self, location_index: int) -> list[Frame]:
        """A location's frames, outermost inline first, with the frame type it declares checked."""
        loc = self.d.location_table[location_index]
        mapping = self.d.mapping_table[loc.mapping_index]
        module = os.path.basename(self.s[mapping.filename_strindex]) if loc.mapping_index else ""
        frame_type = self.attrs(loc.attribute_indices).get("profile.frame.type")
        out = []
        for line in reversed(loc.lines):  # innermost inline first on the wire
            name = self.s[self.d.function_table[line.function_index].name_strindex]
            if module == KERNEL_MAPPING:
                assert frame_type == "kernel", name
                out.append(Frame(name, "", "kernel"))
            elif name.startswith("[unwind:"):
                out.append(Frame(name, "", "error"))
            else:
                assert frame_type == "native", name
                out.append(Frame(name, module, "native"))
        return out


def test_otlp_request_carries_chains_and_attributes(outputs: dict[str, Path], exe: Path) -> None:
    """The OTLP file is one ExportProfilesServiceRequest: a resource per process named and numbered, the
    scope and sample types set, sample thread attributes and timestamps inside the profile's window, the
    executable's mapping with its GNU build id, and the program's whole chains."""
    path = outputs["otlp"]
    view = OtlpView(path)
    written_ns = path.stat().st_mtime_ns
    stacks = []
    pids = set()
    for rp in view.request.resource_profiles:
        resource = {kv.key: _any(kv.value) for kv in rp.resource.attributes}
        process, pid = resource["process.title"], resource["process.pid"]
        assert resource["host.name"] == socket.gethostname()
        assert resource["host.cpu.count"] == os.cpu_count() and resource["os.type"] == "linux"
        if process == EXE:  # the real executable, not the comm
            assert resource["process.executable.path"] == os.path.realpath(exe), resource
            assert resource["process.executable.name"] == os.path.basename(os.path.realpath(exe)), resource
        assert process in {EXE, "fleetprof"}, "only the command's processes"
        assert pid not in pids or process != EXE, "one resource per process"
        pids.add(pid)
        (scope,) = rp.scope_profiles
        assert (scope.scope.name, scope.scope.version) == ("fleetprof", __version__)
        (prof,) = scope.profiles
        assert prof.period == 1_000_000_000 // 999
        assert (view.s[prof.sample_type.type_strindex], view.s[prof.sample_type.unit_strindex]) == (
            "samples",
            "count",
        )
        assert (view.s[prof.period_type.type_strindex], view.s[prof.period_type.unit_strindex]) == (
            "cpu",
            "nanoseconds",
        )
        assert 0 < prof.time_unix_nano < prof.time_unix_nano + prof.duration_nano <= written_ns
        for sample in prof.samples:
            attrs = view.attrs(sample.attribute_indices)
            if process == EXE:
                assert attrs["thread.id"] == pid and attrs["thread.name"] == EXE, attrs
            stamps = list(sample.timestamps_unix_nano)
            assert stamps == sorted(stamps)
            assert all(prof.time_unix_nano <= t <= prof.time_unix_nano + prof.duration_nano for t in stamps)
            count = len(stamps) or sample.values[0]
            locations = view.d.stack_table[sample.stack_index].location_indices
            frames = tuple(f for i in reversed(locations) for f in view.frames(i))  # leaf first on the wire
            stacks.append(Stack(process, frames, count, pid))
    assert len(pids) == 1, "one process: the command (exec keeps the forked pid)"
    exe_maps = [m for m in view.d.mapping_table if view.s[m.filename_strindex] == str(exe)]
    assert exe_maps
    for mapping in exe_maps:
        attrs = view.attrs(mapping.attribute_indices)
        assert attrs["process.executable.build_id.gnu"] == build_ids(exe)
        assert re.fullmatch(r"[0-9a-f]{32}", attrs["fleetprof.file_id"]), attrs
        assert mapping.memory_start < mapping.memory_limit
    got = judge(stacks, chains(), process=EXE)
    assert got.selected > 300 and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"

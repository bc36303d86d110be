"""JIT frames named from perf maps: a real Node.js run with `--perf-basic-prof` (interpreted frames given
native stacks, no inlining) comes out with its JavaScript functions, in their calling order, under node's
own native start-up frames. The node run is a copy whose postmortem metadata lacks an entry fleetprof's V8
walker needs: its stacks keep the native frames, one `[unwind: v8: …]` frame says why, and the perf map
names the JIT code (a covered node's frames are named by the walker: tests/bpf/test_node_stacks.py)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from zoo.build import Stack, load_stacks, record

SCRIPT = """\
"use strict";
function zooLeaf(n) { let s = 0; for (let i = 0; i < n; i++) s = (s * 31 + i) % 1000003; return s; }
function zooMiddle(n) { return zooLeaf(n) + 1; }
function zooOuter(seconds) {
  const start = process.cpuUsage();
  let acc = 0;
  for (let used = 0; used < seconds * 1e6; ) {
    acc += zooMiddle(20000);
    const u = process.cpuUsage(start);
    used = u.user + u.system;
  }
  return acc;
}
console.log(zooOuter(Number(process.argv[2])));
"""
NODE_FLAGS = ("--perf-basic-prof", "--interpreted-frames-native-stack", "--no-turbo-inlining")
JIT_MODULE = "jit"
# V8 names code `JS:<tier><function> <script>:<line>:<column>`; the tier mark is ~ (interpreted), ^ or *.
JS_NAME = re.compile(r"JS:[~^*+]?(?P<function>\S*) (?P<script>\S+):(?P<line>\d+):(?P<column>\d+)")
MIN_SHARE = 0.99
FP_FUNCTION = b"v8dbg_off_fp_function\0"


def js_frames(stack: Stack, script: Path) -> list[str]:
    """The names of `script`'s JavaScript functions on the stack, root first ("" for its top level)."""
    out = []
    for frame in stack.user:
        match = JS_NAME.fullmatch(frame.name)
        if match and match["script"] == str(script):
            assert frame.module == JIT_MODULE, frame
            out.append(match["function"])
    return out


def declared_at(script: Path, function: str) -> tuple[int, int]:
    """(line, column) where V8 says `function` starts: the `(` of its parameter list, 1-based."""
    for number, line in enumerate(script.read_text().splitlines(), 1):
        column = line.find(f"function {function}(")
        if column >= 0:
            return number, column + len(f"function {function}(")
    raise AssertionError(function)


@pytest.fixture(scope="module")
def node_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Stack], Path]]:
    """One recording of the script (its loop runs for 1 s of CPU time, however busy the machine); the perf
    maps node leaves in /tmp are removed afterwards."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (make setup installs it)")
    work = tmp_path_factory.mktemp("jit")
    node = str(_uncovered_copy(Path(node).resolve(), work / "node"))
    script = work / "hot.js"
    script.write_text(SCRIPT)
    out = work / "node.pb.gz"
    cache = tmp_path_factory.mktemp("cache")
    # cwd: V8 writes an isolate-*-v8.log there under --perf-basic-prof
    run = record(["--", node, *NODE_FLAGS, str(script), "1"], out, cwd=work, cache_dir=cache)
    stacks = load_stacks(out) if out.exists() else []
    try:
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        yield stacks, script
    finally:
        for pid in {s.pid for s in stacks}:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/tmp/perf-{pid}.map")


def _uncovered_copy(node: Path, copy: Path) -> Path:
    """A copy of node whose postmortem metadata lacks `v8dbg_off_fp_function` (renamed in its string
    tables; V8 itself never reads it): a V8 fleetprof's walker can't lay out."""
    data = node.read_bytes()
    assert FP_FUNCTION in data, f"{node} has no {FP_FUNCTION!r}"
    copy.write_bytes(data.replace(FP_FUNCTION, FP_FUNCTION[:-2] + b"X\0"))
    copy.chmod(0o755)
    return copy


def test_uncovered_v8_says_why_under_its_entry(node_run: tuple[list[Stack], Path]) -> None:
    """The copy's stacks carry one `[unwind: v8: … lacks v8dbg_off_fp_function]` frame under V8's entry
    trampoline, and no frame the V8 walker named."""
    stacks, script = node_run
    js = [s for s in stacks if s.process == "node" and js_frames(s, script)]
    marked = [s for s in js if any(f.name.startswith("[unwind: v8: V8 ") for f in s.user)]
    assert js and len(marked) == len(js), f"{len(marked)} of {len(js)} JavaScript stacks marked"
    names = [f.name for f in marked[0].user]
    marker = next(i for i, n in enumerate(names) if n.startswith("[unwind: v8:"))
    assert names[marker - 1].startswith("Builtins_JSEntry"), names
    assert names[marker].endswith(": postmortem metadata lacks v8dbg_off_fp_function]"), names[marker]


def test_js_functions_are_named_with_their_source_position(node_run: tuple[list[Stack], Path]) -> None:
    """Each of the script's functions appears, named as V8 wrote it to the perf map: name, script path,
    and the line and column where it is declared."""
    stacks, script = node_run
    seen: dict[str, set[tuple[int, int]]] = {}
    for stack in stacks:
        for frame in stack.user:
            match = JS_NAME.fullmatch(frame.name)
            if match and match["script"] == str(script):
                seen.setdefault(match["function"], set()).add((int(match["line"]), int(match["column"])))
    for function in ("zooOuter", "zooMiddle", "zooLeaf"):
        assert seen.get(function) == {declared_at(script, function)}, seen
    assert seen[""] == {(1, 1)}, "the script's top level"


def test_js_calls_are_in_order_under_node(node_run: tuple[list[Stack], Path]) -> None:
    """Samples in zooLeaf, the hot loop (1 s of CPU; node's start-up takes a fraction of that), are most of
    the run, and nearly all show the whole JavaScript chain
    (top level -> zooOuter -> zooMiddle -> zooLeaf) under node's `_start`, with no error frame but the
    one saying why V8's frames were not walked."""
    stacks, script = node_run
    node = [s for s in stacks if s.process == "node"]
    in_leaf = [s for s in node if js_frames(s, script)[-1:] == ["zooLeaf"]]
    whole = [
        s
        for s in in_leaf
        if not any(f.kind == "error" and not f.name.startswith("[unwind: v8: ") for f in s.frames)
        and js_frames(s, script) == ["", "zooOuter", "zooMiddle", "zooLeaf"]
        and (s.user[0].name, s.user[0].module) == ("_start", "node")
    ]
    total, leaf, good = (sum(s.count for s in group) for group in (node, in_leaf, whole))
    assert leaf >= total // 2, f"{leaf} of {total} samples in zooLeaf"
    assert good >= MIN_SHARE * leaf, f"{good} of {leaf} zooLeaf samples whole"

"""`fleetprof record -- node busy.js`: JavaScript frames named in the kernel's walk of V8's frames (the
JSFunction in each frame, its SharedFunctionInfo, bytecode offset or code and pc), interpreted, baseline and
TurboFan-compiled alike, with the functions TurboFan inlined expanded, over node's native root; JSON.parse's
C++ parser sits between the function calling it and the reviver it calls back. No flag, no restart. The chain
and tier tests run on every node here: the system's (/usr/bin/node, Node.js 20) and nodejs.org's builds
`make setup` installs with npm (tools/npm: Node.js 18, 22 and 24); a node whose V8 has no layout fails
them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from test_python_common import Recording, Stack, assert_share, call_lines, judge, record

from fleetprof.interpreters.v8.discovery import V8Binary, inspect_v8_binary

SCRIPT = Path(__file__).resolve().parent / "nodescripts" / "busy.js"
NODE = shutil.which("node")
NPM_NODES = Path(__file__).resolve().parents[2] / "tools" / "npm" / "node_modules"


def _nodes() -> list[Path]:
    """Every node here: the one on PATH first, then tools/npm's (node18, node22, node24: nodejs.org's)."""
    found = [Path(NODE)] if NODE else []
    return found + sorted(NPM_NODES.glob("node[0-9]*/bin/node"))


def _node_id(node: Path) -> str:
    return node.parents[1].name if node.parents[1].parent == NPM_NODES else "system"


NODES = _nodes()

pytestmark = pytest.mark.skipif(not NODES, reason="node is not installed (make setup installs it)")

LINES = call_lines(SCRIPT)
CHAIN = [
    ("(anonymous)", LINES["run"]),  # the CommonJS module's function
    ("run", LINES["total"]),
    ("total", LINES["line"]),
    ("line", LINES["price-first"]),
    ("pricing.price", LINES["price"]),
    ("pricing.price", LINES["price"]),
    ("pricing.price", LINES["hot"]),
]
HOT_LINES = {LINES["loop"], LINES["parse"]}
REVIVER_LINES = {LINES["reviver-body"]}


@cache
def _v8_options(node: Path) -> frozenset[str]:
    """The V8 flags `node` takes (`--v8-options`): the tiers' flags differ by version."""
    out = subprocess.run([str(node), "--v8-options"], capture_output=True, text=True, timeout=30).stdout
    return frozenset(re.findall(r"^\s+--([a-z0-9-]+)", out, re.M))


def _covered(node: Path) -> V8Binary:
    """The node's V8 as discovery describes it: a V8 without a layout fails the test, it does not skip."""
    found = inspect_v8_binary(node.resolve())
    assert isinstance(found, V8Binary), f"{node}: {found}"
    return found


@cache
def _recorded(node: Path) -> Recording:
    return record(["--", str(node), str(SCRIPT), "3"], f"node-busy-{_node_id(node)}")


def _starts() -> dict[str, int]:
    """Each function's first line: where a frame is placed while V8 has no positions for its bytecode
    yet (Node.js collects them lazily, when a function is optimized or a stack trace is taken)."""
    text = SCRIPT.read_text().splitlines()
    out = {"(anonymous)": 1}
    for name, marker in (
        ("run", "function run("),
        ("total", "total(rounds) {"),
        ("line", "const line ="),
        ("pricing.price", "pricing.price = function"),
        ("hot", "function hot("),
        ("reviver", "function reviver("),
    ):
        out[name] = next(i for i, t in enumerate(text, 1) if marker in t)
    return out


def _line_ok(name: str, line: int, expected: set[int], fallbacks: Counter[str]) -> bool:
    if line in expected:
        return True
    if line == _starts()[name]:
        fallbacks[name] += 1
        return True
    return False


def _checker(fallbacks: Counter[str]):
    def check(stack: Stack) -> str:
        js = [f for f in stack.frames if f.where.endswith("busy.js")]
        names = [f.name for f in js]
        tail = names[len(CHAIN) :]
        if (
            names[: len(CHAIN)] != [n for n, _ in CHAIN]
            or tail[:1] != ["hot"]
            or tail[1:] not in ([], ["reviver"])
        ):
            return "javascript frames " + " > ".join(names)
        for frame, (name, line) in zip(js, CHAIN, strict=False):
            if not _line_ok(name, frame.line, {line}, fallbacks):
                return f"{name} at line {frame.line}, expected {line}"
        hot = js[len(CHAIN)]
        if not _line_ok(
            "hot", hot.line, HOT_LINES | ({LINES["parse"]} if len(tail) > 1 else set()), fallbacks
        ):
            return f"hot at line {hot.line}"
        root = [f.name for f in stack.frames[: stack.frames.index(js[0])]]
        if not root or root[0] != "_start" or "node::Start(int, char**)" not in root:
            return "native root " + " > ".join(root[:6])
        if len(tail) > 1:
            between = [f.name for f in stack.frames[stack.frames.index(hot) + 1 : stack.frames.index(js[-1])]]
            if not any("JsonParse" in name for name in between):
                return "between hot and the reviver: " + " > ".join(between)
            if not _line_ok("reviver", js[-1].line, REVIVER_LINES, fallbacks):
                return f"reviver at line {js[-1].line}"
        return ""

    return check


@pytest.mark.parametrize("node", NODES, ids=[_node_id(node) for node in NODES])
def test_node_chain_is_whole_with_lines(node: Path) -> None:
    """>= 99 % of the samples in hot read (module) > run > total > line > pricing.price x3 > hot over
    _start..node::Start, each caller at the line of its call (or, while V8 has no positions for a
    function's bytecode yet, its first line: at most a fifth of them); the reviver JSON.parse calls back
    sits above V8's C++ JSON code; the inlined functions of optimized code are expanded. On every node."""
    binary = _covered(node)
    run = _recorded(node)
    under = [s for s in run.stacks if any(f.name == "hot" and f.where.endswith("busy.js") for f in s.frames)]
    fallbacks: Counter[str] = Counter()
    verdict = judge(under, _checker(fallbacks))
    version = ".".join(map(str, binary.version))
    print(f"{_node_id(node)} (V8 {version}): whole chain {verdict.summary().splitlines()[0]}")
    assert_share(verdict, run, at_least=200)
    total = sum(s.count for s in under)
    placed = sum(fallbacks.values())
    assert placed <= total * len(CHAIN) / 5, (fallbacks, total)
    in_reviver = sum(s.count for s in under if any(f.name == "reviver" for f in s.frames))
    assert in_reviver >= 10, run.describe()
    assert run.stats.get("v8_named", 0) >= len(CHAIN), run.describe()


# Each V8 tier alone (flags of the program under test, to pin its tier; fleetprof needs none), with source
# positions generated up front so every frame has its exact line: interpreted bytecode (Ignition), baseline
# code (Sparkplug: pc -> bytecode offset by its offset table), Maglev's optimized code.
TIERS = {
    "ignition": ["--no-sparkplug", "--no-maglev", "--no-turbofan"],
    "sparkplug": ["--sparkplug", "--always-sparkplug", "--no-maglev", "--no-turbofan"],
    "maglev": ["--maglev", "--no-turbofan"],
}
EAGER_POSITIONS = "--no-enable-lazy-source-positions"


def _tier_flags(node: Path, tier: str) -> list[str]:
    """The tier's flags as `node`'s V8 spells them: before 11.x TurboFan is `--opt` and there is no Maglev
    (V8 10.2: a Maglev tier is skipped, the others run)."""
    options = _v8_options(node)
    if tier == "maglev" and "maglev" not in options:
        pytest.skip(f"{_node_id(node)}: this V8 has no Maglev")
    flags = [flag for flag in TIERS[tier] if flag != "--no-maglev" or "maglev" in options]
    return [("--no-opt" if flag == "--no-turbofan" and "turbofan" not in options else flag) for flag in flags]


@pytest.mark.parametrize("node", NODES, ids=[_node_id(node) for node in NODES])
@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_gives_the_chain_with_exact_lines(tier: str, node: Path) -> None:
    """With the program held to one tier, >= 99 % of the samples in hot are the whole chain, and every caller
    is at the exact line of its call (the positions are there: no first-line placement). Only the innermost
    function may show its first line: V8 places a frame still in its entry sequence there (hot and reviver
    are entered hundreds of times a second). On every node."""
    _covered(node)
    flags = _tier_flags(node, tier)
    run = record(
        ["--", str(node), EAGER_POSITIONS, *flags, str(SCRIPT), "2"], f"node-{tier}-{_node_id(node)}"
    )
    under = [s for s in run.stacks if any(f.name == "hot" and f.where.endswith("busy.js") for f in s.frames)]
    fallbacks: Counter[str] = Counter()
    verdict = judge(under, _checker(fallbacks))
    print(f"{_node_id(node)} {tier}: whole chain {verdict.summary().splitlines()[0]}")
    assert_share(verdict, run, at_least=150)
    assert set(fallbacks) <= {"hot", "reviver"}, fallbacks
    assert sum(fallbacks.values()) <= sum(s.count for s in under) / 3, fallbacks


SPLIT = Path(__file__).resolve().parent / "nodescripts" / "split.js"


def _shares(counts: Counter[str]) -> float:
    """heavy's share of the work: V8's own profiler often leaves spinHeavy inlined into heavy: both count."""
    heavy = counts["heavy"] + counts["spinHeavy"]
    return heavy / max(1, heavy + counts["light"] + counts["spinLight"])


def test_time_split_agrees_with_cpu_prof(tmp_path: Path) -> None:
    """The same program under fleetprof and under node's own --cpu-prof: heavy (through spinHeavy) does
    three quarters of the loop work by construction; fleetprof gives it 75 % +-7, --cpu-prof within 15
    points of fleetprof. (The system's node only.)"""
    if NODE is None:
        pytest.skip("node is not on PATH (make setup installs it)")
    subprocess.run(
        [NODE, "--cpu-prof", "--cpu-prof-dir", str(tmp_path), str(SPLIT), "2"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    profile = json.loads(next(tmp_path.glob("*.cpuprofile")).read_text())
    peer: Counter[str] = Counter()
    for node in profile["nodes"]:
        if node["callFrame"]["url"].endswith("split.js"):
            peer[node["callFrame"]["functionName"]] += node.get("hitCount", 0)
    run = record(["--", NODE, str(SPLIT), "2"], "node-split")
    ours: Counter[str] = Counter()
    for stack in run.stacks:
        mine = [f.name for f in stack.frames if f.where.endswith("split.js")]
        if mine:
            ours[mine[-1]] += stack.count
    assert sum(peer[n] for n in ("heavy", "spinHeavy", "light", "spinLight")) >= 200, peer
    assert ours["spinHeavy"] + ours["spinLight"] >= 300, ours  # fleetprof expands inlined functions
    assert abs(_shares(ours) - 0.75) <= 0.07, (ours, peer)
    assert abs(_shares(ours) - _shares(peer)) <= 0.15, (ours, peer)

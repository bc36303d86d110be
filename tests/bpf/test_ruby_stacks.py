"""`fleetprof record -- ruby3.1 busy.rb`: Ruby frames walked in the kernel from the thread's execution
context (libruby's thread-local `ruby_current_ec`, reached through the thread's fs base), in place of the
rb_vm_exec frame that runs them, over the interpreter's native root; a block called back from Array#sort's C
code sits above rb_ary_sort's native frames."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from late_libraries import assert_late_chain, build_libraries
from test_python_common import Recording, Stack, assert_share, call_lines, judge, record, work_dir

SCRIPT = Path(__file__).resolve().parent / "rubyscripts" / "busy.rb"
RUBY = shutil.which("ruby3.1") or shutil.which("ruby")

pytestmark = pytest.mark.skipif(RUBY is None, reason="ruby3.1 is not installed (make setup installs it)")


LINES = call_lines(SCRIPT)
HOT_BODY = set(range(LINES["sort"] - 7, LINES["sort"] + 2))
EXPECTED = [
    ("<main>", {LINES["run"]}),
    ("Object#run", {LINES["total"]}),
    ("Shop::Cart#total", {LINES["line"]}),
    ("Shop::Cart#line", {LINES["price-first"]}),
    ("Pricing.price", {LINES["price"]}),
    ("Pricing.price", {LINES["price"]}),
    ("Pricing.price", {LINES["hot"]}),
    ("Pricing.hot", HOT_BODY),
]
BLOCK = ("block in Pricing.hot", {LINES["sort"]})


@cache
def _recorded() -> Recording:
    assert RUBY is not None
    return record(["--", RUBY, str(SCRIPT), "2"], "ruby-busy")


def _check(stack: Stack) -> str:
    """Why a stack under Pricing.hot is not the whole chain with its lines, "" when it is."""
    at = [i for i, f in enumerate(stack.frames) if f.where.endswith("busy.rb")]
    got = [(stack.frames[i].name, stack.frames[i].line) for i in at]
    in_block = bool(got) and got[-1][0] == BLOCK[0]
    expected = [*EXPECTED, BLOCK] if in_block else EXPECTED
    if [name for name, _ in got] != [name for name, _ in expected]:
        return "ruby frames " + " > ".join(name for name, _ in got)
    for (name, line), (_, lines) in zip(got, expected, strict=True):
        if line not in lines:
            return f"{name} at line {line}, expected one of {sorted(lines)}"
    if at[: len(EXPECTED)] != list(range(at[0], at[0] + len(EXPECTED))):
        return "native frames between Ruby frames of one VM loop"
    root = [f.name for f in stack.frames[: at[0]]]
    if not root or root[0] != "_start" or "ruby_run_node" not in root:
        return "native root " + " > ".join(root)
    if in_block:
        between = [f.name for f in stack.frames[at[-2] + 1 : at[-1]]]
        if between[:1] != ["Array#sort"] or "rb_ary_sort" not in between:
            return "between hot and its block: " + " > ".join(between)
    return ""


def test_ruby_chain_is_whole_with_lines() -> None:
    """>= 99 % of the samples under Pricing.hot read <main> > Object#run > Shop::Cart#total > #line >
    Pricing.price x3 > Pricing.hot, each caller at the line of its call, over _start..ruby_run_node; the
    block Array#sort calls back sits above Array#sort and rb_ary_sort; the loop and the block both run."""
    run = _recorded()
    under = [
        s
        for s in run.stacks
        if any(f.name == "Pricing.hot" and f.where.endswith("busy.rb") for f in s.frames)
    ]
    assert_share(judge(under, _check), run, at_least=300)
    in_block = sum(s.count for s in under if any(f.name == BLOCK[0] for f in s.frames))
    in_loop = sum(s.count for s in under if not any(f.name == "Array#sort" for f in s.frames))
    assert in_block >= 20 and in_loop >= 100, f"{in_block} samples in the block, {in_loop} in the loop"
    assert run.stats.get("ruby_named", 0) >= len(EXPECTED), run.describe()


LATE = Path(__file__).resolve().parent / "rubyscripts" / "late.rb"


def test_first_samples_in_a_new_library_keep_their_ruby_frames() -> None:
    """Ruby calls, through Fiddle, into libraries it loads mid-run: the samples that waited for a new
    library's table (finished in userspace) still read <main> > Object#run > block > Loader.call >
    Object#spin over the native root."""
    assert RUBY is not None
    libs = [str(p) for p in build_libraries(work_dir() / "late-ruby", 5)]
    run = record(["--", RUBY, str(LATE), "0.3", *libs], "ruby-late")
    lines = call_lines(LATE)
    expected = [
        ("<main>", lines["run"]),
        ("Object#run", lines["Loader.call"]),
        ("block in Object#run", lines["Loader.call"]),
        ("Loader.call", lines["spin"]),
        ("Object#spin", lines["call"]),
    ]

    assert_late_chain(run, LATE, expected, "ruby")


SPLIT = Path(__file__).resolve().parent / "rubyscripts" / "split.rb"


def test_time_split_agrees_with_stackprof(tmp_path: Path) -> None:
    """The same run sampled by fleetprof and by StackProf (Ruby's own sampling profiler, in the process):
    Object#heavy does three quarters of the work by construction: fleetprof gives it 75 % +-7, and
    StackProf within 20 points."""
    assert RUBY is not None
    if subprocess.run([RUBY, "-e", "require 'stackprof'"], capture_output=True).returncode:
        pytest.skip("ruby-stackprof is not installed (make setup installs it)")
    counts = tmp_path / "stackprof.txt"
    run = record(["--", RUBY, str(SPLIT), "2", str(counts)], "ruby-split")
    peer: Counter[str] = Counter()
    for line in counts.read_text().splitlines():
        name, _, count = line.rpartition(" ")
        peer[name] += int(count)
    ours: Counter[str] = Counter()
    for stack in run.stacks:
        mine = [f.name for f in stack.frames if f.where.endswith("split.rb")]
        if mine:
            ours[mine[-1]] += stack.count
    heavy, light = "Object#heavy", "Object#light"
    assert peer[heavy] + peer[light] >= 40 and ours[heavy] + ours[light] >= 300, (peer, ours)
    share = {name: c[heavy] / (c[heavy] + c[light]) for name, c in (("stackprof", peer), ("fleetprof", ours))}
    assert abs(share["fleetprof"] - 0.75) <= 0.07, share  # three loops' worth of four, by construction
    assert abs(share["fleetprof"] - share["stackprof"]) <= 0.2, (share, peer, ours)

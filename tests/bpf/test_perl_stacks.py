"""`fleetprof record -- perl busy.pl`: Perl frames walked in the kernel from the thread's interpreter
(`PL_current_context`, reached through the thread's fs base), each runops native frame replaced by the
Perl frames it runs: the main program's chain under perl_run, and the sub a sort block calls under
pp_sort's own C frames."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from late_libraries import assert_late_chain, build_libraries
from test_python_common import Recording, Stack, assert_share, call_lines, judge, record, work_dir

SCRIPT = Path(__file__).resolve().parent / "perlscripts" / "busy.pl"
PERL = shutil.which("perl")

pytestmark = pytest.mark.skipif(PERL is None, reason="perl is not installed (make setup installs it)")

LINES = call_lines(SCRIPT)
EXPECTED = [
    ("main", {LINES["Shop::Cart::total"]}),
    ("Shop::Cart::total", {LINES["Shop::Cart::line"]}),
    ("Shop::Cart::line", {LINES["price-first"]}),
    ("Pricing::price", {LINES["price"]}),
    ("Pricing::price", {LINES["price"]}),
    ("Pricing::price", {LINES["hot"]}),
    ("Pricing::hot", set(range(LINES["by_value"] - 5, LINES["by_value"] + 2))),
]
# by_value's lines (its `sub` line and body), or the sort block's line while it is being entered (PL_curcop
# is still the caller's).
BY_VALUE = ("Pricing::by_value", {*range(LINES["by_value"] - 10, LINES["by_value"] - 7), LINES["by_value"]})


@cache
def _recorded() -> Recording:
    assert PERL is not None
    return record(["--", PERL, str(SCRIPT), "2"], "perl-busy")


def _check(stack: Stack) -> str:
    """Why a stack under Pricing::hot is not the whole chain with its lines, "" when it is."""
    at = [i for i, f in enumerate(stack.frames) if f.where.endswith("busy.pl")]
    got = [(stack.frames[i].name, stack.frames[i].line) for i in at]
    sorting = bool(got) and got[-1][0] == BY_VALUE[0]
    expected = [*EXPECTED, BY_VALUE] if sorting else EXPECTED
    if [name for name, _ in got] != [name for name, _ in expected]:
        return "perl frames " + " > ".join(name for name, _ in got)
    for (name, line), (_, lines) in zip(got, expected, strict=True):
        if line not in lines:
            return f"{name} at line {line}, expected one of {sorted(lines)}"
    if at[: len(EXPECTED)] != list(range(at[0], at[0] + len(EXPECTED))):
        return "native frames between the Perl frames of one runops loop"
    root = [f.name for f in stack.frames[: at[0]]]
    if not root or root[0] != "_start" or root[-1] != "perl_run":
        return "native root " + " > ".join(root)
    if sorting:
        between = [f.name for f in stack.frames[at[-2] + 1 : at[-1]]]
        if between[:2] != ["Perl_pp_sort", "Perl_sortsv_flags"]:
            return "between hot and by_value: " + " > ".join(between)
    return ""


def test_perl_chain_is_whole_with_lines() -> None:
    """>= 99 % of the samples under Pricing::hot read main > Shop::Cart::total > Shop::Cart::line >
    Pricing::price x3 > Pricing::hot, each caller at the line of its call, right under perl_run; the sub
    the sort block calls sits above pp_sort's C frames (its own runops loop); both are sampled."""
    run = _recorded()
    under = [s for s in run.stacks if any(f.name == "Pricing::hot" for f in s.frames)]
    assert_share(judge(under, _check), run, at_least=300)
    sorting = sum(s.count for s in under if any(f.name == BY_VALUE[0] for f in s.frames))
    looping = sum(s.count for s in under if not any(f.name == "Perl_pp_sort" for f in s.frames))
    assert sorting >= 10 and looping >= 100, f"{sorting} samples in by_value, {looping} in the loop"
    assert run.stats.get("perl_named", 0) >= len(EXPECTED), run.describe()


SPLIT = Path(__file__).resolve().parent / "perlscripts" / "split.pl"
NYTPROF_TIMES = (
    "my $p = Devel::NYTProf::Data->new({filename => shift, quiet => 1}); my $m = $p->subname_subinfo_map;"
    ' printf "%s %.6f\\n", $_, $m->{$_}->excl_time for grep { $m->{$_}->calls } keys %$m'
)


LATE = Path(__file__).resolve().parent / "perlscripts" / "late.pl"


def test_first_samples_in_a_new_library_keep_their_perl_frames() -> None:
    """Perl installs, through DynaLoader, an XSUB from each library it loads mid-run: the samples that waited
    for a new library's table (finished in userspace) still read main > run > Loader::call > spin over
    perl_run, the Perl frames walked in the kernel after the deferral and put over their runops frame."""
    assert PERL is not None
    libs = [str(p) for p in build_libraries(work_dir() / "late-perl", 5, xs=True)]
    run = record(["--", PERL, str(LATE), "0.3", *libs], "perl-late")
    lines = call_lines(LATE)
    expected = [
        ("main", lines["run"]),
        ("main::run", lines["Loader::call"]),
        ("Loader::call", lines["spin"]),
        ("main::spin", lines["call"]),
    ]

    assert_late_chain(run, LATE, expected, "perl")


def test_time_split_agrees_with_nytprof(tmp_path: Path) -> None:
    """The same run measured by fleetprof and by Devel::NYTProf (Perl's own profiler, in the process):
    heavy does three quarters of the work by construction: fleetprof gives it 75 % +-7 of the two subs'
    samples, and NYTProf's exclusive times agree within 15 points."""
    assert PERL is not None
    if subprocess.run([PERL, "-MDevel::NYTProf::Data", "-e", "1"], capture_output=True).returncode:
        pytest.skip("Devel::NYTProf is not installed (make setup installs libdevel-nytprof-perl)")
    out = tmp_path / "nytprof.out"
    os.environ["NYTPROF"] = f"file={out}:addpid=0"
    try:
        run = record(["--", PERL, "-d:NYTProf", str(SPLIT), "2"], "perl-split")
    finally:
        del os.environ["NYTPROF"]
    times = subprocess.run(
        [PERL, "-MDevel::NYTProf::Data", "-e", NYTPROF_TIMES, str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    peer = {name: float(value) for name, value in (line.split() for line in times.splitlines())}
    ours: Counter[str] = Counter()
    for stack in run.stacks:
        mine = [f.name for f in stack.frames if f.where.endswith("split.pl")]
        if mine:
            ours[mine[-1]] += stack.count
    heavy, light = "main::heavy", "main::light"
    assert ours[heavy] + ours[light] >= 300 and peer.get(heavy, 0) > 0, (peer, ours)
    share = {
        "fleetprof": ours[heavy] / (ours[heavy] + ours[light]),
        "nytprof": peer[heavy] / (peer[heavy] + peer[light]),
    }
    assert abs(share["fleetprof"] - 0.75) <= 0.07, share  # three loops' worth of four, by construction
    assert abs(share["fleetprof"] - share["nytprof"]) <= 0.15, (share, peer, ours)

"""A stripped Go program recorded by `fleetprof record`: its hot functions and lines, named from the
pclntab with inlined frames, match `go tool pprof` on the program's own CPU profile (runtime/pprof)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from zoo.build import record

_spec = importlib.util.spec_from_file_location(
    "gobuild", Path(__file__).parents[1] / "fixtures" / "golang" / "gobuild.py"
)
gobuild = importlib.util.module_from_spec(_spec)
sys.modules["gobuild"] = gobuild
_spec.loader.exec_module(gobuild)

MIN_SHARE = 0.10  # functions hotter than this in either profile are compared
CHAIN = ["main.main", "main.middle", "main.middle.func1", "main.(*T).work", "main.leaf"]
_TOP_LINE = re.compile(r"^\s*[\d.]+\w*\s+([\d.]+)%\s+[\d.]+%\s+[\d.]+\w*\s+[\d.]+%\s+(\S+) (\S+):(\d+)")


def go_profile_shares(pprof: Path, work: Path) -> dict[tuple[str, int], float]:
    """Flat share of each (function, line) in the program's own profile, inlined functions separate."""
    out = subprocess.run(
        [gobuild.go_tool(), "tool", "pprof", "-top", "-lines", "-nodecount=40", str(pprof)],
        env=gobuild.go_env(work),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shares = {}
    for line in out.splitlines():
        m = _TOP_LINE.match(line)
        if m:
            shares[(m.group(2), int(m.group(4)))] = float(m.group(1)) / 100
    return shares


def fleetprof_shares(speedscope: Path, pid_name: str) -> tuple[dict[tuple[str, int], float], Counter]:
    """Share of each innermost user (function, line) in the recording, and the user chains' counts."""
    doc = json.loads(speedscope.read_text())
    frames = doc["shared"]["frames"]
    leaves: Counter[tuple[str, int]] = Counter()
    chains: Counter[tuple[str, ...]] = Counter()
    total = 0
    for prof in doc["profiles"]:
        if pid_name not in prof["name"]:
            continue
        for idx, weight in zip(prof["samples"], prof["weights"], strict=True):
            user = [frames[i] for i in idx if not frames[i]["name"].endswith("_[k]")]
            if not user:
                continue
            total += weight
            leaf = user[-1]
            leaves[(leaf["name"].rpartition(" [")[0] or leaf["name"], leaf.get("line", 0))] += weight
            chains[tuple(f["name"].rpartition(" [")[0] or f["name"] for f in user)] += weight
    return {k: v / total for k, v in leaves.items()}, chains


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Counter]:
    """(go's own shares, fleetprof's shares, fleetprof's user chains) of one 3 s run of the stripped chain."""
    work = tmp_path_factory.mktemp("go")
    try:
        exe = work / "gochain"
        gobuild.build(exe, work, "-ldflags=-s -w")
    except gobuild.GoBuildError as exc:
        pytest.fail(str(exc))
    own = work / "own.pprof"
    out = work / "go.speedscope.json"
    run = record(["--", str(exe), "-seconds", "3", "-cpuprofile", str(own)], out, cache_dir=work / "cache")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    return (go_profile_shares(own, work), *fleetprof_shares(out, "gochain"))


def test_hot_functions_and_lines_match_go_pprof(recorded) -> None:
    """Innermost (function, line) shares, inlined `main.mix` included, as go tool pprof reports them."""
    theirs, mine, chains = recorded
    hot = {k for k, v in theirs.items() if v >= MIN_SHARE} | {k for k, v in mine.items() if v >= MIN_SHARE}
    assert hot, f"nothing hot: go {theirs}, fleetprof {mine}"
    for key in hot:
        assert abs(mine.get(key, 0) - theirs.get(key, 0)) <= 0.15, f"{key}: go {theirs}, fleetprof {mine}"
    assert max(theirs, key=theirs.get) == max(mine, key=mine.get)
    # How the hot loop's samples split between leaf's line and the inlined mix depends on the CPU (where a
    # sample's pc lands in the loop); go's profile splits them the same way (checked above). Wherever mix
    # is the innermost frame, it sits under leaf under main.
    in_mix = {chain: n for chain, n in chains.items() if chain[-1] == "main.mix"}
    assert sum(in_mix.values()) / sum(chains.values()) >= MIN_SHARE, chains.most_common(5)
    ordered = sum(n for chain, n in in_mix.items() if _in_order(chain, ["main.main", "main.leaf"]))
    assert ordered / sum(in_mix.values()) >= 0.99, in_mix


def test_whole_chain_through_the_inlined_closure(recorded) -> None:
    """main.main -> main.middle -> (inlined) main.middle.func1 -> (inlined) main.(*T).work -> main.leaf,
    unwound from the pclntab's SP deltas (main.leaf makes no frame: frame pointers would skip main.middle),
    each stack down to the goroutine's root."""
    _, _, chains = recorded
    rooted = sum(n for chain, n in chains.items() if chain[:2] == ("runtime.goexit", "runtime.main"))
    assert rooted / sum(chains.values()) >= 0.99, chains.most_common(5)
    whole = sum(n for chain, n in chains.items() if [f for f in chain if f.startswith("main.")][:5] == CHAIN)
    assert whole / sum(chains.values()) >= 0.99, chains.most_common(5)


def _in_order(chain: tuple[str, ...], names: list[str]) -> bool:
    """Whether `names` appear in `chain` in this order (other frames between them allowed)."""
    found = iter(chain)
    return all(name in found for name in names)

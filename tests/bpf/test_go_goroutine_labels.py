"""A stripped Go program's goroutine labels (pprof.Labels) on every sample, read by the BPF label reader
and the agent from the running process: the split by label matches the program's own CPU profile
(runtime/pprof, which labels samples the same way), while label sets are replaced every round."""

from __future__ import annotations

import gzip
import importlib.util
import math
import sys
from collections import Counter
from pathlib import Path

import pytest
from zoo.build import record

from fleetprof.output.proto import profile_pb2

_spec = importlib.util.spec_from_file_location(
    "gobuild", Path(__file__).parents[1] / "fixtures" / "golang" / "gobuild.py"
)
gobuild = importlib.util.module_from_spec(_spec)
sys.modules["gobuild"] = gobuild
_spec.loader.exec_module(gobuild)

HOT = "main.spin"


def label_counts(path: Path) -> tuple[dict[str, Counter[str]], int]:
    """Per label key, the samples in HOT per value ("" when the sample lacks the key); and their total."""
    prof = profile_pb2.Profile.FromString(gzip.decompress(path.read_bytes()))
    names = {f.id: prof.string_table[f.name] for f in prof.function}
    hot_locations = {
        loc.id for loc in prof.location if any(names.get(line.function_id) == HOT for line in loc.line)
    }
    counts: dict[str, Counter[str]] = {"job": Counter(), "step": Counter(), "tenant": Counter()}
    total = 0
    for sample in prof.sample:
        if not hot_locations.intersection(sample.location_id):
            continue
        labels = {prof.string_table[x.key]: prof.string_table[x.str] for x in sample.label if x.str}
        total += sample.value[0]
        for key, counter in counts.items():
            counter[labels.get(key, "")] += sample.value[0]
    return counts, total


@pytest.fixture(scope="module", params=["static", "cgo"])
def recorded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[tuple[dict, int], tuple[dict, int], str]:
    """(go's own counts, fleetprof's counts, record's stderr) of one 2 s run of the stripped program, built
    static (g in Go's own TLS slot) or with cgo (g in the executable's PT_TLS block, below libc's TP)."""
    work = tmp_path_factory.mktemp("golabels")
    exe = work / "golabels"
    try:
        gobuild.build(exe, work, "-ldflags=-s -w", source=gobuild.LABELS, cgo=request.param == "cgo")
    except gobuild.GoBuildError as exc:
        pytest.fail(str(exc))
    own, out = work / "own.pprof", work / "fleetprof.pprof"
    target = ["--", str(exe), "-seconds", "2", "-cpuprofile", str(own)]
    run = record(["-v", *target], out, frequency=199, fmt="pprof", cache_dir=work / "cache")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    return label_counts(own), label_counts(out), run.stderr


def test_every_hot_sample_carries_its_goroutine_labels(recorded) -> None:
    _, (mine, total), stderr = recorded
    assert total >= 200, (total, stderr)
    assert mine["tenant"]["acme"] / total >= 0.95, (mine, stderr)
    assert mine["job"]["resize"] + mine["job"]["thumb"] == mine["tenant"]["acme"], mine


def agreement_bound(mine: int, total: int, theirs: int, their_total: int) -> float:
    """How far two sampled shares of one true share may differ: 0.10, or 4.5 standard errors of their
    difference when the samples are too few for that (Go's profile has ~250 in 2 s at its 100 Hz, so a
    50/50 split alone differs by 0.04 on average between two honest profilers)."""
    p = (mine + theirs) / (total + their_total)
    return max(0.10, 4.5 * math.sqrt(p * (1 - p) * (1 / total + 1 / their_total)))


def test_label_split_matches_the_programs_own_profile(recorded) -> None:
    """job: resize is always busy, thumb a third of the time; step alternates a/b every round."""
    (theirs, their_total), (mine, total), _ = recorded
    for key in ("job", "step"):
        for value in set(theirs[key]) | set(mine[key]):
            got, want = mine[key][value] / total, theirs[key][value] / their_total
            bound = agreement_bound(mine[key][value], total, theirs[key][value], their_total)
            assert abs(got - want) <= bound, f"{key}={value}: fleetprof {mine[key]}, go {theirs[key]}"
    assert mine["job"]["resize"] > 2 * mine["job"]["thumb"], mine

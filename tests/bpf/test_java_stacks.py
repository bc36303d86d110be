"""`fleetprof record -- java Busy`: Java frames found in the kernel from the JVM's code cache (the code heap
and CodeBlob holding each pc, by the segment map): interpreted frames by their Method* and bytecode index,
compiled ones by their nmethod and pc, named with the methods C2 inlined there; the JNI code a Java method
calls sits above its native wrapper; VM stubs named as such. No flag, agent or restart."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from test_python_common import Recording, Stack, assert_share, call_lines, judge, record, work_dir

HERE = Path(__file__).resolve().parent / "java"
JAVA, JAVAC, JFR = shutil.which("java"), shutil.which("javac"), shutil.which("jfr")


def _jdks() -> list[Path]:
    """Every JDK installed here (its home), the default one first: each runs the chain test."""
    found = {Path(JAVA).resolve().parents[1]} if JAVA else set()
    found |= {java.resolve().parents[1] for java in Path("/usr/lib/jvm").glob("*/bin/java")}
    return sorted(
        found, key=lambda home: (home != (Path(JAVA).resolve().parents[1] if JAVA else None), str(home))
    )


JDKS = _jdks()

pytestmark = pytest.mark.skipif(
    JAVA is None or JAVAC is None, reason="a JDK is not installed (make setup installs openjdk-17-jdk)"
)

LINES = call_lines(HERE / "Busy.java")
LAMBDA = re.compile(r"Busy\$Cart\$\$Lambda(\$\d+)?/0x[0-9a-f]+\.applyAsInt")  # JDK 21+: no number
CHAIN = [
    ("Busy.main", {LINES["run"]}),
    ("Busy.run", {LINES["total"]}),
    ("Busy$Cart.total", {LINES["step"]}),
    ("Busy$Cold.step", {LINES["lambda"]}),  # excluded from compilation: always interpreted
    ("lambda proxy", None),  # a hidden class: no file, no line
    ("Busy$Cart.lambda$new$0", {LINES["price-first"]}),
    ("Busy$Pricing.price", {LINES["price"]}),
    ("Busy$Pricing.price", {LINES["price"]}),
    ("Busy$Pricing.price", {LINES["hot"]}),
    ("Busy$Pricing.hot", {LINES["loop"], LINES["spin"]}),
]
JNI = ["Busy.spin", "Java_Busy_spin", "mix"]


@cache
def _built() -> Path:
    """Busy and Split compiled, and libbusy.so (Busy.spin's JNI code) built, in the work directory."""
    assert JAVAC is not None
    out = work_dir() / "java"
    out.mkdir(exist_ok=True)
    subprocess.run([JAVAC, "-d", str(out), str(HERE / "Busy.java"), str(HERE / "Split.java")], check=True)
    home = Path(JAVAC).resolve().parents[1]
    subprocess.run(
        ["gcc", "-O1", "-g", "-shared", "-fPIC", f"-I{home / 'include'}", f"-I{home / 'include' / 'linux'}",
         "-o", str(out / "libbusy.so"), str(HERE / "busy_jni.c")],
        check=True,
    )  # fmt: skip
    return out


def busy_command(java: str, seconds: str) -> list[str]:
    """How Busy runs: its JNI library, Cold.step excluded from compilation (so always interpreted)."""
    out = _built()
    return [
        java, f"-Dbusy.lib={out / 'libbusy.so'}", "-XX:CompileCommand=quiet",
        "-XX:CompileCommand=exclude,Busy$Cold::step", "-cp", str(out), "Busy", seconds,
    ]  # fmt: skip


@cache
def _recorded(home: Path) -> Recording:
    return record(["--", *busy_command(str(home / "bin" / "java"), "3")], f"java-busy-{home.name}")


def _check(stack: Stack) -> str:
    """Why a stack in Pricing.hot is not the whole chain with its lines, "" when it is."""
    java = [
        (i, f)
        for i, f in enumerate(stack.frames)
        if f.name.startswith("Busy") and (f.where.endswith("Busy.java") or LAMBDA.fullmatch(f.name))
    ]
    names = ["lambda proxy" if LAMBDA.fullmatch(f.name) else f.name for _, f in java]
    chain = names[: len(CHAIN)]
    if chain != [n for n, _ in CHAIN] or names[len(CHAIN) :] not in ([], ["Busy.spin"]):
        return "java frames " + " > ".join(names)
    for (_, frame), (name, lines) in zip(java, CHAIN, strict=False):
        if lines is not None and frame.line not in lines:
            return f"{name} at line {frame.line}, expected one of {sorted(lines)}"
    first = java[0][0]
    root = [f.name for f in stack.frames[:first]]
    if "JavaCalls::call_helper(JavaValue*, methodHandle const&, JavaCallArguments*, JavaThread*)" not in root:
        return "native root " + " > ".join(root[-4:])
    if names[len(CHAIN) :]:
        tail = [f.name for f in stack.frames[java[-1][0] :]]
        if tail[: len(JNI)] != JNI:
            return "above Busy.spin: " + " > ".join(tail)
    return ""


@pytest.mark.parametrize("home", JDKS, ids=[home.name for home in JDKS])
def test_java_chain_is_whole_with_lines(home: Path) -> None:
    """>= 99 % of the samples in Pricing.hot read main > run > Cart.total > Cold.step (interpreted) > the
    lambda's proxy > the lambda > price x3 > hot, each caller at the line of its call, under
    JavaCalls::call_helper; compiled frames are expanded with what C2 inlined; the JNI function hot calls
    sits above Busy.spin's native wrapper with its own C frames. On every JDK installed here."""
    run = _recorded(home)
    under = [s for s in run.stacks if any(f.name == "Busy$Pricing.hot" for f in s.frames)]
    assert_share(judge(under, _check), run, at_least=300)
    in_jni = sum(s.count for s in under if any(f.name == "mix" for f in s.frames))
    assert in_jni >= 20, run.describe()
    assert run.stats.get("jvm_named", 0) >= len(CHAIN), run.describe()


def _split_shares(counts: Counter[str]) -> float:
    """heavy's share of the loop work (a method inlined into its caller counts for the caller in JFR's
    view as in ours: both sides are summed)."""
    heavy = counts["Split.heavy"] + counts["Split.spinHeavy"]
    return heavy / max(1, heavy + counts["Split.light"] + counts["Split.spinLight"])


@pytest.mark.skipif(JFR is None, reason="the jfr tool is not installed")
def test_time_split_agrees_with_jfr(tmp_path: Path) -> None:
    """The same program under fleetprof and under JFR (the JVM's own sampler, execution samples every
    10 ms): heavy's side does three quarters of the work by construction; fleetprof gives it 75 % +-7,
    JFR within 15 points of fleetprof."""
    assert JAVA is not None and JFR is not None
    out = _built()
    recording = tmp_path / "split.jfr"
    flight = f"-XX:StartFlightRecording=filename={recording},settings=profile"
    subprocess.run(
        [JAVA, flight, "-cp", str(out), "Split", "2"], check=True, capture_output=True, timeout=120
    )
    printed = subprocess.run(
        [JFR, "print", "--events", "jdk.ExecutionSample", str(recording)],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    peer: Counter[str] = Counter()
    for top in re.findall(r"stackTrace = \[\s*\n\s*([\w$.]+)\(", printed):
        peer[top] += 1
    run = record(["--", JAVA, "-cp", str(out), "Split", "2"], "java-split")
    ours: Counter[str] = Counter()
    for stack in run.stacks:
        mine = [f.name for f in stack.frames if f.where.endswith("Split.java")]
        if mine:
            ours[mine[-1]] += stack.count
    assert sum(peer.values()) >= 100, peer
    assert ours["Split.spinHeavy"] + ours["Split.spinLight"] >= 300, ours
    assert abs(_split_shares(ours) - 0.75) <= 0.07, (ours, peer)
    assert abs(_split_shares(ours) - _split_shares(peer)) <= 0.15, (ours, peer)

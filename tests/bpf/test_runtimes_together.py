"""`fleetprof record --all` on a machine running a Java, a Node.js, a Ruby, a PHP, a Perl and a stripped Go
program at once: one profile holds every program's functions with their lines, each chain as whole as when
the program is profiled alone (each program's own test checks the same chains: the checks are shared)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
import test_java_stacks as java
import test_node_stacks as node
import test_perl_stacks as perl
import test_php_stacks as php
import test_ruby_stacks as ruby
from test_go_symbols import CHAIN as GO_CHAIN
from test_go_symbols import gobuild
from test_python_common import Recording, Stack, assert_share, judge, record, work_dir

SECONDS = 4  # recorded, once every program is past its start-up
WHOLE = 0.95  # six busy programs share two cores with the agent: a little below each one's own test


def _go(work: Path) -> list[str]:
    exe = work / "gochain"
    gobuild.build(exe, work, "-ldflags=-s -w")
    return [str(exe), "-seconds", str(SECONDS + 6)]


def _programs(work: Path) -> dict[str, tuple[list[str], str, Callable[[Stack], str]]]:
    """name -> (command, the frame its samples are judged under, the chain check) of every runtime here."""
    out: dict[str, tuple[list[str], str, Callable[[Stack], str]]] = {}
    seconds = str(SECONDS + 6)
    if java.JAVA and java.JAVAC:
        out["java"] = (java.busy_command(java.JAVA, seconds), "Busy$Pricing.hot", java._check)
    if node.NODE:
        out["node"] = ([node.NODE, str(node.SCRIPT), seconds], "hot", node._checker(node.Counter()))
    if ruby.RUBY:
        out["ruby"] = ([ruby.RUBY, str(ruby.SCRIPT), seconds], "Pricing.hot", ruby._check)
    if php.PHP:
        out["php"] = (
            [php.PHP, "-d", "pcre.jit=0", *php.MODES["plain"], str(php.SCRIPT), seconds],
            "hot",
            php._check,
        )
    if perl.PERL:
        out["perl"] = ([perl.PERL, str(perl.SCRIPT), seconds], "Pricing::hot", perl._check)
    if shutil.which("go"):

        def go_check(stack: Stack) -> str:
            names = [f.name for f in stack.frames if f.name.startswith("main.")][: len(GO_CHAIN)]
            return "" if names == GO_CHAIN else "go frames " + " > ".join(names)

        out["go"] = (_go(work), "main.leaf", go_check)
    return out


@contextlib.contextmanager
def _running(commands: dict[str, list[str]]) -> Iterator[dict[str, int]]:
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, cmd in commands.items()
    }
    try:
        yield {name: p.pid for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


@cache
def _recorded() -> tuple[Recording, dict[str, int], dict[str, tuple[str, Callable[[Stack], str]]]]:
    work = work_dir() / "together"
    work.mkdir(exist_ok=True)
    programs = _programs(work)
    with _running({name: cmd for name, (cmd, _, _) in programs.items()}) as pids:
        time.sleep(2.0)  # JIT warm-up, interpreters loaded
        run = record(["--all", "-d", str(SECONDS)], "together")
    return run, pids, {name: (hot, check) for name, (_, hot, check) in programs.items()}


def test_every_runtime_is_whole_in_one_profile() -> None:
    """Each program's samples in its hot function hold its whole chain with lines, in the one profile."""
    run, pids, programs = _recorded()
    if len(programs) < 6:
        pytest.fail(f"runtimes missing (make setup installs them): only {sorted(programs)}")
    for name, (hot, check) in programs.items():
        mine = [s for s in run.stacks if s.pid == pids[name] and any(f.name == hot for f in s.frames)]
        try:
            assert_share(judge(mine, check), run, at_least=30, share=WHOLE)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None

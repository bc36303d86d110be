"""The folded-output contract of DESIGN.md."""

from __future__ import annotations

import io
import re

from test_output_profiles import (
    APP,
    NASTY,
    empty_profile,
    kernel,
    native,
    process,
    python,
    rich_profile,
    sample,
)

from fleetprof.output import get_format
from fleetprof.output.folded import folded_counts, folded_lines, sanitize
from fleetprof.profile.model import Profile

LINE = re.compile(r"^(?P<stack>[^\n]+) (?P<count>[1-9][0-9]*)$")


def write(profile: Profile) -> str:
    stream = io.BytesIO()
    get_format("folded").write(profile, stream)
    return stream.getvalue().decode("utf-8")


def test_exact_contract() -> None:
    profile = Profile(
        samples=[
            sample([process("app"), native("main", APP, 0x10), kernel("do_sys", 0xFFFF0000)], count=2),
            sample([process("app"), native("main", APP, 0x10), kernel("do_sys", 0xFFFF0000)], tid=7, count=3),
            sample([process("py"), python("f", "/x.py", 3)], pid=2, count=1),
            sample([process("app"), native("main", APP, 0x10)], count=4),
        ],
        frequency_hz=99,
        start_time_ns=0,
        duration_ns=1,
    )
    assert write(profile) == (
        "app;main [app] 4\n"
        "app;main [app];do_sys_[k] 5\n"  # two samples with equal rendered stacks merged
        "py;f (/x.py:3) 1\n"
    )


def test_rich_profile_lines_parse() -> None:
    text = write(rich_profile())
    lines = text.split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert lines == sorted(lines)
    assert len(lines) == len(set(lines))
    total = 0
    for line in lines:
        match = LINE.match(line)
        assert match, line
        frames = match["stack"].split(";")
        assert all(frames)
        total += int(match["count"])
    assert total == rich_profile().total
    assert text.splitlines() == lines  # no stray line breaks from U+2028 and friends


def test_frame_rendering() -> None:
    lines = folded_lines(rich_profile())
    assert (
        "app;main [app];helper(int) [app];inner [app];__libc_read [libc.so.6];entry_SYSCALL_64_[k];"
        "ksys_read_[k] 5" in lines
    )
    assert "app;main [app];[unwind: no mapping] 1" in lines
    assert "app;main [app];libc.so.6+0x41a2b [libc.so.6] 4" in lines
    assert (
        "python3;_start [python3.11];<module> (/app/main.py:12);work:semi line naïve_λ (/app/w.py:7) 5"
        in lines
    )
    assert not any(line.startswith("app;main [app] ") for line in lines)  # zero counts are dropped


def test_sanitize() -> None:
    assert sanitize("a;b\nc\r\nd\u2028e") == "a:b c  d e"
    assert sanitize("") == "[unknown]"
    assert ";" not in sanitize(NASTY)
    assert len(sanitize(NASTY).splitlines()) == 1


def test_process_name_first_and_empty_stack() -> None:
    profile = Profile(
        samples=[sample([], name="lonely;one", count=2)], frequency_hz=1, start_time_ns=0, duration_ns=0
    )
    assert folded_counts(profile) == {"lonely:one": 2}
    for line in folded_lines(rich_profile()):
        assert line.split(";")[0] in {"app", "python3", sanitize(NASTY)}


def test_empty_profile() -> None:
    assert write(empty_profile()) == ""

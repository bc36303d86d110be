"""Hand-built profiles shared by the output tests, and the format registry's tests."""

from __future__ import annotations

import io

import pytest

from fleetprof.output import FORMATS, UnknownFormatError, format_for_path, format_names, get_format
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample

PERIOD_HZ = 100
START_NS = 1_700_000_000_000_000_000
APP = Mapping(
    file_id="ab" * 16,
    path="/usr/bin/app",
    build_id="deadbeef" * 5,
    start=0x5555_5555_5000,
    limit=0x5555_5557_0000,
    offset=0x1000,
)
LIBC = Mapping(
    file_id="cd" * 16,
    path="/usr/lib/x86_64-linux-gnu/libc.so.6",
    start=0x7F00_0002_8000,
    limit=0x7F00_001B_D000,
    offset=0x28000,
)
NOPIE = Mapping(file_id="ef" * 16, path="/usr/bin/python3.11", start=0x41F000, limit=0x6A0000, offset=0x1F000)
NASTY = "evil</script><script>alert(1)</script>;semi\nnew\u2028line & <!-- naïve λ"


def process(name: str) -> Frame:
    return Frame(FrameKind.PROCESS, name)


def native(function: str, mapping: Mapping, address: int, **kw) -> Frame:
    return Frame(FrameKind.NATIVE, function, mapping=mapping, address=address, **kw)


def kernel(function: str, address: int) -> Frame:
    return Frame(FrameKind.KERNEL, function, address=address)


def python(function: str, file: str, line: int, start_line: int = 0) -> Frame:
    return Frame(FrameKind.PYTHON, function, file=file, line=line, start_line=start_line)


MAIN = native("main", APP, 0x1234, file="app.c", line=10, start_line=5, system_name="main")
HELPER = native(
    "helper(int)", APP, 0x1234, file="app.c", line=20, start_line=18, inlined=True, system_name="_Z6helperi"
)
INNER = native("inner", APP, 0x1234, file="inner.h", line=30, start_line=29, inlined=True)
READ = native("__libc_read", LIBC, 0x11A2B0, file="read.c", line=26, start_line=25)
UNSYMBOLIZED = native("libc.so.6+0x41a2b", LIBC, 0x41A2B)
SYSCALL = kernel("entry_SYSCALL_64", 0xFFFFFFFF81000000)
KSYS_READ = kernel("ksys_read", 0xFFFFFFFF81234560)
PY_START = native("_start", NOPIE, 0x420010, file="", line=0)
PY_MAIN = python("<module>", "/app/main.py", 12, 1)
PY_WORK = python("work;semi\nline naïve_λ", "/app/w.py", 7, 5)
ERROR = Frame(FrameKind.ERROR, "[unwind: no mapping]")


def sample(
    stack, *, pid=100, tid=101, name="app", thread="worker", count=1, cpus=(0,), timed=True, container=""
) -> Sample:
    stamps = [START_NS + 10_000_000 * (i + 1) + pid for i in range(count)] if timed else []
    return Sample(
        stack=tuple(stack),
        pid=pid,
        tid=tid,
        process_name=name,
        thread_name=thread,
        count=count,
        cpus=set(cpus),
        timestamps_ns=stamps,
        container_id=container,
    )


def rich_profile() -> Profile:
    """Every frame kind, inline frames, unicode and `;`/newline in names, duplicates, a zero count."""
    app = process("app")
    samples = [
        sample([app, MAIN, HELPER, INNER, READ, SYSCALL, KSYS_READ], count=3),
        sample(
            [app, MAIN, HELPER, INNER, READ, SYSCALL, KSYS_READ],
            tid=102,
            thread="worker-2",
            count=2,
            cpus=(1,),
        ),
        sample([app, MAIN, ERROR], count=1, cpus=(0, 1), timed=False),
        sample([app, MAIN, UNSYMBOLIZED], count=4, cpus=(1,)),
        sample([app, MAIN], count=0),
        sample(
            [process("python3"), PY_START, PY_MAIN, PY_WORK],
            pid=200,
            tid=200,
            name="python3",
            thread="MainThread",
            count=5,
            cpus=(1,),
            container="c0ffee" * 10,
        ),
        sample(
            [process(NASTY), native(NASTY, APP, 0x2000)], pid=300, tid=301, name=NASTY, thread=NASTY, count=1
        ),
    ]
    return Profile(
        samples=samples,
        frequency_hz=PERIOD_HZ,
        start_time_ns=START_NS,
        duration_ns=2_000_000_000,
        hostname="host-1",
        kernel_release="6.1.0-test",
        stats={"lost_samples": 2},
    )


def empty_profile() -> Profile:
    return Profile(samples=[], frequency_hz=PERIOD_HZ, start_time_ns=START_NS, duration_ns=1_000_000_000)


def wide_profile(leaves: int) -> Profile:
    """Many distinct stacks (about 4 tree nodes per leaf) for size and speed checks."""
    samples = []
    for i in range(leaves):
        stack = [
            process(f"proc{i % 7}"),
            native(f"mid{i % 97}", APP, 0x1000 + i % 97),
            native(f"fn{i}", LIBC, 0x5000 + i),
            kernel(f"k{i}", 0xFFFFFFFF81000000 + i),
        ]
        samples.append(
            sample(stack, pid=1000 + i % 7, tid=1000 + i % 7, name=f"proc{i % 7}", count=1 + i % 3)
        )
    return Profile(samples=samples, frequency_hz=PERIOD_HZ, start_time_ns=START_NS, duration_ns=10**10)


def test_format_names() -> None:
    assert format_names() == ["folded", "html", "otlp", "pprof", "speedscope"]
    for name in format_names():
        fmt = get_format(name)
        assert fmt.name == name
        assert fmt.suffix.startswith(".")
    assert get_format(" PPROF ") is FORMATS["pprof"]
    assert [name for name in format_names() if get_format(name).binary] == ["otlp", "pprof"]


def test_unknown_format_lists_known_names() -> None:
    with pytest.raises(
        UnknownFormatError,
        match=r"unknown output format 'svg' \(known: folded, html, otlp, "
        r"pprof, speedscope\)",
    ):
        get_format("svg")
    assert issubclass(UnknownFormatError, ValueError)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("out.folded", "folded"),
        ("out.txt", "folded"),
        ("/tmp/cpu.pb.gz", "pprof"),
        ("cpu.PPROF", "pprof"),
        ("x.speedscope.json", "speedscope"),
        ("x.json", "speedscope"),
        ("flame.html", "html"),
        ("flame.htm", "html"),
        ("batch.otlp", "otlp"),
        ("batch.pb", "otlp"),
    ],
)
def test_format_for_path(path: str, expected: str) -> None:
    fmt = format_for_path(path)
    assert fmt is not None
    assert fmt.name == expected


def test_format_for_path_unknown() -> None:
    assert format_for_path("profile.svg") is None
    assert format_for_path("profile") is None
    assert format_for_path("archive.gz") is None


def test_default_suffix_round_trips() -> None:
    for name, fmt in FORMATS.items():
        guessed = format_for_path(f"out{fmt.suffix}")
        assert guessed is not None
        assert guessed.name == name


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("make", [rich_profile, empty_profile])
def test_every_format_writes_bytes(name: str, make) -> None:
    stream = io.BytesIO()
    get_format(name).write(make(), stream)
    data = stream.getvalue()
    if not get_format(name).binary:
        data.decode("utf-8")
    if name != "folded" or make is rich_profile:
        assert data

"""`fleetprof top`'s table from a known profile: self and total samples per function (recursion counted once
per stack), the labels of each frame kind, the order, `--limit`, the width, and an empty window."""

from __future__ import annotations

from fleetprof.cli.top import TopRow, render, top_rows
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample

APP = Mapping(file_id="ab" * 16, path="/opt/app/bin/app")
PROC = Frame(FrameKind.PROCESS, "app")
MAIN = Frame(FrameKind.NATIVE, "main", mapping=APP)
WORK = Frame(FrameKind.NATIVE, "work", mapping=APP)
HOT = Frame(FrameKind.NATIVE, "hot", mapping=APP)
REC = Frame(FrameKind.NATIVE, "rec", mapping=APP)
READ = Frame(FrameKind.KERNEL, "ksys_read")
PY = Frame(FrameKind.PYTHON, "handle", file="/srv/h.py", line=7)
PY_NOFILE = Frame(FrameKind.PYTHON, "<native thread>")
ERROR = Frame(FrameKind.ERROR, "[unwind: no mapping]")


def profile(*stacks: tuple[tuple[Frame, ...], int]) -> Profile:
    """A profile of (stack, count) pairs, one process."""
    samples = [Sample((PROC, *stack), 1, 1, "app", "app", count) for stack, count in stacks]
    return Profile(samples, 99, 0, 1_000_000_000)


def test_self_total_and_order() -> None:
    """Self = leaf samples, total = samples with the function anywhere (once per stack, however deep the
    recursion); ordered by self, then total, then name; a stack of only the process frame counts nowhere."""
    rows, total = top_rows(
        profile(
            ((MAIN, WORK, HOT), 5),
            ((MAIN, WORK), 3),
            ((MAIN, REC, REC, REC), 2),
            ((MAIN, WORK, READ), 1),
            ((ERROR, PY), 4),
            ((PY_NOFILE,), 1),
            ((), 7),
        )
    )
    assert total == 16
    assert rows == [
        TopRow("hot [app]", 5, 5),
        TopRow("handle (/srv/h.py)", 4, 4),
        TopRow("work [app]", 3, 9),
        TopRow("rec [app]", 2, 2),
        TopRow("<native thread>", 1, 1),
        TopRow("ksys_read_[k]", 1, 1),
        TopRow("main [app]", 0, 11),
        TopRow("[unwind: no mapping]", 0, 4),
    ]


def test_render_limit_and_width() -> None:
    """The header, the column titles, at most `limit` rows of fixed-width numbers, each cut to `width`."""
    rows = [
        TopRow("hot [app]", 5, 5),
        TopRow("a_very_long_function_name [app]", 0, 8),
        TopRow("main [app]", 0, 8),
    ]
    text = render(rows, 8, 2, 40, "HEADER")
    assert text.split("\n") == [
        "HEADER",
        " SELF% TOTAL%  SAMPLES  FUNCTION",
        "  62.5   62.5        5  hot [app]",
        "   0.0  100.0        0  a_very_long_func",
    ]


def test_render_empty_window() -> None:
    """No samples: the titles and a note, no division by zero."""
    rows, total = top_rows(profile(((), 3)))
    assert (rows, total) == ([], 0)
    assert render(rows, total, 25, 200, "HEADER").split("\n") == [
        "HEADER",
        " SELF% TOTAL%  SAMPLES  FUNCTION",
        "(no samples yet)",
    ]

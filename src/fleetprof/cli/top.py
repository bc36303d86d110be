"""`fleetprof top`: live top functions (self and total CPU) of the host or of given pids, in the terminal."""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fleetprof.agent.build import ProfileBuilder, builder_for
from fleetprof.agent.core import CoreOptions, ProfilerCore
from fleetprof.agent.raw import ProcessLabels
from fleetprof.bpf.caps import missing_capabilities
from fleetprof.cli.errors import CapabilityError, CliError, UsageError
from fleetprof.cli.record import MAX_FREQUENCY
from fleetprof.cli.serverclient import add_selection_options
from fleetprof.cli.stopping import StopRequest
from fleetprof.cli.top_server import run_server_top
from fleetprof.process.procfs import ProcFS
from fleetprof.profile.model import Frame, FrameKind, Profile
from fleetprof.tracer.sampler import SamplerError


@dataclass(frozen=True, slots=True)
class TopRow:
    """One function's share of a window."""

    name: str
    self_samples: int
    total_samples: int


def function_label(frame: Frame) -> str:
    """How a function is named in the table: name plus module, source file or the kernel mark."""
    if frame.kind is FrameKind.PYTHON:
        return f"{frame.function} ({frame.file})" if frame.file else frame.function
    return frame.folded_name()


def top_rows(profile: Profile) -> tuple[list[TopRow], int]:
    """Self and total samples per function (recursion counted once per stack); and the sample total."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    total = 0
    for sample in profile.samples:
        frames = [f for f in sample.stack if f.kind is not FrameKind.PROCESS]
        if not frames:
            continue
        total += sample.count
        self_counts[function_label(frames[-1])] += sample.count
        for name in {function_label(f) for f in frames}:
            total_counts[name] += sample.count
    rows = [TopRow(n, self_counts.get(n, 0), t) for n, t in total_counts.items()]
    rows.sort(key=lambda r: (-r.self_samples, -r.total_samples, r.name))
    return rows, total


def render(rows: list[TopRow], total: int, limit: int, width: int, header: str) -> str:
    """The table as text."""
    lines = [header, f"{'SELF%':>6} {'TOTAL%':>6} {'SAMPLES':>8}  FUNCTION"]
    for row in rows[:limit]:
        pct_self = 100.0 * row.self_samples / total if total else 0.0
        pct_total = 100.0 * row.total_samples / total if total else 0.0
        line = f"{pct_self:6.1f} {pct_total:6.1f} {row.self_samples:8d}  {row.name}"
        lines.append(line[:width])
    if not rows:
        lines.append("(no samples yet)")
    return "\n".join(lines)


class TopCommand:
    """Show the functions using the most CPU right now, refreshed every interval."""

    name = "top"
    help = "live top functions of the whole host or of given pids"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Options."""
        parser.add_argument(
            "--pid", "-p", type=int, nargs="+", metavar="PID", help="only these processes and their children"
        )
        parser.add_argument(
            "--frequency", "-F", type=int, default=99, metavar="HZ", help="samples per second per CPU"
        )
        parser.add_argument("--interval", "-i", type=float, default=2.0, metavar="S", help="refresh period")
        parser.add_argument("--limit", "-n", type=int, default=25, metavar="N", help="rows to show")
        parser.add_argument("--iterations", type=int, metavar="K", help="stop after K refreshes")
        parser.add_argument(
            "--server", metavar="URL", help="show the top functions a fleetprof server stored"
        )
        add_selection_options(parser, default_since="1m")

    def run(self, args: argparse.Namespace) -> int:
        """Sample and redraw until Ctrl-C (or --iterations)."""
        if not 0 < args.interval < math.inf:
            raise UsageError("--interval must be a positive number of seconds")
        if args.limit <= 0:
            raise UsageError("--limit must be positive")
        if args.frequency <= 0 or args.frequency > MAX_FREQUENCY:
            raise UsageError(f"--frequency must be between 1 and {MAX_FREQUENCY} Hz")
        if args.iterations is not None and args.iterations <= 0:
            raise UsageError("--iterations must be positive")
        if args.server:
            if args.pid:
                raise UsageError("--pid samples this host; with --server use --filter pid=N")
            return run_server_top(args)
        for pid in args.pid or ():
            if pid <= 0 or not Path(f"/proc/{pid}").exists():
                raise CliError(f"no process with pid {pid}")
        missing = missing_capabilities()
        if missing:
            raise CapabilityError(missing[0].message)
        pids = tuple(sorted({*args.pid, *ProcFS().descendants(args.pid)})) if args.pid else None
        core = ProfilerCore(CoreOptions(frequency_hz=args.frequency, pids=pids, keep_timestamps=False))
        labels = ProcessLabels.attach(core)
        try:
            try:
                core.load()
                core.scan(list(pids) if pids else None)
                core.start()
            except SamplerError as exc:
                raise CliError(str(exc)) from None
            started = time.monotonic()
            builder = builder_for(core, labels)
            stop = StopRequest()
            try:
                with stop.catching():
                    self._loop(core, builder, args, sys.stdout, stop, started)
            finally:
                builder.native.close()
        finally:
            core.close()
        return 0

    def _loop(
        self,
        core: ProfilerCore,
        builder: ProfileBuilder,
        args: argparse.Namespace,
        out: TextIO,
        stop: StopRequest,
        since: float,
    ) -> None:
        """Each table covers the samples since the previous one (`since`: when sampling began): the
        interval plus the time the previous table took to build, as the header says."""
        tty = out.isatty()
        shown = 0
        while args.iterations is None or shown < args.iterations:
            deadline = time.monotonic() + args.interval
            while time.monotonic() < deadline and not stop.is_set():
                core.poll()
            if stop.is_set():
                return
            window = core.aggregator.stacks
            core.aggregator.stacks = {}
            now = time.monotonic()
            seconds, since = now - since, now
            profile = builder.build(window)
            rows, total = top_rows(profile)
            width = shutil.get_terminal_size((120, 40)).columns if tty else 200
            stamp = time.strftime("%H:%M:%S")
            header = f"fleetprof top — {stamp}, {total} samples in {seconds:.1f} s at {args.frequency} Hz"
            text = render(rows, total, args.limit, width, header)
            out.write(("\033[H\033[2J" if tty else "") + text + "\n\n")
            out.flush()
            shown += 1

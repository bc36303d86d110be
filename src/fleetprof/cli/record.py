"""`fleetprof record`: profile a command and its children, given pids, or the whole host, into a file."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

from fleetprof.agent.build import build_profile
from fleetprof.agent.core import DEFAULT_UNWIND_ROWS, CoreOptions, ProfilerCore
from fleetprof.agent.launch import launch_stopped
from fleetprof.agent.prewarm import files_for_command
from fleetprof.agent.raw import ProcessLabels
from fleetprof.bpf.caps import missing_capabilities
from fleetprof.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    CapabilityError,
    CliError,
    UsageError,
)
from fleetprof.cli.stopping import StopRequest
from fleetprof.output.base import OutputFormat
from fleetprof.output.registry import UnknownFormatError, format_for_path, format_names, get_format
from fleetprof.process.procfs import ProcFS
from fleetprof.profile.model import Profile
from fleetprof.tracer.sampler import SamplerError

MAX_FREQUENCY = 10_000
MIN_TABLE_ROWS = 1 << 12
MAX_TABLE_ROWS = 1 << 26  # 512 MiB of kernel memory
PREWARM_TIMEOUT_S = 30.0


class RecordCommand:
    """Record a profile of a command (`-- CMD ARGS…`), of pids (`--pid`), or of the whole host (`--all`)."""

    name = "record"
    help = "record a profile of a command, of pids, or of the whole host into a file"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Options per DESIGN.md."""
        parser.add_argument(
            "--frequency", "-F", type=int, default=99, metavar="HZ", help="samples per second per CPU"
        )
        parser.add_argument("--duration", "-d", type=float, metavar="S", help="stop after S seconds")
        parser.add_argument("--format", "-f", metavar="FMT", help=f"one of {', '.join(format_names())}")
        parser.add_argument("--output", "-o", metavar="FILE", help="where to write the profile")
        target = parser.add_mutually_exclusive_group()
        target.add_argument(
            "--pid",
            "-p",
            type=int,
            nargs="+",
            metavar="PID",
            help="profile these processes and their children",
        )
        target.add_argument("--all", "-a", action="store_true", help="profile every process on the host")
        parser.add_argument(
            "--verbose", "-v", action="store_true", help="print the profiler's counters at the end"
        )
        parser.add_argument(
            "--table-rows",
            type=int,
            default=DEFAULT_UNWIND_ROWS,
            metavar="N",
            help=f"kernel space for unwind tables, in rows of 8 bytes (default {DEFAULT_UNWIND_ROWS:,}); "
            "least recently used tables are evicted when it runs short",
        )
        parser.add_argument(
            "command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="command to profile"
        )

    def run(self, args: argparse.Namespace) -> int:
        """Validate, sample, write."""
        cmd = _command(args)
        fmt, out_path = _output(args)
        if args.frequency <= 0 or args.frequency > MAX_FREQUENCY:
            raise UsageError(f"--frequency must be between 1 and {MAX_FREQUENCY} Hz")
        if args.duration is not None and not 0 < args.duration < math.inf:
            raise UsageError("--duration must be a positive number of seconds")
        if not MIN_TABLE_ROWS <= args.table_rows <= MAX_TABLE_ROWS:
            raise UsageError(f"--table-rows must be between {MIN_TABLE_ROWS:,} and {MAX_TABLE_ROWS:,}")
        if not cmd and not args.pid and not args.all:
            raise UsageError("say what to profile: -- CMD ARGS, --pid PID, or --all")
        if args.pid:
            for pid in args.pid:
                if pid <= 0 or not Path(f"/proc/{pid}").exists():
                    raise CliError(f"no process with pid {pid}")
        exe = _resolve(cmd[0]) if cmd else None
        missing = missing_capabilities()
        if missing:
            raise CapabilityError(missing[0].message)
        created = out_path != "-" and not os.path.lexists(out_path)
        stream = _open_output(out_path, fmt)
        return Recording(args, cmd, exe, fmt, out_path, stream, created).run()


class Recording:
    """One `record` run from loading BPF to the summary line."""

    def __init__(
        self,
        args: argparse.Namespace,
        cmd: list[str],
        exe: str | None,
        fmt: OutputFormat,
        out_path: str,
        stream: BinaryIO,
        created: bool,
    ) -> None:
        self.args = args
        self.cmd = cmd
        self.exe = exe
        self.fmt = fmt
        self.out_path = out_path
        self.stream = stream
        self.child: subprocess.Popen[bytes] | None = None
        self.tty = sys.stderr.isatty()
        self.created = created  # the output file did not exist before this run

    def run(self) -> int:
        """Sample until the command exits, the duration ends, or Ctrl-C; then write the profile."""
        pids: tuple[int, ...] | None = None
        if self.cmd:
            pids = ()  # the command joins once it is stopped at its entry point (see _spawn)
        elif self.args.pid:  # and the processes they started before (a server's workers): children too
            pids = tuple(sorted({*self.args.pid, *ProcFS().descendants(self.args.pid)}))
        core = ProfilerCore(
            CoreOptions(
                frequency_hz=self.args.frequency,
                pids=pids,
                follow_new_processes=pids is not None,
                unwind_rows=self.args.table_rows,
            )
        )
        labels = ProcessLabels.attach(core)  # executables and pod uids, kept past the processes' exit
        status = 0
        interrupted = False
        done = False
        stop = StopRequest()
        try:
            with stop.catching():  # from here on, Ctrl-C/SIGTERM stop sampling and write what there is
                try:
                    core.load()
                    core.scan(None if self.args.all else self.args.pid or ())
                    core.start()
                except SamplerError as exc:
                    raise CliError(str(exc)) from None
                if self.cmd and not stop.is_set():
                    self._start_command(core, stop)
                self._loop(core, stop)
            interrupted = stop.is_set()
            if self.child is not None:
                status = self._reap(stop.signal if interrupted else 0)
            elif self.cmd:
                status = EXIT_INTERRUPTED  # stopped before the command could start
            core.stop()
            profile = build_profile(core, labels)
            done = True
        finally:
            if self.tty:
                sys.stderr.write("\r\033[K")
            core.close()
            if not done:
                self._discard()
        self._write(profile)
        share = core.aggregator.whole_share() * 100
        nproc = len({s.pid for s in profile.samples})
        secs = (core.stopped_ns - core.started_ns) / 1e9
        print(
            f"fleetprof: wrote {self.out_path} ({self.fmt.name}): samples {profile.total:,}, "
            f"processes {nproc}, {secs:.1f} s, whole stacks {share:.1f}%",
            file=sys.stderr,
        )
        for line in core.table_messages()[:5]:
            print(f"fleetprof: note: {line}", file=sys.stderr)
        if self.args.verbose:
            for name, value in sorted(profile.stats.items()):
                if value:
                    print(f"fleetprof: {name}: {value:,}", file=sys.stderr)
        return status

    def _write(self, profile: Profile) -> None:
        if self.stream.seekable():
            self.stream.seek(0)
            self.stream.truncate()
        try:
            self.fmt.write(profile, self.stream)
            self.stream.close()
        except OSError as exc:
            raise CliError(f"cannot write {self.out_path}: {exc.strerror or exc}") from None

    def _discard(self) -> None:
        """The run failed before writing: leave no empty file behind (unless it existed before)."""
        self.stream.close()
        if self.created:
            with contextlib.suppress(OSError):
                os.unlink(self.out_path)

    def _spawn(self, core: ProfilerCore) -> subprocess.Popen[bytes]:
        """Start the command stopped at its exec; learn its mappings and put it in the pid filter (its
        children join at fork time) before it runs."""
        assert self.exe is not None

        def at_exec(pid: int) -> None:
            core.sampler.add_pid_to_filter(pid)
            core.scan([pid])

        try:
            return launch_stopped([self.exe, *self.cmd[1:]], self.exe, at_exec)
        except PermissionError:
            raise CliError(f"{self.cmd[0]}: Permission denied", EXIT_NOT_EXECUTABLE) from None
        except OSError as exc:
            raise CliError(f"{self.cmd[0]}: {exc.strerror}", EXIT_NOT_EXECUTABLE) from None

    def _start_command(self, core: ProfilerCore, stop: StopRequest) -> None:
        """Prewarm the command's files, then start it inside the pid filter."""
        assert self.exe is not None
        core.prewarm(files_for_command(self.exe))
        deadline = time.monotonic() + PREWARM_TIMEOUT_S
        while not core.wait_tables(0.1) and time.monotonic() < deadline and not stop.is_set():
            pass
        if stop.is_set():
            return
        self.child = self._spawn(core)

    def _loop(self, core: ProfilerCore, stop: StopRequest) -> None:
        deadline = time.monotonic() + self.args.duration if self.args.duration else None
        last_progress = 0.0
        begin = time.monotonic()
        while not stop.is_set():
            core.poll()
            now = time.monotonic()
            if self.child is not None and self.child.poll() is not None:
                return
            if deadline is not None and now >= deadline:
                return
            if self.tty and now - last_progress >= 0.5:
                last_progress = now
                agg = core.aggregator
                sys.stderr.write(
                    f"\rfleetprof: recording {now - begin:5.1f} s, {agg.samples:,} samples, "
                    f"{len(agg.pids)} processes (Ctrl-C to stop)\033[K"
                )
                sys.stderr.flush()

    def _reap(self, forward: int) -> int:
        """Wait for the command, first passing it the SIGINT or SIGTERM that stopped the recording."""
        child = self.child
        assert child is not None
        if forward and child.poll() is None:
            child.send_signal(forward)
        try:
            rc = child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            rc = child.wait()
        return 128 - rc if rc < 0 else rc


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.command or [])
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if cmd and (args.pid or args.all):
        raise UsageError("give either -- CMD, --pid or --all, not several")
    return cmd


def _resolve(name: str) -> str:
    if "/" in name:
        if not os.path.exists(name):
            raise CliError(f"{name}: No such file or directory", EXIT_NOT_FOUND)
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise CliError(f"{name}: Permission denied", EXIT_NOT_EXECUTABLE)
        return name
    found = shutil.which(name)
    if found is None:
        raise CliError(f"{name}: command not found", EXIT_NOT_FOUND)
    return found


def _output(args: argparse.Namespace) -> tuple[OutputFormat, str]:
    try:
        fmt = get_format(args.format) if args.format else None
    except UnknownFormatError as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        fmt = fmt or format_for_path(args.output) or get_format("html")
        return fmt, args.output
    fmt = fmt or get_format("html")
    return fmt, f"fleetprof-{time.strftime('%Y%m%d-%H%M%S')}{fmt.suffix}"


def _open_output(path: str, fmt: OutputFormat) -> BinaryIO:
    """Open the output before sampling so an unwritable path fails at once."""
    if path == "-":
        if fmt.binary and sys.stdout.isatty():
            raise UsageError(f"refusing to write {fmt.name} (binary) output to a terminal")
        return os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    target = Path(path)
    if target.is_dir():
        raise CliError(f"cannot write {path}: is a directory")
    try:
        return open(target, "ab+")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None

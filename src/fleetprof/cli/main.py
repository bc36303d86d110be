"""The `fleetprof` command: one module per subcommand behind the small `Command` protocol."""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
from collections.abc import Sequence
from typing import Protocol

import fleetprof
from fleetprof import __version__
from fleetprof.cli.errors import EXIT_CAPABILITY, EXIT_INTERRUPTED, CliError

PACKAGE_DIR = os.path.dirname(os.path.abspath(fleetprof.__file__ or ""))


class Command(Protocol):
    """A subcommand: its name, a one-line help, its options, and what it does."""

    name: str
    help: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Declare options."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the work; return the exit status."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _commands() -> list[Command]:
    from fleetprof.cli.agent import AgentCommand
    from fleetprof.cli.export import ExportCommand
    from fleetprof.cli.record import RecordCommand
    from fleetprof.cli.server import ServerCommand
    from fleetprof.cli.top import TopCommand
    from fleetprof.cli.up import UpCommand

    return [RecordCommand(), TopCommand(), AgentCommand(), ServerCommand(), UpCommand(), ExportCommand()]


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def install_problem(exc: BaseException) -> str | None:
    """One line for an import or read failure that means this user can't use this installation (files
    they can't read, a dependency missing or unreadable); None for any other error."""
    if isinstance(exc, ImportError):
        return (
            f"cannot import {exc.name or 'a module'} ({exc}): fleetprof and its dependencies must be "
            f"installed where {_user()} can read them, for {sys.executable}"
        )
    if isinstance(exc, PermissionError) and str(exc.filename or "").startswith(PACKAGE_DIR + os.sep):
        return f"cannot read {exc.filename}: fleetprof is installed where {_user()} can't read it"
    return None


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = _ArgumentParser(prog="fleetprof", description="Whole-system, multi-runtime eBPF profiler.")
    parser.add_argument("--version", action="version", version=f"fleetprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for cmd in commands:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.prepare_parser(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, map errors to one line and an exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        commands = _commands()
    except (ImportError, PermissionError) as exc:
        problem = install_problem(exc)
        if problem is None:
            raise
        print(f"fleetprof: {problem}", file=sys.stderr)
        return EXIT_CAPABILITY
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    cmd = getattr(args, "_command", None)
    if cmd is None:
        parser.print_help(sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return cmd.run(args)
    except CliError as exc:
        print(f"fleetprof: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("fleetprof: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`fleetprof up`: the whole thing on one machine: the server on the embedded store plus a local agent
(a child process), one process tree. Ctrl-C stops the agent first (its last batch is sent and
acknowledged, or kept in its spool for the next run), then the server."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from fleetprof.bpf.caps import missing_capabilities
from fleetprof.cli.errors import CapabilityError, CliError, UsageError
from fleetprof.cli.server import add_listen_options, check_port, parse_retention, start_server
from fleetprof.cli.stopping import StopRequest

DEFAULT_DATA_DIR = Path("fleetprof-data")
AGENT_STOP_S = 60.0


class UpCommand:
    """Server + agent until Ctrl-C."""

    name = "up"
    help = "server with the embedded store plus a local agent: profile this machine and browse it"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Options."""
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=DEFAULT_DATA_DIR,
            help=f"store directory (default ./{DEFAULT_DATA_DIR})",
        )
        add_listen_options(parser, 8080)
        parser.add_argument(
            "--frequency", "-F", type=int, default=20, metavar="HZ", help="agent sampling rate"
        )
        parser.add_argument(
            "--interval", "-i", type=float, default=5.0, metavar="S", help="agent batch period"
        )
        parser.add_argument("--retention", default="30d", help="how long samples are kept (default 30d)")
        parser.add_argument("--no-agent", action="store_true", help="run the server only")

    def run(self, args: argparse.Namespace) -> int:
        """Start the server, then the agent; on Ctrl-C or SIGTERM stop the agent, then the server."""
        from fleetprof.server.run import ServerOptions

        check_port(args.port, "--port")
        if not 0 < args.interval <= 3600:
            raise UsageError("--interval must be between 0 and 3600 seconds")
        if not 0 < args.frequency <= 10_000:
            raise UsageError("--frequency must be between 1 and 10000 Hz")
        if not args.no_agent:
            missing = missing_capabilities()
            if missing:
                raise CapabilityError(
                    f"{missing[0].message} (or run the server alone: fleetprof up --no-agent)"
                )
        token = secrets.token_hex(16)
        options = ServerOptions(
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            grpc_port=None,
            ingest_token=token,
            retention_days=parse_retention(args.retention),
        )
        server = start_server(options)
        stop = StopRequest()
        agent: subprocess.Popen[bytes] | None = None
        try:
            with stop.catching():
                if not args.no_agent:
                    agent = _start_agent(args, server.url, token)
                print(server.url, flush=True)
                what = (
                    "server only"
                    if agent is None
                    else f"agent every {args.interval:g} s at {args.frequency} Hz"
                )
                print(
                    f"fleetprof up: open {server.url} (API docs {server.url}/docs); store {args.data_dir}; "
                    f"{what}; Ctrl-C stops",
                    file=sys.stderr,
                    flush=True,
                )
                while not stop.is_set():
                    if agent is not None and agent.poll() is not None:
                        raise CliError(f"the agent exited with status {agent.returncode} (see above)")
                    stop.event.wait(0.5)
                if agent is not None:
                    _stop_agent(agent)
        finally:
            if agent is not None and agent.poll() is None:
                _stop_agent(agent)
            server.close()
        print("fleetprof up: stopped", file=sys.stderr)
        return 0


def _start_agent(args: argparse.Namespace, url: str, token: str) -> subprocess.Popen[bytes]:
    """`fleetprof agent` sending to this server, its spool under the data directory, token in its env."""
    command = [
        sys.executable,
        "-m",
        "fleetprof",
        "agent",
        "--collector",
        url,
        "--frequency",
        str(args.frequency),
        "--interval",
        f"{args.interval:g}",
        "--spool-dir",
        str(args.data_dir / "spool"),
    ]
    env = dict(os.environ, FLEETPROF_TOKEN=token)
    try:
        # Its own process group: a terminal's Ctrl-C reaches `up` alone, which then stops it exactly once.
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, process_group=0)
    except OSError as exc:
        raise CliError(f"cannot start the agent: {exc.strerror or exc}") from None


def _stop_agent(agent: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the agent sends its last batch and exits; SIGKILL only past AGENT_STOP_S (its spool keeps
    whatever was not acknowledged for the next run)."""
    agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(AGENT_STOP_S)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()

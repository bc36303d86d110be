"""`fleetprof server`: the fleet backend (OTLP ingest over HTTP and gRPC, symbols, queries, UI) on a store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fleetprof.cli.errors import CliError, UsageError
from fleetprof.cli.stopping import StopRequest

if TYPE_CHECKING:
    from fleetprof.server.run import RunningServer, ServerOptions

TOKEN_ENV = "FLEETPROF_INGEST_TOKEN"
DEFAULT_DATA_DIR = Path("fleetprof-data")


def parse_retention(text: str) -> int:
    """Days of a `--retention` value: `30d`, `2w`, or a number of days."""
    value = text.strip().lower()
    scale = 1
    if value.endswith("d"):
        value = value[:-1]
    elif value.endswith("w"):
        value, scale = value[:-1], 7
    try:
        days = int(value) * scale
    except ValueError:
        raise UsageError(f"--retention {text!r}: give days like 30d or 2w") from None
    if not 1 <= days <= 3650:
        raise UsageError("--retention must be between 1 day and 10 years")
    return days


def parse_commit_interval(text: str) -> float:
    """Seconds of a `--commit-interval` value (0 to 60)."""
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"--commit-interval {text!r}: give seconds like 1 or 0.5") from None
    if not 0 <= seconds <= 60:  # also refuses nan and inf
        raise UsageError("--commit-interval must be between 0 and 60 seconds")
    return seconds


def check_port(value: int, option: str) -> int:
    """A TCP port number (0 = any free port)."""
    if not 0 <= value <= 65535:
        raise UsageError(f"{option} must be a port number (0-65535)")
    return value


def start_server(options: ServerOptions) -> RunningServer:
    """Start the server (store, HTTP, gRPC) or fail with its one-line reason."""
    from fleetprof.server.run import RunningServer, ServerStartError

    try:
        server = RunningServer(options)
        server.start()
    except ServerStartError as exc:
        raise CliError(str(exc)) from None
    return server


def add_listen_options(parser: argparse.ArgumentParser, port: int) -> None:
    """--host and --port, shared by `server` and `up`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"HTTP port (default {port}; 0 = any free)")


class ServerCommand:
    """Run the backend in the foreground until Ctrl-C or SIGTERM."""

    name = "server"
    help = "the fleet backend: OTLP ingest (HTTP, gRPC), central symbols, query API and web UI"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Options."""
        where = parser.add_mutually_exclusive_group()
        where.add_argument(
            "--data-dir", type=Path, help=f"embedded store directory (default ./{DEFAULT_DATA_DIR})"
        )
        where.add_argument(
            "--clickhouse-url", help="ClickHouse server or cluster, e.g. http://user:pw@host:8123"
        )
        add_listen_options(parser, 8080)
        parser.add_argument(
            "--grpc-port", type=int, default=4317, help="OTLP/gRPC port (default 4317; -1 = off)"
        )
        parser.add_argument(
            "--ingest-token",
            help=f"token agents must send to write (default ${TOKEN_ENV}; none = open writes)",
        )
        parser.add_argument("--retention", default="30d", help="how long samples are kept (default 30d)")
        parser.add_argument(
            "--commit-interval",
            default="0",
            metavar="SECONDS",
            help="start group commits at most this often: fewer, larger INSERTs for a collector in front "
            "of a ClickHouse cluster (default 0: as soon as requests arrive)",
        )

    def run(self, args: argparse.Namespace) -> int:
        """Serve until stopped."""
        from fleetprof.server.run import ServerOptions

        check_port(args.port, "--port")
        grpc_port = None if args.grpc_port == -1 else check_port(args.grpc_port, "--grpc-port")
        token = args.ingest_token if args.ingest_token is not None else os.environ.get(TOKEN_ENV) or None
        options = ServerOptions(
            data_dir=None if args.clickhouse_url else (args.data_dir or DEFAULT_DATA_DIR),
            clickhouse_url=args.clickhouse_url,
            host=args.host,
            port=args.port,
            grpc_port=grpc_port,
            ingest_token=token,
            retention_days=parse_retention(args.retention),
            commit_interval_s=parse_commit_interval(args.commit_interval),
        )
        server = start_server(options)
        where = options.clickhouse_url or str(options.data_dir)
        grpc = f", OTLP/gRPC on port {server.grpc_port}" if server.grpc_port else ""
        print(f"fleetprof server on {server.url} (store: {where}{grpc})", file=sys.stderr, flush=True)
        if token is None and args.host not in ("127.0.0.1", "::1", "localhost"):
            print(
                "fleetprof: warning: no --ingest-token; anyone who can reach this port can write",
                file=sys.stderr,
            )
        stop = StopRequest()
        try:
            with stop.catching():
                server.wait(stop.event)
        finally:
            server.close()
        return 0

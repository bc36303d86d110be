"""`fleetprof agent`: profile the whole host continuously and stream one OTLP batch per interval to a
collector (HTTP or gRPC), spooling on disk while it is unreachable; SIGTERM or Ctrl-C sends the last
window and exits 0."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from fleetprof.bpf.caps import missing_capabilities
from fleetprof.cachedir import default_cache_dir
from fleetprof.cli.errors import CapabilityError, CliError, UsageError
from fleetprof.cli.stopping import StopRequest
from fleetprof.reporter.spool import DEFAULT_MAX_BYTES, Spool, SpoolError
from fleetprof.tracer.sampler import SamplerError

TOKEN_ENV = "FLEETPROF_TOKEN"
MAX_FREQUENCY = 10_000
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0

log = logging.getLogger("fleetprof.agent")


class AgentCommand:
    """Continuous whole-host profiling for the fleet backend."""

    name = "agent"
    help = "profile the whole host continuously and send it to a collector"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Options per issue 9."""
        parser.add_argument(
            "--collector",
            required=True,
            metavar="URL",
            help="where to send profiles: http(s)://HOST:PORT (OTLP/HTTP) or grpc(s)://HOST:PORT (OTLP/gRPC)",
        )
        parser.add_argument(
            "--token", default=os.environ.get(TOKEN_ENV, ""), help=f"ingest token (default ${TOKEN_ENV})"
        )
        parser.add_argument(
            "--frequency", "-F", type=int, default=20, metavar="HZ", help="samples per second per CPU"
        )
        parser.add_argument(
            "--interval", "-i", type=float, default=5.0, metavar="S", help="seconds per batch (default 5)"
        )
        parser.add_argument("--host-name", metavar="NAME", help="host name to report (default: the kernel's)")
        parser.add_argument(
            "--spool-dir",
            type=Path,
            metavar="DIR",
            help="where batches wait for the collector (default: spool/ under the cache directory)",
        )
        parser.add_argument(
            "--spool-size",
            type=int,
            default=DEFAULT_MAX_BYTES >> 20,
            metavar="MIB",
            help=f"spool bound; the oldest batches are dropped past it (default {DEFAULT_MAX_BYTES >> 20})",
        )
        parser.add_argument(
            "--symbols",
            choices=("upload", "local", "off"),
            default="upload",
            help="upload: send native frames raw and upload symbol bundles the server lacks (default); "
            "local: symbolize on this host; off: send raw frames only",
        )
        parser.add_argument(
            "--symbol-url",
            metavar="URL",
            help="the server's HTTP API for symbol upload (default: the collector, when it is http(s))",
        )
        parser.add_argument("--verbose", "-v", action="store_true", help="log every batch")

    def run(self, args: argparse.Namespace) -> int:
        """Validate, then profile until SIGTERM or Ctrl-C."""
        from fleetprof.reporter.senders import CollectorUrlError, sender_for

        if not 0 < args.frequency <= MAX_FREQUENCY:
            raise UsageError(f"--frequency must be between 1 and {MAX_FREQUENCY} Hz")
        if not (MIN_INTERVAL_S <= args.interval <= MAX_INTERVAL_S and math.isfinite(args.interval)):
            raise UsageError(f"--interval must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S:.0f} seconds")
        if args.spool_size <= 0:
            raise UsageError("--spool-size must be a positive number of MiB")
        try:
            sender = sender_for(args.collector, args.token)
        except CollectorUrlError as exc:
            raise UsageError(str(exc)) from None
        symbol_url = _symbol_url(args)
        missing = missing_capabilities()
        if missing:
            raise CapabilityError(missing[0].message)
        spool_dir = args.spool_dir or default_cache_dir() / "spool"
        try:
            spool = Spool(spool_dir, args.spool_size << 20)
        except SpoolError as exc:
            raise CliError(str(exc)) from None
        _configure_logging(args.verbose)
        return _run(args, sender, spool, symbol_url)


def _symbol_url(args: argparse.Namespace) -> str:
    """Where symbol bundles go; "" when --symbols is not upload or no HTTP endpoint is known (then said)."""
    if args.symbols != "upload":
        return ""
    url = args.symbol_url or args.collector
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        if args.symbol_url:
            raise UsageError(f"--symbol-url {args.symbol_url!r}: give an http(s):// URL")
        print(
            "fleetprof: note: no symbol upload (a gRPC collector has no symbol API: give --symbol-url URL)",
            file=sys.stderr,
        )
        return ""
    return url


def _configure_logging(verbose: bool) -> None:
    """One line per message on stderr; the agent's own progress at INFO with -v."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fleetprof: %(message)s"))
    root = logging.getLogger("fleetprof")
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False
    if not verbose:  # the reporter's "collector reachable again" and spool notes still show
        logging.getLogger("fleetprof.reporter").setLevel(logging.INFO)


def _run(args: argparse.Namespace, sender: object, spool: Spool, symbol_url: str) -> int:
    from fleetprof.agent.fleet import FleetAgent, FleetOptions
    from fleetprof.reporter.reporter import Reporter
    from fleetprof.reporter.symbols import SymbolUploader

    reporter = Reporter(spool, sender)  # type: ignore[arg-type]
    uploader = SymbolUploader(symbol_url, args.token) if symbol_url else None
    options = FleetOptions(
        frequency_hz=args.frequency,
        interval_s=args.interval,
        host_name=args.host_name,
        symbols=args.symbols,
    )
    agent = FleetAgent(options, reporter, uploader)
    stop = StopRequest()
    started = False
    try:
        with stop.catching():
            try:
                agent.start()
                started = True
            except SamplerError as exc:
                raise CliError(str(exc)) from None
            upload = f", upload to {symbol_url}" if symbol_url else ""
            print(
                f"fleetprof: agent sending to {args.collector} every {args.interval:g} s at "
                f"{args.frequency} Hz (symbols: {args.symbols}{upload})",
                file=sys.stderr,
            )
            agent.run(stop.is_set)
            agent.finish()
    finally:
        if not started:
            reporter.close(0.0)
        agent.close()
    st = reporter.stats()
    print(
        f"fleetprof: agent stopped: {agent.windows} intervals, {st['reporter_sent_batches']} batches sent, "
        f"{st['reporter_spooled_batches']} spooled for later, {st['reporter_dropped_batches']} dropped, "
        f"{st['reporter_rejected_batches']} refused",
        file=sys.stderr,
    )
    return 0

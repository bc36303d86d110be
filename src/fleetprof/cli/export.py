"""`fleetprof export --server URL`: a selection of the fleet's profiles as pprof, folded, speedscope or
OTLP."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fleetprof.cli.errors import CliError, UsageError
from fleetprof.cli.serverclient import add_selection_options, check_server_url, get, selection_query

FORMATS = ("pprof", "folded", "speedscope", "otlp")
BINARY = frozenset({"pprof", "otlp"})


class ExportCommand:
    """Fetch a selection from the server and write it to a file or stdout."""

    name = "export"
    help = "export a selection of the server's profiles as pprof, folded, speedscope or OTLP"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Options."""
        parser.add_argument(
            "--server", required=True, metavar="URL", help="the server, e.g. http://HOST:8080"
        )
        add_selection_options(parser)
        parser.add_argument("--format", "-f", required=True, choices=FORMATS, help="output format")
        parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here (default stdout)")

    def run(self, args: argparse.Namespace) -> int:
        """Ask the server for the export and write it."""
        server = check_server_url(args.server)
        params = [*selection_query(args), ("format", args.format)]
        if args.output is None and args.format in BINARY and sys.stdout.isatty():
            raise UsageError(f"{args.format} is binary: give -o FILE or redirect stdout")
        body, _ = get(server, "/api/v1/export", params)
        if args.output is None:
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
            return 0
        tmp = args.output.with_name(args.output.name + ".part")
        try:
            tmp.write_bytes(body)
            os.replace(tmp, args.output)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"fleetprof: wrote {args.output} ({len(body)} bytes, {args.format})", file=sys.stderr)
        return 0

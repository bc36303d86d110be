"""A small client of the server's query API for `export --server` and `top --server`: standard library only
(hosts have no HTTP client package), selection options shared, every failure one line."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fleetprof.cli.errors import CliError, UsageError
from fleetprof.server.timerange import InputError, parse_duration, parse_filters, parse_instant

TIMEOUT_S = 120.0


def add_selection_options(parser: argparse.ArgumentParser, default_since: str | None = None) -> None:
    """--since | --from/--to, --filter KEY=VALUE (repeatable), --function."""
    parser.add_argument(
        "--since",
        default=None,
        metavar="D",
        help=f"last D: 30s, 15m, 2h, 7d (default {default_since or '15m'})",
    )
    parser.add_argument("--from", dest="from_", metavar="T", help="start: ISO 8601, epoch seconds, or now-1h")
    parser.add_argument("--to", metavar="T", help="end (default now)")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="host, process, pid, thread, container, executable (repeatable; values of a key are OR'ed)",
    )
    parser.add_argument("--function", metavar="NAME", help="only stacks containing this function")


def selection_query(args: argparse.Namespace, default_since: str = "15m") -> list[tuple[str, str]]:
    """Query parameters for the selection options, checked here so mistakes are said before any request."""
    try:
        if args.since and (args.from_ or args.to):
            raise InputError("give either --since or --from/--to, not both")
        params: list[tuple[str, str]] = []
        if args.from_ or args.to:
            if not args.from_:
                raise InputError("--to needs --from")
            start = parse_instant(args.from_)
            end = parse_instant(args.to) if args.to else None
            if end is not None and end <= start:
                raise InputError("--to must be after --from")
            params.append(("start", str(start)))
            if end is not None:
                params.append(("end", str(end)))
        else:
            since = args.since or default_since
            parse_duration(since)
            params.append(("since", since))
        for key, values in parse_filters(args.filter).items():
            params += [("filter", f"{key}={v}") for v in values]
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if args.function:
        params.append(("function", args.function))
    return params


def check_server_url(url: str) -> str:
    """The base URL without a trailing slash; usage error unless it is http(s)://HOST[:PORT]."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--server {url!r}: give the server's URL, like http://HOST:8080")
    return url.rstrip("/")


def get(server: str, path: str, params: list[tuple[str, str]]) -> tuple[bytes, str]:
    """GET `path` with `params`; the body and its content type, or a CliError with the server's reason."""
    url = f"{server}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Accept": "*/*"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raise CliError(f"server {server}: HTTP {exc.code}: {_reason(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CliError(f"cannot reach the server at {server}: {reason}") from None


def get_json(server: str, path: str, params: list[tuple[str, str]]) -> Any:
    """GET a JSON answer."""
    body, _ = get(server, path, params)
    try:
        return json.loads(body)
    except ValueError:
        raise CliError(f"server {server}: the answer to {path} is not JSON") from None


def _reason(exc: urllib.error.HTTPError) -> str:
    """The server's one-line error, else the HTTP reason."""
    try:
        body = exc.read(2000)
        return str(json.loads(body)["error"]).splitlines()[0][:300]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return str(exc.reason)

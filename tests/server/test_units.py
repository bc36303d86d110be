"""Pieces of the server without a store: time ranges, filters, body inflation limits, the token check, the
symbolization worker's bookkeeping."""

from __future__ import annotations

import gzip
import zlib

import pytest

from fleetprof.cli.errors import UsageError
from fleetprof.cli.server import parse_commit_interval, parse_retention
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.server.auth import TokenCheck
from fleetprof.server.ingest import IngestError, check_batch_id, inflate
from fleetprof.server.timerange import InputError, parse_duration, parse_filters, parse_instant, resolve_range
from fleetprof.server.worker import SymbolWorker

NOW = 1_750_000_000 * 10**9


def test_durations_and_instants():
    assert parse_duration("15m") == 15 * 60 * 10**9
    assert parse_duration("90") == 90 * 10**9
    assert parse_duration("1.5h") == 5400 * 10**9
    for bad in ("", "0s", "-5m", "15 minutes", "1e9", "9999999w"):
        with pytest.raises(InputError):
            parse_duration(bad)
    assert parse_instant("now", NOW) == NOW
    assert parse_instant("now-1h", NOW) == NOW - 3600 * 10**9
    assert parse_instant("1750000000", NOW) == NOW
    assert parse_instant("1750000000000", NOW) == NOW
    assert parse_instant(str(NOW), NOW) == NOW
    assert parse_instant("2025-06-15T15:06:40Z", NOW) == NOW
    assert parse_instant("2025-06-15T17:06:40+02:00", NOW) == NOW
    with pytest.raises(InputError):
        parse_instant("yesterday", NOW)


def test_ranges_and_filters():
    assert resolve_range(now_ns=NOW) == (NOW - 15 * 60 * 10**9, NOW)
    assert resolve_range("1h", now_ns=NOW) == (NOW - 3600 * 10**9, NOW)
    assert resolve_range(None, "now-2h", "now-1h", NOW) == (NOW - 7200 * 10**9, NOW - 3600 * 10**9)
    for args in (("1h", "now-1h", None), (None, "now", "now-1h"), (None, "0", None)):
        with pytest.raises(InputError):
            resolve_range(*args, now_ns=NOW)
    assert parse_filters(["host=a", "host=b", "pid=3", "thread=x=y"]) == {
        "host": ["a", "b"],
        "pid": ["3"],
        "thread": ["x=y"],
    }
    for bad in ("host", "=x"):
        with pytest.raises(InputError):
            parse_filters([bad])


def test_inflate_limits():
    data = b"profile bytes" * 100
    assert inflate(gzip.compress(data), "gzip", 10_000) == data
    assert inflate(gzip.compress(data[:600]) + gzip.compress(data[600:]), "gzip", 10_000) == data
    assert inflate(zlib.compress(data), "deflate", 10_000) == data
    assert inflate(data, "", 10) == data  # the wire limit applies to plain bodies, not this one
    cases = [
        (gzip.compress(data), "gzip", 100, 413),
        (gzip.compress(data)[:-9], "gzip", 10_000, 400),
        (b"plain", "gzip", 10_000, 400),
        (data, "br", 10_000, 415),
    ]
    for body, encoding, limit, status in cases:
        with pytest.raises(IngestError) as raised:
            inflate(body, encoding, limit)
        assert raised.value.status == status and "\n" not in raised.value.reason


def test_batch_ids_and_tokens():
    assert check_batch_id(None) is None and check_batch_id("") is None
    assert check_batch_id("a" * 32) == "a" * 32
    for bad in ("x" * 129, "a\nb", "ü"):
        with pytest.raises(IngestError):
            check_batch_id(bad)
    check = TokenCheck("s3cret")
    assert check.allows("Bearer s3cret") and check.allows("bearer  s3cret ")
    for header in (None, "", "Bearer", "Bearer s3cre", "Basic s3cret", "s3cret"):
        assert not check.allows(header)
    assert TokenCheck(None).allows(None) and not TokenCheck(None).required


def test_retention_option():
    assert parse_retention("30d") == 30 and parse_retention("2w") == 14 and parse_retention("7") == 7
    for bad in ("0d", "forever", "99999d"):
        with pytest.raises(UsageError):
            parse_retention(bad)


def test_commit_interval_option_reaches_the_group_commit():
    from fleetprof.server.app import ServerConfig, create_app

    assert parse_commit_interval("1") == 1.0 and parse_commit_interval("0.25") == 0.25
    for bad in ("-1", "61", "nan", "inf", "soon"):
        with pytest.raises(UsageError):
            parse_commit_interval(bad)
    app = create_app(_Store([]), None, config=ServerConfig(commit_interval_s=1.5), start_worker=False)
    assert app.state.ingestor.group.min_interval_s == 1.5


class _Store:
    def __init__(self, missing):
        self.missing = list(missing)
        self.rows = []

    def missing_symbols(self, limit):
        out, self.missing = self.missing[:limit], self.missing[limit:]
        return out

    def put_symbols(self, rows):
        self.rows += list(rows)


class _Symbolizer:
    def symbolize(self, file_id, build_id, addresses):
        if file_id == "bad":
            raise RuntimeError("corrupt symbols")
        return {a: (Frame(FrameKind.NATIVE, f"fn_{a:x}"),) for a in addresses if a % 2 == 0}


def test_worker_stores_each_address_once_and_survives_a_bad_file():
    store = _Store([("good", "b1", 2), ("good", "b1", 3), ("bad", "", 4), ("good", "b1", 6)])
    worker = SymbolWorker(store, _Symbolizer())
    assert worker.run_once() is False
    by_key = {(f, a): frames for f, a, frames in store.rows}
    assert len(by_key) == len(store.rows) == 4
    assert by_key[("good", 2)][0].function == "fn_2" and by_key[("good", 6)][0].function == "fn_6"
    assert by_key[("good", 3)] == () and by_key[("bad", 4)] == ()
    assert (worker.symbolized, worker.unknown) == (2, 2)

"""Reporter: batches reach a fake collector gzip'd with the token and a batch id, over HTTP and gRPC; a
collector that is down gets every batch later, none twice; the spool bound drops the oldest and counts;
refusals (4xx other than 408/429) are dropped and counted, not retried forever."""

from __future__ import annotations

import gzip
import logging
import time
from pathlib import Path

import pytest
from fake_collector import FakeCollector, FakeGrpcCollector
from test_output_profiles import rich_profile

from fleetprof.reporter.backoff import Backoff
from fleetprof.reporter.batch import Batch, encode_batch, new_batch_id
from fleetprof.reporter.reporter import Reporter
from fleetprof.reporter.senders import CollectorUrlError, HttpSender, Outcome, http_outcome, sender_for
from fleetprof.reporter.spool import Spool

TOKEN = "s3cret"


def fast_backoff() -> Backoff:
    return Backoff(base_s=0.01, cap_s=0.05)


def free_port() -> int:
    probe = FakeCollector().start()
    port = probe.port
    probe.stop()
    return port


def reporter_for(url: str, spool_dir: Path, max_bytes: int = 1 << 30) -> Reporter:
    return Reporter(Spool(spool_dir, max_bytes), sender_for(url, TOKEN, timeout_s=5), fast_backoff())


def wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def collector():
    fake = FakeCollector().start()
    yield fake
    fake.stop()


def test_batch_arrives_gzipped_with_token_and_batch_id(collector: FakeCollector, tmp_path: Path) -> None:
    profile = rich_profile()
    reporter = reporter_for(collector.url, tmp_path)
    reporter.start()
    batch = encode_batch(profile)
    reporter.submit(batch)
    assert collector.state.wait_for(lambda: len(collector.state.received) == 1)
    assert reporter.close()
    got = collector.state.received[0]
    assert got.headers["Content-Type"] == "application/x-protobuf"
    assert got.headers["Content-Encoding"] == "gzip"
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert got.headers["X-Fleetprof-Batch"] == batch.batch_id
    assert got.body[:2] == b"\x1f\x8b"
    assert got.request is not None
    counts = sum(
        len(s.timestamps_unix_nano) or sum(s.values)
        for rp in got.request.resource_profiles
        for sp in rp.scope_profiles
        for p in sp.profiles
        for s in p.samples
    )
    assert counts == profile.total
    assert reporter.sent_batches == 1
    assert list(tmp_path.iterdir()) == []  # acknowledged: gone from the spool


def test_collector_down_then_up_every_batch_once(tmp_path: Path) -> None:
    port = free_port()
    fake = FakeCollector(port)
    reporter = reporter_for(fake.url, tmp_path)
    reporter.start()
    batches = [encode_batch(rich_profile()) for _ in range(6)]
    for batch in batches:
        reporter.submit(batch)
    assert wait(lambda: reporter.retries >= 3)  # it tried and failed while the collector was down
    assert len(reporter.spool) == len(batches)
    fake.start()
    try:
        assert wait(lambda: reporter.sent_batches == len(batches))
        assert reporter.close()
    finally:
        fake.stop()
    ids = [r.headers["X-Fleetprof-Batch"] for r in fake.state.accepted()]
    assert ids == [b.batch_id for b in batches]  # all, in order, none twice
    assert reporter.spool.dropped_batches == 0


def test_spool_survives_restart_and_sends_later(collector: FakeCollector, tmp_path: Path) -> None:
    first = Spool(tmp_path)
    batches = [Batch(new_batch_id(), gzip.compress(b"x" * i)) for i in range(3)]
    for batch in batches:
        first.put(batch)
    (tmp_path / ".tmp-000000000009-deadbeef.otlp.gz").write_bytes(b"half written")
    collector.state.status = 200
    again = Spool(tmp_path)
    assert [e.batch_id for e in again.pending()] == [b.batch_id for b in batches]
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    assert again.load(again.pending()[1]) == batches[1]
    later = again.put(Batch(new_batch_id(), b"y"))
    assert later is not None and later.seq == 3  # numbering continues after the restart


def test_spool_bound_drops_oldest_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    batches = [Batch(new_batch_id(), bytes([i]) * 300) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="fleetprof.reporter.spool"):
        for batch in batches:
            spool.put(batch)
    assert [e.batch_id for e in spool.pending()] == [b.batch_id for b in batches[2:]]
    assert spool.dropped_batches == 2
    assert spool.dropped_bytes == 600
    assert spool.bytes == 900
    assert len(list(tmp_path.iterdir())) == 3
    assert "dropped" in caplog.text and "spool is full" in caplog.text
    assert spool.put(Batch(new_batch_id(), b"z" * 2000)) is None  # larger than the bound itself
    assert spool.dropped_batches == 3


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_refused_batch_is_dropped_and_counted(collector: FakeCollector, tmp_path: Path, status: int) -> None:
    collector.state.statuses = [status]
    reporter = reporter_for(collector.url, tmp_path)
    reporter.start()
    refused, good = encode_batch(rich_profile()), encode_batch(rich_profile())
    reporter.submit(refused)
    reporter.submit(good)
    assert wait(lambda: reporter.sent_batches == 1)
    assert reporter.close()
    assert reporter.rejected_batches == 1
    assert str(status) in reporter.last_error
    posts = [r.headers["X-Fleetprof-Batch"] for r in collector.state.received]
    assert posts == [refused.batch_id, good.batch_id]  # the refused one was tried once


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_transient_answers_are_retried(collector: FakeCollector, tmp_path: Path, status: int) -> None:
    collector.state.statuses = [status, status]
    reporter = reporter_for(collector.url, tmp_path)
    reporter.start()
    batch = encode_batch(rich_profile())
    reporter.submit(batch)
    assert wait(lambda: reporter.sent_batches == 1)
    assert reporter.close()
    assert reporter.retries == 2 and reporter.rejected_batches == 0
    assert [r.headers["X-Fleetprof-Batch"] for r in collector.state.accepted()] == [batch.batch_id]


def test_close_leaves_undelivered_batches_spooled(tmp_path: Path) -> None:
    reporter = reporter_for(f"http://127.0.0.1:{free_port()}", tmp_path)
    reporter.start()
    reporter.submit(encode_batch(rich_profile()))
    started = time.monotonic()
    assert not reporter.close(flush_timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert len(Spool(tmp_path)) == 1


def test_grpc_export_with_token_and_retry(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    import grpc

    fake = FakeGrpcCollector()
    try:
        fake.codes = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED]
        reporter = reporter_for(fake.url, tmp_path)
        reporter.start()
        refused = encode_batch(rich_profile())  # UNAVAILABLE (retried), then UNAUTHENTICATED (dropped)
        good = encode_batch(rich_profile())
        reporter.submit(refused)
        reporter.submit(good)
        assert wait(lambda: reporter.sent_batches == 1)
        assert reporter.close()
    finally:
        fake.stop()
    assert reporter.retries == 1 and reporter.rejected_batches == 1
    assert "UNAUTHENTICATED" in reporter.last_error
    [(metadata, request)] = fake.requests
    assert metadata["authorization"] == f"Bearer {TOKEN}"
    assert metadata["x-fleetprof-batch"] == good.batch_id
    assert request.SerializeToString() == good.request_bytes()


def test_backoff_grows_capped_with_jitter() -> None:
    low = Backoff(base_s=1, cap_s=8, rand=lambda: 0.0)
    assert [low.next_delay() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    high = Backoff(base_s=1, cap_s=8, rand=lambda: 0.999999)
    delays = [high.next_delay() for _ in range(5)]
    assert delays == pytest.approx([1, 2, 4, 8, 8], rel=1e-5)
    high.reset()
    assert high.next_delay() == pytest.approx(1, rel=1e-5)


def test_http_outcomes() -> None:
    assert http_outcome(200) is Outcome.ACK and http_outcome(204) is Outcome.ACK
    assert {http_outcome(s) for s in (408, 429, 500, 502, 503)} == {Outcome.RETRY}
    assert {http_outcome(s) for s in (400, 401, 403, 404, 413, 415)} == {Outcome.REJECT}


@pytest.mark.parametrize(
    "url", ["localhost:4318", "ftp://host/x", "http://", "grpc://host:4317/v1development/profiles"]
)
def test_bad_collector_urls_are_one_line_errors(url: str) -> None:
    with pytest.raises(CollectorUrlError) as err:
        sender_for(url)
    assert "\n" not in str(err.value)


def test_http_sender_keeps_a_path_prefix() -> None:
    sender = sender_for("https://collector.example/otlp/", "t")
    assert isinstance(sender, HttpSender)
    assert sender.url == "https://collector.example/otlp/v1development/profiles"

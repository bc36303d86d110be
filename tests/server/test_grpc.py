"""OTLP/gRPC ingest: ProfilesService/Export stores like HTTP does; token and malformed input refused."""

from __future__ import annotations

import grpc
import pytest

from fleetprof.reporter.batch import encode_batch
from fleetprof.reporter.senders import GrpcSender, Outcome
from fleetprof.server.grpc_server import SERVICE, start_grpc, stop_grpc
from tests.server.conftest import TOKEN, named_profile, new_batch_id, sample_count


@pytest.fixture(scope="module")
def grpc_port(client):
    server, port = start_grpc(client.app.state.ingestor, client.app.state.auth, "127.0.0.1", 0, 1 << 20)
    yield port
    stop_grpc(server, 1.0)


def test_export_stores_and_is_idempotent(grpc_port, store):
    sender = GrpcSender(f"127.0.0.1:{grpc_port}", TOKEN, timeout_s=30)
    batch = encode_batch(named_profile("grpc-host", "grpc_leaf"), new_batch_id())
    try:
        assert sender.send(batch).outcome is Outcome.ACK
        assert sender.send(batch).outcome is Outcome.ACK
    finally:
        sender.close()
    assert sample_count(store, "grpc-host") == 40


def test_wrong_token_and_malformed(grpc_port, store):
    batch = encode_batch(named_profile("grpc-bad"), new_batch_id())
    for token in ("", "nope"):
        sender = GrpcSender(f"127.0.0.1:{grpc_port}", token, timeout_s=30)
        try:
            result = sender.send(batch)
        finally:
            sender.close()
        assert result.outcome is Outcome.REJECT and "UNAUTHENTICATED" in result.reason
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        export = channel.unary_unary(
            f"/{SERVICE}/Export", request_serializer=None, response_deserializer=None
        )
        for body, code in (
            (b"\xff\xff\xff garbage", grpc.StatusCode.INVALID_ARGUMENT),
            (batch.request_bytes()[:-7], grpc.StatusCode.INVALID_ARGUMENT),
            (b"\0" * (2 << 20), grpc.StatusCode.RESOURCE_EXHAUSTED),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                export(body, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30)
            assert raised.value.code() == code
            assert "\n" not in (raised.value.details() or "")
    assert sample_count(store, "grpc-bad") == 0

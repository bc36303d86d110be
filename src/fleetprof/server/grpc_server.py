"""OTLP/gRPC ingest: `ProfilesService/Export` on its own port, the token and batch id in metadata, the same
decode and store path as OTLP/HTTP (INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED on refusal)."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc

from fleetprof.server.auth import TokenCheck
from fleetprof.server.ingest import IngestError, Ingestor

SERVICE = "opentelemetry.proto.collector.profiles.v1development.ProfilesService"
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


class GrpcIngest:
    """The Export handler over raw request bytes (deserialized by the shared ingest path)."""

    def __init__(self, ingestor: Ingestor, auth: TokenCheck) -> None:
        self.ingestor = ingestor
        self.auth = auth

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Check the token, store the request, answer an empty ExportProfilesServiceResponse."""
        metadata = {k.lower(): v for k, v in context.invocation_metadata()}
        if not self.auth.allows(str(metadata.get("authorization", "")) or None):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong ingest token")
        batch = metadata.get("x-fleetprof-batch")
        try:
            self.ingestor.ingest_bytes(request, str(batch) if batch else None)
        except IngestError as exc:
            context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.reason)
        except Exception as exc:  # any other failure is the server's; the client may retry
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        return b""


def start_grpc(
    ingestor: Ingestor, auth: TokenCheck, host: str, port: int, max_message_bytes: int, workers: int = 4
) -> tuple[grpc.Server, int]:
    """Serve Export on host:port (0 picks a free port); returns the started server and its port."""
    handler = GrpcIngest(ingestor, auth)
    method = grpc.unary_unary_rpc_method_handler(
        handler.export, request_deserializer=None, response_serializer=None
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetprof-grpc"),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, {"Export": method})],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 1 << 20),
        ],
    )
    bound = server.add_insecure_port(f"{_bracket(host)}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    server.start()
    return server, bound


def _bracket(host: str) -> str:
    """IPv6 literals in brackets for the gRPC address."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def stop_grpc(server: Any, grace_s: float = 5.0) -> None:
    """Stop accepting calls and let running ones finish (up to `grace_s`)."""
    server.stop(grace_s).wait()

"""A fake fleetprof collector for reporter tests: a tiny threaded HTTP server (OTLP ingest and the symbol
API) and an in-process gRPC ProfilesService, both recording what they receive and answering as told."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
    ExportProfilesServiceResponse,
)


@dataclass
class Received:
    """One request as the collector saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes  # as sent (gzip'd for OTLP over HTTP)
    request: ExportProfilesServiceRequest | None = None


@dataclass
class CollectorState:
    """What the fake answers and what it got."""

    status: int = 200  # answer to OTLP posts (while `statuses` is empty)
    statuses: list[int] = field(default_factory=list)  # answers for the next posts, consumed in order
    symbols: dict[str, bytes] = field(default_factory=dict)  # file id -> uploaded bundle
    known: set[str] = field(default_factory=set)  # file ids the server already has
    received: list[Received] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def next_status(self) -> int:
        return self.statuses.pop(0) if self.statuses else self.status

    def accepted(self) -> list[Received]:
        """OTLP posts that were answered 2xx."""
        with self.lock:
            posts = [r for r in self.received if r.path.endswith("/profiles")]
            return [r for r in posts if r.headers.get("_status") == "200"]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(predicate, timeout)


def _handler(state: CollectorState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def _answer(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self, body: bytes, status: int, request: ExportProfilesServiceRequest | None) -> None:
            headers = {k: v for k, v in self.headers.items()}
            headers["_status"] = str(status)
            with state.arrived:
                state.received.append(Received(self.command, self.path, headers, body, request))
                state.arrived.notify_all()

        def do_POST(self) -> None:
            body = self._body()
            if self.path == "/v1development/profiles":
                with state.lock:
                    status = state.next_status()
                request = None
                if status == 200:
                    request = ExportProfilesServiceRequest()
                    request.ParseFromString(gzip.decompress(body))
                self._record(body, status, request)
                reply = ExportProfilesServiceResponse().SerializeToString() if status == 200 else b"refused"
                self._answer(status, reply, "application/x-protobuf")
            elif self.path == "/api/v1/symbols/missing":
                wanted = json.loads(body)
                with state.lock:
                    missing = [f for f in wanted if f not in state.known and f not in state.symbols]
                self._record(body, 200, None)
                self._answer(200, json.dumps(missing).encode())
            else:
                self._answer(404)

        def do_PUT(self) -> None:
            body = self._body()
            file_id = self.path.rsplit("/", 1)[-1]
            with state.lock:
                state.symbols[file_id] = body
            self._record(body, 200, None)
            self._answer(200, b"{}")

    return Handler


class FakeCollector:
    """The HTTP fake on 127.0.0.1; `stop()` then `start()` again takes it down and up on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.state = CollectorState()
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeCollector:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self.state))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class FakeGrpcCollector:
    """An in-process gRPC ProfilesService/Export recording requests and metadata; `codes` are the answers for
    the next calls (None = OK)."""

    def __init__(self) -> None:
        import grpc

        self.grpc = grpc
        self.requests: list[tuple[dict[str, str], ExportProfilesServiceRequest]] = []
        self.codes: list[object] = []
        self.lock = threading.Lock()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.profiles.v1development.ProfilesService",
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=ExportProfilesServiceRequest.FromString,
                    response_serializer=ExportProfilesServiceResponse.SerializeToString,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def _export(
        self, request: ExportProfilesServiceRequest, context: object
    ) -> ExportProfilesServiceResponse:
        with self.lock:
            code = self.codes.pop(0) if self.codes else None
            if code is None:
                self.requests.append((dict(context.invocation_metadata()), request))  # type: ignore[attr-defined]
        if code is not None:
            context.abort(code, "told to fail")  # type: ignore[attr-defined]
        return ExportProfilesServiceResponse()

    def stop(self) -> None:
        self.server.stop(0)

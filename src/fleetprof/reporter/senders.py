"""Deliver one batch to a collector: OTLP/HTTP (`POST /v1development/profiles`, gzip'd protobuf) or OTLP/gRPC
(`ProfilesService/Export`). Each answers ACK, RETRY (the collector is down, slow or asks to retry) or
REJECT (it refused this batch for good, e.g. 400 or 401: retrying would not help)."""

from __future__ import annotations

import enum
import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from fleetprof import __version__
from fleetprof.reporter.batch import Batch

HTTP_PATH = "/v1development/profiles"
GRPC_METHOD = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
BATCH_HEADER = "X-Fleetprof-Batch"
RETRYABLE_HTTP = frozenset({408, 429})
DEFAULT_TIMEOUT_S = 30.0


class Outcome(enum.Enum):
    """What became of one delivery attempt."""

    ACK = "ack"
    RETRY = "retry"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Result:
    """An attempt's outcome and, unless acknowledged, a one-line reason."""

    outcome: Outcome
    reason: str = ""


class Sender(Protocol):
    """Delivers a batch; never raises for collector trouble (it is in the Result)."""

    def send(self, batch: Batch) -> Result:
        """One attempt."""

    def close(self) -> None:
        """Release connections."""


class CollectorUrlError(ValueError):
    """A --collector URL this agent can't use (one-line reason)."""


def http_outcome(status: int) -> Outcome:
    """ACK for 2xx; RETRY for 408, 429 and 5xx; REJECT for other 4xx (and anything unexpected)."""
    if 200 <= status < 300:
        return Outcome.ACK
    if status in RETRYABLE_HTTP or status >= 500:
        return Outcome.RETRY
    return Outcome.REJECT


class HttpSender:
    """OTLP/HTTP with the standard library only, so hosts need no HTTP client package."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = base_url.rstrip("/") + HTTP_PATH
        self.token = token
        self.timeout_s = timeout_s

    def send(self, batch: Batch) -> Result:
        """POST the gzip'd request with the token and the batch id."""
        headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            BATCH_HEADER: batch.batch_id,
            "User-Agent": f"fleetprof-agent/{__version__}",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=batch.body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
                return Result(http_outcome(response.status), f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc)
            return Result(http_outcome(exc.code), f"HTTP {exc.code}{': ' + detail if detail else ''}")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            return Result(Outcome.RETRY, f"cannot reach {self.url}: {reason}")

    def close(self) -> None:
        """Nothing held between requests."""


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The first line of an error response's body, briefly."""
    try:
        text = exc.read(300).decode("utf-8", "replace")
    except OSError:
        return ""
    return text.strip().splitlines()[0][:200] if text.strip() else ""


# Per the OTLP specification, the codes a client retries; every other error is final.
_RETRYABLE_GRPC = (
    "CANCELLED",
    "DEADLINE_EXCEEDED",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNAVAILABLE",
    "DATA_LOSS",
    "RESOURCE_EXHAUSTED",
)


class GrpcSender:
    """OTLP/gRPC: the request sent as it is serialized (gzip on the wire), token and batch id in metadata.
    grpcio is imported on first use: hosts that speak HTTP don't need it."""

    def __init__(
        self, target: str, token: str = "", secure: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        try:
            import grpc
        except ImportError:
            raise CollectorUrlError("a grpc:// collector needs grpcio (pip install grpcio)") from None
        self._grpc: Any = grpc
        self.target = target
        self.token = token
        self.timeout_s = timeout_s
        credentials = grpc.ssl_channel_credentials() if secure else None
        self._channel = (
            grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        )
        self._export = self._channel.unary_unary(
            GRPC_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        self._retryable = frozenset(getattr(grpc.StatusCode, name) for name in _RETRYABLE_GRPC)

    def send(self, batch: Batch) -> Result:
        """Export the request; the status code decides retry or reject."""
        metadata = [("x-fleetprof-batch", batch.batch_id)]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        grpc = self._grpc
        try:
            self._export(
                batch.request_bytes(),
                timeout=self.timeout_s,
                metadata=metadata,
                compression=grpc.Compression.Gzip,
            )
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            name = code.name if code is not None else "UNKNOWN"
            outcome = Outcome.RETRY if code in self._retryable else Outcome.REJECT
            return Result(outcome, f"gRPC {name}: {details}")
        return Result(Outcome.ACK)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


def sender_for(collector: str, token: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> Sender:
    """A sender for `--collector`: http(s)://HOST[:PORT][/prefix] or grpc(s)://HOST:PORT."""
    parts = urlsplit(collector)
    if not parts.netloc:
        raise CollectorUrlError(
            f"--collector {collector!r}: give a URL like http://HOST:PORT or grpc://HOST:PORT"
        )
    if parts.scheme in ("http", "https"):
        return HttpSender(collector, token, timeout_s)
    if parts.scheme in ("grpc", "grpcs"):
        if parts.path not in ("", "/"):
            raise CollectorUrlError(f"--collector {collector!r}: a gRPC collector URL has no path")
        return GrpcSender(parts.netloc, token, secure=parts.scheme == "grpcs", timeout_s=timeout_s)
    raise CollectorUrlError(f"--collector {collector!r}: the scheme must be http, https, grpc or grpcs")

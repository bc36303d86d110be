"""The write routes, each behind the ingest token: OTLP/HTTP profiles ingest and symbol bundle upload."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fleetprof.server.ingest import IngestError, inflate

OTLP_PATH = "/v1development/profiles"
BATCH_HEADER = "X-Fleetprof-Batch"
_FILE_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_ASK = 10_000


class Unauthorized(Exception):
    """The request lacks the ingest token."""


def require_token(request: Request) -> None:
    """Raise Unauthorized unless the Authorization header carries the ingest token."""
    if not request.app.state.auth.allows(request.headers.get("authorization")):
        raise Unauthorized


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise IngestError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
        except ValueError:
            raise IngestError(400, "bad Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _empty_response() -> bytes:
    """A serialized, empty ExportProfilesServiceResponse (full success)."""
    from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
        ExportProfilesServiceResponse,
    )

    return ExportProfilesServiceResponse().SerializeToString()


def build_router() -> APIRouter:
    """The routes that change the store."""
    router = APIRouter()

    @router.post(
        OTLP_PATH,
        tags=["ingest"],
        summary="OTLP profiles (v1development) over HTTP: protobuf or JSON, gzip or plain",
        responses={
            200: {"content": {"application/x-protobuf": {}}},
            400: {"description": "malformed or truncated request"},
            401: {"description": "missing or wrong ingest token"},
            413: {"description": "body too large"},
        },
        response_class=Response,
    )
    async def post_profiles(
        request: Request,
        x_fleetprof_batch: Annotated[str | None, Header(alias=BATCH_HEADER)] = None,
    ) -> Response:
        """Store one export request; the X-Fleetprof-Batch id (else the content) makes retries no-ops."""
        require_token(request)
        config = request.app.state.config
        body = await read_limited(request, config.max_body_bytes)
        data = inflate(body, request.headers.get("content-encoding", ""), config.max_decompressed_bytes)
        content_type = request.headers.get("content-type", "application/x-protobuf")
        result = await run_in_threadpool(
            request.app.state.ingestor.ingest_bytes, data, x_fleetprof_batch, content_type
        )
        headers = {"X-Fleetprof-Samples": str(result.samples)}
        if content_type.split(";")[0].strip().lower() == "application/json":
            return Response(b"{}", media_type="application/json", headers=headers)
        return Response(_empty_response(), media_type="application/x-protobuf", headers=headers)

    @router.post("/api/v1/symbols/missing", tags=["symbols"], summary="Which of these file ids lack symbols")
    def post_missing(request: Request, file_ids: Annotated[list[str], Body()]) -> list[str]:
        """The subset of `file_ids` (32 hex digits each) with no uploaded symbol bundle."""
        require_token(request)
        if len(file_ids) > MAX_ASK:
            raise IngestError(413, f"at most {MAX_ASK} file ids per request")
        bad = next((f for f in file_ids if not _FILE_ID.match(f)), None)
        if bad is not None:
            raise IngestError(400, f"bad file id {bad[:40]!r} (32 lowercase hex digits)")
        return missing_files(request.app.state.store, file_ids)

    @router.put(
        "/api/v1/symbols/{file_id}",
        tags=["symbols"],
        summary="Upload the symbol bundle of one file id",
        openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
    )
    async def put_symbols(request: Request, file_id: str) -> JSONResponse:
        """Check the bundle (it must parse and name this file id), store it, and symbolize with it."""
        require_token(request)
        if not _FILE_ID.match(file_id):
            raise IngestError(400, "bad file id (32 lowercase hex digits)")
        config = request.app.state.config
        body = await read_limited(request, config.max_symbol_bytes)
        info = await run_in_threadpool(_check_bundle, body, file_id)
        await run_in_threadpool(request.app.state.store.put_symbol_file, file_id, body)
        worker = request.app.state.worker
        if worker is not None:
            worker.symbols_arrived(file_id)
        return JSONResponse({"file_id": file_id, "size": len(body), **info}, status_code=201)

    return router


def _check_bundle(data: bytes, file_id: str) -> dict[str, Any]:
    """Decode the bundle whole; 400 with the reason when it is bad or for another file."""
    from fleetprof.symbolize.bundle import BundleError, load_bundle

    if not data:
        raise IngestError(400, "empty symbol bundle")
    try:
        bundle = load_bundle(data)
    except BundleError as exc:
        raise IngestError(400, str(exc)) from None
    except Exception as exc:  # a decoder bug on hostile bytes is still the client's bad bundle
        raise IngestError(400, f"bad bundle: {type(exc).__name__}: {exc}") from None
    if bundle.file_id != file_id:
        raise IngestError(400, f"the bundle is for file id {bundle.file_id[:40]}, not {file_id}")
    return {"build_id": bundle.build_id, "module": bundle.module}


def missing_files(store: Any, file_ids: list[str]) -> list[str]:
    """`file_ids` with no symbol bundle in the store, in the order asked."""
    if not file_ids:
        return []
    table = store.query(
        f"SELECT DISTINCT file_id FROM {store.t('symbol_files')} WHERE file_id IN {{ids:Array(String)}}",
        {"ids": list(file_ids)},
    )
    present = set(table.column("file_id").to_pylist())
    return [f for f in dict.fromkeys(file_ids) if f not in present]

"""The FastAPI app: health, OTLP ingest, symbol upload, the /api/v1 query API, and the web UI's files at `/`.

`create_app` wires a store, a central symbolizer and the ingest token into one ASGI app; the background
symbolization worker starts and stops with the app's lifespan. Errors become one-line JSON reasons.
Answers of at least `GZIP_MIN_BYTES` go out gzip-encoded to clients that accept it (flame graph JSON
shrinks about tenfold).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.gzip import GZipMiddleware

from fleetprof import __version__
from fleetprof.query.selection import QueryError
from fleetprof.server import api, ui, writes
from fleetprof.server.auth import TokenCheck
from fleetprof.server.ingest import IngestError, Ingestor
from fleetprof.server.timerange import InputError
from fleetprof.server.worker import SymbolWorker
from fleetprof.store import StoreError

log = logging.getLogger(__name__)
GZIP_MIN_BYTES = 1024  # smaller answers fit a packet or two either way
GZIP_LEVEL = 5  # most of level 9's ratio on JSON at a fraction of its CPU


@dataclass(frozen=True)
class ServerConfig:
    """Limits and locations; the defaults suit one agent batch per host every few seconds."""

    max_body_bytes: int = 32 << 20  # compressed OTLP body
    max_decompressed_bytes: int = 256 << 20
    max_symbol_bytes: int = 512 << 20
    ui_dir: Path | None = None  # None: the built UI if one is found (see fleetprof.server.ui)
    commit_interval_s: float = 0.0  # group commits start at least this far apart (fewer, larger INSERTs)


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    line = (reason or "error").strip().splitlines()
    return JSONResponse({"error": line[0][:500] if line else "error"}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Map every failure to a status and a one-line reason (never a traceback in a response)."""

    @app.exception_handler(writes.Unauthorized)
    async def unauthorized(_r: Request, _e: Exception) -> JSONResponse:
        return _error(401, "missing or wrong ingest token", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(IngestError)
    async def refused(_r: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IngestError)
        return _error(exc.status, exc.reason)

    @app.exception_handler(QueryError)
    @app.exception_handler(InputError)
    async def bad_query(_r: Request, exc: Exception) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_params(_r: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(
            400 if where.startswith(("query", "path")) else 422, f"{where}: {first.get('msg', 'invalid')}"
        )

    @app.exception_handler(StoreError)
    async def store_trouble(_r: Request, exc: Exception) -> JSONResponse:
        return _error(503, f"store: {exc}")

    @app.exception_handler(Exception)
    async def internal(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def create_app(
    store: Any,
    symbolizer: Any | None,
    ingest_token: str | None = None,
    config: ServerConfig | None = None,
    start_worker: bool = True,
) -> FastAPI:
    """The server app over `store`; `symbolizer` (CentralSymbolizer or None) names raw native frames in the
    background; `ingest_token` guards the write routes (None leaves them open)."""
    config = config or ServerConfig()
    worker = SymbolWorker(store, symbolizer) if symbolizer is not None else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if worker is not None and start_worker:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.close()

    app = FastAPI(
        title="fleetprof",
        version=__version__,
        description="Fleet profiler backend: OTLP profiles ingest, central symbolization, queries.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/api/v1/openapi.json",
    )
    app.state.store = store
    app.state.config = config
    app.state.auth = TokenCheck(ingest_token)
    app.state.worker = worker
    app.state.ingestor = Ingestor(
        store, worker.wake if worker is not None else None, commit_interval_s=config.commit_interval_s
    )
    _install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)

    @app.get("/healthz", tags=["meta"], summary="Liveness and store reachability")
    def healthz() -> dict[str, Any]:
        """`ok` when the store answers a trivial query."""
        store.query("SELECT 1 AS one")
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/status", tags=["meta"], summary="Server version and background symbolization")
    def status() -> dict[str, Any]:
        """Version, whether writes need a token, and the symbolization worker's counters."""
        return {
            "version": __version__,
            "token_required": app.state.auth.required,
            "symbolization": worker.stats() if worker is not None else None,
        }

    app.include_router(writes.build_router())
    app.include_router(api.build_router())
    ui.mount(app, config.ui_dir)
    return app

"""Run the server: open the store and symbolizer, serve the app on uvicorn and gRPC, stop everything cleanly.

Used by `fleetprof server` (in the foreground) and `fleetprof up` (beside a local agent). The listening
sockets are bound before anything is served, so a port in use fails at once with one line.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetprof.cachedir import default_cache_dir

log = logging.getLogger(__name__)


class ServerStartError(Exception):
    """The server could not start (store, port, dependencies); one line."""


@dataclass
class ServerOptions:
    """Where to store, where to listen, and the ingest token."""

    data_dir: Path | None = None
    clickhouse_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int | None = 4317  # None: no gRPC listener
    ingest_token: str | None = None
    retention_days: int = 30
    commit_interval_s: float = 0.0  # see ServerConfig.commit_interval_s
    cache_dir: Path | None = None  # central symbol cache; default: under the data dir or the user cache
    ui_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServerStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


class RunningServer:
    """The store, the app on uvicorn (in a thread), the gRPC listener; `stop()` undoes all of it."""

    def __init__(self, options: ServerOptions) -> None:
        """Open the store and bind the ports; serving starts with `start()`."""
        try:
            import uvicorn

            from fleetprof.server.app import ServerConfig, create_app
            from fleetprof.store import StoreError, open_store
            from fleetprof.symbolize.central import CentralSymbolizer
        except ImportError as exc:
            raise ServerStartError(
                f"the server needs fleetprof[server] (pip install 'fleetprof[server]'): {exc}"
            ) from None
        self.options = options
        self._sock = bind(options.host, options.port)
        try:
            self.store = open_store(options.data_dir, options.clickhouse_url, options.retention_days)
        except StoreError as exc:
            self._sock.close()
            raise ServerStartError(str(exc)) from None
        cache = options.cache_dir
        if cache is None:
            cache = (
                (options.data_dir / "symbol-cache") if options.data_dir else default_cache_dir() / "central"
            )
        self.symbolizer = CentralSymbolizer(self.store.get_symbol_file, cache)
        self.app = create_app(
            self.store,
            self.symbolizer,
            options.ingest_token,
            ServerConfig(ui_dir=options.ui_dir, commit_interval_s=options.commit_interval_s),
        )
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10, access_log=False
        )
        self._uvicorn = uvicorn.Server(config)  # off the main thread: it leaves signals to the caller
        self._thread: threading.Thread | None = None
        self._grpc: Any = None
        self.grpc_port: int | None = None

    @property
    def url(self) -> str:
        """The HTTP base URL clients use."""
        host = self.options.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Serve HTTP (and gRPC when a port was given); returns once the app is ready."""
        from fleetprof.server.grpc_server import start_grpc

        if self.options.grpc_port is not None:
            try:
                self._grpc, self.grpc_port = start_grpc(
                    self.app.state.ingestor,
                    self.app.state.auth,
                    self.options.host,
                    self.options.grpc_port,
                    self.app.state.config.max_decompressed_bytes,
                )
            except (OSError, RuntimeError) as exc:
                self.close()
                raise ServerStartError(f"gRPC: {exc}".splitlines()[0]) from None
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, name="fleetprof-http", daemon=True
        )
        self._thread.start()
        waited = 0.0
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                self.close()
                raise ServerStartError("the HTTP server stopped while starting (see the log above)")
            if waited >= timeout_s:
                self.close()
                raise ServerStartError(f"the HTTP server did not start within {timeout_s:.0f} s")
            self._thread.join(0.05)
            waited += 0.05

    def wait(self, stop: threading.Event) -> None:
        """Block until `stop` is set or the HTTP server ends."""
        while not stop.is_set() and self._thread is not None and self._thread.is_alive():
            stop.wait(0.5)

    def close(self) -> None:
        """Stop gRPC (letting calls finish), then HTTP (letting requests finish), then the store."""
        from fleetprof.server.grpc_server import stop_grpc

        if self._grpc is not None:
            stop_grpc(self._grpc)
            self._grpc = None
        if self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(30.0)
            self._thread = None
        self._sock.close()
        self.store.close()

"""One small interface over the two ClickHouse engines: embedded chDB and a server via clickhouse-connect.

Values reach SQL only as query parameters (`{name:Type}` placeholders); nothing here formats a value into
SQL text. Every method is safe to call from several threads at once (one engine handle per thread).
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import pyarrow as pa

Param = str | int | float | bool | Sequence[str] | Sequence[int]
Params = Mapping[str, Param]
_SETTING = re.compile(r"^[A-Za-z0-9_]+$")


class StoreError(Exception):
    """A store operation failed; the message is one line meant for the user."""


class Backend(Protocol):
    """What the store needs from a ClickHouse engine: statements, parameterized queries, bulk inserts."""

    embedded: bool

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement that returns nothing (DDL, OPTIMIZE, ALTER)."""

    def query(self, sql: str, params: Params | None = None) -> pa.Table:
        """Run a SELECT and return its result as an Arrow table."""

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, str | int] | None = None) -> None:
        """Insert `data` into `table` ("db.name") as one INSERT statement."""

    def close(self) -> None:
        """Release the engine handles."""


def escape_param(value: str) -> str:
    """A String value in ClickHouse's escaped text form, which is how query parameters are parsed."""
    return (
        value.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\0", "\\0")
    )


def _format_param(value: Param) -> str:
    """Render one parameter value as ClickHouse parses it for `{name:Type}` (scalars and arrays)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return escape_param(value)
    if isinstance(value, int | float):
        return repr(value)
    items = []
    for item in value:
        if isinstance(item, str):
            items.append("'" + escape_param(item).replace("'", "\\'") + "'")
        else:
            items.append(repr(int(item)))
    return "[" + ",".join(items) + "]"


def _settings_clause(settings: Mapping[str, str | int] | None) -> str:
    """`SETTINGS k='v', …` for insert settings; keys and values are restricted to [A-Za-z0-9_]."""
    if not settings:
        return ""
    parts = []
    for key, value in settings.items():
        if not _SETTING.match(key) or not _SETTING.match(str(value)):
            raise StoreError(f"invalid insert setting {key!r}")
        parts.append(f"{key}='{value}'" if isinstance(value, str) else f"{key}={value}")
    return " SETTINGS " + ", ".join(parts)


def _arrow_bytes(data: pa.Table) -> bytes:
    """Serialize a table as an Arrow IPC stream (chDB's ArrowStream input format)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue()


class ChdbBackend:
    """Embedded chDB bound to one data directory; one connection per thread on the same path."""

    embedded = True
    _open_path: str | None = None
    _open_count = 0
    _class_lock = threading.Lock()

    def __init__(self, data_dir: Path) -> None:
        """Open (or join) the process's chDB engine at `data_dir`; a second, different path is refused."""
        import chdb

        self._chdb = chdb
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = str(data_dir.resolve())
        with ChdbBackend._class_lock:
            if ChdbBackend._open_path not in (None, self.path):
                raise StoreError(
                    f"this process already has an embedded store at {ChdbBackend._open_path}; "
                    f"chDB binds one data directory per process (asked for {self.path})"
                )
            ChdbBackend._open_path = self.path
            ChdbBackend._open_count += 1
        self._local = threading.local()
        self._conns: list[object] = []
        self._lock = threading.Lock()
        self._closed = False

    def _conn(self) -> object:
        """This thread's connection (chDB runs queries of different handles in parallel)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("the store is closed")
            try:
                conn = self._chdb.connect(self.path)
            except Exception as exc:
                raise StoreError(f"cannot open the embedded store at {self.path}: {_one_line(exc)}") from None
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement through this thread's connection."""
        self._run(sql, params, "CSV")

    def query(self, sql: str, params: Params | None = None) -> pa.Table:
        """Run a query and return an Arrow table."""
        return self._run(sql, params, "Arrowtable")

    def _run(self, sql: str, params: Params | None, fmt: str) -> pa.Table:
        """Execute with formatted parameters; engine errors become one-line StoreErrors."""
        formatted = {k: _format_param(v) for k, v in (params or {}).items()}
        try:
            return self._conn().query(sql, fmt, params=formatted)  # type: ignore[attr-defined]
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(_one_line(exc)) from None

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, str | int] | None = None) -> None:
        """One INSERT of an Arrow stream; committed whole or not at all."""
        sql = f"INSERT INTO {table}{_settings_clause(settings)}"
        try:
            with self._conn().send_insert(sql, "ArrowStream") as ins:  # type: ignore[attr-defined]
                ins.append(_arrow_bytes(data))
                ins.finish()
        except Exception as exc:
            raise StoreError(f"insert into {table} failed: {_one_line(exc)}") from None

    def close(self) -> None:
        """Close every thread's connection; the path is free for another store once all are closed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()  # type: ignore[attr-defined]
        with ChdbBackend._class_lock:
            ChdbBackend._open_count -= 1
            if ChdbBackend._open_count == 0:
                ChdbBackend._open_path = None


class ServerBackend:
    """A ClickHouse server or cluster through clickhouse-connect (HTTP), one client per thread."""

    embedded = False

    def __init__(self, url: str) -> None:
        """Connect to `url` (http[s]://user:password@host:port/...); fails with one line if unreachable."""
        import clickhouse_connect

        self._cc = clickhouse_connect
        self.url = url
        self._local = threading.local()
        self._clients: list[object] = []
        self._lock = threading.Lock()
        self._client().ping()  # type: ignore[attr-defined]

    def _client(self) -> object:
        """This thread's client (a client runs one query at a time)."""
        client = getattr(self._local, "client", None)
        if client is None:
            try:
                client = self._cc.get_client(dsn=self.url, autogenerate_session_id=False)
            except Exception as exc:
                raise StoreError(f"cannot connect to ClickHouse at {self.url}: {_one_line(exc)}") from None
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement with server-side parameter binding."""
        try:
            self._client().command(sql, parameters=dict(params or {}))  # type: ignore[attr-defined]
        except Exception as exc:
            raise StoreError(_one_line(exc)) from None

    def query(self, sql: str, params: Params | None = None) -> pa.Table:
        """Run a query with server-side parameter binding; Arrow result."""
        try:
            return self._client().query_arrow(sql, parameters=dict(params or {}))  # type: ignore[attr-defined]
        except Exception as exc:
            raise StoreError(_one_line(exc)) from None

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, str | int] | None = None) -> None:
        """One INSERT of an Arrow table."""
        _settings_clause(settings)  # validates
        try:
            self._client().insert_arrow(table, data, settings=dict(settings or {}))  # type: ignore[attr-defined]
        except Exception as exc:
            raise StoreError(f"insert into {table} failed: {_one_line(exc)}") from None

    def close(self) -> None:
        """Close every thread's client."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):  # closing is best effort
                client.close()  # type: ignore[attr-defined]


def _one_line(exc: BaseException) -> str:
    """The first line of an engine error, without its stack trace."""
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__

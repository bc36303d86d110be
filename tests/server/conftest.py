"""Server fixtures: one embedded store per test module (chDB binds one data path per process), an app on it
with the ingest token `secret`, and helpers that post OTLP the way the agent does; tests keep apart by host
name."""

from __future__ import annotations

import gzip
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.server.app import ServerConfig, create_app
from fleetprof.store import Store, open_store
from fleetprof.symbolize.central import CentralSymbolizer

TOKEN = "secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 256 << 10
_ids = itertools.count()
LIB = Mapping(file_id="e" * 32, path="/usr/lib/libdemo.so", build_id="ef" * 20)


def named_profile(host: str, leaf: str = "hot_loop", count: int = 30, start_ns: int | None = None) -> Profile:
    """A symbolized profile of one host: a Python and a native stack whose leaves are known names."""
    start = time.time_ns() - 2 * 10**9 if start_ns is None else start_ns
    root = Frame(FrameKind.PROCESS, f"proc-{host}")
    py = (
        root,
        Frame(FrameKind.PYTHON, "main", file="/srv/app.py", line=3),
        Frame(FrameKind.PYTHON, leaf, file="/srv/app.py", line=9),
    )
    native = (
        root,
        Frame(FrameKind.NATIVE, "main", mapping=LIB, address=0x1100),
        Frame(FrameKind.NATIVE, f"{leaf}_c", mapping=LIB, address=0x1200),
        Frame(FrameKind.KERNEL, "do_syscall_64"),
    )
    samples = []
    for i, stack in enumerate((py, native)):
        n = count if i == 0 else count // 3
        samples.append(
            Sample(
                stack=stack,
                pid=4000 + i,
                tid=4000 + i,
                process_name=f"proc-{host}",
                thread_name="worker",
                count=n,
                timestamps_ns=[start + k * 10_000_000 for k in range(n)],
                executable="/usr/bin/python3",
            )
        )
    return Profile(
        samples,
        20,
        start,
        2 * 10**9,
        hostname=host,
        kernel_release="6.1.0",
        resource={"host.name": host, "host.id": f"id-{host}", "host.cpu.count": 2},
    )


def otlp_body(profile: Profile, compress: bool = True) -> bytes:
    """The profile as the agent sends it: a serialized OTLP request, gzip'd."""
    data = to_otlp_request(profile).SerializeToString()
    return gzip.compress(data) if compress else data


def post_otlp(
    client: TestClient,
    body: bytes,
    batch_id: str | None = None,
    token: str | None = TOKEN,
    compressed: bool = True,
) -> object:
    """POST an OTLP body; returns the response."""
    headers = {"Content-Type": "application/x-protobuf"}
    if compressed:
        headers["Content-Encoding"] = "gzip"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if batch_id is not None:
        headers["X-Fleetprof-Batch"] = batch_id
    return client.post("/v1development/profiles", content=body, headers=headers)


def new_batch_id() -> str:
    """A unique batch id."""
    return f"{next(_ids):032x}"


def sample_count(store: Store, host: str) -> int:
    """Samples stored for `host`."""
    table = store.query(
        f"SELECT sum(count) AS n FROM {store.t('samples')} WHERE host = {{h:String}}", {"h": host}
    )
    return int(table.column("n")[0].as_py() or 0)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One embedded store for the module."""
    opened = open_store(tmp_path_factory.mktemp("server-store"))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The central symbolizer's cache directory."""
    return tmp_path_factory.mktemp("symbol-cache")


@pytest.fixture(scope="module")
def client(store: Store, cache_dir: Path) -> Iterator[TestClient]:
    """The app (token `secret`, small body limit) with its symbolization worker running."""
    symbolizer = CentralSymbolizer(store.get_symbol_file, cache_dir, debuginfod=None)
    app = create_app(store, symbolizer, TOKEN, ServerConfig(max_body_bytes=MAX_BODY))
    with TestClient(app) as test_client:
        yield test_client

"""Store fixtures: one embedded chDB data directory per test module (chDB binds one path per process), a
database per test inside it; the same tests against a server when FLEETPROF_TEST_CLICKHOUSE_URL is set."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetprof.store import Store, open_store
from fleetprof.store.synthetic import StackPool

SERVER_URL = os.environ.get("FLEETPROF_TEST_CLICKHOUSE_URL", "")
_counter = itertools.count()


@pytest.fixture(scope="module", params=["chdb", "server"])
def open_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Store]]:
    """A factory of stores in fresh databases on one engine (module-scoped), closed at module end."""
    if request.param == "server" and not SERVER_URL:
        pytest.skip("FLEETPROF_TEST_CLICKHOUSE_URL is not set (no ClickHouse server to test against)")
    data_dir: Path | None = tmp_path_factory.mktemp("chdb") if request.param == "chdb" else None
    opened: list[Store] = []

    def make(database: str | None = None, **kwargs: object) -> Store:
        name = database or f"t{os.getpid()}_{int(time.time())}_{next(_counter)}"
        store = open_store(
            data_dir, SERVER_URL or None if data_dir is None else None, database=name, **kwargs
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        if data_dir is None:
            store.backend.execute(f"DROP DATABASE IF EXISTS {store.layout.database}")
        store.close()


@pytest.fixture(scope="module")
def store(open_db: Callable[..., Store]) -> Store:
    """One store shared by a module's tests (tests use distinct hosts or time ranges)."""
    return open_db()


@pytest.fixture(scope="session")
def pool() -> StackPool:
    """A pool of 3000 realistic stacks."""
    return StackPool.build(3000, seed=7)

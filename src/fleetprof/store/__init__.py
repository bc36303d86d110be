"""Profile storage in ClickHouse: embedded chDB or a server/cluster, one schema, idempotent ingest."""

from fleetprof.store.backend import StoreError
from fleetprof.store.store import Store, open_store

__all__ = ["Store", "StoreError", "open_store"]

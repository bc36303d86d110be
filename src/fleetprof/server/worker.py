"""Background central symbolization: raw native frames in the store get symbol rows, each (file id, address)
once; a file whose symbols arrive later has its earlier 'unknown' addresses symbolized again."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

from fleetprof.profile.model import Frame

log = logging.getLogger(__name__)
BATCH = 20_000  # (file id, address) pairs asked of the store per round
IDLE_S = 30.0  # a round also runs this often without being woken


class SymbolWorker:
    """A daemon thread: woken after ingest and after symbol uploads, symbolizes what the store lacks."""

    def __init__(self, store: Any, symbolizer: Any, idle_s: float = IDLE_S) -> None:
        self.store = store
        self.symbolizer = symbolizer
        self.idle_s = idle_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._lock = threading.Lock()
        self._redo: set[str] = set()  # file ids whose symbols just arrived
        self._thread: threading.Thread | None = None
        self.symbolized = 0
        self.unknown = 0
        self.rounds = 0
        self.last_error = ""

    def start(self) -> None:
        """Start the thread (a round runs at once: frames may be waiting from an earlier run)."""
        self._thread = threading.Thread(target=self._run, name="fleetprof-symbolize", daemon=True)
        self._wake.set()
        self._thread.start()

    def wake(self) -> None:
        """New frames were ingested."""
        self._idle.clear()
        self._wake.set()

    def symbols_arrived(self, file_id: str) -> None:
        """A bundle for `file_id` was uploaded: symbolize its addresses again, unknown ones included."""
        with self._lock:
            self._redo.add(file_id)
        self.wake()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until a round finished with nothing left to do (tests, `up` shutdown)."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop after the current round."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stats(self) -> dict[str, int | str]:
        """Counters since start."""
        return {
            "symbolized": self.symbolized,
            "unknown": self.unknown,
            "rounds": self.rounds,
            "last_error": self.last_error,
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                while not self._stop.is_set() and self.run_once():
                    pass
                self.last_error = ""
            except Exception as exc:  # the store or a symbol file in trouble: try again next round
                self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                log.warning("central symbolization: %s", self.last_error)
                self._stop.wait(5.0)
                continue
            if not self._wake.is_set():
                self._idle.set()

    def run_once(self) -> bool:
        """One round: files whose symbols arrived, then frames without symbols; True when more may remain."""
        self.rounds += 1
        with self._lock:
            redo, self._redo = self._redo, set()
        for file_id in sorted(redo):
            self._symbolize_file(file_id, self._addresses_of(file_id))
        missing = self.store.missing_symbols(BATCH)
        by_file: dict[tuple[str, str], list[int]] = defaultdict(list)
        for file_id, build_id, address in missing:
            by_file[(file_id, build_id)].append(address)
        for (file_id, build_id), addresses in by_file.items():
            self._symbolize_file(file_id, [(build_id, a) for a in addresses])
        return len(missing) >= BATCH

    def _addresses_of(self, file_id: str) -> list[tuple[str, int]]:
        """Every raw address stored for `file_id`, with its build id."""
        frames = self.store.t("frames")
        table = self.store.query(
            f"SELECT address, any(build_id) AS build_id FROM {frames} "
            "WHERE file_id = {f:String} AND kind = 1 AND function = '' GROUP BY address",
            {"f": file_id},
        )
        return [(r["build_id"], r["address"]) for r in table.to_pylist()]

    def _symbolize_file(self, file_id: str, pairs: list[tuple[str, int]]) -> None:
        """Symbolize and store one file's addresses; an address with no answer is stored as unknown."""
        if not pairs:
            return
        build_id = next((b for b, _ in pairs if b), "")
        addresses = [a for _, a in pairs]
        try:
            found = self.symbolizer.symbolize(file_id, build_id, addresses)
        except Exception as exc:  # one file's bad symbols must not stall the others: its frames stay unknown
            self.last_error = f"{file_id}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.warning("central symbolization of %s", self.last_error)
            found = {}
        rows: list[tuple[str, int, tuple[Frame, ...]]] = [
            (file_id, a, tuple(found.get(a, ()))) for a in addresses
        ]
        self.store.put_symbols(rows)
        known = sum(1 for _, _, frames in rows if frames)
        self.symbolized += known
        self.unknown += len(rows) - known

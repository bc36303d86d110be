"""A bounded on-disk queue of batches: each written atomically before it is sent and deleted only once the
collector acknowledged it, so batches survive a collector outage and an agent restart. When the bound is
reached the oldest batches go first; what is dropped is counted and logged."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fleetprof.reporter.batch import Batch, valid_batch_id

log = logging.getLogger(__name__)
SUFFIX = ".otlp.gz"
TMP_PREFIX = ".tmp-"
DEFAULT_MAX_BYTES = 256 << 20


class SpoolError(Exception):
    """The spool directory can't be used (one-line reason)."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled batch: its order, id, file and size."""

    seq: int
    batch_id: str
    path: Path
    size: int


def _parse(path: Path) -> tuple[int, str] | None:
    """(sequence number, batch id) from a spool file name, None for anything else."""
    name = path.name
    if not name.endswith(SUFFIX):
        return None
    seq, _, batch_id = name[: -len(SUFFIX)].partition("-")
    if not seq.isdigit() or not valid_batch_id(batch_id):
        return None
    return int(seq), batch_id


class Spool:
    """Batches on disk, oldest first, at most `max_bytes` in total; thread-safe."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.dropped_batches = 0
        self.dropped_bytes = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            names = list(self.directory.iterdir())
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc.strerror or exc}") from None
        entries: list[SpoolEntry] = []
        for path in names:
            if path.name.startswith(TMP_PREFIX):  # a write cut short by a crash: never acknowledged
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            parsed = _parse(path)
            if parsed is None:
                continue
            with contextlib.suppress(OSError):
                entries.append(SpoolEntry(parsed[0], parsed[1], path, path.stat().st_size))
        self._entries = sorted(entries, key=lambda e: e.seq)
        self._next_seq = self._entries[-1].seq + 1 if self._entries else 0
        self._bytes = sum(e.size for e in self._entries)
        if self._entries:
            log.info("spool %s: %d batches from an earlier run to send", self.directory, len(self._entries))

    def put(self, batch: Batch) -> SpoolEntry | None:
        """Write `batch` durably (temp file, fsync, rename); drop the oldest batches while over the bound.
        Returns its entry, or None when the batch alone exceeds the bound (dropped and counted)."""
        size = len(batch.body)
        if size > self.max_bytes:
            self._count_drop(1, size, "a batch larger than the whole spool")
            return None
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
        path = self.directory / f"{seq:012d}-{batch.batch_id}{SUFFIX}"
        tmp = self.directory / f"{TMP_PREFIX}{path.name}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(batch.body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            self._fsync_dir()
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SpoolError(f"cannot write to spool {self.directory}: {exc.strerror or exc}") from None
        entry = SpoolEntry(seq, batch.batch_id, path, size)
        with self._lock:
            self._entries.append(entry)
            self._bytes += size
            victims: list[SpoolEntry] = []
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                victim = self._entries.pop(0)
                self._bytes -= victim.size
                victims.append(victim)
        for victim in victims:
            with contextlib.suppress(OSError):
                victim.path.unlink()
        if victims:
            self._count_drop(len(victims), sum(v.size for v in victims), "the spool is full")
        return entry

    def pending(self) -> list[SpoolEntry]:
        """Spooled batches, oldest first."""
        with self._lock:
            return list(self._entries)

    def oldest(self) -> SpoolEntry | None:
        """The next batch to send, or None when the spool is empty."""
        with self._lock:
            return self._entries[0] if self._entries else None

    def load(self, entry: SpoolEntry) -> Batch | None:
        """The batch of `entry`; None when its file is gone (dropped meanwhile) or unreadable (forgotten)."""
        try:
            body = entry.path.read_bytes()
        except FileNotFoundError:
            self._forget(entry)
            return None
        except OSError as exc:
            log.warning("cannot read spooled batch %s (%s); dropping it", entry.path, exc.strerror or exc)
            self.remove(entry)
            self._count_drop(1, entry.size, "it could not be read back")
            return None
        return Batch(entry.batch_id, body)

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a batch (acknowledged, or rejected for good)."""
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
        self._forget(entry)

    def _forget(self, entry: SpoolEntry) -> None:
        with self._lock:
            if entry in self._entries:
                self._entries.remove(entry)
                self._bytes -= entry.size

    @property
    def bytes(self) -> int:
        """Bytes spooled now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _count_drop(self, batches: int, size: int, why: str) -> None:
        with self._lock:
            self.dropped_batches += batches
            self.dropped_bytes += size
            total = self.dropped_batches
        log.warning(
            "spool %s: dropped %d batch(es), %d bytes, because %s (%d dropped in all; bound %d bytes)",
            self.directory,
            batches,
            size,
            why,
            total,
            self.max_bytes,
        )

    def _fsync_dir(self) -> None:
        """Make the rename durable."""
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

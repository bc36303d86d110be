"""The [vdso] as an ordinary ELF file: read from process memory once per distinct image, cached on disk.

Every process of a kernel (and ABI) maps the same vDSO image, so it gets one file in the cache
directory, named by content, and one file id; it then symbolizes like any other ELF file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass

from fleetprof.process.counters import Counters
from fleetprof.process.files import FileFacts, examine, fd_path
from fleetprof.process.procfs import ProcFS, failure_reason


@dataclass(frozen=True, slots=True)
class VdsoImage:
    """One distinct vDSO image: where its bytes are kept, and what they are."""

    path: str  # file in the cache directory (or a memfd when the directory is not writable)
    facts: FileFacts


class VdsoStore:
    """Distinct vDSO images by content digest; falls back to a known image of the same size."""

    def __init__(self, procfs: ProcFS, cache_dir: str, counters: Counters) -> None:
        self._procfs = procfs
        self._dir = os.path.join(cache_dir, "vdso")
        self._counters = counters
        self._lock = threading.Lock()
        self._by_digest: dict[str, VdsoImage] = {}
        self._by_size: dict[int, VdsoImage] = {}
        self._memfds: list[int] = []

    def resolve(self, pid: int, start: int, end: int) -> VdsoImage | None:
        """The image mapped at [start, end) in `pid`; None when unreadable and no same-size image is known."""
        size = end - start
        try:
            data = self._procfs.read_mem(pid, start, size)
        except OSError as exc:
            self._counters.inc(f"vdso_read_{failure_reason(exc)}")
            return self._by_size.get(size)
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            image = self._by_digest.get(digest)
            if image is None:
                try:
                    image = self._store(digest, data)
                except OSError as exc:
                    self._counters.inc(f"vdso_store_{failure_reason(exc)}")
                    return None
                self._by_digest[digest] = image
                self._by_size[size] = image
            return image

    def _store(self, digest: str, data: bytes) -> VdsoImage:
        try:
            path = self._write(digest, data)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            keep = False
        except OSError:
            self._counters.inc("vdso_cache_unwritable")
            fd = os.memfd_create("fleetprof-vdso", os.MFD_CLOEXEC)
            os.write(fd, data)
            self._memfds.append(fd)
            path, keep = fd_path(fd), True
        try:
            return VdsoImage(path, examine(fd))
        finally:
            if not keep:
                os.close(fd)

    def _write(self, digest: str, data: bytes) -> str:
        path = os.path.join(self._dir, f"vdso-{digest[:32]}.so")
        if os.path.exists(path):
            return path
        os.makedirs(self._dir, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=self._dir, prefix=".vdso-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return path

    def close(self) -> None:
        """Close memfds holding images that could not be written to the cache directory."""
        with self._lock:
            for fd in self._memfds:
                os.close(fd)
            self._memfds.clear()

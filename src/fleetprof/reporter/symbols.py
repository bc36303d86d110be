"""Background symbol upload: for native files the profiles name, ask the server which file ids it lacks and
upload a compact symbol bundle (not the binary) for each, rate-limited in bytes per second so the host pays
little. The file is re-identified before its bundle is built: a recycled fd path never uploads the wrong
file's symbols under a file id."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence

from fleetprof import __version__
from fleetprof.reporter.backoff import Backoff
from fleetprof.reporter.senders import DEFAULT_TIMEOUT_S, Outcome, http_outcome

log = logging.getLogger(__name__)
MISSING_PATH = "/api/v1/symbols/missing"
UPLOAD_PATH = "/api/v1/symbols/{file_id}"
ASK_LIMIT = 256  # file ids per "which are missing?" request
DONE_LIMIT = 100_000  # file ids remembered as settled (uploaded, present, or impossible)
PENDING_LIMIT = 10_000
BundleBuilder = Callable[[int, str, str], bytes]  # (open fd, file id, path as processes name it) -> bundle
Identify = Callable[[int], str]


def _default_builder() -> BundleBuilder | None:
    """symbolize.bundle.build_bundle when installed, else None (upload disabled, said once)."""
    try:
        from fleetprof.symbolize.bundle import build_bundle
        from fleetprof.symbolize.native import NativeFile
    except ImportError:
        return None

    def build(fd: int, file_id: str, path: str) -> bytes:
        """Read through the fd; the process's path finds debug files (.gnu_debuglink) beside it."""
        fd_path = f"/proc/self/fd/{fd}"
        return build_bundle(NativeFile(file_id, path or fd_path, fd_path), file_id=file_id)

    return build


def _identify(fd: int) -> str:
    """The file id of an open file, computed as the tracker does."""
    from fleetprof.process.files import examine

    return examine(fd).file_id


class SymbolUploader:
    """Offers come from the agent loop (`offer`); a daemon thread asks, builds and uploads."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        build_bundle: BundleBuilder | None = None,
        bytes_per_s: float = 1 << 20,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        backoff: Backoff | None = None,
        identify: Identify = _identify,
        ask_interval_s: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.build_bundle = build_bundle or _default_builder()
        self.bytes_per_s = bytes_per_s
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff(base_s=2.0, cap_s=300.0)
        self.identify = identify
        self.ask_interval_s = ask_interval_s
        self._lock = threading.Lock()
        # file id -> (paths to open it, the path processes name it by)
        self._pending: OrderedDict[str, tuple[tuple[str, ...], str]] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_upload_at = 0.0
        self._failing = False  # the server could not be asked last time (said once per outage)
        self.uploaded = 0
        self.uploaded_bytes = 0
        self.present = 0
        self.failed = 0
        if self.build_bundle is None:
            log.warning("symbol upload disabled: this installation has no symbol bundle builder")

    def offer(self, file_id: str, paths: Sequence[str], display_path: str = "") -> None:
        """A native file the profiles reference; `paths` open it (the first that still holds this file id
        wins); `display_path` is how processes name it."""
        if self.build_bundle is None or not file_id:
            return
        with self._lock:
            if file_id in self._done or file_id in self._pending:
                return
            if len(self._pending) >= PENDING_LIMIT:
                self._pending.popitem(last=False)
            self._pending[file_id] = (tuple(p for p in paths if p), display_path)
        self._wake.set()

    def start(self) -> None:
        """Start the upload thread."""
        if self.build_bundle is None:
            return
        self._thread = threading.Thread(target=self._run, name="fleetprof-symbols", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop after the current request; what is pending is asked again by the next run."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s + self.timeout_s)

    def stats(self) -> dict[str, int]:
        """Counters since start."""
        with self._lock:
            pending = len(self._pending)
        return {
            "symbols_uploaded": self.uploaded,
            "symbols_uploaded_bytes": self.uploaded_bytes,
            "symbols_present": self.present,
            "symbols_failed": self.failed,
            "symbols_pending": pending,
        }

    # ---- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                batch = dict(list(self._pending.items())[:ASK_LIMIT])
            if not batch:
                self._wake.wait(self.ask_interval_s)
                self._wake.clear()
                continue
            if not self._round(batch):
                self._stop.wait(self.backoff.next_delay())
            else:
                self.backoff.reset()

    def _round(self, batch: dict[str, tuple[tuple[str, ...], str]]) -> bool:
        """Ask about `batch`, upload what is missing; False when the server could not be reached."""
        missing = self._ask(list(batch))
        if missing is None:
            return False
        for file_id in batch:
            if file_id not in missing:
                self.present += 1
                self._settle(file_id)
        for file_id in batch:
            if self._stop.is_set():
                return True
            if file_id in missing and not self._upload(file_id, batch[file_id]):
                return False
        return True

    def _ask(self, file_ids: list[str]) -> set[str] | None:
        """The subset of `file_ids` the server lacks; None on trouble (logged)."""
        status, body = self._request("POST", MISSING_PATH, json.dumps(file_ids).encode(), "application/json")
        if status is None or http_outcome(status) is not Outcome.ACK:
            why = body.decode("utf-8", "replace")[:200] if status is None else f"HTTP {status}"
            if not self._failing:
                log.info("symbol server: asking for missing symbols failed (%s); retrying with backoff", why)
            self._failing = True
            return None
        self._failing = False
        try:
            answer = json.loads(body or b"[]")
        except ValueError:
            log.info("symbol server: the missing-symbols answer is not JSON")
            return None
        if isinstance(answer, dict):
            answer = answer.get("missing", [])
        if not isinstance(answer, list):
            return None
        return {x for x in answer if isinstance(x, str)}

    def _upload(self, file_id: str, paths: tuple[tuple[str, ...], str]) -> bool:
        """Build and PUT one bundle; False only when the server could not be reached (retry later)."""
        assert self.build_bundle is not None
        try:
            data = self._bundle(file_id, paths)
        except Exception as exc:  # a file the builder can't read must not stop the others
            log.info("symbols for %s: cannot build a bundle (%s)", file_id, exc)
            data = None
        if data is None:
            self.failed += 1
            self._settle(file_id)
            return True
        self._wait_rate()
        url_path = UPLOAD_PATH.format(file_id=file_id)
        status, body = self._request("PUT", url_path, data, "application/octet-stream")
        outcome = http_outcome(status) if status is not None else Outcome.RETRY
        if outcome is Outcome.RETRY:
            return False
        self._next_upload_at = time.monotonic() + len(data) / self.bytes_per_s
        if outcome is Outcome.ACK:
            self.uploaded += 1
            self.uploaded_bytes += len(data)
        else:
            self.failed += 1
            log.info("symbol server refused the bundle of %s (HTTP %s: %s)", file_id, status, body[:200])
        self._settle(file_id)
        return True

    def _bundle(self, file_id: str, paths: tuple[tuple[str, ...], str]) -> bytes | None:
        """The bundle of the first path that still opens the file with this id."""
        assert self.build_bundle is not None
        candidates, display_path = paths
        for path in candidates:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if self.identify(fd) == file_id:
                    return self.build_bundle(fd, file_id, display_path)
            finally:
                os.close(fd)
        log.debug("symbols for %s: no path opens that file any more", file_id)
        return None

    def _wait_rate(self) -> None:
        delay = self._next_upload_at - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)

    def _settle(self, file_id: str) -> None:
        with self._lock:
            self._pending.pop(file_id, None)
            self._done[file_id] = None
            while len(self._done) > DONE_LIMIT:
                self._done.popitem(last=False)

    def _request(self, method: str, path: str, data: bytes, content_type: str) -> tuple[int | None, bytes]:
        headers = {"Content-Type": content_type, "User-Agent": f"fleetprof-agent/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, exc.read(1000)
            except OSError:
                return exc.code, b""
        except (urllib.error.URLError, OSError) as exc:
            return None, str(getattr(exc, "reason", exc)).encode()

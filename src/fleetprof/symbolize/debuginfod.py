"""A debuginfod client: separate debug files by build id from the servers in `DEBUGINFOD_URLS`.

Consulted by the native symbolizer after the local build-id and `.gnu_debuglink` lookups fail. It
shares elfutils' cache (`DEBUGINFOD_CACHE_PATH`, else `$XDG_CACHE_HOME/debuginfod_client`, laid out
as `<build id>/debuginfo`), so files gdb or perf fetched are found without asking again, and keeps
elfutils' negative cache: an empty `debuginfo` file marks a build id every server answered 404 for,
trusted for `cache_miss_s` seconds (a file of that name in the cache root, default 600). A server
that can't be reached is left alone for the same time in this process, so a profile with many files
costs one timeout, not one per file. Downloads go to a temporary file, are checked to be an ELF file
with the asked build id, and are renamed into place.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetprof.elf.reader import ElfError, read_elf_info

DEFAULT_TIMEOUT_S = 90.0  # elfutils' default for DEBUGINFOD_TIMEOUT
DEFAULT_CACHE_MISS_S = 600.0  # elfutils' default for <cache>/cache_miss_s
_WHAT = {"debuginfo": "debug file", "executable": "executable"}
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Lookup:
    """The outcome of one lookup: a local path, or the reason there is none."""

    path: str = ""
    reason: str = ""  # one line, "" when found
    downloaded: bool = False  # fetched from a server by this lookup (not from the cache)


@dataclass(slots=True)
class DebuginfodClient:
    """Fetches `/buildid/<id>/debuginfo` from each URL in turn, through a shared on-disk cache."""

    urls: tuple[str, ...]
    cache_dir: Path
    timeout: float | None = DEFAULT_TIMEOUT_S  # seconds without progress before giving up; None: wait
    max_size: int = 0  # DEBUGINFOD_MAXSIZE: larger files are skipped (0: no limit)
    requests: int = 0  # HTTP requests sent, for tests and stats
    _down: dict[str, float] = field(default_factory=dict)  # url -> monotonic time it may be tried again
    _misses: dict[str, tuple[float, Lookup]] = field(default_factory=dict)  # build id -> (until, answer)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> DebuginfodClient | None:
        """The client `DEBUGINFOD_URLS` asks for (None when unset), with elfutils' cache path and timeout."""
        env = os.environ if env is None else env
        urls = tuple(url.rstrip("/") for url in env.get("DEBUGINFOD_URLS", "").split() if url.strip("/"))
        if not urls:
            return None
        cache = env.get("DEBUGINFOD_CACHE_PATH")
        if not cache:
            xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
            cache = str(Path(xdg) / "debuginfod_client")
        timeout = _number(env.get("DEBUGINFOD_TIMEOUT"), DEFAULT_TIMEOUT_S)
        max_size = int(_number(env.get("DEBUGINFOD_MAXSIZE"), 0))
        return cls(urls, Path(cache), timeout or None, max_size)

    @property
    def cache_miss_s(self) -> float:
        """How long a negative answer is trusted: `<cache>/cache_miss_s`, as elfutils reads it."""
        try:
            return float((self.cache_dir / "cache_miss_s").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return DEFAULT_CACHE_MISS_S

    def debuginfo(self, build_id: str) -> Lookup:
        """The debug file of `build_id` (hex): from the cache, else downloaded; never raises."""
        return self._artifact(build_id, "debuginfo")

    def executable(self, build_id: str) -> Lookup:
        """The executable or library itself of `build_id` (its PLT stubs are not in the debug file)."""
        return self._artifact(build_id, "executable")

    def _artifact(self, build_id: str, kind: str) -> Lookup:
        build_id = build_id.lower()
        if len(build_id) < 2 or any(c not in "0123456789abcdef" for c in build_id):
            return Lookup(reason=f"debuginfod: bad build id {build_id!r}")
        target = self.cache_dir / build_id / kind
        cached = self._cached(target, build_id)
        if cached is not None:
            return cached
        missed = self._misses.get(build_id if kind == "debuginfo" else f"{build_id}/{kind}")
        if missed is not None and missed[0] > time.monotonic():
            return missed[1]
        return self._fetch(target, build_id, kind)

    def _cached(self, target: Path, build_id: str) -> Lookup | None:
        try:
            st = target.stat()
        except OSError:
            return None
        if st.st_size > 0:
            return Lookup(str(target))
        if time.time() - st.st_mtime <= self.cache_miss_s:
            what = _WHAT.get(target.name, target.name)
            return Lookup(reason=f"debuginfod: no {what} for build id {build_id} (cached miss)")
        return None

    def _fetch(self, target: Path, build_id: str, kind: str = "debuginfo") -> Lookup:
        reasons: list[str] = []
        all_missing = True
        now = time.monotonic()
        for url in self.urls:
            if self._down.get(url, 0.0) > now:
                reasons.append(f"{url} skipped (unreachable recently)")
                all_missing = False
                continue
            status, detail = self._download(url, build_id, target, kind)
            if status == "ok":
                return Lookup(str(target), downloaded=True)
            if status == "down":
                self._down[url] = now + self.cache_miss_s
            all_missing = all_missing and status == "missing"
            reasons.append(f"{url}: {detail}")
        if all_missing:
            self._mark_missing(target)
            reason = f"debuginfod: no {_WHAT[kind]} for build id {build_id} ({'; '.join(reasons)})"
        else:
            reason = f"debuginfod: {_WHAT[kind]} for build id {build_id} not fetched ({'; '.join(reasons)})"
        lookup = Lookup(reason=reason[:300])
        self._misses[build_id if kind == "debuginfo" else f"{build_id}/{kind}"] = (
            now + self.cache_miss_s,
            lookup,
        )
        return lookup

    def _download(self, url: str, build_id: str, target: Path, kind: str = "debuginfo") -> tuple[str, str]:
        """("ok" | "missing" | "bad" | "down", detail) for one server."""
        self.requests += 1
        request = urllib.request.Request(
            f"{url}/buildid/{build_id}/{kind}", headers={"User-Agent": "fleetprof"}
        )
        tmp = target.with_name(f".{kind}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            stream = open(tmp, "wb")  # noqa: SIM115 - closed below, after the response
        except OSError as exc:
            return "bad", f"cache {target.parent}: {exc.strerror or exc}"
        try:
            with stream, urllib.request.urlopen(request, timeout=self.timeout) as response:
                length = int(response.headers.get("Content-Length") or 0)
                if self.max_size and length > self.max_size:
                    return "bad", f"{length} bytes, over DEBUGINFOD_MAXSIZE"
                while chunk := response.read(_CHUNK):
                    stream.write(chunk)
                    if self.max_size and stream.tell() > self.max_size:
                        return "bad", "over DEBUGINFOD_MAXSIZE"
            problem = _check(tmp, build_id)
            if problem:
                return "bad", problem
            os.replace(tmp, target)
            return "ok", ""
        except urllib.error.HTTPError as exc:
            return ("missing" if exc.code == 404 else "bad"), f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return "down", str(reason).splitlines()[0][:120] if str(reason) else type(exc).__name__
        finally:
            tmp.unlink(missing_ok=True)

    def _mark_missing(self, target: Path) -> None:
        """Write elfutils' negative-cache marker (an empty file); best effort."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")
        except OSError:
            pass


def _check(path: Path, build_id: str) -> str:
    """Why the downloaded file at `path` is not the debug file of `build_id` ("" when it is)."""
    try:
        info = read_elf_info(path)
    except ElfError as exc:
        return f"served a file that is not ELF ({str(exc).split(': ', 1)[-1]})"
    if info.build_id != build_id:
        return f"served build id {info.build_id or 'none'}"
    return ""


def _number(text: str | None, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value >= 0 else default

"""Symbol upload: only file ids the server lacks are uploaded, as the bundle builder's bytes; a file that no
longer matches its id is not uploaded; a server that is down is retried; uploads respect the byte rate."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fake_collector import FakeCollector

from fleetprof.reporter.backoff import Backoff
from fleetprof.reporter.symbols import SymbolUploader

IDS = {name: name[0] * 32 for name in ("alpha", "bravo", "charlie")}


def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in IDS:
        path = tmp_path / name
        path.write_bytes(name.encode() * 10)
        out[name] = path
    return out


def identify_by_content(fd: int) -> str:
    """The fake file id: the first letter of the content, 32 times."""
    import os

    return chr(os.pread(fd, 1, 0)[0]) * 32


def bundle(fd: int, file_id: str, path: str) -> bytes:
    import os

    return b"BUNDLE:" + os.pread(fd, 100, 0)


def uploader(url: str, **kw) -> SymbolUploader:
    kw.setdefault("bytes_per_s", 1e9)
    return SymbolUploader(
        url,
        "tok",
        build_bundle=bundle,
        identify=identify_by_content,
        backoff=Backoff(base_s=0.01, cap_s=0.05),
        ask_interval_s=0.02,
        timeout_s=5,
        **kw,
    )


def wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def collector():
    fake = FakeCollector().start()
    yield fake
    fake.stop()


def test_uploads_only_what_the_server_lacks(collector: FakeCollector, tmp_path: Path) -> None:
    paths = files(tmp_path)
    collector.state.known.add(IDS["bravo"])
    up = uploader(collector.url)
    up.start()
    for name, path in paths.items():
        up.offer(IDS[name], [str(path)])
    up.offer(IDS["alpha"], [str(paths["alpha"])])  # offered again: asked once
    assert wait(lambda: up.stats()["symbols_pending"] == 0 and up.uploaded == 2)
    up.close()
    assert collector.state.symbols == {
        IDS["alpha"]: b"BUNDLE:" + b"alpha" * 10,
        IDS["charlie"]: b"BUNDLE:" + b"charlie" * 10,
    }
    assert up.present == 1
    puts = [r for r in collector.state.received if r.method == "PUT"]
    assert all(r.headers["Authorization"] == "Bearer tok" for r in collector.state.received)
    assert sorted(r.path for r in puts) == sorted(f"/api/v1/symbols/{IDS[n]}" for n in ("alpha", "charlie"))


def test_a_path_that_opens_another_file_is_not_uploaded(collector: FakeCollector, tmp_path: Path) -> None:
    paths = files(tmp_path)
    up = uploader(collector.url)
    up.start()
    up.offer(IDS["alpha"], [str(paths["bravo"]), str(tmp_path / "gone"), str(paths["alpha"])])
    up.offer(IDS["charlie"], [str(paths["bravo"])])  # the only path now holds another file
    assert wait(lambda: up.stats()["symbols_pending"] == 0)
    up.close()
    assert list(collector.state.symbols) == [IDS["alpha"]]
    assert up.failed == 1


def test_server_down_then_up(tmp_path: Path) -> None:
    paths = files(tmp_path)
    probe = FakeCollector().start()
    port = probe.port
    probe.stop()
    fake = FakeCollector(port)
    up = uploader(fake.url)
    up.start()
    up.offer(IDS["alpha"], [str(paths["alpha"])])
    time.sleep(0.2)
    assert up.uploaded == 0 and up.stats()["symbols_pending"] == 1
    fake.start()
    try:
        assert wait(lambda: up.uploaded == 1)
    finally:
        up.close()
        fake.stop()
    assert list(fake.state.symbols) == [IDS["alpha"]]


def test_uploads_are_rate_limited(collector: FakeCollector, tmp_path: Path) -> None:
    paths = files(tmp_path)
    up = uploader(collector.url, bytes_per_s=200.0)
    started = time.monotonic()
    up.start()
    for name in ("alpha", "bravo", "charlie"):
        up.offer(IDS[name], [str(paths[name])])
    assert wait(lambda: up.uploaded == 3)
    elapsed = time.monotonic() - started
    up.close()
    # Bundles of 57, 57 and 77 bytes at 200 B/s: the third waits for the first two's 114 bytes (0.57 s).
    assert up.uploaded_bytes == 57 + 57 + 77
    assert elapsed >= 0.5


def test_without_a_builder_offers_are_ignored() -> None:
    up = SymbolUploader("http://127.0.0.1:9", build_bundle=None)
    up.build_bundle = None
    up.offer("a" * 32, ["/bin/sh"])
    assert up.stats()["symbols_pending"] == 0


def test_real_bundle_of_a_real_binary(collector: FakeCollector, build_dir: Path) -> None:
    """The default builder and identity check: a compiled program's bundle arrives under its file id and
    loads as a bundle of that file."""
    from fleetprof.process.files import examine
    from fleetprof.symbolize.bundle import bundle_info
    from tests.conftest import compile_c

    exe = compile_c("int work(void) { return 42; }\nint main(void) { return work(); }\n", build_dir / "up")
    fd = os.open(exe, os.O_RDONLY)
    try:
        file_id = examine(fd).file_id
    finally:
        os.close(fd)
    up = SymbolUploader(collector.url, "tok", backoff=Backoff(0.01, 0.05), ask_interval_s=0.02, timeout_s=5)
    up.start()
    up.offer(file_id, ["/nonexistent", str(exe)], str(exe))
    assert wait(lambda: up.uploaded == 1)
    up.close()
    info = bundle_info(collector.state.symbols[file_id])
    assert info.get("file_id", file_id) == file_id

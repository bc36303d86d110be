"""Central symbolization on a server that has never seen the binary: raw frames read `module+0x…` until the
agent uploads the file's symbol bundle, then they read named, each (file id, address) symbolized once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.symbolize.bundle import build_bundle, load_bundle
from tests.server.conftest import AUTH, new_batch_id, otlp_body, post_otlp

SOURCE = r"""
#include <stdio.h>
__attribute__((noinline)) long crunch_numbers(long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += i * i;
    return s;
}
__attribute__((noinline)) long middle_layer(long n) { return crunch_numbers(n) + 1; }
int main(int argc, char **argv) { printf("%ld\n", middle_layer(argc * 1000)); return 0; }
"""


def _symbol(path: Path, name: str) -> int:
    with path.open("rb") as f:
        for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols():
            if sym.name == name:
                return sym["st_value"]
    raise AssertionError(name)


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    """A small C program with a build id and DWARF, which the server never sees."""
    out = tmp_path_factory.mktemp("bin")
    (out / "demo.c").write_text(SOURCE)
    exe = out / "central_demo"
    subprocess.run(
        ["gcc", "-g", "-O1", "-Wl,--build-id", "-o", str(exe), str(out / "demo.c")], check=True, timeout=120
    )
    return exe


def _flame_names(client, host: str) -> set[str]:
    tree = client.get("/api/v1/flamegraph", params={"since": "1h", "host": host}).json()
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        names.add(node["name"])
        stack.extend(node["children"])
    return names


def _wait_for(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_symbolized_after_upload(client, store, binary):
    bundle = build_bundle(str(binary))
    info = load_bundle(bundle)
    mapping = Mapping(file_id=info.file_id, path="/opt/demo/central_demo", build_id=info.build_id)
    crunch = _symbol(binary, "crunch_numbers") + 4
    middle = _symbol(binary, "middle_layer") + 4
    stack = (
        Frame(FrameKind.PROCESS, "central_demo"),
        Frame(FrameKind.NATIVE, "", mapping=mapping, address=middle),
        Frame(FrameKind.NATIVE, "", mapping=mapping, address=crunch),
    )
    now = time.time_ns()
    profile = Profile(
        [Sample(stack, 77, 77, "central_demo", "central_demo", count=12, timestamps_ns=[now - 10**9] * 12)],
        20,
        now - 2 * 10**9,
        2 * 10**9,
        hostname="sym-host",
        resource={"host.name": "sym-host"},
    )
    assert post_otlp(client, otlp_body(profile), new_batch_id()).status_code == 200
    worker = client.app.state.worker
    assert _wait_for(lambda: store.missing_symbols(100) == [])  # tried once: no symbols anywhere
    names = _flame_names(client, "sym-host")
    assert f"central_demo+0x{crunch:x}" in {n.split(" ")[0] for n in names}
    missing = client.post("/api/v1/symbols/missing", json=[info.file_id], headers=AUTH).json()
    assert missing == [info.file_id]

    foreign = client.put(f"/api/v1/symbols/{'0' * 32}", content=bundle, headers=AUTH)
    assert foreign.status_code == 400 and "file id" in foreign.json()["error"]
    damaged = bundle[:100] + bytes([bundle[100] ^ 0xFF]) + bundle[101:]
    assert client.put(f"/api/v1/symbols/{info.file_id}", content=damaged, headers=AUTH).status_code == 400
    assert (
        client.put(f"/api/v1/symbols/{info.file_id}", content=bundle[:-50], headers=AUTH).status_code == 400
    )
    assert client.post("/api/v1/symbols/missing", json=[info.file_id], headers=AUTH).json() == [info.file_id]

    uploaded = client.put(f"/api/v1/symbols/{info.file_id}", content=bundle, headers=AUTH)
    assert uploaded.status_code == 201, uploaded.text
    assert client.post("/api/v1/symbols/missing", json=[info.file_id], headers=AUTH).json() == []
    assert _wait_for(lambda: any(n.startswith("crunch_numbers") for n in _flame_names(client, "sym-host")))
    names = _flame_names(client, "sym-host")
    assert any(n.startswith("middle_layer") for n in names)
    top = client.get("/api/v1/top", params={"since": "1h", "host": "sym-host"}).json()["functions"]
    assert top[0]["function"] == "crunch_numbers" and top[0]["self"] == 12
    assert worker.wait_idle(30)

    # Each (file id, address) is stored once per symbolization: no address is symbolized twice over.
    rows = store.query(
        f"SELECT address, count() AS n FROM {store.t('symbols')} WHERE file_id = {{f:String}} "
        "AND notEmpty(functions) GROUP BY address",
        {"f": info.file_id},
    ).to_pylist()
    assert sorted(r["address"] for r in rows) == sorted({crunch, middle})
    assert all(r["n"] == 1 for r in rows)

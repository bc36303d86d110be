"""A real `fleetprof server` process: fifty hosts ingest while queries run, per-host filters return exactly
each host's data; `kill -9` during ingest loses no acknowledged batch; `export --server`, `top --server`."""

from __future__ import annotations

import gzip
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fleetprof.cli.main import main
from fleetprof.output.otlp import to_otlp_request
from fleetprof.reporter.batch import encode_batch
from fleetprof.reporter.senders import GrpcSender, Outcome
from fleetprof.store.synthetic import StackPool, fleet_profile
from tests.server.conftest import named_profile
from tests.server.live import LiveServer

HEADERS = {
    "Authorization": "Bearer secret",
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "gzip",
}
HOSTS = 50
BATCHES = 2
PER_BATCH = 300


def _body(profile) -> bytes:
    return gzip.compress(to_otlp_request(profile).SerializeToString())


def _total(server: LiveServer, **filters) -> int:
    return server.get("/api/v1/flamegraph", {"since": "2h", **filters})["total"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = LiveServer(tmp_path_factory.mktemp("live") / "data")
    yield live
    assert live.stop() == 0


@pytest.fixture(scope="module")
def fleet(server):
    """Fifty hosts with distinct identities, two batches each, sent in parallel while queries run."""
    pool = StackPool.build(400, seed=3)
    now = time.time_ns() - 60 * 10**9
    errors: list[str] = []
    done = threading.Event()

    def send(host_index: int) -> None:
        host = f"fleet-{host_index:02d}"
        for batch in range(BATCHES):
            profile = fleet_profile(pool, host, now + batch * 5 * 10**9, PER_BATCH, seed=batch)
            headers = HEADERS | {"X-Fleetprof-Batch": f"{host_index:016x}{batch:016x}"}
            status = server.post("/v1development/profiles", _body(profile), headers)
            if status != 200:
                errors.append(f"{host}: {status}")

    def query() -> None:
        while not done.is_set():
            server.get("/api/v1/top", {"since": "2h", "limit": 5})
            server.get("/api/v1/flamegraph", {"since": "2h", "host": "fleet-01"})

    reader = threading.Thread(target=query)
    reader.start()
    try:
        with ThreadPoolExecutor(8) as workers:
            list(workers.map(send, range(HOSTS)))
    finally:
        done.set()
        reader.join(120)
    assert errors == []
    return pool


def test_fifty_hosts_filters_exact(server, fleet):
    hosts = {
        h["host_name"]: h for h in server.get("/api/v1/hosts")["hosts"] if h["host_name"].startswith("fleet-")
    }
    assert len(hosts) == HOSTS
    assert {h["host_id"] for h in hosts.values()} == {f"id-fleet-{i:02d}" for i in range(HOSTS)}
    for i in range(HOSTS):
        host = f"fleet-{i:02d}"
        assert _total(server, host=host) == BATCHES * PER_BATCH, host
        series = server.get("/api/v1/timeline", {"since": "2h", "host": host})["series"]
        assert [s["group"] for s in series] == [host]
        assert series[0]["total"] == BATCHES * PER_BATCH
    assert _total(server, host=["fleet-03", "fleet-04"]) == 2 * BATCHES * PER_BATCH
    assert _total(server, host="fleet-03", host_id="id-fleet-04") == 0
    assert _total(server, filter="host=fleet-0") == 0


def test_export_and_top_from_the_cli(server, fleet, tmp_path, capsys):
    out = tmp_path / "fleet-07.folded"
    argv = [
        "export",
        "--server",
        server.url,
        "--since",
        "2h",
        "--format",
        "folded",
        "--filter",
        "host=fleet-07",
    ]
    assert main([*argv, "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == BATCHES * PER_BATCH
    pprof = tmp_path / "all.pb.gz"
    assert (
        main(["export", "--server", server.url, "--since", "2h", "--format", "pprof", "-o", str(pprof)]) == 0
    )
    assert gzip.decompress(pprof.read_bytes())
    capsys.readouterr()
    assert main(["top", "--server", server.url, "--since", "2h", "--filter", "host=fleet-07", "-n", "5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "SELF%" in table[1] and len(table) == 7
    assert main(["export", "--server", server.url, "--format", "folded", "--filter", "bogus=1"]) == 1
    assert "unknown filter" in capsys.readouterr().err
    assert (
        main(["export", "--server", server.url, "--format", "folded", "--from", "now", "--to", "now-1h"]) == 2
    )
    assert main(["top", "--server", server.url, "--pid", "1"]) == 2


def test_kill_9_during_ingest_keeps_every_acknowledged_batch(tmp_path):
    data = tmp_path / "crash"
    first = LiveServer(data)
    acked: list[int] = []
    stop = threading.Event()
    bodies = {i: _body(named_profile(f"crash-{i:03d}", count=30)) for i in range(400)}

    def ingest() -> None:
        for i, body in bodies.items():
            if stop.is_set():
                return
            try:
                status = first.post(
                    "/v1development/profiles", body, HEADERS | {"X-Fleetprof-Batch": f"{i:032x}"}
                )
            except OSError:
                return
            if status == 200:
                acked.append(i)

    sender = threading.Thread(target=ingest)
    sender.start()
    deadline = time.monotonic() + 120
    while len(acked) < 15 and sender.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()  # mid-stream: a request may be in flight
    stop.set()
    sender.join(60)
    assert len(acked) >= 15

    second = LiveServer(data)
    try:
        for i in acked:
            assert _total(second, host=f"crash-{i:03d}") == 40, i
        # The agent re-sends what was not acknowledged, and perhaps what was: nothing doubles.
        for i in range(max(acked) + 3):
            status = second.post(
                "/v1development/profiles", bodies[i], HEADERS | {"X-Fleetprof-Batch": f"{i:032x}"}
            )
            assert status == 200
        for i in range(max(acked) + 3):
            assert _total(second, host=f"crash-{i:03d}") == 40, i
    finally:
        assert second.stop() == 0


def test_bad_cli_input_one_line(tmp_path, capsys):
    assert main(["server", "--port", "70000", "--data-dir", str(tmp_path)]) == 2
    assert main(["server", "--retention", "forever", "--data-dir", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("fleetprof: ") for line in err)


def test_server_port_in_use(tmp_path, server):
    port = int(server.url.rsplit(":", 1)[1])
    other = Path(tmp_path) / "other"
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "fleetprof", "server", "--data-dir", str(other), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "cannot listen" in run.stderr


def test_server_process_grpc_then_ctrl_c(tmp_path):
    live = LiveServer(tmp_path / "grpc", grpc=True)
    try:
        port = int(re.search(r"OTLP/gRPC on port (\d+)", live.log.read_text()).group(1))
        sender = GrpcSender(f"127.0.0.1:{port}", "secret", timeout_s=60)
        try:
            result = sender.send(encode_batch(named_profile("grpc-live"), "f" * 32))
        finally:
            sender.close()
        assert result.outcome is Outcome.ACK, result.reason
        assert _total(live, host="grpc-live") == 40
    finally:
        live.proc.send_signal(signal.SIGINT)
        assert live.proc.wait(60) == 0
    assert "Traceback" not in live.log.read_text()

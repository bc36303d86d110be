"""OTLP/HTTP ingest: round trip into queries, refusals (400/401/413) writing nothing, idempotent batches,
read-only API without the token, hostile filter values."""

from __future__ import annotations

import gzip
import importlib
import json
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from google.protobuf import json_format

from fleetprof.output.otlp import to_otlp_request
from fleetprof.server.app import ServerConfig, create_app
from tests.server.conftest import (
    AUTH,
    MAX_BODY,
    TOKEN,
    named_profile,
    new_batch_id,
    otlp_body,
    post_otlp,
    sample_count,
)


def _names(node: dict) -> set[str]:
    out = {node["name"]}
    for child in node["children"]:
        out |= _names(child)
    return out


def test_healthz_and_placeholder_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "/docs" in page.text
    schema = client.get("/api/v1/openapi.json").json()
    for path in ("/v1development/profiles", "/api/v1/flamegraph", "/api/v1/top", "/api/v1/export"):
        assert path in schema["paths"]


def test_round_trip_flamegraph_and_top(client, store):
    response = post_otlp(client, otlp_body(named_profile("rt-host", "spin_here")), new_batch_id())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    assert sample_count(store, "rt-host") == 40
    tree = client.get("/api/v1/flamegraph", params={"since": "1h", "host": "rt-host"}).json()
    assert tree["total"] == 40
    names = _names(tree)
    assert any("spin_here" in n for n in names)
    assert any("spin_here_c" in n for n in names)
    assert "do_syscall_64_[k]" in names
    top = client.get("/api/v1/top", params={"since": "1h", "host": "rt-host"}).json()["functions"]
    assert top[0]["function"] == "spin_here" and top[0]["self"] == 30
    assert {"self_co2_kg", "self_cost", "annual_self_cost"} <= set(top[0])
    exact = client.get("/api/v1/top", params={"since": "1h", "host": "rt-host", "exact": "true"}).json()
    assert exact["functions"] == top
    hosts = {h["host_name"] for h in client.get("/api/v1/hosts").json()["hosts"]}
    assert "rt-host" in hosts


def test_other_query_routes(client):
    post_otlp(client, otlp_body(named_profile("q-host", "qfun")), new_batch_id())
    base = {"since": "1h", "host": "q-host"}
    sandwich = client.get("/api/v1/sandwich", params=base | {"function": "qfun"})
    assert sandwich.status_code == 200, sandwich.text
    timeline = client.get("/api/v1/timeline", params=base | {"group_by": "process"}).json()
    assert timeline["series"][0]["group"] == "proc-q-host" and timeline["series"][0]["total"] == 40
    diff = client.get("/api/v1/diff", params=base | {"cmp_filter": "pid=4000"})
    assert diff.status_code == 200, diff.text
    values = client.get("/api/v1/values/host", params={"since": "1h", "prefix": "q-"}).json()["values"]
    assert values == [{"value": "q-host", "samples": 40}]
    functions = client.get("/api/v1/values/function", params={"prefix": "QFUN"}).json()["values"]
    assert {"value": "qfun"} in functions
    folded = client.get("/api/v1/export", params=base | {"format": "folded"})
    assert folded.status_code == 200 and "qfun" in folded.text
    for fmt in ("pprof", "speedscope", "otlp"):
        exported = client.get("/api/v1/export", params=base | {"format": fmt})
        assert exported.status_code == 200 and exported.content, fmt
    assert client.get("/api/v1/export", params=base | {"format": "html"}).status_code == 400


def test_plain_and_json_bodies(client, store):
    profile = named_profile("plain-host")
    assert (
        post_otlp(client, otlp_body(profile, compress=False), new_batch_id(), compressed=False).status_code
        == 200
    )
    as_json = json_format.MessageToJson(to_otlp_request(named_profile("json-host")))
    response = client.post(
        "/v1development/profiles", content=as_json, headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert sample_count(store, "plain-host") == sample_count(store, "json-host") == 40


def test_idempotent_resend(client, store):
    body = otlp_body(named_profile("idem-host"))
    batch = new_batch_id()
    for _ in range(3):
        assert post_otlp(client, body, batch).status_code == 200
    assert sample_count(store, "idem-host") == 40
    anonymous = otlp_body(named_profile("anon-host"))
    for _ in range(2):  # without a batch id, the same content is the same batch
        assert post_otlp(client, anonymous).status_code == 200
    assert sample_count(store, "anon-host") == 40


def test_malformed_truncated_oversized_write_nothing(client, store):
    good = otlp_body(named_profile("bad-host"), compress=False)
    cases = [
        (gzip.compress(b"\xff\xff\xff\xff garbage"), 400),
        (gzip.compress(good[: len(good) // 2]), 400),  # truncated protobuf
        (gzip.compress(good)[:-12], 400),  # truncated gzip
        (b"not gzip at all", 400),
        (b"\0" * (MAX_BODY + 1), 413),  # oversized on the wire
        (gzip.compress(b"\0" * (300 << 20)), 413),  # a gzip bomb
    ]
    for body, status in cases:
        response = post_otlp(client, body, new_batch_id())
        assert response.status_code == status, (status, response.text)
        reason = response.json()["error"]
        assert reason and "\n" not in reason
    assert sample_count(store, "bad-host") == 0
    assert client.get("/healthz").status_code == 200


def test_token_required_for_writes_only(client, store):
    body = otlp_body(named_profile("auth-host"))
    for token in (None, "wrong", "secret2", ""):
        response = post_otlp(client, body, new_batch_id(), token=token)
        assert response.status_code == 401
        assert response.json()["error"]
    assert client.put("/api/v1/symbols/" + "a" * 32, content=b"x").status_code == 401
    assert client.post("/api/v1/symbols/missing", json=["a" * 32]).status_code == 401
    assert sample_count(store, "auth-host") == 0
    # Reads work without a token; there is no route that writes through GET.
    for path in ("/api/v1/flamegraph", "/api/v1/top", "/api/v1/hosts", "/api/v1/timeline"):
        assert client.get(path, params={"since": "5m"} if path != "/api/v1/hosts" else {}).status_code == 200
    assert client.delete("/api/v1/hosts").status_code == 405


def test_hostile_filter_values_are_harmless(client, store):
    post_otlp(client, otlp_body(named_profile("victim-host")), new_batch_id())
    hostile = [
        "x' OR '1'='1",
        "'); DROP TABLE fleetprof.samples; --",
        "{since:String}",
        "\\' OR 1=1 --",
        "a\0b",
        "ü\n\t\r",
        "' UNION SELECT * FROM system.users --",
    ]
    for value in hostile:
        for key in ("host", "process", "thread", "container", "executable"):
            response = client.get("/api/v1/top", params={"since": "1h", key: value})
            assert response.status_code == 200, (key, value, response.text)
            assert response.json()["functions"] == []
        assert (
            client.get("/api/v1/flamegraph", params={"since": "1h", "function": value}).json()["total"] == 0
        )
        assert (
            client.get("/api/v1/values/host", params={"since": "1h", "prefix": value}).json()["values"] == []
        )
    assert client.get("/api/v1/top", params={"since": "1h", "pid": "1 OR 1=1"}).status_code == 400
    assert client.get("/api/v1/top", params={"since": "1h", "filter": "nosuch=1"}).status_code == 400
    assert client.get("/api/v1/values/host);DROP", params={"since": "1h"}).status_code == 400
    assert sample_count(store, "victim-host") == 40


def test_bad_query_input_is_one_line_400(client):
    for params in ({"since": "forever"}, {"start": "yesterday-ish"}, {"since": "1h", "start": "now-1h"}):
        response = client.get("/api/v1/top", params=params)
        assert response.status_code == 400
        assert "\n" not in response.json()["error"]
    assert client.get("/api/v1/timeline", params={"group_by": "nope"}).status_code == 400
    assert client.get("/api/v1/top", params={"limit": "many"}).status_code == 400


def test_missing_symbols_route(client):
    ids = ["1" * 32, "2" * 32]
    response = client.post("/api/v1/symbols/missing", json=ids, headers=AUTH)
    assert response.status_code == 200 and response.json() == ids
    assert client.post("/api/v1/symbols/missing", json=["../etc"], headers=AUTH).status_code == 400
    bad = client.put("/api/v1/symbols/" + "3" * 32, content=b"FPSB not really", headers=AUTH)
    assert bad.status_code == 400 and bad.json()["error"]
    assert client.post("/api/v1/symbols/missing", json=["3" * 32], headers=AUTH).json() == ["3" * 32]
    assert json.loads(client.get("/api/v1/status").text)["token_required"] is True


def test_opentelemetry_ebpf_profiler_request(client, store):
    """A request shaped like the OpenTelemetry eBPF profiler's (built in the wire tests), moved to now."""
    unit = str(Path(__file__).resolve().parents[1] / "unit")  # the wire tests import their siblings by name
    if unit not in sys.path:
        sys.path.append(unit)
    wire_tests = importlib.import_module("test_otlp_roundtrip")

    request = wire_tests.ebpf_profiler_request()
    shift = time.time_ns() - 60 * 10**9 - wire_tests.START
    for rp in request.resource_profiles:
        for sp in rp.scope_profiles:
            for profile in sp.profiles:
                profile.time_unix_nano += shift
                for sample in profile.samples:
                    sample.timestamps_unix_nano[:] = [t + shift for t in sample.timestamps_unix_nano]
    response = post_otlp(client, gzip.compress(request.SerializeToString()), new_batch_id())
    assert response.status_code == 200, response.text
    params = {"since": "5m", "executable": "/usr/lib/jvm/java-21/bin/java"}
    tree = client.get("/api/v1/flamegraph", params=params).json()
    names = _names(tree)
    assert tree["total"] == 3
    assert "com.example.Main.run (Main.java:42)" in names or any("com.example.Main.run" in n for n in names)
    assert any(n.startswith("__libc_write") for n in names)  # symbolized upstream, stored as it came
    assert any("libc.so.6+0x11a2af" in n for n in names)  # raw: by (file id, address), no symbols here
    assert "ksys_read_[k]" in names


def test_built_ui_is_served_at_root(store, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>fleetprof ui</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app = create_app(store, None, TOKEN, ServerConfig(ui_dir=tmp_path))
    with TestClient(app) as ui_client:
        assert "fleetprof ui" in ui_client.get("/").text
        assert ui_client.get("/app.js").text == "console.log(1)"
        assert ui_client.get("/healthz").json()["status"] == "ok"
        assert ui_client.get("/api/v1/hosts").status_code == 200

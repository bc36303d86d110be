"""JSON answers are gzip-encoded for clients that accept gzip (past a minimum size) and plain otherwise."""

from __future__ import annotations

import gzip
import json

from tests.server.conftest import named_profile, new_batch_id, otlp_body, post_otlp


def _flame(client, encoding: str):
    """The raw (undecoded) flame graph answer for host gz-host under `Accept-Encoding: encoding`."""
    with client.stream(
        "GET",
        "/api/v1/flamegraph",
        params={"since": "1h", "host": "gz-host"},
        headers={"Accept-Encoding": encoding},
    ) as response:
        return response, b"".join(response.iter_raw())


def test_large_answer_is_gzipped_when_accepted(client):
    profile = named_profile("gz-host")
    for i in range(40):  # enough distinct leaves for an answer well past the minimum size
        profile.samples += named_profile("gz-host", f"leaf_function_{i:03d}").samples
    response = post_otlp(client, otlp_body(profile), new_batch_id())
    assert response.status_code == 200, response.text
    zipped, raw_zipped = _flame(client, "gzip")
    plain, raw_plain = _flame(client, "identity")
    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert len(raw_plain) > 1024 and len(raw_zipped) < len(raw_plain)
    assert json.loads(gzip.decompress(raw_zipped)) == json.loads(raw_plain)
    assert json.loads(raw_plain)["total"] > 0


def test_small_answer_stays_plain(client):
    response = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers

"""The flame graph route's columnar answer (`shape=columns`, what the web UI reads) holds the same tree as
the nested one: same nodes in preorder, children largest first; an unknown shape is refused."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import named_profile, new_batch_id, otlp_body, post_otlp

FIELDS = ("name", "kind", "module", "file", "line", "self", "total")


def _nested_from_columns(c: dict[str, Any]) -> dict[str, Any]:
    """The nested tree the columns describe (depth per node in preorder)."""
    strings = c["strings"]
    chain: list[dict[str, Any]] = []
    root: dict[str, Any] = {}
    for i, depth in enumerate(c["depth"]):
        node: dict[str, Any] = {f: c[f][i] for f in FIELDS}
        for f in ("name", "kind", "module", "file"):
            node[f] = strings[node[f]]
        node["children"] = []
        del chain[depth:]
        if chain:
            chain[-1]["children"].append(node)
        else:
            root = node
        chain.append(node)
    return root


def test_columns_hold_the_nested_tree(client):
    body = otlp_body(named_profile("col-host", "col_fn"))
    assert post_otlp(client, body, new_batch_id()).status_code == 200
    params = {"since": "1h", "host": "col-host"}
    nested = client.get("/api/v1/flamegraph", params=params).json()
    columns = client.get("/api/v1/flamegraph", params=params | {"shape": "columns"}).json()
    assert columns["shape"] == "columns"
    assert {len(columns[f]) for f in (*FIELDS, "depth")} == {len(columns["depth"])}
    assert columns["depth"][0] == 0 and columns["strings"][columns["name"][0]] == "root"
    assert _nested_from_columns(columns) == nested
    assert columns["total"][0] == 40


def test_unknown_shape_is_refused(client):
    answer = client.get("/api/v1/flamegraph", params={"since": "1h", "shape": "xml"})
    assert answer.status_code == 400
    assert "shape" in answer.json()["error"]

"""The tree routes the web UI reads (flame graph, sandwich, diff) answer for stacks deeper than pydantic's
serializer allows (real ones are: a Python process's start-up imports reach 200 frames), and the UI scrolls
through such a graph: its canvas stays a window tall and draws the rows in view."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.model import Frame, FrameKind, Profile, Sample
from tests.server.live import LiveServer
from tests.web.browser import CHROMIUM
from tests.web.conftest import built_ui

DEPTH = 400


def _deep_profile() -> Profile:
    start = time.time_ns() - 10**9
    stack = (Frame(FrameKind.PROCESS, "deep"), *(Frame(FrameKind.KERNEL, f"level_{i}") for i in range(DEPTH)))
    sample = Sample(stack=stack, pid=7, tid=7, process_name="deep", thread_name="deep", count=5,
                    timestamps_ns=[start + k for k in range(5)])  # fmt: skip
    return Profile([sample], 20, start, 10**9, hostname="deep-host", resource={"host.name": "deep-host"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(Path(tmp_path_factory.mktemp("deep")) / "data")
    body = gzip.compress(to_otlp_request(_deep_profile()).SerializeToString())
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    assert live.post("/v1development/profiles", body, headers | {"Authorization": "Bearer secret"}) == 200
    yield live
    live.stop()


def _depth(node: dict) -> int:
    depth = 0
    while node["children"]:
        node = node["children"][0]
        depth += 1
    return depth


def test_deep_trees_are_served(server: LiveServer):
    tree = server.get("/api/v1/flamegraph", {"since": "1h"})
    assert _depth(tree) == DEPTH + 1
    columns = server.get("/api/v1/flamegraph", {"since": "1h", "shape": "columns"})
    assert max(columns["depth"]) == DEPTH + 1
    sandwich = server.get("/api/v1/sandwich", {"since": "1h", "function": "level_0"})
    assert _depth(sandwich["callees"]) == DEPTH - 1
    diff = server.get("/api/v1/diff", {"since": "1h", "cmp_filter": "host=deep-host"})
    assert _depth(diff["tree"]) == DEPTH + 1


@pytest.mark.slow
def test_the_ui_scrolls_through_a_deep_graph(server: LiveServer):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (make setup installs chromium)")
    built_ui()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 600})
        page.goto(f"{server.url}/?since=1h")
        page.wait_for_selector(".flame-canvas[data-zoom=root]", timeout=30_000)
        rows = DEPTH + 2  # root, the process, DEPTH kernel frames
        assert page.eval_on_selector(".flame-area", "a => a.getBoundingClientRect().height") == rows * 18
        assert page.eval_on_selector(".flame-canvas", "c => c.height") <= 600
        top = page.eval_on_selector(".flame-area", "a => a.getBoundingClientRect().top + scrollY")
        page.evaluate("(y) => scrollTo(0, y)", top + 300 * 18)
        page.wait_for_function("() => Number(document.querySelector('.flame-canvas').dataset.offset) > 0")
        offset = int(page.eval_on_selector(".flame-canvas", "c => c.dataset.offset"))
        box = page.locator(".flame-canvas").bounding_box()
        page.mouse.move(box["x"] + 200, box["y"] + 100)
        row = (offset + 100) // 18
        assert page.locator(".flame-view .tt-name").inner_text() == f"level_{row - 2}_[k]"
        browser.close()

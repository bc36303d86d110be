"""The web UI in headless Chromium against a live server holding a real profiling run of two C programs:
top functions, click-to-focus, search highlighting, timeline, diff colours, hosts, empty and error states,
and an HTML payload in a thread name shown as text. Screenshots go to tests/web/artifacts/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetprof.bpf.caps import missing_capabilities
from tests.web.browser import CHROMIUM, LABEL_XSS, PROGRAMS, XSS_HOST, XSS_THREAD, start_dataset
from tests.web.conftest import ARTIFACTS, built_ui

pytestmark = [pytest.mark.bpf, pytest.mark.slow]
playwright_api = pytest.importorskip("playwright.sync_api")
ALPHA, BETA = PROGRAMS["fp_alpha"], PROGRAMS["fp_beta"]
HIGHLIGHT_RGB = (224, 64, 251)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One live server and dataset for every browser test of the module."""
    missing = [m.message for m in missing_capabilities()]
    if missing:
        if os.environ.get("FLEETPROF_SKIP_BPF") == "1":
            pytest.skip("; ".join(missing))
        pytest.fail("; ".join(missing))
    built_ui()
    live = start_dataset(tmp_path_factory.mktemp("web-dataset"))
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium (Playwright's own download is not reachable)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (make setup installs chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: object, server: object) -> Iterator[object]:
    """A fresh page; any dialog (alert) is recorded and dismissed, page errors are collected."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.dialogs = []
    opened.errors = []
    opened.on("dialog", lambda d: (opened.dialogs.append(d.message), d.dismiss()))
    opened.on("pageerror", lambda e: opened.errors.append(str(e)))
    opened.base = server.url
    yield opened
    context.close()
    assert not opened.errors, f"errors in the page: {opened.errors}"


def _shot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _colour_share(page: object, selector: str, test: str) -> float:
    """Share of the canvas's drawn pixels for which the JS predicate `test(r, g, b)` holds."""
    return page.eval_on_selector(
        selector,
        f"""(c) => {{
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const t = {test};
            let hit = 0, drawn = 0;
            for (let i = 0; i < d.length; i += 4) {{
                if (d[i + 3] === 0) continue;
                drawn++;
                if (t(d[i], d[i + 1], d[i + 2])) hit++;
            }}
            return drawn ? hit / drawn : 0;
        }}""",
    )


def test_top_functions_lists_the_hot_function_and_a_click_zooms_the_flame_graph(page: object):
    page.goto(f"{page.base}/?view=top&since=1h")
    row = page.locator(".top-table tbody tr", has_text=ALPHA).first
    row.wait_for(timeout=30_000)
    first_rows = page.locator(".top-table tbody tr .col-function").all_inner_texts()[:4]
    assert ALPHA in first_rows and BETA in first_rows, first_rows
    _shot(page, "top-functions")
    page.locator(".top-table th[data-key=function]").click()  # sortable
    assert page.locator(".top-table th.sorted.asc[data-key=function]").count() == 1
    page.locator(".top-view input.search").fill(BETA)  # filterable
    assert page.locator(".top-table tbody tr").count() >= 1
    assert all(BETA in t for t in page.locator(".top-table tbody tr .col-function").all_inner_texts())
    page.locator(".top-table tbody tr", has_text=BETA).first.click()
    page.wait_for_function(
        f"() => (document.querySelector('.flame-view .flame-canvas')?.dataset.zoom || '').includes('{BETA}')",
        timeout=30_000,
    )
    assert BETA in page.locator(".breadcrumb .crumb.current").inner_text()
    assert "view=flame" not in page.url and "z=" in page.url  # the zoom is in the URL
    _shot(page, "flame-focused")
    page.locator(".breadcrumb .crumb").first.click()
    page.wait_for_function("() => document.querySelector('.flame-canvas').dataset.zoom === 'root'")


def test_search_highlights_matches_and_shows_their_share(page: object):
    page.goto(f"{page.base}/?since=1h")
    page.wait_for_selector(".flame-canvas[data-zoom=root]", timeout=30_000)
    assert _colour_share(page, ".flame-canvas", "(r, g, b) => r === 224 && g === 64 && b === 251") == 0
    page.locator(".flame-view input.search").fill(ALPHA)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=match-info]').textContent.includes('%')"
    )
    info = page.locator("[data-testid=match-info]").inner_text()
    assert "matching frame" in info and "0%" not in info.split("·")[1][:3], info
    assert _colour_share(page, ".flame-canvas", "(r, g, b) => r === 224 && g === 64 && b === 251") > 0
    assert f"q={ALPHA}" in page.url
    page.mouse.move(300, page.locator(".flame-canvas").bounding_box()["y"] + 5)
    assert "samples" in page.locator(".flame-view .tooltip").inner_text()
    _shot(page, "flame-search")


def test_timeline_shows_each_process_and_brushing_narrows_the_range(page: object):
    page.goto(f"{page.base}/?since=1h&group=process")
    legend = page.locator(".timeline .u-legend")
    page.wait_for_function(
        "() => ['fp_alpha', 'fp_beta'].every(p => document.querySelector('.u-legend')?.textContent.includes(p))",  # noqa: E501
        timeout=30_000,
    )
    assert "fp_alpha" in legend.inner_text()
    # Seconds of data in "last hour": the chart fits the samples (finer bars), not one bar at the right edge.
    assert "where the samples are" in page.locator("[data-testid=timeline-fit]").inner_text()
    _shot(page, "timeline")
    box = page.locator(".timeline .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.90, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.999, box["y"] + 20, steps=5)
    page.mouse.up()
    page.wait_for_function("() => location.search.includes('start=')")


def test_diff_of_two_programs_shows_one_red_and_one_green(page: object):
    page.goto(f"{page.base}/?view=diff&since=1h&bf=process%3Dfp_alpha&cf=process%3Dfp_beta")
    page.wait_for_selector(".diff-table tbody tr", timeout=30_000)
    alpha = page.locator(".diff-table tbody tr", has_text=ALPHA).first
    beta = page.locator(".diff-table tbody tr", has_text=BETA).first
    assert "better" in alpha.get_attribute("class")  # green: less CPU in the comparison
    assert "worse" in beta.get_attribute("class")  # red: more
    red = _colour_share(page, ".diff-view .flame-canvas", "(r, g, b) => r > 150 && g < 120 && b < 120")
    green = _colour_share(page, ".diff-view .flame-canvas", "(r, g, b) => g > 120 && r < 100 && b < 120")
    assert red > 0.05 and green > 0.05, (red, green)
    assert "pp" in page.locator(".diff-view .scale").inner_text()
    assert "CPU" in page.locator("[data-testid=diff-summary]").inner_text()
    _shot(page, "diff")


def test_thread_name_with_html_is_shown_as_text_and_runs_nothing(page: object):
    page.goto(f"{page.base}/?since=1h&group=thread&f=host%3D{XSS_HOST}")
    page.wait_for_function(
        "(t) => document.querySelector('.u-legend')?.textContent.includes(t)", arg=XSS_THREAD, timeout=30_000
    )
    page.locator(".add-filter select").select_option("thread")
    page.locator(".add-filter input").fill(XSS_THREAD)
    page.locator(".add-filter button").click()
    page.wait_for_selector(".chip >> nth=1")
    assert page.get_by_text(XSS_THREAD).first.is_visible()
    page.wait_for_selector(".flame-canvas[data-zoom=root]", timeout=30_000)
    page.wait_for_timeout(500)
    assert page.evaluate("() => document.querySelectorAll('img').length") == 0
    assert page.dialogs == []
    _shot(page, "xss-thread-name")


def test_program_labels_group_the_timeline_and_filter_as_text(page: object):
    """Go pprof labels: the timeline stacked by `label.job`, the key offered among the filters, a label
    value with HTML shown as text."""
    page.goto(f"{page.base}/?since=1h&group=label.job&f=host%3D{XSS_HOST}")
    page.wait_for_function(
        "(t) => ['resize', t].every(v => document.querySelector('.u-legend')?.textContent.includes(v))",
        arg=LABEL_XSS,
        timeout=30_000,
    )
    page.wait_for_selector(".add-filter select option[value='label.job']", state="attached", timeout=30_000)
    page.locator(".add-filter select").select_option("label.job")
    page.locator(".add-filter input").fill("resize")
    page.locator(".add-filter button").click()
    page.wait_for_function("() => location.search.includes('label.job')")
    page.wait_for_selector(".flame-canvas[data-zoom=root]", timeout=30_000)
    page.wait_for_timeout(500)
    assert page.evaluate("() => document.querySelectorAll('b[onclick]').length") == 0
    assert page.dialogs == []
    _shot(page, "labels-timeline")


def test_hosts_view_lists_reporting_hosts(page: object):
    page.goto(f"{page.base}/?view=hosts")
    page.wait_for_selector(f".hosts-table tbody tr:has-text('{XSS_HOST}')", timeout=30_000)
    rows = page.locator(".hosts-table tbody tr")
    assert rows.count() == 2
    assert page.locator(".hosts-table .dot.ok").count() == 2  # both reported seconds ago
    _shot(page, "hosts")


def test_empty_and_unreachable_states_say_what_to_do(page: object):
    page.goto(f"{page.base}/?start=978307200000&end=978310800000")
    empty = page.locator(".flame-view .status-empty")
    empty.wait_for(timeout=30_000)
    assert "agent reports every 5 s" in empty.inner_text()
    _shot(page, "empty")
    page.route("**/api/v1/**", lambda route: route.abort())
    page.goto(f"{page.base}/?view=top")
    error = page.locator(".top-view .status-error")
    error.wait_for(timeout=30_000)
    assert "Cannot reach the fleetprof server" in error.inner_text()
    _shot(page, "unreachable")

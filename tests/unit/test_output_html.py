"""HTML flame graph: payload round trip, escaping, self-containment, and a headless-browser smoke test."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_output_profiles import NASTY, empty_profile, rich_profile, wide_profile

from fleetprof.output import get_format
from fleetprof.output.flamegraph import flamegraph_payload, render_html, script_json
from fleetprof.output.folded import one_line
from fleetprof.profile.model import Profile

DATA_SCRIPT = re.compile(r'<script type="application/json" id="fg-data">(.*?)</script>', re.DOTALL)


def decode(payload: dict[str, Any]) -> Counter[tuple[tuple[str, int], ...]]:
    """What the page's script computes: each node's path from the root, with its self count."""
    strings, names, parents, kinds = payload["strings"], payload["name"], payload["parent"], payload["kind"]
    paths: list[tuple[tuple[str, int], ...]] = []
    out: Counter[tuple[tuple[str, int], ...]] = Counter()
    for i, parent in enumerate(parents):
        assert parent < i
        path = () if parent < 0 else (*paths[parent], (strings[names[i]], kinds[i]))
        paths.append(path)
        if payload["self"][i]:
            out[path] += payload["self"][i]
    return out


def expected_paths(profile: Profile) -> Counter[tuple[tuple[str, int], ...]]:
    out: Counter[tuple[tuple[str, int], ...]] = Counter()
    for sample in profile.samples:
        if sample.count:
            out[tuple((one_line(f.folded_name()), int(f.kind)) for f in sample.stack)] += sample.count
    return out


def test_payload_round_trip() -> None:
    profile = rich_profile()
    payload = flamegraph_payload(profile)
    assert payload["parent"][0] == -1
    assert payload["strings"][payload["name"][0]] == "all"
    assert payload["kind"][0] == 0
    assert decode(payload) == expected_paths(profile)
    assert sum(payload["self"]) == profile.total
    n = len(payload["name"])
    assert all(len(payload[key]) == n for key in ("parent", "self", "kind"))
    assert len(set(payload["strings"])) == len(payload["strings"])
    assert payload["meta"]["processes"] == 3
    # preorder with siblings sorted by name: every node's children are contiguous and ordered
    children: dict[int, list[int]] = {}
    for i, parent in enumerate(payload["parent"][1:], start=1):
        children.setdefault(parent, []).append(i)
    for kids in children.values():
        labels = [payload["strings"][payload["name"][k]] for k in kids]
        assert labels == sorted(labels)


def test_payload_merges_equal_prefixes() -> None:
    payload = flamegraph_payload(rich_profile())
    top = [payload["strings"][payload["name"][i]] for i, p in enumerate(payload["parent"]) if p == 0]
    assert top == sorted(["app", "python3", one_line(NASTY)])


def test_payload_of_wide_profile_is_compact() -> None:
    profile = wide_profile(2000)
    payload = flamegraph_payload(profile)
    assert decode(payload) == expected_paths(profile)
    encoded = script_json(payload)
    assert len(encoded) < 40 * len(payload["name"])  # a few bytes per node, no object per sample


def test_escaping() -> None:
    profile = rich_profile()
    profile.hostname = "<b>host</b> & </script>"
    page = render_html(profile)
    assert page.count("</script>") == 2  # the two script elements' own closing tags
    assert "<!--" not in page
    assert "\u2028" not in page
    assert "<title>fleetprof flame graph: &lt;b&gt;host&lt;/b&gt; &amp; &lt;/script&gt;</title>" in page
    match = DATA_SCRIPT.search(page)
    assert match
    assert json.loads(match[1]) == flamegraph_payload(profile)
    assert any(s.startswith("evil</script><script>") for s in json.loads(match[1])["strings"])


def test_self_contained() -> None:
    page = render_html(rich_profile())
    assert "{{" not in page
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "@import" not in page and "url(" not in page
    assert not re.search(r"https?://", page)
    assert page.startswith("<!DOCTYPE html>")


def test_written_as_utf8() -> None:
    stream = io.BytesIO()
    get_format("html").write(rich_profile(), stream)
    assert "naïve_λ" in stream.getvalue().decode("utf-8")


# --- headless browser -------------------------------------------------------------------------------

ERROR_CATCHER = (
    "<script>window.__errors=[];addEventListener('error',e=>__errors.push(String(e.message)));</script>"
)
SELF_TEST = """<script>
(() => {
  const out = {errors: window.__errors, drawn: Number(document.documentElement.dataset.drawn || -1)};
  const canvas = document.getElementById("fg-canvas");
  const tip = document.getElementById("fg-tooltip");
  try {
    if (!canvas.hidden) {
      const ctx = canvas.getContext("2d");
      const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
      out.painted = painted;
      const rect = canvas.getBoundingClientRect();
      const at = (type, x, row) => canvas.dispatchEvent(new MouseEvent(type, {
        clientX: rect.left + x, clientY: rect.top + row * 18 + 9, bubbles: true}));
      at("mousemove", 5, 1);
      out.tipRow1 = tip.hidden ? null : tip.textContent;
      at("click", 5, 2);
      at("mousemove", rect.width - 5, 2);
      out.tipAfterZoom = tip.hidden ? null : tip.textContent;
      document.getElementById("fg-reset").click();
      const search = document.getElementById("fg-search");
      search.value = "KSYS_read";
      search.dispatchEvent(new Event("input"));
      out.matched = document.getElementById("fg-matched").textContent;
    } else {
      out.empty = document.getElementById("fg-empty").hidden === false;
    }
  } catch (e) {
    out.errors.push(String(e));
  }
  const pre = document.createElement("pre");
  pre.id = "selftest";
  pre.textContent = JSON.stringify(out);
  document.body.append(pre);
})();
</script>"""


def run_in_browser(profile: Profile, tmp_path: Path) -> dict[str, Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed")
    page = render_html(profile)
    page = page.replace("<head>", "<head>" + ERROR_CATCHER, 1).replace("</body>", SELF_TEST + "</body>", 1)
    path = tmp_path / "flame.html"
    path.write_text(page, encoding="utf-8")
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1200,900",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="selftest">(.*?)</pre>', result.stdout, re.DOTALL)
    assert match, result.stderr[-2000:]
    return json.loads(match[1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def test_browser_smoke(tmp_path: Path) -> None:
    out = run_in_browser(rich_profile(), tmp_path)
    assert out["errors"] == []
    assert out["drawn"] > 5
    assert out["painted"] > 1000
    assert out["tipRow1"].startswith("app")
    assert "% of total" in out["tipRow1"] and "of parent" in out["tipRow1"]
    assert out["tipAfterZoom"].startswith("main [app]")  # zoomed in: main spans the whole width
    assert out["matched"].startswith("Matched: 31.25% (5 of 16 samples")


def test_browser_large_profile(tmp_path: Path) -> None:
    profile = wide_profile(50_000)
    assert len(flamegraph_payload(profile)["name"]) > 100_000
    out = run_in_browser(profile, tmp_path)
    assert out["errors"] == []
    assert 0 < out["drawn"] < 10_000  # frames narrower than half a pixel are skipped
    assert out["painted"] > 1000


def test_browser_empty_profile(tmp_path: Path) -> None:
    out = run_in_browser(empty_profile(), tmp_path)
    assert out["errors"] == []
    assert out["empty"] is True

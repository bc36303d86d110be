"""Web UI flame graph in headless Chromium: time to first render and per-zoom latency for a 100 k-node
graph, side by side with speedscope (npm) loading the same profile as speedscope JSON; and page weight.
Ours is the built app (web/dist), its query API answered over HTTP from the same tree; speedscope draws with
WebGL, so its first render is its first draw call after navigation. Zoom latency is the work from the input
event to the end of the frame that shows it (its handlers, animation-frame callbacks, style, layout and
paint; the idle wait for the next vsync left out), median of 15; the script part alone (handlers and
animation-frame callbacks) is printed too."""

from __future__ import annotations

import functools
import gzip
import json
import random
import statistics
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "web" / "dist"
SPEEDSCOPE = ROOT / "tools" / "npm" / "node_modules" / "speedscope" / "dist" / "release"
CHROMIUM = "/usr/bin/chromium"
NODES = 100_000
KINDS = ["native"] * 6 + ["python"] * 3 + ["kernel"]
ZOOMS = 15
# Timestamps of the first WebGL / 2D draw calls, recorded from the page's start (speedscope draws with WebGL).
HOOK = """
window.__draws = [];
for (const proto of [WebGLRenderingContext.prototype, WebGL2RenderingContext.prototype]) {
  for (const name of ['drawArrays', 'drawElements']) {
    const orig = proto[name];
    proto[name] = function (...args) {
      window.__draws.push(performance.now());
      return orig.apply(this, args);
    };
  }
}
"""
FRAME_WORK = """async ([x, y, kind]) => {
  const target = document.elementFromPoint(x, y);
  const t0 = performance.now();
  if (kind === 'click') {
    target.dispatchEvent(new MouseEvent('mousedown', {clientX: x, clientY: y, bubbles: true}));
    target.dispatchEvent(new MouseEvent('mouseup', {clientX: x, clientY: y, bubbles: true}));
    target.dispatchEvent(new MouseEvent('click', {clientX: x, clientY: y, bubbles: true}));
  } else {
    target.dispatchEvent(new WheelEvent('wheel', {clientX: x, clientY: y, deltaY: kind, ctrlKey: true,
                                                  bubbles: true, cancelable: true}));
  }
  const sync = performance.now() - t0;
  // The frame's rendering (style, layout, paint) runs after its animation-frame callbacks and before a task
  // posted from them: the time from the frame's start to that task counts, the wait for the frame does not.
  // Two figures: to the animation-frame callback (script work only), and to that task (the whole frame).
  return await new Promise((done) => requestAnimationFrame((frame) => {
    const start = Math.max(frame, t0 + sync);
    const script = sync + Math.max(0, performance.now() - start);
    setTimeout(() => done([script, sync + Math.max(0, performance.now() - start)]), 0);
  }));
}"""


def synthetic_tree(n: int = NODES, seed: int = 7) -> dict:
    """A flame tree of `n` nodes shaped like real ones (deep paths, a few thousand distinct functions)."""
    rng = random.Random(seed)
    names = [f"fn_{i}" for i in range(5000)]
    nodes = [{"name": "root", "kind": "root", "module": "", "file": "", "line": 0, "children": [], "self": 0}]
    depth = [0]
    for i in range(1, n):
        if i < 9:
            parent = 0
        else:  # mostly extend a recent node: long chains with branching
            parent = i - 1 - int(rng.paretovariate(1.3)) if rng.random() < 0.85 else rng.randrange(1, i)
            parent = max(parent, 1)
        kind = "process" if parent == 0 else rng.choice(KINDS)
        name = f"proc{i}" if parent == 0 else rng.choice(names)
        label = f"{name} [app]" if kind == "native" else name
        file = "/srv/m.py" if kind == "python" else ""
        node = {"name": label, "kind": kind, "module": "app", "file": file, "line": i % 300}
        node |= {"children": [], "self": 0}
        nodes.append(node)
        depth.append(depth[parent] + 1)
        nodes[parent]["children"].append(node)
    for node in nodes:
        if not node["children"] or rng.random() < 0.2:
            node["self"] = int(rng.paretovariate(1.1) * 10)
    for node in reversed(nodes):
        node["total"] = node["self"] + sum(c["total"] for c in node["children"])
    for node in nodes:
        node["children"].sort(key=lambda c: -c["total"])
    return nodes[0]


def columns_json(tree: dict) -> dict:
    """The flame graph route's columnar answer (`shape=columns`) for a nested tree: what the UI fetches."""
    strings: dict[str, int] = {}
    out: dict[str, list[int]] = {k: [] for k in ("name", "kind", "module", "file", "line", "depth")}
    out |= {"self": [], "total": []}
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        for key in ("name", "kind", "module", "file"):
            out[key].append(strings.setdefault(node[key], len(strings)))
        for key in ("line", "self", "total"):
            out[key].append(node[key])
        out["depth"].append(depth)
        stack.extend((c, depth + 1) for c in reversed(node["children"]))
    return {"shape": "columns", "strings": list(strings)} | out


def speedscope_json(tree: dict) -> dict:
    """The same profile as a speedscope sampled profile: one sample per node with self time."""
    frames: dict[str, int] = {}
    samples, weights = [], []
    stack: list[tuple[dict, list[int]]] = [(c, []) for c in tree["children"]]
    while stack:
        node, path = stack.pop()
        here = [*path, frames.setdefault(node["name"], len(frames))]
        if node["self"]:
            samples.append(here)
            weights.append(node["self"])
        stack.extend((c, here) for c in node["children"])
    total = sum(weights)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": n} for n in frames]},
        "profiles": [
            {"type": "sampled", "name": "bench", "unit": "none", "startValue": 0, "endValue": total}
            | {"samples": samples, "weights": weights}
        ],
    }


def serve(directory: Path, api: dict[str, bytes] | None = None) -> tuple[ThreadingHTTPServer, str]:
    """A static file server for `directory` on a free port; /api/v1/NAME answered from `api` (JSON)."""
    answers = api or {}

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if not self.path.startswith("/api/v1/"):
                super().do_GET()
                return
            body = answers.get(self.path[len("/api/v1/") :].split("?")[0], b"{}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def weight(directory: Path) -> tuple[int, int]:
    """Bytes and gzip'd bytes of every file the page may load."""
    files = [p for p in directory.rglob("*") if p.is_file() and p.suffix not in {".txt", ".md", ".json"}]
    raw = sum(p.stat().st_size for p in files)
    return raw, sum(len(gzip.compress(p.read_bytes(), 6)) for p in files)


def bench_ours(browser: object, url: str) -> tuple[float, float, list[list[float]]]:
    """(first render ms from navigation, of which flatten+draw ms, zoom latencies [script, frame] ms)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/index.html?since=1h")
    mark = "performance.getEntriesByName('fleetprof:flame-first-render')"
    page.wait_for_function(f"() => {mark}.length", timeout=60_000)
    first = page.evaluate(f"() => {mark}[0].startTime")
    own = float(page.eval_on_selector(".flame-canvas", "c => c.dataset.firstRenderMs"))
    box = page.locator(".flame-canvas").bounding_box()
    zooms = []
    for k in range(ZOOMS):
        # Alternate: zoom into a frame a few rows down, then back to the root row.
        y = box["y"] + (18 * (3 + k % 5) + 9 if k % 2 == 0 else 9)
        zooms.append(page.evaluate(FRAME_WORK, [box["x"] + 40 + 10 * k, y, "click"]))
    page.close()
    return first, own, zooms


def bench_speedscope(browser: object, url: str) -> tuple[float, list[list[float]]]:
    """(first render ms from navigation, zoom latencies [script, frame] ms) of speedscope loading
    profile.json."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.add_init_script(HOOK)
    page.goto(f"{url}/index.html#profileURL={url}/profile.json")
    drawn = "() => window.__draws.length > 0 && document.querySelector('canvas')"
    page.wait_for_function(drawn, timeout=120_000)
    page.wait_for_timeout(500)
    first = page.evaluate("() => window.__draws[0]")
    canvas = page.locator("canvas").first.bounding_box()
    zooms = []
    for k in range(ZOOMS):
        x = canvas["x"] + canvas["width"] * (0.2 + 0.04 * k)
        zooms.append(page.evaluate(FRAME_WORK, [x, canvas["y"] + 80, -120 if k % 2 == 0 else 120]))
    page.close()
    return first, zooms


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not (DIST / "index.html").is_file():
        subprocess.run(["make", "ui"], cwd=ROOT, check=True)
    if not (SPEEDSCOPE / "index.html").is_file():
        print(f"speedscope is not installed ({SPEEDSCOPE}): run make setup", file=sys.stderr)
        return 1
    tree = synthetic_tree()
    tree_json = json.dumps(columns_json(tree), separators=(",", ":")).encode()
    profile = json.dumps(speedscope_json(tree)).encode()
    work = ROOT / "build" / "bench_ui"
    work.mkdir(parents=True, exist_ok=True)
    (work / "profile.json").write_bytes(profile)
    for item in SPEEDSCOPE.iterdir():
        target = work / item.name
        if not target.exists():
            target.symlink_to(item)
    timeline = {"group_by": "process", "step_s": 5, "times_ns": [], "series": []}
    api = {"flamegraph": tree_json, "timeline": json.dumps(timeline).encode()}
    ours_srv, ours_url = serve(DIST, api)
    ss_srv, ss_url = serve(work)
    print(
        f"tree: {NODES:,} nodes, {len(tree_json) / 1e6:.1f} MB JSON (columns); "
        f"speedscope {len(profile) / 1e6:.1f} MB"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        runs = [bench_ours(browser, ours_url) for _ in range(3)]
        ss_runs = [bench_speedscope(browser, ss_url) for _ in range(2)]
        browser.close()
    ours_srv.shutdown()
    ss_srv.shutdown()
    first = min(r[0] for r in runs)
    own = min(r[1] for r in runs)
    zoom = statistics.median(z[1] for r in runs for z in r[2])
    script = statistics.median(z[0] for r in runs for z in r[2])
    ss_first = min(r[0] for r in ss_runs)
    ss_zoom = statistics.median(z[1] for r in ss_runs for z in r[1])
    ss_script = statistics.median(z[0] for r in ss_runs for z in r[1])
    ours_w, ss_w = weight(DIST), weight(SPEEDSCOPE)
    print(
        f"first render  ours {first:8.1f} ms (flatten + draw {own:.1f} ms)  speedscope {ss_first:8.1f} ms",
        end="",
    )
    print(f"  speedscope/ours {ss_first / first:.2f}")
    print(f"zoom (median) ours {zoom:8.2f} ms  speedscope {ss_zoom:8.2f} ms  ratio {ss_zoom / zoom:.2f}")
    print(f"  script only  ours {script:8.2f} ms  speedscope {ss_script:8.2f} ms  ", end="")
    print(f"ratio {ss_script / script:.2f}")
    print(f"page weight      ours {ours_w[0] / 1e3:.0f} kB ({ours_w[1] / 1e3:.0f} kB gzip)   "
          f"speedscope {ss_w[0] / 1e3:.0f} kB ({ss_w[1] / 1e3:.0f} kB gzip)")  # fmt: skip
    ok = first < 300 and zoom < 50 and first < ss_first and zoom < ss_zoom and script < ss_script
    print(f"headline: 100k-node flame graph first render {first:.0f} ms (speedscope {ss_first:.0f} ms), "
          f"zoom {zoom:.1f} ms (speedscope {ss_zoom:.1f} ms; script {script:.1f} vs {ss_script:.1f} ms), "
          f"{ours_w[1] / 1e3:.0f} kB gzip "
          f"[goal <300 ms, <50 ms, ahead of speedscope: {'met' if ok else 'NOT met'}]")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

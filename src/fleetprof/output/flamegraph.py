"""A self-contained interactive HTML flame graph: canvas, zoom, search, tooltips, no network.

The page gets a compact call tree (a string table plus per-node name/parent/self/kind arrays, parents
before children, siblings sorted by name) and aggregates totals and layout in the browser. The template,
script and style sheet are package files next to this module.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from typing import Any, BinaryIO

from fleetprof.output.folded import one_line
from fleetprof.output.interning import Interner, utf8_safe
from fleetprof.profile.model import Frame, FrameKind, Profile

ROOT_NAME = "all"
ROOT_KIND = 0
_PLACEHOLDER = re.compile(r"\{\{(TITLE|CSS|JS|DATA)\}\}")
# Characters that could end the <script> element or confuse an HTML parser, as JSON string escapes.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _asset(name: str) -> str:
    """Text of a package file shipped next to this module."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def flamegraph_payload(profile: Profile) -> dict[str, Any]:
    """The call tree of `profile` in the page's compact form (see module docstring)."""
    strings: Interner[str] = Interner(ROOT_NAME)
    keys: dict[Frame, tuple[int, int]] = {}  # frame -> (name, kind): a node's identity under its parent
    node_keys, self_of = [(strings.add(ROOT_NAME), ROOT_KIND)], [0]
    children: list[dict[tuple[int, int], int]] = [{}]
    for sample in profile.samples:
        if sample.count <= 0:
            continue
        stack = sample.stack or (Frame(FrameKind.PROCESS, sample.process_name),)
        node = 0
        for frame in stack:
            key = keys.get(frame)
            if key is None:
                key = keys[frame] = (strings.add(utf8_safe(one_line(frame.folded_name()))), int(frame.kind))
            siblings = children[node]
            child = siblings.get(key)
            if child is None:
                child = siblings[key] = len(node_keys)
                node_keys.append(key)
                self_of.append(0)
                children.append({})
            node = child
        self_of[node] += sample.count
    # Depth first from the root, siblings by name: parents come before their children.
    order: list[int] = []
    parent_of = [-1] * len(node_keys)  # by old index
    todo = [0]
    while todo:
        node = todo.pop()
        order.append(node)
        kids = list(children[node].values())
        if len(kids) > 1:
            kids.sort(key=lambda kid: (strings.keys[node_keys[kid][0]], node_keys[kid][1]), reverse=True)
        for kid in kids:
            parent_of[kid] = node
        todo.extend(kids)
    new_index = [0] * len(order)
    for new, old in enumerate(order):
        new_index[old] = new
    return {
        "version": 1,
        "meta": {
            "hostname": profile.hostname,
            "kernel_release": profile.kernel_release,
            "frequency_hz": profile.frequency_hz,
            "start_time_ns": profile.start_time_ns,
            "duration_ns": profile.duration_ns,
            "processes": len({sample.pid for sample in profile.samples if sample.count > 0}),
        },
        "strings": strings.keys,
        "name": [node_keys[old][0] for old in order],
        "parent": [new_index[parent_of[old]] if old else -1 for old in order],
        "self": [self_of[old] for old in order],
        "kind": [node_keys[old][1] for old in order],
    }


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML <script> element: no `</script>`, `<!--` or `&` can appear."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def render_html(profile: Profile) -> str:
    """The complete HTML page for `profile`."""
    title = f"fleetprof flame graph: {profile.hostname}" if profile.hostname else "fleetprof flame graph"
    values = {
        "TITLE": html.escape(utf8_safe(title)),
        "CSS": _asset("flamegraph.css"),
        "JS": _asset("flamegraph.js"),
        "DATA": script_json(flamegraph_payload(profile)),
    }
    return _PLACEHOLDER.sub(lambda match: values[match[1]], _asset("flamegraph.html"))


class HtmlFormat:
    """One HTML file with everything inline: open it in any browser, offline."""

    name = "html"
    suffix = ".html"
    binary = False

    def write(self, profile: Profile, stream: BinaryIO) -> None:
        """Write the page, UTF-8."""
        stream.write(render_html(profile).encode(errors="replace"))

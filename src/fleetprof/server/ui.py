"""The web UI's static files at `/`: a built UI directory when there is one, else a small page that says the
UI is not built and links the API docs."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

_PACKAGE = Path(__file__).resolve().parent.parent
_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetprof</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>fleetprof</h1>
<p>The server is running, but the web UI is not built (run <code>make setup</code>).</p>
<p>The query API is described at <a href="/docs">/docs</a>
(<a href="/api/v1/openapi.json">OpenAPI schema</a>);
hosts that reported: <a href="/api/v1/hosts">/api/v1/hosts</a>.</p>
</body></html>
"""


def find_ui_dir() -> Path | None:
    """The built UI: $FLEETPROF_UI_DIR, the package's `webui/` (installed), or the checkout's `web/dist`."""
    candidates = [
        os.environ.get("FLEETPROF_UI_DIR", ""),
        str(_PACKAGE / "webui"),
        str(_PACKAGE.parent.parent / "web" / "dist"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "index.html").is_file():
            return Path(candidate)
    return None


def mount(app: FastAPI, ui_dir: Path | None) -> None:
    """Serve `ui_dir` (or the one found) at `/`, after every API route; the placeholder page otherwise."""
    directory = ui_dir if ui_dir is not None and (ui_dir / "index.html").is_file() else find_ui_dir()
    if directory is not None:
        app.mount("/", StaticFiles(directory=directory, html=True), name="ui")
        return

    @app.get("/", include_in_schema=False)
    def placeholder() -> HTMLResponse:
        """The page shown while no UI is built."""
        return HTMLResponse(_PLACEHOLDER)

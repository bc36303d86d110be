"""A `fleetprof server` in a subprocess on a free port (its own chDB, apart from the test process's), and a
small HTTP helper to talk to it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

_URL = re.compile(r"fleetprof server on (http://\S+)")


class LiveServer:
    """`python -m fleetprof server --data-dir DIR --port 0`; stderr goes to a log file in DIR's parent."""

    def __init__(self, data_dir: Path, token: str = "secret", grpc: bool = False) -> None:
        self.data_dir = data_dir
        self.log = data_dir.parent / f"{data_dir.name}.{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "fleetprof", "server", "--data-dir", str(data_dir), "--port", "0"]
        command += ["--ingest-token", token, "--grpc-port", "0" if grpc else "-1"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.url = self._wait_url()

    def _wait_url(self, timeout_s: float = 90.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = _URL.search(self.log.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, no chance to flush anything."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def get(self, path: str, params: dict | list | None = None) -> object:
        """GET a JSON answer."""
        query = urllib.parse.urlencode(params or {}, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=120) as response:
            return json.loads(response.read())

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """POST; the HTTP status (connection trouble raises OSError)."""
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

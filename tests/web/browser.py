"""Browser-test plumbing: a real profiling run of two small C programs posted to a live `fleetprof server`
(plus a copy whose thread name is an HTML payload), and headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetprof.output.otlp import to_otlp_request
from fleetprof.wire.otlp_decode import from_otlp_bytes
from tests.conftest import compile_c
from tests.server.live import LiveServer

CHROMIUM = "/usr/bin/chromium"
XSS = "<img src=x onerror=alert(1)>"
XSS_THREAD = f"evil {XSS}"
XSS_HOST = "xss-host"
LABEL_XSS = "<b onclick=alert(2)>thumb</b>"
PROGRAMS = {"fp_alpha": "alpha_hot_spin", "fp_beta": "beta_hot_spin"}
SOURCE = """
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void {hot}(void) {{
    for (unsigned long i = 0; i < 3000000; i++) sink += i ^ (sink >> 3);
}}
__attribute__((noinline)) void {hot}_outer(void) {{ {hot}(); }}
int main(int argc, char **argv) {{
    time_t end = time(NULL) + atoi(argv[1]);
    while (time(NULL) < end) {hot}_outer();
    return 0;
}}
"""


def record(exe: Path, out: Path, seconds: int = 2) -> bytes:
    """`fleetprof record --format otlp` of `exe` running `seconds`; the serialized OTLP request."""
    command = [sys.executable, "-m", "fleetprof", "record", "--format", "otlp", "-o", str(out)]
    command += ["-d", str(seconds + 2), "--", str(exe), str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not out.is_file():
        pytest.fail(f"fleetprof record failed ({done.returncode}): {done.stderr[-1500:]}")
    return out.read_bytes()


def renamed(otlp: bytes, host: str, thread: str) -> bytes:
    """The same samples as another host, every thread renamed, and labelled (a Go program's pprof labels):
    job=resize or, for every third sample, job=LABEL_XSS: how untrusted names reach the server."""
    out = []
    for profile in from_otlp_bytes(otlp):
        samples = [
            dataclasses.replace(
                s, thread_name=thread, custom_labels=(("job", LABEL_XSS if i % 3 else "resize"),)
            )
            for i, s in enumerate(profile.samples)
        ]
        resource = dict(profile.resource) | {"host.name": host, "host.id": f"id-{host}"}
        out.append(dataclasses.replace(profile, samples=samples, hostname=host, resource=resource))
    assert len(out) == 1, "one resource per recording"
    return to_otlp_request(out[0]).SerializeToString()


def post(server: LiveServer, body: bytes) -> None:
    """POST an OTLP body the way the agent does (gzip'd, with the token)."""
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    headers["Authorization"] = "Bearer secret"
    status = server.post("/v1development/profiles", gzip.compress(body), headers)
    assert status == 200, f"ingest answered {status}"


def start_dataset(work: Path) -> LiveServer:
    """A live server holding a recording of each program, and the first again as another host with an HTML
    payload for a thread name."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (make setup installs it)")
    recordings: dict[str, bytes] = {}
    for name, hot in PROGRAMS.items():
        exe = compile_c(SOURCE.format(hot=hot), work / name, "-O1", "-g", "-fno-omit-frame-pointer")
        recordings[name] = record(exe, work / f"{name}.otlp")
    server = LiveServer(work / "data")
    for body in recordings.values():
        post(server, body)
    post(server, renamed(recordings["fp_alpha"], XSS_HOST, XSS_THREAD))
    return server

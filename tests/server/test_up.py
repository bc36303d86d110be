"""`fleetprof up` end to end (needs root/BPF): server plus local agent; within a few intervals
`export --server` and `top --server` show this machine's hot function, symbolized on the server (the agent
sends it raw and uploads the file's symbols); Ctrl-C exits 0 and the last batches are there."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetprof.bpf.caps import missing_capabilities

pytestmark = [pytest.mark.bpf, pytest.mark.slow]
HOT = "fleetprof_up_hot_spin"
SOURCE = f"""
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void {HOT}(void) {{
    for (unsigned long i = 0; i < 2000000; i++) sink += i ^ (sink >> 3);
}}
__attribute__((noinline)) void up_outer(void) {{ {HOT}(); }}
int main(int argc, char **argv) {{
    time_t end = time(NULL) + atoi(argv[1]);
    while (time(NULL) < end) up_outer();
    return 0;
}}
"""


@pytest.fixture(autouse=True)
def _bpf_capable() -> None:
    missing = [m.message for m in missing_capabilities()]
    if missing:
        if os.environ.get("FLEETPROF_SKIP_BPF") == "1":
            pytest.skip("; ".join(missing))
        pytest.fail("; ".join(missing))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetprof", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_up_end_to_end(tmp_path: Path):
    exe = tmp_path / "up_hot"
    (tmp_path / "up_hot.c").write_text(SOURCE)
    subprocess.run(
        ["gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-o", str(exe), str(tmp_path / "up_hot.c")],
        check=True,
        timeout=120,
    )
    port = _free_port()
    log = tmp_path / "up.log"
    command = [sys.executable, "-m", "fleetprof", "up", "--data-dir", str(tmp_path / "data")]
    command += ["--port", str(port), "--interval", "1"]
    with log.open("wb") as err:
        up = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    hot = None
    try:
        assert up.stdout is not None
        url = up.stdout.readline().decode().strip()
        assert url == f"http://127.0.0.1:{port}", log.read_text()
        hot = subprocess.Popen([str(exe), "120"])
        deadline = time.monotonic() + 150
        table = ""
        while time.monotonic() < deadline:
            run = _cli("top", "--server", url, "--since", "2m", "--filter", "process=up_hot", "-n", "5")
            assert run.returncode == 0, run.stderr
            table = run.stdout
            if HOT in table:
                break
            assert up.poll() is None, log.read_text()[-3000:]
            time.sleep(2)
        rows = table.splitlines()[2:]
        assert rows and HOT in rows[0], table + log.read_text()[-3000:]
        assert re.search(rf"{HOT} \[up_hot\]", rows[0])
        folded = _cli(
            "export", "--server", url, "--since", "5m", "--format", "folded", "--filter", "process=up_hot"
        )
        assert folded.returncode == 0, folded.stderr
        assert any(f"up_outer [up_hot];{HOT} [up_hot]" in line for line in folded.stdout.splitlines())
        # The whole machine is there too, not only the test program.
        every = _cli("top", "--server", url, "--since", "5m", "-n", "50")
        assert every.returncode == 0 and HOT in every.stdout
    finally:
        if hot is not None:
            hot.kill()
            hot.wait()
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the foreground group
        try:
            status = up.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
            raise
    text = log.read_text()
    assert status == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "agent stopped" in text and "0 dropped" in text

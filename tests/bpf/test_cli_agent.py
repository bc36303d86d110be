"""`fleetprof agent` end to end against a fake collector: one batch per interval with its own window, the
token and batch id on each, native frames raw (mapping with file id, address, no name), symbol bundles
asked about and uploaded, and SIGTERM flushing the last window and exiting 0 with nothing left spooled."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from tests.conftest import compile_c
from tests.unit.fake_collector import FakeCollector

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

BUSY = r"""
#include <time.h>
__attribute__((noinline)) static unsigned long agent_hot_loop(unsigned long n) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < n; i++) x += i;
    return x;
}
int main(void) {
    time_t end = time(0) + 60;
    while (time(0) < end) agent_hot_loop(1000000);
    return 0;
}
"""


PY_BUSY = """
import time
def agent_py_hot():
    end = time.time() + 60
    while time.time() < end:
        pass
agent_py_hot()
"""


def strings(request) -> list[str]:
    return list(request.dictionary.string_table)


def attributes(request, indices) -> dict[str, object]:
    out = {}
    table, s = request.dictionary.attribute_table, strings(request)
    for i in indices:
        kv = table[i]
        value = kv.value
        out[s[kv.key_strindex]] = (
            getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
        )
    return out


def test_agent_streams_raw_windows_and_flushes_on_sigterm(build_dir: Path, tmp_path: Path) -> None:
    exe = compile_c(BUSY, build_dir / "agent_busy", "-O1", "-g")
    collector = FakeCollector().start()
    spool = tmp_path / "spool"
    busy = subprocess.Popen([str(exe)])
    py_busy = subprocess.Popen([sys.executable, "-c", PY_BUSY])
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetprof",
            "agent",
            "--collector",
            collector.url,
            "--token",
            "tok",
            "--interval",
            "1",
            "--frequency",
            "49",
            "--spool-dir",
            str(spool),
            "--host-name",
            "soak-host",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        busy_id = file_id(str(exe), read_elf_info(exe).build_id)

        def asked_about_busy() -> bool:
            asked = [r.body for r in collector.state.received if r.path == "/api/v1/symbols/missing"]
            return any(busy_id in json.loads(body) for body in asked)

        # Three windows in, and the symbol uploader has asked about the busy program (in the background).
        assert collector.state.wait_for(
            lambda: len(collector.state.accepted()) >= 3 and asked_about_busy(), timeout=120
        )
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
    finally:
        for proc in (busy, py_busy):
            proc.kill()
            proc.wait()
        if agent.poll() is None:
            agent.kill()
        collector.stop()
    assert agent.returncode == 0, err
    assert "agent stopped" in err and "0 spooled for later" in err, err
    assert list(spool.iterdir()) == []
    posts = collector.state.accepted()
    assert all(p.headers["Authorization"] == "Bearer tok" for p in posts)
    assert len({p.headers["X-Fleetprof-Batch"] for p in posts}) == len(posts)
    windows = [
        (
            p.request.resource_profiles[0].scope_profiles[0].profiles[0].time_unix_nano,
            p.request.resource_profiles[0].scope_profiles[0].profiles[0].duration_nano,
        )
        for p in posts
    ]
    for (start, length), (next_start, _) in itertools.pairwise(windows):
        assert length > 0 and start + length <= next_start  # each batch its own window, in order
    raw_busy = 0
    busy_ids: set[object] = set()
    for post in posts:
        request = post.request
        s = strings(request)
        for rp in request.resource_profiles:
            resource = {kv.key: kv.value for kv in rp.resource.attributes}
            assert resource["host.name"].string_value == "soak-host"
            if resource["process.pid"].int_value != busy.pid:
                continue
            for profile in (p for sp in rp.scope_profiles for p in sp.profiles):
                for sample in profile.samples:
                    stack = request.dictionary.stack_table[sample.stack_index]
                    for index in stack.location_indices:
                        location = request.dictionary.location_table[index]
                        mapping = request.dictionary.mapping_table[location.mapping_index]
                        if location.mapping_index and s[mapping.filename_strindex] == str(exe):
                            assert not location.lines and location.address  # raw: named on the server
                            attrs = attributes(request, mapping.attribute_indices)
                            busy_ids |= {v for k, v in attrs.items() if k.endswith(("file_id", "htlhash"))}
                            raw_busy += 1
    assert raw_busy > 0
    # Python frames are named on the host (their names live in the process's memory).
    names = {name for post in posts for name in strings(post.request)}
    assert "agent_py_hot" in names and "<python frame>" not in names
    asked = [json.loads(r.body) for r in collector.state.received if r.path == "/api/v1/symbols/missing"]
    uploaded = set(collector.state.symbols)
    assert busy_ids and all(any(fid in ids for ids in asked) for fid in busy_ids)  # asked about
    # Bundles go up in the background at a bounded rate (the busy program's may still be queued).
    assert uploaded and all(any(fid in ids for ids in asked) for fid in uploaded)

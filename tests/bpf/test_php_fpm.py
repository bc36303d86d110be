"""PHP-FPM (`php-fpm8.2 -F`, a private unix-socket pool of two static workers) profiled while requests run
the busy chain: each worker's samples hold the PHP chain with lines over php-fpm's own native frames, whether
FPM starts under `fleetprof record -- php-fpm8.2` (the workers fork from a master registered at exec) or is
already serving when `fleetprof record --all` starts, with opcache off, on, and with its tracing JIT (the
master makes the JIT buffer, the workers share it). Requests are sent over FastCGI by a client here."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_php_stacks import SCRIPT, chain_problem
from test_python_common import Recording, Stack, assert_share, judge, record

FPM = shutil.which("php-fpm8.2") or shutil.which("php-fpm")
REQUEST_S = 0.4  # each request's run() time
SERVE_S = 4.0  # how long the requests go on under `record -- php-fpm`
CLIENTS = 2  # concurrent requests, one per worker
MODES = {
    "opcache": [],  # FPM's php.ini default: opcache.enable=1, no JIT buffer
    "plain": ["-d", "opcache.enable=0"],
    "jit": ["-d", "opcache.jit_buffer_size=64M", "-d", "opcache.jit=tracing"],  # made by the master, shared
}

pytestmark = pytest.mark.skipif(FPM is None, reason="php8.2-fpm is not installed (make setup installs it)")


# ---- a FastCGI client (the protocol's records: version, type, request id, length, padding) -----------

_BEGIN, _END, _PARAMS, _STDIN, _STDOUT = 1, 3, 4, 5, 6


def _fcgi_record(kind: int, content: bytes) -> bytes:
    return struct.pack(">BBHHBx", 1, kind, 1, len(content), 0) + content


def _fcgi_params(params: dict[str, str]) -> bytes:
    out = b""
    for key, value in params.items():
        pair = key.encode(), value.encode()
        for item in pair:
            out += bytes([len(item)]) if len(item) < 128 else struct.pack(">I", len(item) | 1 << 31)
        out += pair[0] + pair[1]
    return out


def fastcgi_get(sock: Path, script: Path, query: str, timeout: float = 30) -> str:
    """The body FPM answers for a GET of `script?query` on the pool at `sock` (headers stripped)."""
    params = {
        "SCRIPT_FILENAME": str(script),
        "SCRIPT_NAME": "/" + script.name,
        "REQUEST_URI": f"/{script.name}?{query}",
        "QUERY_STRING": query,
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
    }
    request = _fcgi_record(_BEGIN, struct.pack(">HB5x", 1, 0))  # role responder, close the connection
    request += _fcgi_record(_PARAMS, _fcgi_params(params)) + _fcgi_record(_PARAMS, b"")
    request += _fcgi_record(_STDIN, b"")
    data = b""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        conn.sendall(request)
        while chunk := conn.recv(65536):
            data += chunk
    out, at = b"", 0
    while at + 8 <= len(data):
        _, kind, _, length, padding = struct.unpack(">BBHHB", data[at : at + 7])
        if kind == _STDOUT:
            out += data[at + 8 : at + 8 + length]
        at += 8 + length + padding
    return out.decode(errors="replace").partition("\r\n\r\n")[2]


# ---- FPM and the load ----------------------------------------------------------------------------------


def _config(tmp: Path) -> Path:
    """A private FPM config: a unix-socket pool of two static workers, pid and error log in `tmp`."""
    conf = tmp / "fpm.conf"
    conf.write_text(
        "[global]\n"
        f"pid = {tmp / 'fpm.pid'}\n"
        f"error_log = {tmp / 'error.log'}\n"
        "daemonize = no\n"
        "[fleetprof]\n"
        f"listen = {tmp / 'fpm.sock'}\n"
        "pm = static\n"
        f"pm.max_children = {CLIENTS}\n"
        "clear_env = no\n"
    )
    return conf


def _command(tmp: Path, mode: str) -> list[str]:
    """php-fpm in the foreground on the private config (as root: -R), pcre's JIT off (its code has no
    unwind info), the mode's opcache settings."""
    assert FPM is not None
    return [FPM, "-F", "-R", "-y", str(_config(tmp)), "-d", "pcre.jit=0", *MODES[mode]]


def _wait_ready(tmp: Path, alive: Callable[[], bool], timeout: float = 60) -> int:
    """The master's pid once the pool accepts connections."""
    deadline = time.monotonic() + timeout
    sock, pidfile = tmp / "fpm.sock", tmp / "fpm.pid"
    while time.monotonic() < deadline and alive():
        if sock.exists() and pidfile.exists() and pidfile.read_text().strip():
            return int(pidfile.read_text())
        time.sleep(0.05)
    log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
    pytest.fail(f"php-fpm did not start: {log}")


class Served:
    """What the requests' answers said: the workers' pids, and opcache's JIT status (the last answer's)."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.jit: dict | None = None


def _drive(sock: Path, busy: Callable[[], bool]) -> Served:
    """Requests from CLIENTS threads while `busy()`: who answered, and how the JIT stood."""
    served = Served()
    failures: list[str] = []

    def client() -> None:
        while busy():
            try:
                body = fastcgi_get(sock, SCRIPT, f"seconds={REQUEST_S}")
            except OSError as exc:
                failures.append(str(exc))
                return
            pid, jit = re.search(r"pid=(\d+)", body), re.search(r"jit=(.*)", body)
            if pid is None or jit is None:
                failures.append(body)
                return
            served.pids.add(int(pid.group(1)))
            served.jit = json.loads(jit.group(1))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    return served


def _record_launched(tmp: Path, mode: str) -> tuple[Recording, Served]:
    """`fleetprof record -- php-fpm8.2 -F …`; requests for SERVE_S, then SIGQUIT (a graceful stop) ends it."""
    result: list[Recording] = []
    recorder = threading.Thread(target=lambda: result.append(record(["--", *_command(tmp, mode)], "fpm")))
    recorder.start()
    master = _wait_ready(tmp, recorder.is_alive)
    stop = time.monotonic() + SERVE_S
    served = _drive(tmp / "fpm.sock", lambda: time.monotonic() < stop)
    os.kill(master, signal.SIGQUIT)
    recorder.join()
    assert result, "fleetprof record failed (see the exception above)"
    return result[0], served


def _record_running(tmp: Path, mode: str, by_pid: bool = False) -> tuple[Recording, Served]:
    """`fleetprof record --all -d 4` (or `--pid MASTER`: its workers are its children) while an FPM started
    before it serves requests."""
    fpm = subprocess.Popen(_command(tmp, mode), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(tmp, lambda: fpm.poll() is None)
        result: list[Recording] = []
        target = ["--pid", str(fpm.pid)] if by_pid else ["--all"]
        recorder = threading.Thread(target=lambda: result.append(record([*target, "-d", "4"], "fpm-running")))
        recorder.start()
        served = _drive(tmp / "fpm.sock", recorder.is_alive)
        recorder.join()
    finally:
        fpm.send_signal(signal.SIGQUIT)
        try:
            fpm.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fpm.kill()
            fpm.wait()
    assert result, "fleetprof record failed (see the exception above)"
    return result[0], served


# ---- the stacks ----------------------------------------------------------------------------------------


def _check(stack: Stack) -> str:
    """Why a worker's stack under `hot` is not the whole chain with its lines over FPM's native root."""
    at = [i for i, f in enumerate(stack.frames) if f.where.endswith(SCRIPT.name)]
    problem = chain_problem(stack, at)
    if problem:
        return problem
    root = stack.frames[: at[0]]
    names = [f.name for f in root]
    if not names or names[0] != "_start" or "php_execute_script" not in names or names[-1] != "zend_execute":
        return "native root " + " > ".join(names)
    if any(f.kind != "native" or not f.where.startswith(("php-fpm", "libc.so")) for f in root):
        return "native root outside php-fpm and libc: " + " > ".join(map(str, root))
    above = [f.name for f in stack.frames[at[-1] + 1 :]]
    if "preg_match" in above and (above[0] != "preg_match" or "php_pcre_match_impl" not in above):
        return "above hot: " + " > ".join(above)
    return ""


@pytest.mark.parametrize(
    ("how", "mode"),
    [
        ("launch", "opcache"),
        ("launch", "plain"),
        ("launch", "jit"),
        ("all", "opcache"),
        ("all", "jit"),
        ("pid", "opcache"),
    ],
    ids=["launch-opcache", "launch-plain", "launch-jit", "all-opcache", "all-jit", "pid-opcache"],
)
def test_fpm_workers_hold_the_php_chain(how: str, mode: str, tmp_path: Path) -> None:
    """>= 99 % of the workers' samples under hot read <main> > run > Cart::total > Cart::line > price x3 >
    hot with the lines of the calls, over _start..php_execute_script..zend_execute in php-fpm; both workers
    are sampled, and both the PHP loop and preg_match's C code; no more than 2 % of their samples have an
    unwind error (JIT'd code before the agent saw the JIT buffer)."""
    if how == "launch":
        run, served = _record_launched(tmp_path, mode)
    else:
        run, served = _record_running(tmp_path, mode, by_pid=how == "pid")
    pids = served.pids
    assert len(pids) == CLIENTS, pids
    if mode == "jit":
        assert served.jit and served.jit["on"], served.jit
        assert served.jit["buffer_free"] < served.jit["buffer_size"], served.jit
    mine = [s for s in run.stacks if s.pid in pids]
    under_hot = [s for s in mine if any(f.name == "hot" and f.where.endswith(SCRIPT.name) for f in s.frames)]
    assert_share(judge(under_hot, _check), run, at_least=300 if how == "launch" else 200)
    per_worker = {pid: sum(s.count for s in under_hot if s.pid == pid) for pid in pids}
    assert min(per_worker.values()) >= 50, per_worker
    judged = sum(s.count for s in under_hot)
    in_regex = sum(s.count for s in under_hot if any(f.name == "php_pcre_match_impl" for f in s.frames))
    assert judged * 0.2 <= in_regex <= judged * 0.8, f"{in_regex} of {judged} samples in preg_match"
    total = sum(s.count for s in mine)
    assert total * 0.9 <= judged, f"{judged} of the workers' {total} samples under hot"
    broken = sum(s.count for s in mine if s.has_error)
    assert broken <= total * 0.02, f"{broken} of the workers' {total} samples with unwind errors"

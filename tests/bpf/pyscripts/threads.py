"""Profiled by tests/bpf/test_python_threads.py: four busy threads whose names the profile must carry.

- the main thread spins in main_spin (Python name MainThread, OS name = the process name);
- "worker" spins in worker_spin (Python name only: CPython <= 3.13 leaves the OS name alone);
- "py-side" sets its OS name to "os-side" (prctl) and spins in renamed_spin: the OS name wins;
- "wörker-ü" spins in unicode_spin (a non-ASCII Python name).
argv[1]: seconds to run (default 2). Prints one JSON line {name: native thread id} once all run.
"""

import ctypes
import json
import sys
import threading
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
PR_SET_NAME = 15
started = threading.Barrier(4)


def burn(deadline):
    total = 0
    while time.monotonic() < deadline:
        for i in range(2000):
            total += i
    return total


def worker_spin(deadline):
    started.wait()
    burn(deadline)


def renamed_spin(deadline):
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_NAME, b"os-side", 0, 0, 0)
    started.wait()
    burn(deadline)


def unicode_spin(deadline):
    started.wait()
    burn(deadline)


def main_spin(deadline):
    burn(deadline)


def main():
    deadline = time.monotonic() + SECONDS
    threads = [
        threading.Thread(target=worker_spin, args=(deadline,), name="worker"),
        threading.Thread(target=renamed_spin, args=(deadline,), name="py-side"),
        threading.Thread(target=unicode_spin, args=(deadline,), name="w\u00f6rker-\u00fc"),
    ]
    for thread in threads:
        thread.start()
    started.wait()
    ids = {t.name: t.native_id for t in threads}
    ids["MainThread"] = threading.get_native_id()
    print(json.dumps(ids), flush=True)
    main_spin(deadline)
    for thread in threads:
        thread.join()


main()

"""<module> -> main -> outer -> middle -> inner -> a C library loaded mid-run through ctypes, one library
after another; argv[1]: seconds per library, argv[2:]: the libraries (each exports `fleetprof_spin(ms)`).

A library the profiler has never seen is unwound from its first sample: those samples wait for its unwind
table and are finished in userspace, and their Python frames (walked in the kernel when the sample was
taken) still sit under `inner`. Profiled by tests/bpf/test_python_late_library.py.
"""

import ctypes
import sys

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 0.3


def inner(lib):
    return lib.fleetprof_spin(int(SECONDS * 1000))  # calls: fleetprof_spin


def middle(lib):
    return inner(lib)  # calls: inner


def outer(lib):
    return middle(lib)  # calls: middle


def main():
    ctypes.CDLL(None).getpid()  # ctypes' own code is known before the first library
    for path in sys.argv[2:]:
        outer(ctypes.CDLL(path))  # calls: outer


main()  # calls: main

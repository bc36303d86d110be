"""Profiled by tests/bpf/test_python_stacks.py: Python calls C that calls back into Python, two ways:
sort_caller -> sorted() -> pykey, and json_caller -> json.dumps (C encoder) -> pydefault.
argv[1]: seconds to run (default 2)."""

import json
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


class Opaque:
    """Not JSON-serializable: json.dumps hands it to `default`."""

    def __init__(self, value):
        self.value = value


def pykey(item):
    acc = 0
    for k in range(40):
        acc += (item ^ k) & 7
    return acc


def pydefault(obj):
    acc = 0
    for k in range(40):
        acc += (obj.value ^ k) & 7
    return acc


def sort_caller(data):
    return sorted(data, key=pykey)


def json_caller(objs):
    return json.dumps(objs, default=pydefault)


def main():
    import json.encoder

    assert json.encoder.c_make_encoder is not None, "the C encoder is needed"
    data = list(range(500))
    objs = [Opaque(i) for i in range(500)]
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        sort_caller(data)
        json_caller(objs)


main()

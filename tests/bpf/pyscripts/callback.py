"""Python calls C that calls back into Python: sort_caller -> sorted() -> pykey, and json_caller ->
json.dumps (the C encoder) -> pydefault. argv[1]: seconds to run (default 2).

A short warm-up first runs the C encoder (the _json extension) under other names: the profiler learns about a
library loaded mid-run from the first samples in it (lazily, by design), and those samples are not judged.
"""

import json
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
WARM_UP = 0.3


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
    return sorted(data, key=pykey)  # calls: pykey


def json_caller(objs):
    return json.dumps(objs, default=pydefault)  # calls: dumps


def main():
    import json.encoder

    assert json.encoder.c_make_encoder is not None, "the C encoder is needed"
    data = list(range(500))
    objs = [Opaque(i) for i in range(500)]
    warm_until = time.monotonic() + WARM_UP
    while time.monotonic() < warm_until:
        json.dumps(objs, default=vars)
        sorted(data, key=abs)
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        sort_caller(data)  # calls: sort_caller
        json_caller(objs)  # calls: json_caller


main()  # calls: main

"""Profiled by tests/bpf/test_python_stacks.py: <module> -> main -> outer -> middle -> inner -> hot, where hot
is a pure-Python loop. argv[1]: seconds to run (default 2)."""

import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


def hot(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def inner(n):
    return hot(n)


def middle(n):
    return inner(n)


def outer(n):
    return middle(n)


def main():
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        outer(20000)


main()

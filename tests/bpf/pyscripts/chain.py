"""<module> -> main -> outer -> middle -> inner -> hot, hot being a pure-Python loop; argv[1]: seconds (2).

Profiled by tests/bpf/test_python_stacks.py. In every script here a `# calls: f` comment marks the line its
function shows while f runs.
"""

import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


def hot(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def inner(n):
    return hot(n)  # calls: hot


def middle(n):
    return inner(n)  # calls: inner


def outer(n):
    return middle(n)  # calls: middle


def main():
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        outer(20000)  # calls: outer


main()  # calls: main

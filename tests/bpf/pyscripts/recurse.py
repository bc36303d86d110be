"""<module> -> main -> recurse x (DEPTH + 1) -> bottom, a busy loop.

argv[1]: seconds to run (default 2); argv[2]: DEPTH (default 200).
"""

import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def bottom(deadline):
    total = 0
    while time.monotonic() < deadline:
        for i in range(1000):
            total += i
    return total


def recurse(depth, deadline):
    if depth:
        return recurse(depth - 1, deadline)  # calls: recurse
    return bottom(deadline)  # calls: bottom


def main():
    recurse(DEPTH, time.monotonic() + SECONDS)  # calls: recurse(from-main)


main()  # calls: main

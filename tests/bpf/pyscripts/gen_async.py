"""A generator pipeline, then asyncio tasks; argv[1]: seconds for both together (default 2).

pipeline -> consume pulls from squares, which pulls from numbers: while squares computes, its frame sits
under consume's. Then asyncio.run(amain): two worker tasks await crunch, a coroutine that finishes without
suspending, so crunch's frame sits under worker's, under the event loop's run_until_complete ... _run.
A short warm-up first runs the _asyncio extension under other names: the profiler learns about a library
loaded mid-run from the first samples in it (lazily, by design), and those early samples are not judged.
"""

import asyncio
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
WARM_UP = 0.3


def numbers(n):
    for i in range(n):
        value = i
        for k in range(30):
            value ^= k
        yield value


def squares(stream):
    for x in stream:  # calls: numbers
        acc = 0
        for k in range(60):
            acc += x * k
        yield acc


def consume(stream):
    total = 0
    for value in stream:  # calls: squares
        total += value
    return total


def pipeline(deadline):
    while time.monotonic() < deadline:
        consume(squares(numbers(2000)))  # calls: consume


async def crunch(n):
    acc = 0
    for k in range(n):
        acc += k * k
    return acc


async def worker(deadline):
    while time.monotonic() < deadline:
        await crunch(3000)  # calls: crunch
        await asyncio.sleep(0)


async def warm(deadline):
    while time.monotonic() < deadline:
        await asyncio.sleep(0)


async def amain(deadline):
    await asyncio.gather(worker(deadline), worker(deadline))


def run_tasks(deadline):
    asyncio.run(amain(deadline))  # calls: run


def main():
    asyncio.run(warm(time.monotonic() + WARM_UP))
    start = time.monotonic()
    pipeline(start + SECONDS / 2)  # calls: pipeline
    run_tasks(start + SECONDS)  # calls: run_tasks


main()  # calls: main

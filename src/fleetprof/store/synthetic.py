"""Synthetic fleet profiles with realistic stack shapes, for the store's tests and benches.

Stacks are drawn from a fixed pool (Zipf-weighted, like real hot paths) built from a tree of call sites:
a process frame, Python or native application frames (raw: file id + address), libc, then kernel frames.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample

_SAMPLE_FIELDS = set(Sample.__dataclass_fields__)
APP = Mapping(file_id="a" * 32, path="/usr/bin/app", build_id="ab" * 20)
LIBC = Mapping(file_id="c" * 32, path="/usr/lib/x86_64-linux-gnu/libc.so.6", build_id="cd" * 20)


@dataclass
class StackPool:
    """A pool of distinct stacks and the Zipf weights samples are drawn with."""

    stacks: list[tuple[Frame, ...]]
    weights: list[float]

    @classmethod
    def build(cls, distinct: int, seed: int = 1, depth: tuple[int, int] = (8, 32)) -> StackPool:
        """`distinct` different stacks sharing prefixes like real call trees do."""
        rng = random.Random(seed)
        funcs = [f"fn_{i}" for i in range(max(distinct // 4, 50))]
        stacks: set[tuple[Frame, ...]] = set()
        interned: dict[Frame, Frame] = {}  # one object per distinct frame, as the OTLP decoder shares them
        roots = [Frame(FrameKind.PROCESS, f"proc{i}") for i in range(8)]
        while len(stacks) < distinct:
            n = rng.randint(*depth)
            frames = [rng.choice(roots)]
            python = rng.random() < 0.3
            for level in range(n):
                pick = min(int(rng.paretovariate(1.2)) + level * 3, len(funcs) - 1)
                if python and level < n // 2:
                    frames.append(Frame(FrameKind.PYTHON, funcs[pick], file=f"/srv/app/m{pick % 40}.py",
                                        line=10 + pick % 300))  # fmt: skip
                elif rng.random() < 0.5:
                    frames.append(Frame(FrameKind.NATIVE, "", mapping=APP, address=0x1000 + pick * 64))
                else:
                    frames.append(Frame(FrameKind.NATIVE, "", mapping=LIBC, address=0x20000 + pick * 16))
            if rng.random() < 0.3:
                frames.append(Frame(FrameKind.KERNEL, rng.choice(["do_syscall_64", "vfs_read", "schedule"])))
            stacks.add(tuple(interned.setdefault(f, f) for f in frames))
        ordered = sorted(stacks, key=lambda s: tuple(f.function + hex(f.address) for f in s))
        rng.shuffle(ordered)
        weights = [1.0 / (i + 1) ** 1.1 for i in range(len(ordered))]
        return cls(ordered, weights)


def fleet_profile(
    pool: StackPool,
    host: str,
    start_ns: int,
    samples: int,
    duration_ns: int = 5_000_000_000,
    seed: int = 0,
    frequency_hz: int = 20,
    processes: int = 8,
) -> Profile:
    """One host's batch: `samples` samples spread over `duration_ns`, aggregated per (stack, thread)."""
    rng = random.Random(hash((host, start_ns, seed)))
    fresh: dict[int, tuple[Frame, ...]] = {}  # per-batch copies: a decoded request holds its own objects
    copies: dict[int, Frame] = {}

    def own(stack: tuple[Frame, ...]) -> tuple[Frame, ...]:
        """The batch's own copy of a pool stack (frames shared within the batch, like the decoder's)."""
        hit = fresh.get(id(stack))
        if hit is None:
            hit = fresh[id(stack)] = tuple(
                copies.get(id(f)) or copies.setdefault(id(f), copy.copy(f)) for f in stack
            )
        return hit

    picks = rng.choices(range(len(pool.stacks)), weights=pool.weights, k=samples)
    by_key: dict[tuple[int, int], Sample] = {}
    for idx in picks:
        proc = idx % processes
        tid = 1000 + proc * 10 + rng.randrange(4)
        key = (idx, tid)
        sample = by_key.get(key)
        if sample is None:
            sample = by_key[key] = Sample(
                stack=own(pool.stacks[idx]),
                pid=1000 + proc * 10,
                tid=tid,
                process_name=f"proc{proc}",
                thread_name=f"worker-{tid % 4}",
                container_id=f"ctr{proc % 3}" if proc % 2 else "",
                **({"executable": f"/usr/bin/proc{proc}"} if "executable" in _SAMPLE_FIELDS else {}),
            )
        sample.count += 1
        sample.timestamps_ns.append(start_ns + rng.randrange(duration_ns))
    for sample in by_key.values():
        sample.timestamps_ns.sort()
    profile = Profile(list(by_key.values()), frequency_hz, start_ns, duration_ns, hostname=host)
    if "resource" in Profile.__dataclass_fields__:
        profile.resource = {  # type: ignore[attr-defined]
            "host.name": host,
            "host.id": f"id-{host}",
            "host.cpu.count": 8,
            "host.arch": "amd64",
            "fleetprof.agent.version": "0.1.0",
        }
    return profile

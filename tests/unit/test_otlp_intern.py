"""Decoded requests share one object per distinct frame and stack (wire/intern.py), with content equal to
what was encoded; frames differing in any field stay apart; a full table is cleared and decoding goes on."""

from __future__ import annotations

import dataclasses

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.wire.intern import Interner
from fleetprof.wire.otlp_decode import from_otlp_request

LIB = Mapping(file_id="ab" * 16, path="/usr/lib/libx.so", build_id="cd" * 20, start=0x1000, limit=0x9000)


def _profile(host: str, leaf: str) -> Profile:
    root = Frame(FrameKind.PROCESS, "server")
    stacks = [
        (
            root,
            Frame(FrameKind.PYTHON, "main", file="/a.py", line=3),
            Frame(FrameKind.PYTHON, leaf, file="/a.py", line=9),
        ),
        (root, Frame(FrameKind.NATIVE, "", mapping=LIB, address=0x1234), Frame(FrameKind.KERNEL, "schedule")),
    ]
    samples = [
        Sample(stack=s, pid=7, tid=7 + i, process_name="server", thread_name=f"t{i}", count=2,
               timestamps_ns=[10**18 + i, 10**18 + i + 5])
        for i, s in enumerate(stacks)
    ]  # fmt: skip
    return Profile(samples, 20, 10**18, 10**9, hostname=host, resource={"host.name": host})


def _stacks(profiles: list[Profile]) -> list[tuple[Frame, ...]]:
    return [s.stack for p in profiles for s in p.samples]


def test_requests_share_stack_objects():
    interner = Interner()
    original = _profile("h1", "leaf")
    first = from_otlp_request(to_otlp_request(original), interner)
    second = from_otlp_request(to_otlp_request(_profile("h2", "leaf")), interner)
    for a, b, o in zip(_stacks(first), _stacks(second), _stacks([original]), strict=True):
        assert a is b
        assert a == o
    other = from_otlp_request(to_otlp_request(_profile("h3", "other_leaf")), interner)
    assert _stacks(other)[0] != _stacks(first)[0] and _stacks(other)[0][1] is _stacks(first)[0][1]


def test_frames_differing_in_any_field_stay_apart():
    interner = Interner()
    base = Frame(FrameKind.NATIVE, "f", file="x.c", line=1, mapping=LIB, address=0x10, start_line=1)
    variants = [
        dataclasses.replace(base, inlined=True),
        dataclasses.replace(base, runtime="go"),
        dataclasses.replace(base, system_name="_Z1fv"),
        dataclasses.replace(base, mapping=dataclasses.replace(LIB, offset=0x1000)),
        dataclasses.replace(base, kind=FrameKind.KERNEL),
    ]
    canonical = interner.frame(base)
    assert interner.frame(dataclasses.replace(base)) is canonical
    for v in variants:
        assert interner.frame(v) is not canonical and interner.frame(v) == v


def test_full_tables_are_cleared_and_decoding_goes_on():
    interner = Interner(frame_limit=3, stack_limit=1)
    decoded = [from_otlp_request(to_otlp_request(_profile(f"h{i}", f"leaf{i}")), interner) for i in range(4)]
    for i, profiles in enumerate(decoded):
        assert _stacks(profiles) == _stacks([_profile(f"h{i}", f"leaf{i}")])
    assert len(interner) <= 2

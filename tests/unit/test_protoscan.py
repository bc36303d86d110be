"""The bulk protobuf reader (wire/protoscan.py) reads what upb reads: scalars
(last occurrence wins), repeated fields packed or not, in order; bytes that are not protobuf raise."""

from __future__ import annotations

import random

import numpy as np
import pytest
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from fleetprof.wire import protoscan


def _samples(n: int, seed: int) -> list[otlp.Sample]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = otlp.Sample(stack_index=rng.choice([0, 1, 200, 70_000]), link_index=rng.choice([0, 0, 5]))
        s.attribute_indices.extend(
            rng.randrange(1 << rng.choice([3, 10, 20])) for _ in range(rng.randrange(4))
        )
        s.values.extend(rng.choice([1, 300, 1 << 40]) for _ in range(rng.randrange(3)))
        s.timestamps_unix_nano.extend(rng.randrange(1 << 63) for _ in range(rng.randrange(4)))
        out.append(s)
    return out


def test_samples_read_like_upb() -> None:
    samples = _samples(300, seed=1)
    data, starts, ends = protoscan.buffer([s.SerializeToString() for s in samples])
    fields = protoscan.scan(data, starts, ends)
    assert fields.scalar(1).tolist() == [s.stack_index for s in samples]
    assert fields.scalar(3).tolist() == [s.link_index for s in samples]
    owner, attrs = fields.repeated_varint(2)
    assert [(o, a) for o, a in zip(owner.tolist(), attrs.tolist(), strict=True)] == [
        (i, a) for i, s in enumerate(samples) for a in s.attribute_indices
    ]
    owner, values = fields.repeated_varint(4)
    assert values.tolist() == [v for s in samples for v in s.values]
    owner, stamps = fields.repeated_fixed64(5)
    assert stamps.tolist() == [t for s in samples for t in s.timestamps_unix_nano]
    assert owner.tolist() == [i for i, s in enumerate(samples) for _ in s.timestamps_unix_nano]
    assert not fields.other_than({(1, 0), (2, 2), (3, 0), (4, 2), (5, 2)})
    assert fields.other_than({(1, 0)})


def test_unpacked_values_and_repeated_scalars() -> None:
    """Field 2 unpacked then packed then unpacked keeps wire order; a repeated scalar's last value wins."""
    message = b"\x08\x05\x10\x07\x12\x02\x01\x02\x10\x09\x08\x06"
    data, starts, ends = protoscan.buffer([message, b""])
    fields = protoscan.scan(data, starts, ends)
    assert fields.repeated_varint(2)[1].tolist() == [7, 1, 2, 9]
    assert fields.scalar(1).tolist() == [6, 0]


@pytest.mark.parametrize(
    "message",
    [
        b"\x08",  # a tag without its value
        b"\x12\x05\x01",  # a length past the message
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an 11-byte varint
        b"\x0b\x0c",  # a group (wire type 3)
        b"\x00\x01",  # field number 0
        b"\x29\x01\x02",  # a fixed64 cut short
    ],
)
def test_bytes_that_are_not_protobuf_raise(message: bytes) -> None:
    data, starts, ends = protoscan.buffer([b"\x08\x01", message])
    with pytest.raises(protoscan.WireError):
        protoscan.scan(data, starts, ends)


def test_packed_varints_cut_short_raise() -> None:
    data, starts, ends = protoscan.buffer([b"\x12\x02\x01\x81"])
    fields = protoscan.scan(data, starts, ends)
    with pytest.raises(protoscan.WireError):
        fields.repeated_varint(2)


def test_empty_input() -> None:
    data, starts, ends = protoscan.buffer([])
    fields = protoscan.scan(data, starts, ends)
    assert fields.count == 0 and fields.scalar(1).tolist() == []
    assert isinstance(fields.repeated_fixed64(5)[1], np.ndarray)

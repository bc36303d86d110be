"""Protobuf wire format read with numpy, many messages of one type at once: the fields of every message
in one pass per field position, so a request's thousands of small messages (samples, locations, stacks)
cost a few dozen array operations instead of a Python call per field.

Only the wire format is read (tags, varints, fixed64/32, length-delimited spans); what a field means is the
caller's. Anything that is not well-formed raises `WireError`; the caller then takes its exact path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_PAD = 16  # zero bytes after the data, so a 10-byte varint window never reads past the buffer
_OFFSETS = np.arange(10, dtype=np.int64)
_SHIFTS = (7 * _OFFSETS).astype(np.uint64)
_WIDTH = np.array([0, 8, 0, -1, -1, 4, -1, -1], np.int64)  # bytes after the tag by wire type; 0: a varint
_MAX_STEPS = 256  # fields in one message beyond which the data is not what this reader is for


class WireError(ValueError):
    """The bytes are not well-formed protobuf (or use a shape this reader does not take)."""


def buffer(parts: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`parts` joined into one padded uint8 buffer, with each part's (start, end) offsets."""
    lengths = np.fromiter(map(len, parts), np.int64, len(parts))
    ends = np.cumsum(lengths)
    data = np.frombuffer(b"".join(parts) + bytes(_PAD), np.uint8)
    return data, ends - lengths, ends


def varints(data: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The varint starting at each of `pos` (uint64, wrapping like protobuf) and the position after it."""
    first = data[pos]
    if not (first & 0x80).any():  # all one byte: the common case for tags and small values
        return first.astype(np.uint64), pos + 1
    window = data[pos[:, None] + _OFFSETS]
    more = window >= 0x80
    if more.all(axis=1).any():
        raise WireError("varint longer than 10 bytes")
    length = np.argmin(more, axis=1) + 1
    low = (window & 0x7F).astype(np.uint64) << _SHIFTS
    low[_OFFSETS[None, :] >= length[:, None]] = 0
    return np.bitwise_or.reduce(low, axis=1), pos + length


def _fixed(data: np.ndarray, pos: np.ndarray, size: int) -> np.ndarray:
    """Little-endian unsigned integers of `size` (8 or 4) bytes at each of `pos`, as uint64."""
    window = np.ascontiguousarray(data[pos[:, None] + np.arange(size, dtype=np.int64)])
    return window.view("<u8" if size == 8 else "<u4").reshape(-1).astype(np.uint64)


@dataclass(frozen=True, slots=True)
class Fields:
    """Every field of a list of messages, in wire order: the message it is in, its number and wire type,
    its value (varint or fixed) and, for length-delimited fields, the span of its payload."""

    data: np.ndarray
    count: int  # messages
    message: np.ndarray
    tag: np.ndarray  # field number << 3 | wire type
    value: np.ndarray  # uint64
    start: np.ndarray
    end: np.ndarray

    def select(self, number: int, wire_type: int) -> np.ndarray:
        """Positions (in wire order) of the occurrences of field `number` with `wire_type`."""
        return np.flatnonzero(self.tag == (number << 3 | wire_type))

    def other_than(self, allowed: set[tuple[int, int]]) -> bool:
        """Whether any field is not one of the (number, wire type) pairs `allowed`."""
        if not len(self.tag):
            return False
        if int(self.tag.max()) > 1 << 10:
            return True
        seen = np.flatnonzero(np.bincount(self.tag)).tolist()
        return not {(t >> 3, t & 7) for t in seen} <= allowed

    def scalar(self, number: int, default: int = 0) -> np.ndarray:
        """Varint field `number` of each message (the last occurrence wins, as in protobuf), uint64."""
        out = np.full(self.count, default, np.uint64)
        at = self.select(number, 0)
        out[self.message[at]] = self.value[at]
        return out

    def spans(self, number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(message, start, end) of each length-delimited occurrence of field `number`, in wire order."""
        at = self.select(number, 2)
        return self.message[at], self.start[at], self.end[at]

    def repeated_varint(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """(message, value) of every value of repeated varint field `number`, packed or not, in order."""
        at = self.select(number, 0)
        owners, starts, ends = self.spans(number)
        packed_owner, packed_value, packed_pos = _packed_varints(self.data, owners, starts, ends)
        return _in_order(
            (self.message[at], packed_owner),
            (self.value[at], packed_value),
            (self.start[at], packed_pos),
        )

    def repeated_fixed64(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """(message, value) of every value of repeated fixed64 field `number`, packed or not, in order."""
        at = self.select(number, 1)
        owners, starts, ends = self.spans(number)
        sizes = ends - starts
        if (sizes % 8).any():
            raise WireError("packed fixed64 field of a length not a multiple of 8")
        n = sizes // 8
        pos = np.repeat(starts, n) + 8 * ranks(n)
        packed = _fixed(self.data, pos, 8) if len(pos) else np.zeros(0, np.uint64)
        return _in_order(
            (self.message[at], np.repeat(owners, n)), (self.value[at], packed), (self.start[at], pos)
        )


def ranks(n: np.ndarray) -> np.ndarray:
    """0..n[i]-1 for each i, concatenated."""
    total = int(n.sum())
    if not total:
        return np.zeros(0, np.int64)
    bounds = np.cumsum(n) - n
    return np.arange(total, dtype=np.int64) - np.repeat(bounds, n)


def _in_order(
    owners: tuple[np.ndarray, np.ndarray], values: tuple[np.ndarray, np.ndarray], pos: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Unpacked and packed values merged in wire order (by byte position)."""
    if not len(owners[1]):
        return owners[0], values[0]
    if not len(owners[0]):
        return owners[1], values[1]
    order = np.argsort(np.concatenate(pos), kind="stable")
    return np.concatenate(owners)[order], np.concatenate(values)[order]


def _packed_varints(
    data: np.ndarray, owners: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(owner, value, byte position) of every varint in the packed spans [starts, ends)."""
    sizes = ends - starts
    total = int(sizes.sum())
    if not total:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int64)
    pos = np.repeat(starts, sizes) + ranks(sizes)
    raw = data[pos]
    if not (raw & 0x80).any():  # every value one byte
        return np.repeat(owners, sizes), raw.astype(np.uint64), pos
    last = raw < 0x80
    span_end = np.cumsum(sizes) - 1
    if not last[span_end].all():
        raise WireError("packed varint runs past its field")
    first = np.ones(total, bool)
    first[1:] = last[:-1]
    heads = np.flatnonzero(first)
    rank = np.arange(total, dtype=np.int64) - np.repeat(heads, np.diff(np.append(heads, total)))
    if (rank >= 10).any():
        raise WireError("varint longer than 10 bytes")
    low = (raw & 0x7F).astype(np.uint64) << (7 * rank).astype(np.uint64)
    values = np.bitwise_or.reduceat(low, heads)
    return np.repeat(owners, sizes)[heads], values, pos[heads]


def scan(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Fields:
    """The fields of the messages at [starts, ends) of `data` (a `buffer`), one field of every message per
    step; groups (wire types 3, 4), field number 0 and anything running past its message raise WireError."""
    count = len(starts)
    limit = len(data) - _PAD
    if count and (ends.max() > limit or (starts > ends).any()):
        raise WireError("message runs past the data")
    message = np.arange(count, dtype=np.int64)
    active = starts < ends
    msg, pos, end = message[active], starts[active], ends[active]
    parts: list[tuple[np.ndarray, ...]] = []
    steps = 0
    while len(msg):
        steps += 1
        if steps > _MAX_STEPS:
            raise WireError("too many fields in one message")
        tag, pos = varints(data, pos)
        if (tag >= np.uint64(1 << 32)).any():
            raise WireError("bad field number")
        tag = tag.astype(np.int64)
        number, wire_type = tag >> 3, tag & 7
        if (number == 0).any() or (_WIDTH[wire_type] < 0).any():
            raise WireError("bad field number or unsupported wire type")
        width = _WIDTH[wire_type]
        value, after = varints(data, np.where(width == 0, np.minimum(pos, limit), limit))
        is_len = wire_type == 2
        size = np.where(is_len, np.minimum(value, np.uint64(limit)).astype(np.int64), 0)
        start = np.where(is_len, after, pos)
        nxt = np.where(width == 0, after + size, pos + width)
        if (nxt > end).any():
            raise WireError("field runs past its message")
        fixed = wire_type == 1
        if fixed.any():
            value[fixed] = _fixed(data, pos[fixed], 8)
        fixed32 = wire_type == 5
        if fixed32.any():
            value[fixed32] = _fixed(data, pos[fixed32], 4)
        parts.append((msg, tag, value, start, nxt))
        more = nxt < end
        msg, pos, end = msg[more], nxt[more], end[more]
    if not parts:
        empty = np.zeros(0, np.int64)
        return Fields(data, count, empty, empty, np.zeros(0, np.uint64), empty, empty)
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.argsort(cols[0], kind="stable")  # per message, fields in wire order
    return Fields(data, count, *(c[order] for c in cols))  # type: ignore[arg-type]

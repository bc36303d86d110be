"""Read a goroutine's pprof label set from process memory: a map[string]string (Go <= 1.23, walked as
runtime.hmap and its buckets, growth included) or a sorted []label (1.24+). BPF put the set's address and
tag in the sample; a tag that no longer matches means the set was freed and its memory reused."""

from __future__ import annotations

import struct
from typing import Protocol

from fleetprof.interpreters.go import layouts

Labels = tuple[tuple[str, str], ...]
MAX_LABELS = 64  # more than any sane label set: a bigger count is a misread
MAX_STRING = 1024  # longer keys or values are cut
MAX_B = 6  # log2 of the bucket count a map of MAX_LABELS entries can have
_HMAP = struct.Struct("<QBBHIQQ")  # count, flags, B, noverflow, hash0, buckets, oldbuckets
_BUCKET_ENTRIES = 8
_STRING = 16  # Go string header: data pointer, length
_BUCKET_SIZE = 8 + 2 * _BUCKET_ENTRIES * _STRING + 8  # tophash, keys, values, overflow
_MIN_TOPHASH = 5  # below: empty or evacuated slots
_MAX_OVERFLOW = 16


class Memory(Protocol):
    """What the reader needs of a process's memory (fleetprof.process.memory.ProcessMemory)."""

    def read(self, addr: int, size: int) -> bytes | None:
        """`size` bytes at `addr`, or None."""

    def read_many(self, requests: list[tuple[int, int]]) -> list[bytes | None]:
        """Each request's bytes, or None."""


class LabelsError(Exception):
    """The label set could not be read (freed and reused, or implausible); the message says why."""


def read_label_set(mem: Memory, labels: int, tag: int, form: str) -> Labels:
    """The (key, value) pairs of the label set at `labels` (the goroutine's *labelMap), sorted by key."""
    head = mem.read(labels, 24)
    if head is None:
        raise LabelsError("label set unreadable")
    first, length = struct.unpack_from("<QQ", head)
    pairs = _read_map(mem, first, tag) if form == layouts.MAP else _read_slice(mem, first, length, tag)
    return tuple(sorted(pairs))


def _read_map(mem: Memory, hmap: int, tag: int) -> list[tuple[str, str]]:
    raw = mem.read(hmap, _HMAP.size)
    if raw is None:
        raise LabelsError("label map unreadable")
    count, _, log2, _, hash0, buckets, oldbuckets = _HMAP.unpack(raw)
    if hash0 != tag:
        raise LabelsError("label map replaced since the sample")
    if count > MAX_LABELS or log2 > MAX_B:
        raise LabelsError(f"implausible label map ({count} entries, B={log2})")
    if count == 0:
        return []
    slots: list[tuple[int, int, int, int]] = []
    heads = [buckets + i * _BUCKET_SIZE for i in range(1 << log2)]
    if oldbuckets:  # growing: entries not moved yet still live in the old array
        heads += [oldbuckets + i * _BUCKET_SIZE for i in range(1 << max(log2 - 1, 0))]
    for head in heads:
        bucket, hops = head, 0
        while bucket and hops < _MAX_OVERFLOW:
            data = mem.read(bucket, _BUCKET_SIZE)
            if data is None:
                raise LabelsError("label map bucket unreadable")
            for i in range(_BUCKET_ENTRIES):
                if data[i] >= _MIN_TOPHASH:
                    key_at = 8 + i * _STRING
                    value_at = 8 + _BUCKET_ENTRIES * _STRING + i * _STRING
                    slots.append(
                        (*struct.unpack_from("<QQ", data, key_at), *struct.unpack_from("<QQ", data, value_at))
                    )
            bucket = int.from_bytes(data[-8:], "little")
            hops += 1
    pairs = dict(_strings(mem, slots))
    if len(pairs) != count:
        raise LabelsError(f"label map holds {len(pairs)} entries, not {count}")
    return list(pairs.items())


def _read_slice(mem: Memory, array: int, length: int, tag: int) -> list[tuple[str, str]]:
    if length > MAX_LABELS:
        raise LabelsError(f"implausible label slice ({length} entries)")
    data = mem.read(array, length * 2 * _STRING) if length else b""
    if data is None:
        raise LabelsError("label slice unreadable")
    slots = [struct.unpack_from("<QQQQ", data, i * 2 * _STRING) for i in range(length)]
    if slots and slots[0][0] & 0xFFFFFFFF != tag:
        raise LabelsError("label slice replaced since the sample")
    return _strings(mem, slots)


def _strings(mem: Memory, slots: list[tuple[int, int, int, int]]) -> list[tuple[str, str]]:
    """Each (key pointer, key length, value pointer, value length) read as a pair of strings."""
    requests = []
    for key_ptr, key_len, value_ptr, value_len in slots:
        if key_len > 1 << 20 or value_len > 1 << 20:
            raise LabelsError("implausible label string length")
        requests += [(key_ptr, min(key_len, MAX_STRING)), (value_ptr, min(value_len, MAX_STRING))]
    found = mem.read_many(requests)
    if any(part is None for part in found):
        raise LabelsError("label string unreadable")
    text = [part.decode("utf-8", "replace") for part in found if part is not None]
    return list(zip(text[::2], text[1::2], strict=True))

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


class ConstStrings:
    """Strings in a binary's read-only segments (label keys and values that are literals), read once: the
    label reader's syscalls per set drop from three to two. Strings elsewhere may be freed and reused, so
    only these are kept."""

    LIMIT = 4096

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges  # [start, end) runtime addresses of the binary's non-writable segments
        self.known: dict[tuple[int, int], str] = {}

    def covers(self, ptr: int, length: int) -> bool:
        """Whether [ptr, ptr + length) lies in one read-only segment."""
        return any(lo <= ptr and ptr + length <= hi for lo, hi in self.ranges)

    def remember(self, ptr: int, length: int, text: str) -> None:
        """Keep a string read from a read-only segment."""
        if len(self.known) < self.LIMIT:
            self.known[(ptr, length)] = text


def read_label_set(
    mem: Memory, address: int, tag: int, form: str, constants: ConstStrings | None = None
) -> Labels:
    """The (key, value) pairs of a label set, sorted by key: `address` is what BPF sent (the map itself for
    the map form, the goroutine's *labelMap for the slice form; go_offsets.h `send_first`)."""
    if form == layouts.MAP:
        return tuple(sorted(_read_map(mem, address, tag, constants)))
    head = mem.read(address, 24)
    if head is None:
        raise LabelsError("label set unreadable")
    first, length = struct.unpack_from("<QQ", head)
    return tuple(sorted(_read_slice(mem, first, length, tag, constants)))


def _read_map(mem: Memory, hmap: int, tag: int, constants: ConstStrings | None) -> list[tuple[str, str]]:
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
    pairs = dict(_strings(mem, slots, constants))
    if len(pairs) != count:
        raise LabelsError(f"label map holds {len(pairs)} entries, not {count}")
    return list(pairs.items())


def _read_slice(
    mem: Memory, array: int, length: int, tag: int, constants: ConstStrings | None
) -> list[tuple[str, str]]:
    if length > MAX_LABELS:
        raise LabelsError(f"implausible label slice ({length} entries)")
    data = mem.read(array, length * 2 * _STRING) if length else b""
    if data is None:
        raise LabelsError("label slice unreadable")
    slots = [struct.unpack_from("<QQQQ", data, i * 2 * _STRING) for i in range(length)]
    if slots and slots[0][0] & 0xFFFFFFFF != tag:
        raise LabelsError("label slice replaced since the sample")
    return _strings(mem, slots, constants)


def _strings(
    mem: Memory, slots: list[tuple[int, int, int, int]], constants: ConstStrings | None
) -> list[tuple[str, str]]:
    """Each (key pointer, key length, value pointer, value length) read as a pair of strings (literals
    already read come from `constants`)."""
    wanted: list[tuple[int, int]] = []
    for key_ptr, key_len, value_ptr, value_len in slots:
        if key_len > 1 << 20 or value_len > 1 << 20:
            raise LabelsError("implausible label string length")
        wanted += [(key_ptr, min(key_len, MAX_STRING)), (value_ptr, min(value_len, MAX_STRING))]
    known = constants.known if constants is not None else {}
    missing = [w for w in dict.fromkeys(wanted) if w not in known and w[1]]
    found = mem.read_many(missing) if missing else []
    if any(part is None for part in found):
        raise LabelsError("label string unreadable")
    read = {w: part.decode("utf-8", "replace") for w, part in zip(missing, found, strict=True) if part}
    if constants is not None:
        for (ptr, length), text in read.items():
            if constants.covers(ptr, length):
                constants.remember(ptr, length, text)
    text = [read[w] if w in read else known.get(w, "") for w in wanted]
    return list(zip(text[::2], text[1::2], strict=True))

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


def read_label_sets(
    mem: Memory, sets: list[tuple[int, int]], form: str, constants: ConstStrings | None = None
) -> list[Labels | LabelsError]:
    """Each (address, tag)'s label set, or why it can't be read: the sets of a poll read together, one
    batch of reads per stage (the sets' heads, their buckets or arrays, their strings)."""
    slots: list[list[tuple[int, int, int, int]] | LabelsError]
    counts: list[int | None]
    if form == layouts.MAP:
        slots, counts = _map_slots(mem, sets)
    else:
        slots, counts = _slice_slots(mem, sets)
    texts = _read_strings(mem, [s for s in slots if not isinstance(s, LabelsError)], constants)
    out: list[Labels | LabelsError] = []
    for found, count in zip(slots, counts, strict=True):
        if isinstance(found, LabelsError):
            out.append(found)
            continue
        try:
            pairs = dict(_pairs(found, texts))
        except LabelsError as exc:
            out.append(exc)
            continue
        if count is not None and len(pairs) != count:
            out.append(LabelsError(f"label map holds {len(pairs)} entries, not {count}"))
        else:
            out.append(tuple(sorted(pairs.items())))
    return out


def _map_slots(
    mem: Memory, sets: list[tuple[int, int]]
) -> tuple[list[list[tuple[int, int, int, int]] | LabelsError], list[int | None]]:
    """Each map's (key, value) string headers from its buckets (overflow chains and a growth's old array
    included), read bucket generation by generation for all maps at once; and its entry count."""
    heads = mem.read_many([(address, _HMAP.size) for address, _ in sets])
    slots: list[list[tuple[int, int, int, int]] | LabelsError] = []
    counts: list[int | None] = []
    todo: list[tuple[int, int]] = []  # (set, bucket address)
    for index, ((_, tag), raw) in enumerate(zip(sets, heads, strict=True)):
        counts.append(None)
        if raw is None:
            slots.append(LabelsError("label map unreadable"))
            continue
        count, _, log2, _, hash0, buckets, oldbuckets = _HMAP.unpack(raw)
        if hash0 != tag:
            slots.append(LabelsError("label map replaced since the sample"))
        elif count > MAX_LABELS or log2 > MAX_B:
            slots.append(LabelsError(f"implausible label map ({count} entries, B={log2})"))
        else:
            slots.append([])
            counts[index] = count
            if count:
                todo += [(index, buckets + i * _BUCKET_SIZE) for i in range(1 << log2)]
                if oldbuckets:  # growing: entries not moved yet still live in the old array
                    todo += [(index, oldbuckets + i * _BUCKET_SIZE) for i in range(1 << max(log2 - 1, 0))]
    for _hop in range(_MAX_OVERFLOW):
        if not todo:
            break
        found = mem.read_many([(bucket, _BUCKET_SIZE) for _, bucket in todo])
        following: list[tuple[int, int]] = []
        for (index, _), data in zip(todo, found, strict=True):
            entries = slots[index]
            if isinstance(entries, LabelsError):
                continue
            if data is None:
                slots[index] = LabelsError("label map bucket unreadable")
                continue
            for i in range(_BUCKET_ENTRIES):
                if data[i] >= _MIN_TOPHASH:
                    key = struct.unpack_from("<QQ", data, 8 + i * _STRING)
                    value = struct.unpack_from("<QQ", data, 8 + (_BUCKET_ENTRIES + i) * _STRING)
                    entries.append((*key, *value))
            overflow = int.from_bytes(data[-8:], "little")
            if overflow:
                following.append((index, overflow))
        todo = following
    return slots, counts


def _slice_slots(
    mem: Memory, sets: list[tuple[int, int]]
) -> tuple[list[list[tuple[int, int, int, int]] | LabelsError], list[int | None]]:
    """Each sorted []label's (key, value) string headers (Go 1.24+), its length read beside its array."""
    heads = mem.read_many([(address, 24) for address, _ in sets])
    slots: list[list[tuple[int, int, int, int]] | LabelsError] = []
    arrays: list[tuple[int, int, int]] = []  # (set, array, length)
    for index, raw in enumerate(heads):
        slots.append([])
        if raw is None:
            slots[index] = LabelsError("label set unreadable")
            continue
        array, length = struct.unpack_from("<QQ", raw)
        if length > MAX_LABELS:
            slots[index] = LabelsError(f"implausible label slice ({length} entries)")
        elif length:
            arrays.append((index, array, length))
    found = mem.read_many([(array, length * 2 * _STRING) for _, array, length in arrays])
    for (index, _, length), data in zip(arrays, found, strict=True):
        if data is None:
            slots[index] = LabelsError("label slice unreadable")
            continue
        entries = [struct.unpack_from("<QQQQ", data, i * 2 * _STRING) for i in range(length)]
        if entries[0][0] & 0xFFFFFFFF != sets[index][1]:
            slots[index] = LabelsError("label slice replaced since the sample")
        else:
            slots[index] = entries
    return slots, [None] * len(sets)


def _wanted(slot: tuple[int, int, int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (pointer, length) reads of one entry's key and value."""
    key_ptr, key_len, value_ptr, value_len = slot
    if key_len > 1 << 20 or value_len > 1 << 20:
        raise LabelsError("implausible label string length")
    return (key_ptr, min(key_len, MAX_STRING)), (value_ptr, min(value_len, MAX_STRING))


def _read_strings(
    mem: Memory, sets: list[list[tuple[int, int, int, int]]], constants: ConstStrings | None
) -> dict[tuple[int, int], str | None]:
    """The text of every string the sets' entries point at, in one batch (literals already read come from
    `constants`); None for a string that could not be read."""
    known: dict[tuple[int, int], str | None] = dict(constants.known) if constants is not None else {}
    missing: dict[tuple[int, int], None] = {}
    for entries in sets:
        for slot in entries:
            try:
                key, value = _wanted(slot)
            except LabelsError:
                continue
            for want in (key, value):
                if want not in known and want[1]:
                    missing[want] = None
    order = list(missing)
    for want, part in zip(order, mem.read_many(order) if order else [], strict=True):
        text = part.decode("utf-8", "replace") if part is not None else None
        known[want] = text
        if text is not None and constants is not None and constants.covers(*want):
            constants.remember(want[0], want[1], text)
    return known


def _pairs(
    entries: list[tuple[int, int, int, int]], texts: dict[tuple[int, int], str | None]
) -> list[tuple[str, str]]:
    """One set's (key, value) strings; LabelsError when one of them could not be read."""
    out = []
    for slot in entries:
        key, value = _wanted(slot)
        key_text, value_text = texts.get(key, "") if key[1] else "", texts.get(value, "") if value[1] else ""
        if key_text is None or value_text is None:
            raise LabelsError("label string unreadable")
        out.append((key_text, value_text))
    return out

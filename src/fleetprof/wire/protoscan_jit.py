"""Compiled (numba) loops for fleetprof.wire.protoscan: the field scan and packed-varint decode as one pass
over the bytes each, giving exactly what protoscan's numpy versions give. Imported only when numba is
installed; compiled on first use and cached next to this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OK = 0
BAD_VARINT = 1
PAST_END = 2
BAD_TAG = 3


@njit(cache=True, nogil=True)
def _varint(data: np.ndarray, p: int, end: int) -> tuple[np.uint64, int, int]:  # pragma: no cover
    """(value, position after, status) of the varint at `p` (reading no further than `end`)."""
    value = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if p >= end:
            return value, p, PAST_END
        b = data[p]
        p += 1
        value |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            return value, p, OK
        shift += np.uint64(7)
    return value, p, BAD_VARINT


@njit(cache=True, nogil=True)
def scan(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """(status, message, tag, value, start, end) of every field of the messages at [starts, ends), in
    message then wire order; status is OK or why the bytes are not well-formed."""
    total = 0
    for m in range(len(starts)):
        total += ends[m] - starts[m]
    cap = total // 2 + 1
    message = np.empty(cap, np.int64)
    tags = np.empty(cap, np.int64)
    values = np.empty(cap, np.uint64)
    begin = np.empty(cap, np.int64)
    finish = np.empty(cap, np.int64)
    k = 0
    for m in range(len(starts)):
        p = starts[m]
        e = ends[m]
        while p < e:
            tag, p, status = _varint(data, p, e)
            if status != OK:
                return status, message[:k], tags[:k], values[:k], begin[:k], finish[:k]
            wire_type = tag & np.uint64(7)
            if tag >= np.uint64(1 << 32) or (tag >> np.uint64(3)) == np.uint64(0):
                return BAD_TAG, message[:k], tags[:k], values[:k], begin[:k], finish[:k]
            if wire_type == 0:
                value, q, status = _varint(data, p, e)
                if status != OK:
                    return status, message[:k], tags[:k], values[:k], begin[:k], finish[:k]
                start, p = p, q
            elif wire_type == 2:
                size, q, status = _varint(data, p, e)
                if status != OK:
                    return status, message[:k], tags[:k], values[:k], begin[:k], finish[:k]
                if size > np.uint64(e - q):
                    return PAST_END, message[:k], tags[:k], values[:k], begin[:k], finish[:k]
                value = size
                start = q
                p = q + np.int64(size)
            elif wire_type == 1 or wire_type == 5:
                width = 8 if wire_type == 1 else 4
                if p + width > e:
                    return PAST_END, message[:k], tags[:k], values[:k], begin[:k], finish[:k]
                value = np.uint64(0)
                for i in range(width):
                    value |= np.uint64(data[p + i]) << np.uint64(8 * i)
                start = p
                p += width
            else:
                return BAD_TAG, message[:k], tags[:k], values[:k], begin[:k], finish[:k]
            message[k] = m
            tags[k] = np.int64(tag)
            values[k] = value
            begin[k] = start
            finish[k] = p
            k += 1
    return OK, message[:k], tags[:k], values[:k], begin[:k], finish[:k]


@njit(cache=True, nogil=True)
def packed_varints(
    data: np.ndarray, owners: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """(status, owner, value, byte position) of every varint in the packed spans [starts, ends)."""
    total = 0
    for i in range(len(starts)):
        total += ends[i] - starts[i]
    owner = np.empty(total, np.int64)
    values = np.empty(total, np.uint64)
    pos = np.empty(total, np.int64)
    k = 0
    for i in range(len(starts)):
        p = starts[i]
        e = ends[i]
        while p < e:
            value, q, status = _varint(data, p, e)
            if status != OK:
                return status, owner[:k], values[:k], pos[:k]
            owner[k] = owners[i]
            values[k] = value
            pos[k] = p
            k += 1
            p = q
    return OK, owner[:k], values[:k], pos[:k]

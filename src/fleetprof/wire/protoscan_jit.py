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
def _walk(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    message: np.ndarray,
    tags: np.ndarray,
    values: np.ndarray,
    begin: np.ndarray,
    finish: np.ndarray,
    fill: bool,
) -> tuple[int, int]:  # pragma: no cover
    """(status, fields) of the messages at [starts, ends), each field stored in the arrays when `fill`."""
    k = 0
    for m in range(len(starts)):
        p = starts[m]
        e = ends[m]
        while p < e:
            tag, p, status = _varint(data, p, e)
            if status != OK:
                return status, k
            wire_type = tag & np.uint64(7)
            if tag >= np.uint64(1 << 32) or (tag >> np.uint64(3)) == np.uint64(0):
                return BAD_TAG, k
            start = p
            if wire_type == 0:
                value, p, status = _varint(data, p, e)
                if status != OK:
                    return status, k
            elif wire_type == 2:
                value, start, status = _varint(data, p, e)
                if status != OK:
                    return status, k
                if value > np.uint64(e - start):
                    return PAST_END, k
                p = start + np.int64(value)
            elif wire_type == 1 or wire_type == 5:
                width = 8 if wire_type == 1 else 4
                if p + width > e:
                    return PAST_END, k
                value = np.uint64(0)
                for i in range(width):
                    value |= np.uint64(data[p + i]) << np.uint64(8 * i)
                p += width
            else:
                return BAD_TAG, k
            if fill:
                message[k] = m
                tags[k] = np.int64(tag)
                values[k] = value
                begin[k] = start
                finish[k] = p
            k += 1
    return OK, k


@njit(cache=True, nogil=True)
def scan(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """(status, message, tag, value, start, end) of every field of the messages at [starts, ends), in
    message then wire order; status is OK or why the bytes are not well-formed. Two passes: the fields are
    counted first, so memory is what they need."""
    none = np.empty(0, np.int64)
    status, count = _walk(data, starts, ends, none, none, np.empty(0, np.uint64), none, none, False)
    if status != OK:
        return status, none, none, np.empty(0, np.uint64), none, none
    message = np.empty(count, np.int64)
    tags = np.empty(count, np.int64)
    values = np.empty(count, np.uint64)
    begin = np.empty(count, np.int64)
    finish = np.empty(count, np.int64)
    _walk(data, starts, ends, message, tags, values, begin, finish, True)
    return OK, message, tags, values, begin, finish


@njit(cache=True, nogil=True)
def packed_varints(
    data: np.ndarray, owners: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """(status, owner, value, byte position) of every varint in the packed spans [starts, ends)."""
    total = 0
    for i in range(len(starts)):
        for p in range(starts[i], ends[i]):
            total += data[p] < 0x80
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

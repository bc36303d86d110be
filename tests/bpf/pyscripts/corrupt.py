"""Corrupts its own frame chain (for a while, then repairs it) to test the profiler's walker on bad memory.

argv: seconds, is_frame_object (1 on <= 3.10: a frame is a PyFrameObject), offset of the frame's previous
pointer, offset of its code pointer. main runs one phase per corruption of main's own frame, each calling
spin, then a healthy phase:
- corrupt_unreadable: previous -> an unmapped page;
- corrupt_self_cycle: previous -> the frame itself;
- corrupt_two_cycle: previous -> the frame of corrupt_two_cycle (a two-frame cycle);
- corrupt_code: code -> an object that is not a code object;
- healthy: nothing corrupted.
Nothing reads main's frame while it is corrupted: the phases only spin in Python code, with the GC off.
"""

import ctypes
import gc
import sys
import time

SECONDS = float(sys.argv[1])
FRAME_OBJECT = sys.argv[2] == "1"
PREVIOUS = int(sys.argv[3])
CODE = int(sys.argv[4])
UNMAPPED = 0x1000
NOT_CODE = b"not a code object"
PHASES = 5


def frame_address(frame):
    if FRAME_OBJECT:
        return id(frame)
    return ctypes.c_uint64.from_address(id(frame) + 24).value  # PyFrameObject.f_frame (3.11+)


def spin(seconds):
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        for i in range(1000):
            total += i
    return total


def corrupted(field, value, seconds):
    """Run spin with `field` of the caller's caller's frame (main's) set to `value`."""
    word = ctypes.c_uint64.from_address(frame_address(sys._getframe(2)) + field)
    saved = word.value
    gc.disable()
    word.value = value
    try:
        spin(seconds)
    finally:
        word.value = saved
        gc.enable()


def corrupt_unreadable(seconds):
    corrupted(PREVIOUS, UNMAPPED, seconds)


def corrupt_self_cycle(seconds):
    corrupted(PREVIOUS, frame_address(sys._getframe(1)), seconds)


def corrupt_two_cycle(seconds):
    corrupted(PREVIOUS, frame_address(sys._getframe(0)), seconds)


def corrupt_code(seconds):
    corrupted(CODE, id(NOT_CODE), seconds)


def healthy(seconds):
    spin(seconds)


def main():
    share = SECONDS / PHASES
    corrupt_unreadable(share)
    corrupt_self_cycle(share)
    corrupt_two_cycle(share)
    corrupt_code(share)
    healthy(share)


main()

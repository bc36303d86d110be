"""Python mirror of tracer/bpf/sample.h: record, frame, map key/value and event layouts, and constants.

tests/unit/test_layouts.py compiles the C header and checks every size, offset and constant here.
"""

from __future__ import annotations

import ctypes
import struct

MAX_FRAMES = 1024
MAX_KERNEL_FRAMES = 127
MAX_USER_FRAMES = MAX_FRAMES - MAX_KERNEL_FRAMES
COMM_LEN = 16

FRAME_NATIVE = 1
FRAME_NATIVE_RAW = 2
FRAME_KERNEL = 3
FRAME_PYTHON = 4
FRAME_PHP = 5
FRAME_RUBY = 6
FRAME_PERL = 7
FRAME_V8 = 8
FRAME_JVM = 9

FRAME_FLAG_RETURN_ADDRESS = 1
FRAME_FLAG_TAIL = 2
FRAME_FLAG_CALL_END = 4

UNWIND_COMPLETE = 0
UNWIND_ERR_NO_MAPPING = 1
UNWIND_ERR_NO_TABLE_ENTRY = 2
UNWIND_ERR_INVALID_RULE = 3
UNWIND_ERR_DEPTH_LIMIT = 4
UNWIND_ERR_READ_FAILED = 5
UNWIND_ERR_BAD_FRAME = 6
UNWIND_ERR_TAIL_CALLS = 7
UNWIND_ERR_PYTHON = 8
UNWIND_ERR_NO_USER_REGS = 9
UNWIND_ERR_FRAME_POINTER = 10
UNWIND_ERR_NOT_READY = 11
UNWIND_ERR_PHP = 12
UNWIND_ERR_RUBY = 13
UNWIND_ERR_PERL = 14
UNWIND_ERR_JVM = 15
UNWIND_ERR_COUNT = 16

PY_ERROR_NAMES: dict[int, str] = {
    0: "no process info",
    1: "no thread state",
    2: "unreadable",
    3: "bad code object",
    4: "code record lost",
}

UNWIND_ERROR_NAMES: dict[int, str] = {
    UNWIND_ERR_NO_MAPPING: "no mapping",
    UNWIND_ERR_NO_TABLE_ENTRY: "no table entry",
    UNWIND_ERR_INVALID_RULE: "invalid rule",
    UNWIND_ERR_DEPTH_LIMIT: "depth limit",
    UNWIND_ERR_READ_FAILED: "unreadable memory",
    UNWIND_ERR_BAD_FRAME: "bad frame",
    UNWIND_ERR_TAIL_CALLS: "tail-call limit",
    UNWIND_ERR_PYTHON: "python walker",
    UNWIND_ERR_NO_USER_REGS: "no user registers",
    UNWIND_ERR_FRAME_POINTER: "bad frame pointer",
    UNWIND_ERR_NOT_READY: "table not ready",
    UNWIND_ERR_PHP: "php walker",
    UNWIND_ERR_RUBY: "ruby walker",
    UNWIND_ERR_PERL: "perl walker",
    UNWIND_ERR_JVM: "jvm walker",
}

SAMPLE_FLAG_KERNEL_THREAD = 1
SAMPLE_FLAG_IN_KERNEL = 2
SAMPLE_FLAG_DEFERRED = 4
SAMPLE_FLAG_SNAPSHOT = 8
SAMPLE_FLAG_EXECING = 16

MAX_SNAPSHOT_STACK = 32 << 10
VMA_CACHE_SLOTS = 32

MAPPING_FLAG_HAS_TABLE = 1
MAPPING_FLAG_INTERPRETER = 2
MAPPING_FLAG_FRAME_POINTERS = 4

MAX_INTERP_RANGES = 4
INTERP_PYTHON = 1
INTERP_PHP = 2
INTERP_RUBY = 3
INTERP_PERL = 4
INTERP_V8 = 5

EVENT_NEW_PID = 1
EVENT_UNKNOWN_PC = 2
EVENT_EXEC = 3
EVENT_EXIT = 4

FILTER_NONE = 0
FILTER_PIDS = 1

STAT_SAMPLES = 0
STAT_SAMPLES_SUBMITTED = 1
STAT_RINGBUF_FULL = 2
STAT_KERNEL_THREAD = 3
STAT_EVENTS = 4
STAT_EVENTS_LOST = 5
STAT_NATIVE_FRAMES = 6
STAT_FP_FRAMES = 7
STAT_TABLE_FRAMES = 8
STAT_SIGNAL_FRAMES = 9
STAT_PLT_FRAMES = 10
STAT_PYTHON_FRAMES = 11
STAT_TAIL_CALLS = 12
STAT_VMA_RESOLVED = 13
STAT_SNAPSHOTS = 14
STAT_SNAPSHOTS_LOST = 15
STAT_ERROR_BASE = 16
STAT_PY_ERROR_BASE = 32
STAT_V8_FRAMES = 40
STAT_JVM_FRAMES = 41
STAT_GO_LABELS = 42
STAT_COUNT = 43

STAT_NAMES: dict[int, str] = {
    STAT_SAMPLES: "samples",
    STAT_SAMPLES_SUBMITTED: "samples_submitted",
    STAT_RINGBUF_FULL: "ringbuf_full",
    STAT_KERNEL_THREAD: "kernel_thread_samples",
    STAT_EVENTS: "pid_events",
    STAT_EVENTS_LOST: "pid_events_lost",
    STAT_NATIVE_FRAMES: "native_frames",
    STAT_FP_FRAMES: "frame_pointer_steps",
    STAT_TABLE_FRAMES: "table_steps",
    STAT_SIGNAL_FRAMES: "signal_frames",
    STAT_PLT_FRAMES: "plt_frames",
    STAT_PYTHON_FRAMES: "python_frames",
    STAT_TAIL_CALLS: "tail_calls",
    STAT_VMA_RESOLVED: "vma_resolved_frames",
    STAT_SNAPSHOTS: "stack_snapshots",
    STAT_SNAPSHOTS_LOST: "stack_snapshots_lost",
    STAT_V8_FRAMES: "v8_frames",
    STAT_JVM_FRAMES: "jvm_frames",
    STAT_GO_LABELS: "go_labelled_samples",
}

PROG_NATIVE = 0
PROG_COUNT = 1


class Frame(ctypes.Structure):
    """struct frame."""

    _fields_ = [
        ("id", ctypes.c_uint64),
        ("addr", ctypes.c_uint64),
        ("aux", ctypes.c_uint32),
        ("kind", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("reserved", ctypes.c_uint16),
    ]


class SampleHeader(ctypes.Structure):
    """struct sample_header."""

    _fields_ = [
        ("ktime_ns", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("num_kernel", ctypes.c_uint16),
        ("num_user", ctypes.c_uint16),
        ("error", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("labels_tag", ctypes.c_uint32),
        ("labels", ctypes.c_uint64),
        ("comm", ctypes.c_char * COMM_LEN),
        ("pcomm", ctypes.c_char * COMM_LEN),
    ]


class Sample(ctypes.Structure):
    """struct sample (header + frames)."""

    _fields_ = [("hdr", SampleHeader), ("frames", Frame * MAX_FRAMES)]


class MappingKey(ctypes.Structure):
    """struct mapping_key (LPM trie key)."""

    _fields_ = [("prefixlen", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("addr_be", ctypes.c_uint64)]


class MappingInfo(ctypes.Structure):
    """struct mapping_info."""

    _fields_ = [
        ("file_id", ctypes.c_uint64),
        ("bias", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class FileTable(ctypes.Structure):
    """struct file_table."""

    _fields_ = [("start", ctypes.c_uint32), ("count", ctypes.c_uint32)]


class InodeKey(ctypes.Structure):
    """struct inode_key."""

    _fields_ = [("dev", ctypes.c_uint64), ("ino", ctypes.c_uint64), ("mtime_ns", ctypes.c_uint64)]


class InodeInfo(ctypes.Structure):
    """struct inode_info."""

    _fields_ = [
        ("file_id", ctypes.c_uint64),
        ("seg_delta", ctypes.c_int64),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class VmaCacheEntry(ctypes.Structure):
    """struct vma_cache_entry."""

    _fields_ = [
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("pgoff", ctypes.c_uint64),
        ("dev", ctypes.c_uint64),
        ("ino", ctypes.c_uint64),
        ("mtime_ns", ctypes.c_uint64),
    ]


class VmaCache(ctypes.Structure):
    """struct vma_cache."""

    _fields_ = [
        ("next", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("e", VmaCacheEntry * VMA_CACHE_SLOTS),
    ]


class SnapshotRegs(ctypes.Structure):
    """struct snapshot_regs."""

    _fields_ = [
        ("pc", ctypes.c_uint64),
        ("sp", ctypes.c_uint64),
        ("fp", ctypes.c_uint64),
        ("file_id", ctypes.c_uint64),
        ("bias", ctypes.c_uint64),
        ("vm_start", ctypes.c_uint64),
        ("vm_end", ctypes.c_uint64),
        ("vm_pgoff", ctypes.c_uint64),
        ("dev", ctypes.c_uint64),
        ("ino", ctypes.c_uint64),
        ("mtime_ns", ctypes.c_uint64),
        ("rbx", ctypes.c_uint64),
        ("gprs", ctypes.c_uint64 * 17),
        ("stack_size", ctypes.c_uint32),
        ("return_address", ctypes.c_uint8),
        ("pushed", ctypes.c_uint8),
        ("rbx_valid", ctypes.c_uint8),
        ("regs_live", ctypes.c_uint8),
    ]


class StackSnapshot(ctypes.Structure):
    """struct stack_snapshot."""

    _fields_ = [("hdr", SampleHeader), ("regs", SnapshotRegs), ("stack", ctypes.c_uint8 * MAX_SNAPSHOT_STACK)]


class InterpRanges(ctypes.Structure):
    """struct interp_ranges."""

    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("start", ctypes.c_uint64 * MAX_INTERP_RANGES),
        ("end", ctypes.c_uint64 * MAX_INTERP_RANGES),
    ]


class PidEvent(ctypes.Structure):
    """struct pid_event."""

    _fields_ = [("type", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("addr", ctypes.c_uint64)]


class SamplerConfig(ctypes.Structure):
    """struct sampler_config."""

    _fields_ = [("filter", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]


# Fast-path decoders (struct is much faster than ctypes for per-sample work).
HEADER_STRUCT = struct.Struct("<QIIIHHHHIQ16s16s")
FRAME_STRUCT = struct.Struct("<QQIBBH")
HEADER_SIZE = HEADER_STRUCT.size
FRAME_SIZE = FRAME_STRUCT.size
EVENT_STRUCT = struct.Struct("<IIQ")
MAPPING_KEY_STRUCT = struct.Struct("<IIQ")
MAPPING_INFO_STRUCT = struct.Struct("<QQII")
FILE_TABLE_STRUCT = struct.Struct("<II")
INODE_KEY_STRUCT = struct.Struct("<QQQ")
INODE_INFO_STRUCT = struct.Struct("<QqII")
SNAPSHOT_REGS_STRUCT = struct.Struct("<11QQ17QIBBBB")

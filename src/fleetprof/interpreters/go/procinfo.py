"""Python mirror of go_offsets.h: the per-process struct the BPF label reader uses. Field names are the C
header's; tests/unit/test_go_labels.py compiles the header and compares."""

from __future__ import annotations

import ctypes

from fleetprof.interpreters.go import layouts
from fleetprof.interpreters.go.discovery import GoBinary


class GoProcInfo(ctypes.Structure):
    """`struct go_proc_info`: where a Go process keeps g and the running goroutine's labels."""

    _fields_ = (
        ("tls_g", ctypes.c_int64),
        ("g_m", ctypes.c_uint32),
        ("m_curg", ctypes.c_uint32),
        ("g_labels", ctypes.c_uint32),
        ("tag_offset", ctypes.c_uint32),
        ("send_first", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    )


def go_proc_info(binary: GoBinary) -> GoProcInfo:
    """The `go_procs` value for a process running `binary`."""
    info = GoProcInfo()
    info.tls_g = binary.tls_g
    info.g_m = binary.offsets.g_m
    info.m_curg = binary.offsets.m_curg
    info.g_labels = binary.offsets.g_labels
    info.tag_offset = binary.offsets.tag_offset
    info.send_first = int(binary.offsets.form == layouts.MAP)
    return info

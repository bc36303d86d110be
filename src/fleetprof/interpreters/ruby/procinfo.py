"""Python mirror of ruby_offsets.h: the per-process struct the BPF Ruby walker reads, and how a frame's pc
travels (its low 32 bits, rebuilt against the iseq's instruction buffer).

Field names and constants are identical to the C header; tests/unit/test_ruby_procinfo.py compiles the
header and compares.
"""

from __future__ import annotations

import ctypes

from fleetprof.interpreters.ruby.discovery import RubyBinary

RB_T_MASK = 0x1F
RB_T_IMEMO = 0x1A
RB_FL_USHIFT = 12
RB_IMEMO_MASK = 0xF
RB_IMEMO_SVAR = 2
RB_IMEMO_MENT = 6
RB_FRAME_MAGIC_MASK = 0x7FFF0001
RB_FRAME_MAGIC_DUMMY = 0x79990001
RB_FRAME_FINISH = 0x20
RB_FRAME_CFRAME = 0x80
RB_ENV_LOCAL = 0x2
RB_METHOD_ISEQ = 0
RB_METHOD_CFUNC = 1
RB_MAX_EP_HOPS = 16
RB_TCB_DTV = 8
RB_DTV_ENTRY = 16
_U32 = 0xFFFFFFFF


class RubyProcInfo(ctypes.Structure):
    """`struct ruby_proc_info`: where one process's Ruby threads keep their execution context, and the
    offsets the walk reads."""

    _fields_ = (
        ("module_got", ctypes.c_uint64),
        ("tls_offset", ctypes.c_uint64),
        ("ec_vm_stack", ctypes.c_uint8),
        ("ec_vm_stack_size", ctypes.c_uint8),
        ("ec_cfp", ctypes.c_uint8),
        ("cfp_pc", ctypes.c_uint8),
        ("cfp_iseq", ctypes.c_uint8),
        ("cfp_ep", ctypes.c_uint8),
        ("cfp_size", ctypes.c_uint8),
        ("me_def", ctypes.c_uint8),
        ("svar_cref_or_me", ctypes.c_uint8),
        ("reserved0", ctypes.c_uint8 * 3),
        ("version", ctypes.c_uint16),
        ("reserved1", ctypes.c_uint16),
    )


def ruby_proc_info(binary: RubyBinary, bias: int) -> RubyProcInfo | None:
    """The BPF walker's info for a process running `binary` at `bias`; None when the build keeps its
    execution context where the walker does not look (no thread-local, or an initial-exec TLS slot)."""
    tls = binary.tls
    if tls is None or not tls.module_got:
        return None
    lay = binary.layout
    return RubyProcInfo(
        module_got=tls.module_got + bias,
        tls_offset=tls.offset,
        ec_vm_stack=lay.ec_vm_stack,
        ec_vm_stack_size=lay.ec_vm_stack_size,
        ec_cfp=lay.ec_cfp,
        cfp_pc=lay.cfp_pc,
        cfp_iseq=lay.cfp_iseq,
        cfp_ep=lay.cfp_ep,
        cfp_size=lay.cfp_size,
        me_def=lay.me_def,
        svar_cref_or_me=lay.svar_cref_or_me,
        version=binary.version[0] << 8 | binary.version[1],
    )


def rebuild_pc(low: int, encoded: int) -> int:
    """The pc whose low 32 bits are `low`, inside the instruction buffer that starts at `encoded` (a
    buffer is far smaller than 4 GiB, so the first such address at or above its start is the one)."""
    pc = (encoded & ~_U32) | (low & _U32)
    return pc + (1 << 32) if pc < encoded else pc

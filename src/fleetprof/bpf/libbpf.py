"""A thin ctypes binding to the system libbpf (>= 1.0): objects, programs, maps, links and ring buffers.

Only the calls the agent uses are declared. Errors come back as `BpfError` carrying errno and libbpf's log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable
from typing import Any

_LIBBPF_NAMES = ("libbpf.so.1", "libbpf.so")


class BpfError(Exception):
    """A libbpf or bpf() call failed; `errno` is set and `log` holds what libbpf printed meanwhile."""

    def __init__(self, message: str, err: int = 0, log: str = "") -> None:
        super().__init__(message)
        self.errno = err
        self.log = log


def _load_lib() -> ctypes.CDLL:
    for name in _LIBBPF_NAMES:
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    found = ctypes.util.find_library("bpf")
    if found:
        return ctypes.CDLL(found, use_errno=True)
    raise BpfError("libbpf not found (install the libbpf1 package)", errno.ENOENT)


_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None, use_errno=True)
_log_lock = threading.Lock()
_log_lines: list[str] = []

PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
_libc.vsnprintf.restype = ctypes.c_int


@PRINT_FN
def _print_cb(level: int, fmt: bytes, args: int) -> int:
    buf = ctypes.create_string_buffer(1 << 20)  # verifier logs arrive as one message
    _libc.vsnprintf(buf, len(buf), fmt, args)
    with _log_lock:
        _log_lines.append(buf.value.decode("utf-8", "replace"))
        if len(_log_lines) > 20000:
            del _log_lines[:10000]
    return 0


def lib() -> ctypes.CDLL:
    """The loaded libbpf, with prototypes declared and its log captured (not printed)."""
    global _lib
    if _lib is not None:
        return _lib
    so = _load_lib()
    vp, ip, cp, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32
    protos: dict[str, tuple[Any, list[Any]]] = {
        "libbpf_set_print": (vp, [PRINT_FN]),
        "bpf_object__open_file": (vp, [cp, vp]),
        "bpf_object__load": (ip, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_map_by_name": (vp, [vp, cp]),
        "bpf_object__find_program_by_name": (vp, [vp, cp]),
        "bpf_program__fd": (ip, [vp]),
        "bpf_obj_get_info_by_fd": (ip, [ip, vp, ctypes.POINTER(u32)]),
        "bpf_program__attach": (vp, [vp]),
        "bpf_program__attach_perf_event": (vp, [vp, ip]),
        "bpf_link__destroy": (ip, [vp]),
        "bpf_map__fd": (ip, [vp]),
        "bpf_map__max_entries": (u32, [vp]),
        "bpf_map__set_max_entries": (ip, [vp, u32]),
        "bpf_map__value_size": (u32, [vp]),
        "bpf_map__key_size": (u32, [vp]),
        "bpf_map_update_elem": (ip, [ip, vp, vp, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (ip, [ip, vp, vp]),
        "bpf_map_delete_elem": (ip, [ip, vp]),
        "ring_buffer__new": (vp, [ip, SAMPLE_FN, vp, vp]),
        "ring_buffer__add": (ip, [vp, ip, SAMPLE_FN, vp]),
        "ring_buffer__poll": (ip, [vp, ip]),
        "ring_buffer__consume": (ip, [vp]),
        "ring_buffer__free": (None, [vp]),
        "libbpf_get_error": (ctypes.c_long, [vp]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(so, name)
        fn.restype = restype
        fn.argtypes = argtypes
    so.libbpf_set_print(_print_cb)
    _lib = so
    return so


def take_log() -> str:
    """Return and clear what libbpf printed since the last call (verifier logs on load failures)."""
    with _log_lock:
        text = "".join(_log_lines)
        _log_lines.clear()
    return text


def _check_ptr(ptr: int | None, what: str) -> int:
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise BpfError(f"{what}: {os.strerror(err)}", err, take_log())
    return ptr


def _check_rc(rc: int, what: str) -> int:
    if rc < 0:
        err = -rc if rc != -1 else (ctypes.get_errno() or errno.EINVAL)
        raise BpfError(f"{what}: {os.strerror(err)}", err, take_log())
    return rc


class Map:
    """A BPF map of a loaded object: fixed-size keys and values as bytes."""

    def __init__(self, handle: int, name: str) -> None:
        self._h = handle
        self.name = name
        self.fd = lib().bpf_map__fd(handle)
        self.key_size = lib().bpf_map__key_size(handle)
        self.value_size = lib().bpf_map__value_size(handle)
        self.max_entries = lib().bpf_map__max_entries(handle)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """Insert or replace one entry."""
        rc = lib().bpf_map_update_elem(self.fd, key, value, flags)
        _check_rc(rc, f"update of map {self.name}")

    def lookup(self, key: bytes) -> bytes | None:
        """The value for `key`, or None when absent."""
        buf = ctypes.create_string_buffer(self.value_size)
        rc = lib().bpf_map_lookup_elem(self.fd, key, buf)
        if rc < 0:
            return None
        return buf.raw

    def lookup_percpu(self, key: bytes, ncpus: int) -> list[bytes]:
        """Per-CPU values for `key` (value size is rounded up to 8 bytes per CPU)."""
        stride = (self.value_size + 7) & ~7
        buf = ctypes.create_string_buffer(stride * ncpus)
        rc = lib().bpf_map_lookup_elem(self.fd, key, buf)
        if rc < 0:
            return []
        raw = buf.raw
        return [raw[i * stride : i * stride + self.value_size] for i in range(ncpus)]

    def delete(self, key: bytes) -> bool:
        """Remove `key`; False when it was not there."""
        return lib().bpf_map_delete_elem(self.fd, key) == 0


class Link:
    """An attachment (perf event, tracepoint); destroyed on `close`."""

    def __init__(self, handle: int, what: str) -> None:
        self._h: int | None = handle
        self.what = what

    def close(self) -> None:
        """Detach."""
        if self._h:
            lib().bpf_link__destroy(self._h)
            self._h = None


# struct bpf_prog_info (linux/bpf.h): its size up to verified_insns' neighbours, and that field's offset.
_PROG_INFO_SIZE = 232
_PROG_INFO_VERIFIED_INSNS = 216


class Program:
    """A BPF program of a loaded object."""

    def __init__(self, handle: int, name: str) -> None:
        self._h = handle
        self.name = name

    @property
    def fd(self) -> int:
        """The program's file descriptor (for tail-call arrays)."""
        return lib().bpf_program__fd(self._h)

    @property
    def verified_insns(self) -> int:
        """Instructions the verifier walked to accept the program (0 before kernel 5.16); the limit is 1M."""
        info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
        size = ctypes.c_uint32(_PROG_INFO_SIZE)
        _check_rc(lib().bpf_obj_get_info_by_fd(self.fd, info, ctypes.byref(size)), f"info of {self.name}")
        if size.value < _PROG_INFO_VERIFIED_INSNS + 4:
            return 0
        return int.from_bytes(info.raw[_PROG_INFO_VERIFIED_INSNS : _PROG_INFO_VERIFIED_INSNS + 4], "little")

    def attach(self) -> Link:
        """Attach by section name (tp_btf/..., raw_tp/...)."""
        ptr = lib().bpf_program__attach(self._h)
        return Link(_check_ptr(ptr, f"attach {self.name}"), self.name)

    def attach_perf_event(self, pfd: int) -> Link:
        """Attach to an open perf event fd."""
        ptr = lib().bpf_program__attach_perf_event(self._h, pfd)
        return Link(_check_ptr(ptr, f"attach {self.name} to perf event"), self.name)


class BpfObject:
    """An opened BPF ELF object: size maps with `resize_map`, then `load`."""

    def __init__(self, path: str) -> None:
        take_log()
        ptr = lib().bpf_object__open_file(path.encode(), None)
        if not ptr or lib().libbpf_get_error(ptr):
            err = ctypes.get_errno() or errno.EINVAL
            raise BpfError(f"cannot open BPF object {path}: {os.strerror(err)}", err, take_log())
        self._h: int | None = ptr
        self.path = path
        self._maps: dict[str, Map] = {}
        self._loaded = False

    def _find_map(self, name: str) -> int:
        ptr = lib().bpf_object__find_map_by_name(self._h, name.encode())
        if not ptr:
            raise BpfError(f"BPF object has no map named {name}", errno.ENOENT)
        return ptr

    def resize_map(self, name: str, max_entries: int) -> None:
        """Set a map's capacity before loading."""
        _check_rc(lib().bpf_map__set_max_entries(self._find_map(name), max_entries), f"resize {name}")

    def load(self) -> None:
        """Load programs and create maps; a verifier rejection raises with the verifier log."""
        rc = lib().bpf_object__load(self._h)
        _check_rc(rc, "loading the BPF programs")
        self._loaded = True

    def map(self, name: str) -> Map:
        """A map of the loaded object."""
        if name not in self._maps:
            self._maps[name] = Map(self._find_map(name), name)
        return self._maps[name]

    def program(self, name: str) -> Program:
        """A program of the object, by function name."""
        ptr = lib().bpf_object__find_program_by_name(self._h, name.encode())
        if not ptr:
            raise BpfError(f"BPF object has no program named {name}", errno.ENOENT)
        return Program(ptr, name)

    def close(self) -> None:
        """Unload everything (links must be closed first)."""
        if self._h:
            lib().bpf_object__close(self._h)
            self._h = None


class RingBuffer:
    """Consumes one or more BPF ring buffers, calling a Python function per record (as a memoryview-able
    ctypes pointer and size)."""

    def __init__(self) -> None:
        self._h: int | None = None
        self._callbacks: list[Any] = []
        self._error: BaseException | None = None

    def add(self, m: Map, fn: Callable[[int, int], None]) -> None:
        """Call `fn(address, size)` for every record of map `m`; the data is valid only during the call."""

        def _cb(_ctx: int, data: int, size: int) -> int:
            try:
                fn(data, size)
            except BaseException as exc:  # re-raised by poll(): exceptions can't cross the C frames
                if self._error is None:
                    self._error = exc
                return -1
            return 0

        cb = SAMPLE_FN(_cb)
        self._callbacks.append(cb)
        if self._h is None:
            ptr = lib().ring_buffer__new(m.fd, cb, None, None)
            self._h = _check_ptr(ptr, f"ring buffer {m.name}")
        else:
            _check_rc(lib().ring_buffer__add(self._h, m.fd, cb, None), f"ring buffer {m.name}")

    def poll(self, timeout_ms: int) -> int:
        """Wait up to `timeout_ms` for records and consume them; returns how many were consumed."""
        rc = lib().ring_buffer__poll(self._h, timeout_ms)
        self._raise_pending()
        if rc < 0 and -rc != errno.EINTR:
            _check_rc(rc, "ring buffer poll")
        return max(rc, 0)

    def consume(self) -> int:
        """Consume whatever is ready without waiting."""
        rc = lib().ring_buffer__consume(self._h)
        self._raise_pending()
        return max(rc, 0)

    def _raise_pending(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def close(self) -> None:
        """Free the consumer."""
        if self._h:
            lib().ring_buffer__free(self._h)
            self._h = None

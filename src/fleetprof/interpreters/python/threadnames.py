"""Python thread names (`threading.Thread(name=...)`) of another process, read from its memory as py-spy does.

CPython <= 3.13 does not give the OS thread its Python name, so a sampled thread's comm is the process name.
The name lives in the target's `threading` module: _PyRuntime -> each interpreter -> its modules dict
(`sys.modules`) -> `threading` -> its `_active` dict (ident -> Thread) -> each Thread's `_name`.

Kernel tid -> Thread: every Thread stores `_native_id`, what `threading.get_native_id()` (gettid) returned in
that very thread; `_bootstrap_inner` sets it before the thread enters `_active`, and the main and dummy
threads set it in their constructors, on every version 3.8+ on Linux. That maps a tid to its Thread without
going through pthread_t (which would need the thread's fsbase, or glibc's private `struct pthread.tid`
offset on <= 3.10). It is the tid in the process's own pid namespace; samples carry the root-namespace tid,
translated with the NSpid line of /proc/PID/task/TID/status.

Dict and instance-attribute layouts change across 3.8-3.13; they are data (`LAYOUTS`), one row per minor,
read from the pyenv builds' DWARF and re-checked against every interpreter on the machine by
tests/unit/test_python_threadnames.py. 3.13 takes the modules dict offset from the target's
_Py_DebugOffsets. Memory is untrusted: every count is bounded, types are checked when their address is
known, and failures give "no name", never an exception.
"""

from __future__ import annotations

import enum
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from fleetprof.elf.view import ElfError, ElfView
from fleetprof.interpreters.python.debug_offsets import DebugOffsetsError, parse_debug_offsets, struct_size
from fleetprof.interpreters.python.objects import ObjectReader, linked_list
from fleetprof.interpreters.python.process import PythonProcess
from fleetprof.process.memory import ProcessMemory

MAX_INTERPRETERS = 8
MAX_ENTRIES = 1 << 16  # entries of one dict (sys.modules of a big application has a few thousand)
MAX_THREADS = 4096  # Thread objects read per refresh
MAX_DIGITS = 3  # a tid fits in two 30-bit digits
REFRESH_SECONDS = 10.0  # a thread's name is re-checked this often (renames are rare; a read costs 1-4 ms)
RETRY_SECONDS = 0.02  # first re-check of a tid not named yet (it may not be in `_active` yet); doubles
NAMES_KEPT = 1 << 16  # (pid, tid) entries kept, also for processes that exited (profiles are built later)

_TPFLAGS_MANAGED_DICT = 1 << 4  # 3.11+: the instance dict (or values) lives before the object header
_TPFLAGS_INLINE_VALUES = 1 << 2  # 3.13+: the instance values live inline after tp_basicsize
_DICT_KEYS_GENERAL = 0  # 3.11+ dk_kind: entries carry a hash (24 bytes); UNICODE/SPLIT ones do not (16)
_PTR = struct.Struct("<Q")


class DictFormat(enum.IntEnum):
    """How a PyDictKeysObject describes its entries."""

    SIZE = 1  # 3.8-3.10: dk_size slots of 1/2/4/8-byte indices, then 24-byte (hash, key, value) entries
    LOG2 = 2  # 3.11+: 1 << dk_log2_index_bytes bytes of indices; entry size from dk_kind


class InstanceDict(enum.IntEnum):
    """Where a plain Python object's attributes live."""

    DICTOFFSET = 1  # 3.8-3.10: a dict pointer at tp_dictoffset
    MANAGED_311 = 2  # 3.11: values pointer at obj - 32 (keys: the type's ht_cached_keys), dict at obj - 24
    MANAGED_312 = 3  # 3.12: obj - 24 holds a dict pointer, or (values pointer - 1) tagged by bit 0
    INLINE_313 = 4  # 3.13: values inline at tp_basicsize while `valid`, dict pointer at obj - 24


class LongFormat(enum.IntEnum):
    """How an int stores its digit count and sign."""

    OB_SIZE = 1  # 3.8-3.11: signed ob_size = +/- number of 30-bit digits
    LV_TAG = 2  # 3.12+: lv_tag = digits << 3 | sign (0 positive, 1 zero, 2 negative)


@dataclass(frozen=True, slots=True)
class NamesLayout:
    """The offsets and formats this module reads in one CPython minor (x86-64, GIL builds)."""

    minor: int
    interp_modules: int  # PyInterpreterState.modules (<= 3.11) / .imports.modules (3.12+)
    dict_format: DictFormat
    keys_nentries: int  # PyDictKeysObject.dk_nentries
    keys_indices: int  # PyDictKeysObject.dk_indices
    instance_dict: InstanceDict
    ht_cached_keys: int  # PyHeapTypeObject.ht_cached_keys (3.11+), -1 before
    values_array: int  # offsetof(PyDictValues, values): 8 on 3.13 (capacity, size, embedded, valid)
    values_valid: int  # offsetof(PyDictValues, valid) on 3.13, -1 before
    long_format: LongFormat
    # shared by every supported minor
    dict_keys: int = 32  # PyDictObject.ma_keys
    dict_values: int = 40  # PyDictObject.ma_values
    keys_size: int = 8  # dk_size (3.8-3.10) / dk_log2_size (3.11+)
    keys_index_bytes: int = 9  # dk_log2_index_bytes (3.11+)
    keys_kind: int = 10  # dk_kind (3.11+)
    module_dict: int = 16  # PyModuleObject.md_dict
    tp_basicsize: int = 32
    tp_flags: int = 168
    tp_dictoffset: int = 288
    long_size: int = 16  # ob_size / lv_tag
    long_digits: int = 24  # ob_digit / long_value.ob_digit


def _row(minor: int, modules: int, **fields: int) -> NamesLayout:
    old = minor <= 10
    base = {
        "dict_format": DictFormat.SIZE if old else DictFormat.LOG2,
        "keys_nentries": 32 if old else 24,
        "keys_indices": 40 if old else 32,
        "instance_dict": InstanceDict.DICTOFFSET,
        "ht_cached_keys": -1,
        "values_array": 0,
        "values_valid": -1,
        "long_format": LongFormat.OB_SIZE if minor <= 11 else LongFormat.LV_TAG,
    }
    return NamesLayout(minor=minor, interp_modules=modules, **{**base, **fields})  # type: ignore[arg-type]


# From the DWARF of pyenv 3.8.18-3.13.0 (gdb `print &((T *)0)->field`). 3.13+ read the modules offset from
# the target's _Py_DebugOffsets (interpreter_state.imports_modules); the row's value is what tests compare.
LAYOUTS: dict[int, NamesLayout] = {
    8: _row(8, 56),
    9: _row(9, 856),
    10: _row(10, 856),
    11: _row(11, 888, instance_dict=InstanceDict.MANAGED_311, ht_cached_keys=872),
    12: _row(12, 944, instance_dict=InstanceDict.MANAGED_312, ht_cached_keys=880),
    13: _row(
        13, 7656, instance_dict=InstanceDict.INLINE_313, ht_cached_keys=880, values_array=8, values_valid=3
    ),
}

_TYPE_SYMBOLS = ("PyDict_Type", "PyModule_Type", "PyLong_Type")
_type_cache: dict[str, tuple[int, int, int]] = {}
_type_lock = threading.Lock()


def _type_symbols(process: PythonProcess) -> tuple[int, int, int]:
    """ELF addresses of PyDict_Type, PyModule_Type and PyLong_Type (0 when unknown), cached per file."""
    binary = process.binary
    with _type_lock:
        cached = _type_cache.get(binary.file_id)
    if cached is None:
        try:
            with ElfView(binary.path) as image:
                found = image.symbols(_TYPE_SYMBOLS)
        except ElfError:
            found = {}
        dict_type, module_type, long_type = (found[n].value if n in found else 0 for n in _TYPE_SYMBOLS)
        cached = (dict_type, module_type, long_type)
        with _type_lock:
            _type_cache[binary.file_id] = cached
    return cached


def layout_for(process: PythonProcess, mem: ProcessMemory) -> NamesLayout | None:
    """The NamesLayout of the process's CPython; 3.13+ take the modules offset from _Py_DebugOffsets."""
    minor = process.binary.version[1]
    row = LAYOUTS.get(minor)
    if row is None or process.binary.layout.free_threaded:
        return None
    size = struct_size(minor)
    if size is None:
        return row
    data = mem.read(process.runtime_addr, size)
    if data is None:
        return None
    try:
        offsets = parse_debug_offsets(data, minor)
    except DebugOffsetsError:
        return None
    modules = offsets.get("interpreter_state", "imports_modules")
    if not 0 < modules <= offsets.get("interpreter_state", "size") - 8:
        return None
    return replace(row, interp_modules=modules)


class NameReader:
    """Reads `{tid in the process's namespace: Python thread name}` of one process; `read` is the entry."""

    def __init__(self, process: PythonProcess, mem: ProcessMemory, layout: NamesLayout) -> None:
        self.process = process
        self.mem = mem
        self.layout = layout
        self.strings = ObjectReader(mem, process.binary.layout, process.types)
        self.dict_type, self.module_type, self.long_type = (
            addr + process.bias if addr else 0 for addr in _type_symbols(process)
        )
        self._threading: dict[int, int] = {}  # interpreter -> threading module dict (stable while it lives)

    def read(self) -> dict[int, str] | None:
        """Names of every thread `threading` knows, by native id; None when nothing could be read."""
        names: dict[int, str] = {}
        found = False
        for interp in self._interpreters():
            module_dict = self._threading_dict(interp)
            if not module_dict:
                continue
            active = self.dict_lookup(module_dict, ("_active",)).get("_active")
            if not active:
                continue
            threads = [value for _, value in (self.dict_items(active) or [])][:MAX_THREADS]
            found = True
            named: list[tuple[int, int]] = []  # (tid, address of its name)
            for thread in threads:
                attrs = self.attributes(thread, ("_name", "_native_id"))
                tid = self.read_int(attrs.get("_native_id", 0))
                if tid is not None and tid > 0 and "_name" in attrs:
                    named.append((tid, attrs["_name"]))
            texts = self.strings.read_strings([addr for _, addr in named])
            names.update((tid, text) for (tid, _), text in zip(named, texts, strict=True) if text is not None)
        return names if found else None

    def _interpreters(self) -> list[int]:
        lay = self.process.binary.layout
        first = self.mem.u64(self.process.runtime_addr + lay.runtime_interp_head) or 0
        return linked_list(self.mem, first, lay.interp_next, MAX_INTERPRETERS)

    def _threading_dict(self, interp: int) -> int:
        cached = self._threading.get(interp)
        if cached and self._is(cached, self.dict_type):
            return cached
        modules = self.mem.u64(interp + self.layout.interp_modules) or 0
        module = self.dict_lookup(modules, ("threading",)).get("threading", 0) if modules else 0
        if not module or not self._is(module, self.module_type):
            return 0
        module_dict = self.mem.u64(module + self.layout.module_dict) or 0
        if module_dict and self._is(module_dict, self.dict_type):
            self._threading[interp] = module_dict
            return module_dict
        return 0

    def _is(self, obj: int, type_addr: int) -> bool:
        """`obj` is readable and, when the type's address is known, of that exact type."""
        ob_type = self.mem.u64(obj + self.process.binary.layout.ob_type)
        return ob_type is not None and (not type_addr or ob_type == type_addr)

    # ---- dicts ----------------------------------------------------------------------------------

    def dict_items(self, addr: int) -> list[tuple[int, int]] | None:
        """(key, value) object addresses of the dict at `addr`, None when it is not a readable dict."""
        if not addr or not self._is(addr, self.dict_type):
            return None
        lay = self.layout
        header = self.mem.read(addr + lay.dict_keys, 16)
        if header is None:
            return None
        keys, values = struct.unpack("<QQ", header)
        return self.keys_items(keys, values + lay.values_array if values else 0)

    def keys_items(self, keys: int, values: int = 0) -> list[tuple[int, int]] | None:
        """(key, value) pairs of a PyDictKeysObject; a split table's values are the array at `values`."""
        lay = self.layout
        header = self.mem.read(keys, lay.keys_indices)
        if header is None:
            return None
        count = struct.unpack_from("<q", header, lay.keys_nentries)[0]
        if lay.dict_format is DictFormat.SIZE:
            slots = struct.unpack_from("<q", header, lay.keys_size)[0]
            if not 0 < slots <= 4 * MAX_ENTRIES or slots & (slots - 1):
                return None
            width = 1 if slots <= 0xFF else 2 if slots <= 0xFFFF else 4
            entries, entry_size, key_at = keys + lay.keys_indices + slots * width, 24, 8
        else:
            log2_size, log2_index_bytes = header[lay.keys_size], header[lay.keys_index_bytes]
            if log2_size > 20 or not log2_size <= log2_index_bytes <= log2_size + 3:
                return None
            general = header[lay.keys_kind] == _DICT_KEYS_GENERAL
            entry_size, key_at = (24, 8) if general else (16, 0)
            entries = keys + lay.keys_indices + (1 << log2_index_bytes)
        if not 0 <= count <= MAX_ENTRIES:
            return None
        if count == 0:
            return []
        raw = self.mem.read(entries, count * entry_size)
        if raw is None:
            return None
        value_words: Sequence[int]
        if values:
            array = self.mem.read(values, count * 8)
            if array is None:
                return None
            value_words = struct.unpack(f"<{count}Q", array)
        else:
            value_words = [_PTR.unpack_from(raw, i * entry_size + key_at + 8)[0] for i in range(count)]
        out = []
        for i in range(count):
            key = _PTR.unpack_from(raw, i * entry_size + key_at)[0]
            if key and value_words[i]:
                out.append((key, value_words[i]))
        return out

    def dict_lookup(self, addr: int, names: Sequence[str]) -> dict[str, int]:
        """The values of the str keys `names` in the dict at `addr` (missing ones left out)."""
        return self._match(self.dict_items(addr), names)

    def _match(self, items: list[tuple[int, int]] | None, names: Sequence[str]) -> dict[str, int]:
        if not items:
            return {}
        keys = self.strings.read_strings(tuple(key for key, _ in items))
        wanted = set(names)
        return {k: value for k, (_, value) in zip(keys, items, strict=True) if k in wanted}

    # ---- objects --------------------------------------------------------------------------------

    def attributes(self, obj: int, names: Sequence[str]) -> dict[str, int]:
        """Instance attributes `names` of the plain Python object at `obj` (missing ones left out)."""
        lay = self.layout
        ob_type = self.mem.u64(obj + self.process.binary.layout.ob_type)
        if not ob_type:
            return {}
        type_head = self.mem.read(ob_type, lay.tp_dictoffset + 8)
        if type_head is None:
            return {}
        flags = struct.unpack_from("<Q", type_head, lay.tp_flags)[0]
        if lay.instance_dict is InstanceDict.DICTOFFSET:
            offset = struct.unpack_from("<q", type_head, lay.tp_dictoffset)[0]
            if not 0 < offset < 1 << 16:
                return {}
            return self.dict_lookup(self.mem.u64(obj + offset) or 0, names)
        if not flags & _TPFLAGS_MANAGED_DICT:
            return {}
        values = 0
        if lay.instance_dict is InstanceDict.MANAGED_311:
            pair = self.mem.read(obj - 32, 16)
            if pair is None:
                return {}
            values, dict_addr = struct.unpack("<QQ", pair)
        elif lay.instance_dict is InstanceDict.MANAGED_312:
            tagged = self.mem.u64(obj - 24) or 0
            values, dict_addr = (tagged + 1, 0) if tagged & 1 else (0, tagged)
        else:
            dict_addr = self.mem.u64(obj - 24) or 0
            if not dict_addr and flags & _TPFLAGS_INLINE_VALUES:
                basicsize = struct.unpack_from("<q", type_head, lay.tp_basicsize)[0]
                inline = obj + basicsize if 0 < basicsize < 1 << 16 else 0
                valid = self.mem.read(inline + lay.values_valid, 1) if inline else None
                values = inline if valid is not None and valid[0] else 0
        if dict_addr:
            return self.dict_lookup(dict_addr, names)
        if not values:
            return {}
        cached_keys = self.mem.u64(ob_type + lay.ht_cached_keys) or 0
        if not cached_keys:
            return {}
        return self._match(self.keys_items(cached_keys, values + lay.values_array), names)

    def read_int(self, addr: int) -> int | None:
        """The value of a small int object, None when `addr` is not a readable int."""
        if not addr:
            return None
        lay = self.layout
        raw = self.mem.read(addr, lay.long_digits + 4)  # the header and one digit: what a tid needs
        ob_type = self.process.binary.layout.ob_type
        if raw is None or (self.long_type and _PTR.unpack_from(raw, ob_type)[0] != self.long_type):
            return None
        word = struct.unpack_from("<q", raw, lay.long_size)[0]
        if lay.long_format is LongFormat.OB_SIZE:
            digits, sign = abs(word), (word > 0) - (word < 0)
        else:
            digits, sign = word >> 3, 1 - (word & 3)
        if not 0 <= digits <= MAX_DIGITS:
            return None
        if digits > 1:
            raw = self.mem.read(addr, lay.long_digits + 4 * digits)
            if raw is None:
                return None
        value = 0
        for i in reversed(range(digits)):
            value = (value << 30) | (struct.unpack_from("<I", raw, lay.long_digits + 4 * i)[0] & 0x3FFFFFFF)
        return sign * value


def namespace_tid(pid: int, tid: int) -> int:
    """`tid` (root pid namespace) as the process sees it: the last NSpid entry of its status file."""
    try:
        with open(f"/proc/{pid}/task/{tid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return tid


def choose_thread_name(os_name: str, process_name: str, python_name: str | None) -> str:
    """The OS thread name when the application set one (it differs from the process name), else the
    Python thread name when known, else the OS name."""
    if os_name != process_name or not python_name:
        return os_name
    return python_name


@dataclass(slots=True)
class _Tid:
    ns_tid: int  # the tid in the process's pid namespace
    name: str | None = None
    checked_at: float = float("-inf")
    misses: int = 0  # consecutive checks that did not find the tid


@dataclass(slots=True)
class _Process:
    process: PythonProcess
    mem: ProcessMemory
    reader: NameReader | None = None  # made on the first read
    unsupported: bool = False  # no layout for this CPython (or its _Py_DebugOffsets are unreadable)
    names: dict[int, str] = field(default_factory=dict)  # namespace tid -> name, as last read
    read_at: float = float("-inf")  # monotonic time of the last read

    def read(self) -> dict[int, str] | None:
        """Every thread's name (see NameReader.read); None when the process cannot be read."""
        if self.reader is None and not self.unsupported:
            layout = layout_for(self.process, self.mem)
            self.unsupported = layout is None
            self.reader = NameReader(self.process, self.mem, layout) if layout is not None else None
        return self.reader.read() if self.reader is not None else None


class ThreadNames:
    """Python thread names per (pid, tid): read from process memory on demand, cached, refreshed.

    One read names every thread of a process and counts as a check of each one it found, so a process is
    read about once per `refresh_seconds` however many of its threads are sampled. A tid is re-checked
    every `refresh_seconds` (renames); a tid not found (a thread that is not in `_active` yet, or a C
    thread that never will be) after `retry_seconds`, doubling up to `refresh_seconds`. A process is read
    at most once per `retry_seconds`.
    """

    def __init__(
        self,
        refresh_seconds: float = REFRESH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.reads = 0  # process reads done
        self._lock = threading.Lock()
        self._processes: dict[int, _Process] = {}
        self._tids: dict[int, dict[int, _Tid]] = {}  # pid -> tid -> state, kept after the process exits
        self._lru: OrderedDict[tuple[int, int], None] = OrderedDict()  # bounds _tids to NAMES_KEPT

    def register(self, process: PythonProcess) -> None:
        """Start reading a process (a new process with a reused pid replaces the old one and its names)."""
        with self._lock:
            old = self._processes.get(process.pid)
            if old is not None and old.process.start_time == process.start_time:
                return
            self._drop(process.pid)
            for tid in self._tids.pop(process.pid, {}):
                self._lru.pop((process.pid, tid), None)
            self._processes[process.pid] = _Process(process, ProcessMemory(process.pid))

    def forget(self, pid: int) -> None:
        """Stop reading `pid` (exit or exec); the names already read stay for profiles built later."""
        with self._lock:
            self._drop(pid)

    def _drop(self, pid: int) -> None:
        entry = self._processes.pop(pid, None)
        if entry is not None:
            entry.mem.close()

    def observe(self, pid: int, tid: int) -> None:
        """Make sure the name of (pid, tid) is known and fresh, reading the process when it is due."""
        with self._lock:
            entry = self._processes.get(pid)
            if entry is None or entry.unsupported:
                return
            now = self.clock()
            tids = self._tids.setdefault(pid, {})
            state = tids.get(tid)
            if state is None:
                state = tids[tid] = _Tid(namespace_tid(pid, tid))
                self._lru[(pid, tid)] = None
                while len(self._lru) > NAMES_KEPT:
                    old_pid, old_tid = self._lru.popitem(last=False)[0]
                    self._tids[old_pid].pop(old_tid, None)
                    if not self._tids[old_pid]:
                        del self._tids[old_pid]
                if state.ns_tid in entry.names and now - entry.read_at < self.refresh_seconds:
                    state.name, state.checked_at = entry.names[state.ns_tid], entry.read_at
                    return  # the last read of the process named it already
            elif now - state.checked_at < self._wait(state):
                return
            self._lru.move_to_end((pid, tid))
            if now - entry.read_at >= self.retry_seconds:
                self.reads += 1
                entry.read_at = now
                names = entry.read()
                if names is not None:
                    entry.names = names
                    for other in tids.values():
                        if other.ns_tid in names:  # this read refreshed it: not due again for a while
                            other.name = names[other.ns_tid]
                            other.checked_at = now
                            other.misses = 0
            state.checked_at = now
            state.name = entry.names.get(state.ns_tid, state.name)
            state.misses = 0 if state.ns_tid in entry.names else state.misses + 1

    def _wait(self, state: _Tid) -> float:
        if state.name is not None:
            return self.refresh_seconds
        return min(self.retry_seconds * (1 << min(max(state.misses - 1, 0), 16)), self.refresh_seconds)

    def python_name(self, pid: int, tid: int) -> str | None:
        """The last Python thread name read for (pid, tid), None when unknown."""
        with self._lock:
            state = self._tids.get(pid, {}).get(tid)
        return state.name if state is not None else None

    def thread_name(self, pid: int, tid: int, os_name: str, process_name: str) -> str:
        """The name to label a sample of (pid, tid) with: see `choose_thread_name`."""
        if os_name != process_name:
            return os_name
        if self.python_name(pid, tid) is None:
            self.observe(pid, tid)
        return choose_thread_name(os_name, process_name, self.python_name(pid, tid))

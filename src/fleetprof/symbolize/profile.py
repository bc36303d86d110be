"""The second stage: a raw `Profile` (native frames as file id + ELF address) -> a symbolized one.

`symbolize_profile(raw, lookup)` asks `lookup` once per file for all of that file's addresses; the host runs
it with `HostLookup` (NativeSymbolizer over the agent's open files), the server with its central
symbolizer. Each raw frame becomes its inline chain (outermost first, `inlined=True` on all but the first,
as symbolize/modelframes.py has it), keeping the raw frame's mapping and address; an address the lookup
doesn't know becomes `module+0xADDR`. Frames already named (kernel, Python, JIT, other producers'
symbolized frames) pass through. The error frame of an unwalkable CPython, which the raw stage can only put
under the process root, moves under the outermost eval-loop frame once native names are known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import replace

from fleetprof.process.fileid import file_id_u64
from fleetprof.profile.model import Frame, FrameKind, Profile, Sample
from fleetprof.symbolize.native import NativeFile, NativeSymbolizer

log = logging.getLogger(__name__)

# lookup(file_id, build_id, path, addresses) -> {address: frames, outermost first}; mapping/address of
# the returned frames are ignored (the raw frame's are kept), addresses left out are unknown.
Lookup = Callable[[str, str, str, list[int]], MappingOf[int, tuple[Frame, ...]]]

PYTHON_MARKER_PREFIX = "[unwind: python: "  # error frame of a CPython whose frames can't be walked
EVAL_LOOP_FUNCTIONS = frozenset({"_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx", "_PyEval_EvalFrame"})
MARKER_LOOPS = {
    PYTHON_MARKER_PREFIX: EVAL_LOOP_FUNCTIONS,
    "[unwind: php: ": frozenset({"execute_ex"}),
    "[unwind: ruby: ": frozenset({"rb_vm_exec"}),
    "[unwind: v8: ": frozenset({"Builtins_JSEntryTrampoline", "Builtins_JSEntry"}),
    "[unwind: jvm: ": frozenset(
        {"JavaCalls::call_helper(JavaValue*, methodHandle const&, JavaCallArguments*, JavaThread*)"}
    ),
}
"""Error-frame prefix of each runtime whose frames can't be walked -> the native VM loop it belongs under."""
STAT_FAILED_FILES = "symbolize_failed_files"


def raw_addresses(profile: Profile) -> dict[str, tuple[str, str, set[int]]]:
    """file id -> (build id, path, addresses) of every raw native frame in `profile`."""
    wanted: dict[str, tuple[str, str, set[int]]] = {}
    for sample in profile.samples:
        for frame in sample.stack:
            if frame.is_raw:
                mapping = frame.mapping
                assert mapping is not None  # is_raw
                entry = wanted.get(mapping.file_id)
                if entry is None:
                    wanted[mapping.file_id] = (mapping.build_id, mapping.path, {frame.address})
                else:
                    entry[2].add(frame.address)
    return wanted


def symbolize_profile(raw: Profile, lookup: Lookup) -> Profile:
    """A copy of `raw` with every raw native frame symbolized through `lookup` (see the module doc)."""
    found: dict[tuple[str, int], tuple[Frame, ...]] = {}
    failed = 0
    for file_id, (build_id, path, addresses) in raw_addresses(raw).items():
        try:
            result = lookup(file_id, build_id, path, sorted(addresses))
        except Exception:  # one file's symbols must not lose the profile: its frames stay module+0x…
            log.exception("symbolizing %s (%s) failed", path, file_id)
            failed += 1
            continue
        for address, frames in result.items():
            found[(file_id, address)] = frames
    converted: dict[Frame, tuple[Frame, ...]] = {}
    stacks: dict[tuple[Frame, ...], tuple[Frame, ...]] = {}  # samples of many threads share stacks
    samples: list[Sample] = []
    for sample in raw.samples:
        done = stacks.get(sample.stack)
        if done is None:
            stack: list[Frame] = []
            for frame in sample.stack:
                if not frame.is_raw:
                    stack.append(frame)
                    continue
                chain = converted.get(frame)
                if chain is None:
                    assert frame.mapping is not None  # is_raw
                    chain = converted[frame] = _chain(
                        frame, found.get((frame.mapping.file_id, frame.address))
                    )
                stack.extend(chain)
            _place_python_marker(stack)
            done = stacks[sample.stack] = tuple(stack)
        samples.append(
            replace(sample, stack=done, cpus=set(sample.cpus), timestamps_ns=list(sample.timestamps_ns))
        )
    stats = dict(raw.stats)
    if failed:
        stats[STAT_FAILED_FILES] = stats.get(STAT_FAILED_FILES, 0) + failed
    return replace(raw, samples=samples, stats=stats, resource=dict(raw.resource))


def _chain(raw: Frame, frames: tuple[Frame, ...] | None) -> tuple[Frame, ...]:
    """The symbolized frames of one raw frame, on its mapping and address."""
    mapping = raw.mapping
    assert mapping is not None
    if not frames or not all(f.function for f in frames):
        return (replace(raw, function=f"{mapping.name}+0x{raw.address:x}"),)
    return tuple(
        replace(f, kind=FrameKind.NATIVE, mapping=mapping, address=raw.address, runtime=raw.runtime)
        for f in frames
    )


def _place_python_marker(stack: list[Frame]) -> None:
    """Move each unwalkable-interpreter error frame (right under the root: CPython, PHP, Ruby) under the
    outermost frame of that interpreter's VM loop, so the native structure of the stack stays as it is;
    drop it from stacks that never enter the loop."""
    markers = []
    for index in (3, 2, 1):
        if index < len(stack) and stack[index].kind is FrameKind.ERROR:
            loops = _marker_loops(stack[index].function)
            if loops is not None:
                markers.append((stack.pop(index), loops))
    for marker, loops in reversed(markers):
        for i, frame in enumerate(stack):
            if frame.kind is FrameKind.NATIVE and frame.function in loops:
                stack.insert(i + 1, marker)
                break


def _marker_loops(function: str) -> frozenset[str] | None:
    """The VM-loop functions an unwalkable-interpreter marker goes under, None for other error frames."""
    for prefix, loops in MARKER_LOOPS.items():
        if function.startswith(prefix):
            return loops
    return None


class HostLookup:
    """The host-side `Lookup`: a NativeSymbolizer reading the files the agent holds open (`files`, keyed
    by the 64-bit BPF file key), else `open_path(file_id)`, else the path as the process saw it."""

    def __init__(
        self,
        native: NativeSymbolizer,
        files: MappingOf[int, NativeFile],
        open_path: Callable[[str], str] | None = None,
    ) -> None:
        self.native = native
        self.files = files
        self.open_path = open_path

    def __call__(
        self, file_id: str, build_id: str, path: str, addresses: Iterable[int]
    ) -> dict[int, tuple[Frame, ...]]:
        """Frames (outermost first) of each address; never raises for a bad file."""
        file = self.files.get(file_id_u64(file_id))
        if file is None or file.file_id != file_id:
            file = NativeFile(file_id, path, self.open_path(file_id) if self.open_path else "", build_id)
        return {
            address: tuple(
                Frame(
                    kind=FrameKind.NATIVE,
                    function=f.function,
                    file=f.file,
                    line=f.line,
                    inlined=f.inlined,
                    start_line=f.start_line,
                    system_name=f.system_name,
                )
                for f in frames
            )
            for address, frames in self.native.symbolize(file, addresses).items()
        }

    def close(self) -> None:
        """Release the symbolizer's loaded files."""
        self.native.close()

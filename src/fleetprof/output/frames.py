"""Stack helpers shared by the structured formats (pprof, OTLP, speedscope), and the function, mapping and
location tables pprof and OTLP both build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from fleetprof.output.interning import Interner
from fleetprof.profile.model import Frame, FrameKind, Mapping, Stack

# Pseudo file name for kernel frames, as perf and pprof's perf converter name it.
KERNEL_MAPPING_NAME = "[kernel.kallsyms]"
KERNEL = "kernel"  # mapping key of the kernel pseudo mapping

MappingKey: TypeAlias = Mapping | str  # a file's Mapping, or KERNEL
FunctionKey: TypeAlias = tuple[str, str, str, int]  # name, system name, file, start line


def call_frames(stack: Stack) -> Stack:
    """The stack without its synthetic PROCESS root: formats with a process label/resource don't repeat it."""
    start = 0
    while start < len(stack) and stack[start].kind is FrameKind.PROCESS:
        start += 1
    return stack[start:]


def _same_code(head: Frame, inlined: Frame) -> bool:
    """Whether an inlined frame belongs to `head`'s code: the same native file, or the same runtime's JIT
    frame (V8, HotSpot: one compiled frame and the functions it inlined)."""
    if head.kind is FrameKind.NATIVE:
        return inlined.kind is FrameKind.NATIVE and inlined.mapping == head.mapping
    return (
        head.kind is FrameKind.INTERPRETED and inlined.kind is head.kind and inlined.runtime == head.runtime
    )


def physical_frames(stack: Stack) -> list[tuple[Frame, ...]]:
    """Group each native or JIT frame with the inlined frames that follow it: one group per code address.

    Groups and the frames inside them stay root first (caller before inlined callee).
    """
    groups: list[list[Frame]] = []
    for frame in stack:
        head = groups[-1][0] if groups else None
        if frame.inlined and head is not None and _same_code(head, frame):
            groups[-1].append(frame)
        else:
            groups.append([frame])
    return [tuple(group) for group in groups]


def is_symbolized(frame: Frame) -> bool:
    """False for native frames the symbolizer left as `module+0xoffset`, and for nameless frames."""
    if not frame.function:
        return False
    if frame.kind is FrameKind.NATIVE and frame.mapping is not None:
        return not frame.function.startswith(f"{frame.mapping.name}+0x")
    return True


def runtime_address(frame: Frame) -> int:
    """Best estimate of the in-process address of a native frame, from its ELF virtual address.

    The model keeps no program headers, so the ELF address of `mapping.start` is taken to be
    `mapping.offset` (p_vaddr == p_offset, true for shared objects and PIEs linked by GNU ld), unless the
    ELF address already lies inside the mapping (a non-PIE executable, load bias 0). With an unknown
    mapping range the ELF address is returned as it is.
    """
    mapping: Mapping | None = frame.mapping
    if mapping is None or (mapping.start == 0 and mapping.limit == 0):
        return frame.address
    if mapping.start <= frame.address < mapping.limit:
        return frame.address
    return max(mapping.start + frame.address - mapping.offset, 0)


@dataclass(slots=True)
class MappingFacts:
    """What the frames of one mapping's locations reveal: symbolization quality and the address range."""

    functions: bool = True
    filenames: bool = True
    line_numbers: bool = True
    inline_frames: bool = False
    low: int = 0
    high: int = 0  # exclusive

    def observe(self, group: tuple[Frame, ...]) -> None:
        """Fold one location's frames into the facts."""
        for frame in group:
            self.functions &= is_symbolized(frame)
            self.filenames &= bool(frame.file)
            self.line_numbers &= frame.line > 0
            self.inline_frames |= frame.inlined
        address = group[0].address
        self.low = address if self.low == 0 else min(self.low, address)
        self.high = max(self.high, address + 1)


@dataclass(frozen=True, slots=True)
class Location:
    """One physical frame: mapping (None for Python and error frames), ELF or kernel address, and one
    (function index, line) per frame, innermost first (none for a raw native frame, which is symbolized
    later by file id and address). `head` is the physical frame itself."""

    mapping: MappingKey | None
    address: int
    lines: tuple[tuple[int, int], ...]  # empty for a raw (unsymbolized) native frame
    kind: FrameKind
    runtime: str
    head: Frame = field(compare=False)


class LocationTables:
    """Functions, mappings and locations interned in first-seen order and numbered from 1 (pprof ids; OTLP
    indexes, whose tables start with a zero value): the entry numbered i is `keys[i - 1]`."""

    def __init__(self) -> None:
        self.functions: Interner[FunctionKey] = Interner()
        self.mappings: Interner[MappingKey] = Interner()
        self.locations: Interner[Location] = Interner()
        self.facts: dict[MappingKey, MappingFacts] = {}
        self._groups: dict[tuple[Frame, ...], int] = {}
        self._stacks: dict[Stack, tuple[int, ...]] = {}  # many samples share a stack (thread, CPU)

    def stack(self, stack: Stack) -> tuple[int, ...]:
        """Location numbers of a model stack (root first, PROCESS frames included), leaf first."""
        found = self._stacks.get(stack)
        if found is None:
            groups = physical_frames(call_frames(stack))
            found = self._stacks[stack] = tuple(self.location(group) for group in reversed(groups))
        return found

    def location(self, group: tuple[Frame, ...]) -> int:
        """Number of the Location of one physical frame and its inlined callees (root first)."""
        number = self._groups.get(group)
        if number is not None:
            return number
        head = group[0]
        mapping: MappingKey | None = None
        if head.kind is FrameKind.NATIVE and head.mapping is not None:
            mapping = head.mapping
        elif head.kind is FrameKind.KERNEL:
            mapping = KERNEL
        functions = self.functions
        lines = tuple(
            (functions.add((f.function, f.system_name, f.file, f.start_line)) + 1, f.line)
            for f in reversed(group)
            if not f.is_raw
        )
        known = len(self.locations)
        location = Location(mapping, head.address, lines, head.kind, head.runtime, head)
        number = self._groups[group] = self.locations.add(location) + 1
        if number > known and mapping is not None:  # a new location
            self.mappings.add(mapping)
            self.facts.setdefault(mapping, MappingFacts()).observe(group)
        return number

    def mapping_number(self, location: Location) -> int:
        """Number of a location's mapping, 0 for none."""
        return 0 if location.mapping is None else self.mappings.add(location.mapping) + 1

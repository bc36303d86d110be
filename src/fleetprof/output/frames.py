"""Stack helpers shared by the structured formats (pprof, OTLP, speedscope)."""

from __future__ import annotations

from fleetprof.profile.model import Frame, FrameKind, Mapping, Stack

# Pseudo file name for kernel frames, as perf and pprof's perf converter name it.
KERNEL_MAPPING_NAME = "[kernel.kallsyms]"


def call_frames(stack: Stack) -> Stack:
    """The stack without its synthetic PROCESS root: formats with a process label/resource don't repeat it."""
    start = 0
    while start < len(stack) and stack[start].kind is FrameKind.PROCESS:
        start += 1
    return stack[start:]


def physical_frames(stack: Stack) -> list[tuple[Frame, ...]]:
    """Group each native frame with the inlined frames that follow it: one group per code address.

    Groups and the frames inside them stay root first (caller before inlined callee).
    """
    groups: list[list[Frame]] = []
    for frame in stack:
        head = groups[-1][0] if groups else None
        if (
            frame.inlined
            and head is not None
            and head.kind is FrameKind.NATIVE
            and frame.kind is FrameKind.NATIVE
            and frame.mapping == head.mapping
        ):
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

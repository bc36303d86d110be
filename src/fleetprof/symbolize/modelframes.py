"""Map symbolizer results onto `fleetprof.profile.model.Frame`, the one frame type outputs consume."""

from __future__ import annotations

from fleetprof.profile.model import Frame, FrameKind, Mapping
from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.symbolize.native import NativeFile, NativeFrame, NativeSymbolizer


def native_model_frames(mapping: Mapping, address: int, frames: tuple[NativeFrame, ...]) -> tuple[Frame, ...]:
    """NATIVE model frames (outermost first) for one address of `mapping`."""
    return tuple(
        Frame(
            kind=FrameKind.NATIVE,
            function=f.function,
            file=f.file,
            line=f.line,
            mapping=mapping,
            address=address,
            inlined=f.inlined,
            start_line=f.start_line,
            system_name=f.system_name,
        )
        for f in frames
    )


def symbolize_mapping(
    symbolizer: NativeSymbolizer, mapping: Mapping, addresses: list[int], open_path: str = "", root: str = ""
) -> dict[int, tuple[Frame, ...]]:
    """Symbolize ELF addresses of `mapping` (read through `open_path` when given) into model frames."""
    file = NativeFile(mapping.file_id, mapping.path, open_path, mapping.build_id, root)
    return {
        addr: native_model_frames(mapping, addr, frames)
        for addr, frames in symbolizer.symbolize(file, addresses).items()
    }


def kernel_model_frame(kernel: KernelSymbols, address: int) -> Frame:
    """A KERNEL model frame for `address` (unknown addresses keep a `[kernel]+0x…` name)."""
    return Frame(kind=FrameKind.KERNEL, function=kernel.name(address), address=address)

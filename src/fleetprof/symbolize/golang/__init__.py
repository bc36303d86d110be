"""Go binaries symbolized from their own pclntab: names, file:line and inlined frames, stripped or not."""

from fleetprof.symbolize.golang.elffile import GoElf, GoLocation, is_go_file
from fleetprof.symbolize.golang.pclntab import GoFrame, Pclntab, PclntabError

__all__ = ["GoElf", "GoFrame", "GoLocation", "Pclntab", "PclntabError", "is_go_file"]

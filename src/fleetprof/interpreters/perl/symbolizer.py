"""Name Perl frames from process memory: (kind, CV, GV, COP, line) becomes a Frame.

Names are what Perl's `caller` gives: the sub's glob name qualified by its stash (`Shapes::Circle::area`,
`main::__ANON__` for anonymous subs), a lexical `my sub`'s name HEK qualified by its CvSTASH, `(eval)`,
`(try)` and `(require)` for eval contexts, and `main` for the main program. The file is the COP's
`cop_file` (threaded builds keep the name as a plain string), the line the COP's line read at sample time.
Nothing here raises for bad memory: it returns a reason.
"""

from __future__ import annotations

from fleetprof.interpreters.perl.layouts import (
    CX_OLD_OP_SHIFT,
    OP_REQUIRE,
    CXp_TRY,
    CXt_EVAL,
    PerlLayout,
    SVf_OOK,
)
from fleetprof.process.memory import MemoryReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.symbolize.lru import BoundedLru

RUNTIME = "perl"  # Frame.runtime: OTel's profile.frame.type for Perl frames
MAIN_NAME = "main"
MAX_STRING = 4096
STRING_CHUNK = 256
CACHE_SIZE = 16384


class PerlNamer:
    """Reads GVs, CVs, stashes and COP file names of one process; names of GVs and CVs cached by address.

    File names are not: a threaded perl gives each COP its own copy of its file name and frees it with
    the COP, so the address of a freed name (a BEGIN block's, a required module's) comes back holding
    another file's (the agent once named late.pl's subs after DynaLoader.pm that way)."""

    def __init__(self, mem: MemoryReader, layout: PerlLayout) -> None:
        self.mem = mem
        self.layout = layout
        self._names: BoundedLru[int, str] = BoundedLru(CACHE_SIZE)  # GV or CV -> qualified name

    def c_string(self, address: int) -> str | None:
        """The NUL-terminated string at `address` (up to MAX_STRING bytes), None when unreadable."""
        out = b""
        while address and len(out) < MAX_STRING:
            chunk = self.mem.read(address + len(out), STRING_CHUNK)
            if chunk is None:  # near a page end: fall back to byte-sized reads
                chunk = self.mem.read(address + len(out), 1)
                if chunk is None:
                    return None
            end = chunk.find(b"\0")
            if end >= 0:
                return (out + chunk[:end]).decode("utf-8", "replace")
            out += chunk
        return None

    def hek(self, hek: int) -> str | None:
        """The key of HEK `hek` (a shared hash key: name of a glob, stash or lexical sub)."""
        lay = self.layout
        length = self.mem.u32(hek + lay.hek_len) if hek else None
        if length is None or length > MAX_STRING:
            return None
        data = self.mem.read(hek + lay.hek_key, length) if length else b""
        return None if data is None else data.decode("utf-8", "replace")

    def stash_name(self, stash: int) -> str | None:
        """HvNAME of stash `stash`: the aux struct's name HEK (the first of its names when it has several)."""
        lay = self.layout
        flags = self.mem.u32(stash + lay.sv_flags) if stash else None
        body = self.mem.u64(stash + lay.sv_any) if flags is not None and flags & SVf_OOK else None
        aux = body + lay.xhv_aux if body else 0
        name = self.mem.u64(aux + lay.aux_name) if aux else None
        count = self.mem.u32(aux + lay.aux_name_count) if name else None
        if not name or count is None:
            return None
        hek = self.mem.u64(name) if count else name
        return self.hek(hek) if hek else None

    def qualified(self, name_hek: int, stash: int) -> str | None:
        """`Package::name` from a name HEK and a stash (the bare name when the stash has no name)."""
        name = self.hek(name_hek)
        if name is None:
            return None
        package = self.stash_name(stash)
        return f"{package}::{name}" if package else name

    def gv_name(self, gv: int) -> str | None:
        """The qualified name of glob `gv`: GvNAME_HEK in GvSTASH."""
        found = self._names.get(gv)
        if found is None:
            lay = self.layout
            body = self.mem.u64(gv + lay.sv_any)
            head = (
                self.mem.read(body + lay.xgv_namehek, lay.xgv_stash + 8 - lay.xgv_namehek) if body else None
            )
            if head is None:
                return None
            stash_at = lay.xgv_stash - lay.xgv_namehek
            name_hek = int.from_bytes(head[:8], "little")
            found = self.qualified(name_hek, int.from_bytes(head[stash_at : stash_at + 8], "little"))
            if found is not None:
                self._names.put(gv, found)
        return found

    def named_cv_name(self, cv: int) -> str | None:
        """The qualified name of a NAMED CV (a lexical `my sub`): CvNAME_HEK in CvSTASH."""
        found = self._names.get(cv)
        if found is None:
            lay = self.layout
            body = self.mem.u64(cv + lay.sv_any)
            hek = self.mem.u64(body + lay.xcv_gv) if body else None
            stash = self.mem.u64(body + lay.xcv_stash) if body else None
            if not hek or stash is None:
                return None
            found = self.qualified(hek, stash)
            if found is not None:
                self._names.put(cv, found)
        return found

    def file(self, cop: int) -> str:
        """CopFILE of `cop` (the file its statement was compiled from), "" when unreadable."""
        pointer = self.mem.u64(cop + self.layout.cop_file) if cop else None
        return (self.c_string(pointer) or "") if pointer else ""

    def function(self, kind: int, cx_type: int, cv: int, gv: int) -> str | None:
        """The frame's function name, None when its glob or CV is unreadable."""
        if kind == 0:
            return MAIN_NAME
        if kind == CXt_EVAL:
            if cx_type >> 8 >> CX_OLD_OP_SHIFT == OP_REQUIRE:
                return "(require)"
            return "(try)" if cx_type & CXp_TRY else "(eval)"
        return self.gv_name(gv) if gv else self.named_cv_name(cv)

    def frame(self, kind: int, cx_type: int, cv: int, gv: int, cop: int, line: int) -> Frame | str:
        """The Frame of one raw Perl frame, or why it cannot be named."""
        name = self.function(kind, cx_type, cv, gv)
        if name is None:
            return "sub's glob or CV unreadable"
        return Frame(
            kind=FrameKind.INTERPRETED, function=name, file=self.file(cop), line=line, runtime=RUNTIME
        )

"""Where each Go release keeps what the label reader needs: runtime.g's m and labels, runtime.m's curg, and
the shape of a label set. DWARF (when the binary has it) is read first; this table serves stripped
binaries. The row for the toolchain installed here is checked against its DWARF by
tests/unit/test_go_labels.py; the others are Go's struct layouts as published for those releases."""

from __future__ import annotations

from dataclasses import dataclass

MAP = "map"  # Go <= 1.23: labels -> *labelMap (a map[string]string)
SLICE = "slice"  # Go >= 1.24: labels -> *labelMap{LabelSet{list []label}}
HMAP_HASH0 = 12  # runtime.hmap.hash0: a random seed per map, unchanged since Go 1.0's hmap layout
SLICE_FIRST_KEY = 0  # the first label's key data pointer: the tag of a slice-form label set


@dataclass(frozen=True, slots=True)
class GoOffsets:
    """runtime.g / runtime.m offsets and the label set's form."""

    g_m: int
    m_curg: int
    g_labels: int
    form: str  # MAP or SLICE

    @property
    def tag_offset(self) -> int:
        """Where BPF reads the label set's tag, from the set's first word (go_offsets.h)."""
        return HMAP_HASH0 if self.form == MAP else SLICE_FIRST_KEY


def form_for(version: tuple[int, int]) -> str:
    """The label set's shape in a Go release."""
    return MAP if version < (1, 24) else SLICE


_G_LABELS: dict[tuple[int, int], int] = {
    (1, 17): 360,
    (1, 18): 360,
    (1, 19): 360,
    (1, 20): 360,
    (1, 21): 344,
    (1, 22): 344,
    (1, 23): 352,
}
_G_M = 48
_M_CURG = 192


def offsets_for(version: tuple[int, int]) -> GoOffsets | None:
    """The table's offsets for a Go release, None when it has no row (use DWARF)."""
    labels = _G_LABELS.get(version)
    return None if labels is None else GoOffsets(_G_M, _M_CURG, labels, form_for(version))


def covered() -> list[tuple[int, int]]:
    """The releases the table covers."""
    return sorted(_G_LABELS)

"""The names section of a bundle: each symbol's outer-frame name, precomputed where it differs."""

from __future__ import annotations

import pytest

from fleetprof.symbolize.extents import CodeExtents, _build
from fleetprof.symbolize.outer_names import OuterNames, encode_outer_names, outer_name

RAW = [
    b"main",
    b"_ZN2ns3fooEi",
    b"_ZN2ns3fooEi.cold",
    b"memcpy@@GLIBC_2.14",
    b"helper.constprop.0",
    b".cold",
    b"_ZN4core3fmt5write17h0123456789abcdefE",
]


def extents() -> CodeExtents:
    return _build([(0, 0x10000)], {0x100 * (i + 1): (0x10, name) for i, name in enumerate(RAW)})


def test_each_symbol_is_shown_as_outer_name_says() -> None:
    ext = extents()
    names = OuterNames(encode_outer_names(ext), len(ext.starts))
    shown = names.names(list(range(len(ext.starts))))
    for index, got in enumerate(shown):
        raw = ext.name_at(index).partition("@")[0]
        assert (raw if got is None else got) == outer_name(raw)
    assert shown[0] is None and shown[1] == "ns::foo(int)" and shown[2] == "ns::foo(int)"
    assert shown[3] is None and shown[4] == "helper" and shown[5] == "" and shown[6] == "core::fmt::write"


def test_a_section_of_another_file_is_refused() -> None:
    ext = extents()
    data = encode_outer_names(ext)
    with pytest.raises(ValueError, match="size mismatch"):
        OuterNames(data, len(ext.starts) + 1)
    with pytest.raises(ValueError, match="truncated"):
        OuterNames(data[:8], len(ext.starts))
    with pytest.raises(ValueError, match="unterminated"):
        OuterNames(data[:-1] + b"x", len(ext.starts))


def test_an_offset_past_the_text_names_nothing() -> None:
    ext = extents()
    data = bytearray(encode_outer_names(ext))
    data[16 + 4 : 16 + 8] = (1 << 20).to_bytes(4, "little")  # symbol 1's name far past the text
    names = OuterNames(bytes(data), len(ext.starts))
    assert names.names([1, 2]) == ["", "ns::foo(int)"]


def test_bytes_that_are_not_utf8_are_replaced() -> None:
    ext = extents()
    data = encode_outer_names(ext).replace(b"ns::foo(int)", b"ns::f\xffo(int)", 1)
    names = OuterNames(data, len(ext.starts))
    assert names.names([0, 1]) == [None, "ns::f\ufffdo(int)"]

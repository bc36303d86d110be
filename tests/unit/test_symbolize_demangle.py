"""Demangling: C++ (as addr2line -C prints it), legacy Rust without its hash, Rust v0, plain C names and
garbage (both unchanged): each input asserts its own answer."""

from __future__ import annotations

import pytest

from fleetprof.symbolize.demangle import demangle


@pytest.mark.parametrize(
    ("mangled", "expected"),
    [
        ("_Z3fooi", "foo(int)"),
        ("_ZN5outer5inner4workEi", "outer::inner::work(int)"),
        ("_ZNK5outer5inner3BoxIlE5twiceEl", "outer::inner::Box<long>::twice(long) const"),
        ("_ZN5outer5inner4workEi.cold", "outer::inner::work(int) [clone .cold]"),
        (
            "_ZZ10use_lambdaRSt6vectorIiSaIiEEENKUliE_clEi",
            "use_lambda(std::vector<int, std::allocator<int> >&)::{lambda(int)#1}::operator()(int) const",
        ),
        ("_ZNSt6vectorIiSaIiEED2Ev", "std::vector<int, std::allocator<int> >::~vector()"),
        ("_Z3fooi@@LIB_1.0", "foo(int)@@LIB_1.0"),
        ("_ZN1a1bE", "a::b"),
        ("_ZN1a1bEv", "a::b()"),
    ],
)
def test_cxx(mangled: str, expected: str) -> None:
    assert demangle(mangled) == expected


@pytest.mark.parametrize(
    ("mangled", "expected"),
    [
        ("_ZN1r12closure_user17h8ab68816c8f5a632E", "r::closure_user"),
        (
            "_ZN1r12closure_user28_$u7b$$u7b$closure$u7d$$u7d$17hd7df4ec18f8517a2E",
            "r::closure_user::{{closure}}",
        ),
        (
            "_ZN49_$LT$r..shapes..Sq$u20$as$u20$r..shapes..Area$GT$4area17h271766875cdb4dfeE",
            "<r::shapes::Sq as r::shapes::Area>::area",
        ),
        (
            "_ZN102_$LT$core..iter..adapters..map..Map$LT$I$C$F$GT$$u20$as$u20$core..iter..traits..iterator.."
            "Iterator$GT$4fold17h5d789dd261967ce3E",
            "<core::iter::adapters::map::Map<I,F> as core::iter::traits::iterator::Iterator>::fold",
        ),
        ("_ZN4core3ptr13drop_in_place17h0123456789abcdefE.llvm.1234567", "core::ptr::drop_in_place"),
        ("_ZN3std2rt10lang_start17h0123456789abcdefE", "std::rt::lang_start"),
        ("_ZN13$RF$mut$u20$T3foo17h0123456789abcdefE", "&mut T::foo"),
    ],
)
def test_rust_legacy(mangled: str, expected: str) -> None:
    assert demangle(mangled) == expected


@pytest.mark.parametrize(
    ("mangled", "expected"),
    [
        ("_RNvC6_123foo3bar", "123foo::bar"),
        ("_RNvCs6GmmlP4bgsG_1r12closure_user", "r::closure_user"),
        ("_RINvNtCs6GmmlP4bgsG_1r6shapes7genericNtB2_2SqEB4_", "r::shapes::generic::<r::shapes::Sq>"),
        ("_RNvXNtCs6GmmlP4bgsG_1r6shapesNtB2_2SqNtB2_4Area4area", "<r::shapes::Sq as r::shapes::Area>::area"),
        ("_RNCNvCs6GmmlP4bgsG_1r12closure_user0B3_", "r::closure_user::{closure#0}"),
    ],
)
def test_rust_v0(mangled: str, expected: str) -> None:
    assert demangle(mangled) == expected


@pytest.mark.parametrize(
    "name", ["main", "strlen", "memcpy@GLIBC_2.2.5", "__libc_start_main", "_start", "_GLOBAL__sub_I_a.cpp"]
)
def test_plain_c_names_are_unchanged(name: str) -> None:
    assert demangle(name) == name


@pytest.mark.parametrize(
    "name", ["", "_Z", "_Zbad", "_ZN3foo", "_ZN1a1b", "_R", "_RXYZ", "_RNvC", "_ZN3foo17h0123E"]
)
def test_garbage_is_unchanged(name: str) -> None:
    assert demangle(name) == name

"""The hand-written Perl layouts table against the compiler: offsetof() over the CORE headers of the
installed perl (libperl5.36 ships them in /usr/lib/x86_64-linux-gnu/perl/5.36/CORE)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fleetprof.interpreters.perl import layouts
from fleetprof.interpreters.perl.layouts import SUPPORTED, PerlLayout, layout_for, supported_text
from tests.conftest import compile_c

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "perl" / "offsets_probe.c"
PERL = shutil.which("perl")
# Probe name -> the module constant it must equal.
CONSTANTS = {
    name: getattr(layouts, name)
    for name in (
        "CXTYPEMASK",
        "CXt_NULL",
        "CXt_SUB",
        "CXt_FORMAT",
        "CXt_EVAL",
        "CXp_MULTICALL",
        "CXp_SUB_RE_FAKE",
        "CXp_EVALBLOCK",
        "CXp_TRY",
        "CXp_REAL",
        "OP_REQUIRE",
        "PERLSI_MAIN",
        "PERLSI_SORT",
        "PERLSI_MULTICALL",
        "CVf_NAMED",
        "CVf_ANON",
        "CVf_ISXSUB",
        "SVf_OOK",
        "SVTYPEMASK",
        "SVt_PVGV",
        "SVt_PVHV",
        "SVt_PVCV",
        "SVt_PVFM",
    )
}
# Row fields that are not struct offsets.
UNPROBED = {"version", "source"}


def _ccopts() -> tuple[list[str], Path | None]:
    """The compiler flags of the installed perl and its CORE directory (None when the headers are absent)."""
    if PERL is None:
        return [], None
    found = subprocess.run(
        [PERL, "-MConfig", "-e", "print qq{$Config{ccflags}\\n$Config{archlibexp}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        return [], None
    flags, archlib = found.stdout.rsplit("\n", 1)
    core = Path(archlib) / "CORE"
    return [*flags.split(), f"-I{core}"], core if (core / "perl.h").exists() else None


FLAGS, CORE = _ccopts()


@pytest.mark.skipif(PERL is None, reason="perl is not installed")
@pytest.mark.skipif(
    CORE is None, reason="perl's CORE headers are not installed (apt-get install libperl5.36)"
)
def test_layout_row_matches_offsetof(build_dir: Path) -> None:
    """Each field of the installed version's row, and each constant, equals the compiler's value from
    the interpreter's own headers; the build is threaded (cop_file is a char *)."""
    binary = compile_c(PROBE.read_text(), build_dir / "perl_probe", "-O0", *FLAGS)
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    probed = {key: int(value) for key, value in (line.split() for line in output.splitlines())}
    version = (probed["PERL_REVISION"], probed["PERL_VERSION"])
    layout = layout_for(*version)
    assert layout is not None, f"Perl {version} headers installed but no layout row"
    assert probed["USE_ITHREADS"] == 1, "an unthreaded perl keeps cop_filegv: no row covers it"
    fields = {key: probed[key] for key in PerlLayout.__dataclass_fields__ if key in probed}
    assert set(PerlLayout.__dataclass_fields__) - set(fields) == UNPROBED
    assert fields == {key: getattr(layout, key) for key in fields}
    assert probed["cx_format_cv"] == layout.cx_sub_cv, "formats read their CV from the sub's slot"
    assert {key: probed[key] for key in CONSTANTS} == CONSTANTS
    assert layout.source == "headers"


def test_rows_cover_the_documented_versions() -> None:
    """5.36 has a row whose read sizes cover its fields; other versions have none."""
    assert SUPPORTED == ((5, 36),)
    assert supported_text() == "5.36"
    assert layout_for(5, 34) is None and layout_for(5, 38) is None
    layout = layout_for(5, 36)
    assert layout is not None
    assert layout.interp_read_size == 24  # Icurcop @208 .. Icurstackinfo @224
    assert layout.si_read_size == 48 and layout.cx_read_size == 96

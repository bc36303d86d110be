"""The hand-written Zend layouts table against the compiler: offsetof() over every PHP header tree on
the machine (/usr/include/php/*, from phpX.Y-dev; more roots in FLEETPROF_PHP_INCLUDE, `:`-separated)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from fleetprof.interpreters.php.layouts import (
    SUPPORTED,
    ZEND_CALL_CLOSURE,
    ZEND_CALL_CODE,
    ZEND_CALL_TOP,
    ZEND_EVAL_CODE,
    ZEND_INTERNAL_FUNCTION,
    ZEND_USER_FUNCTION,
    PhpLayout,
    layout_for,
    supported_text,
)
from tests.conftest import compile_c

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "php" / "offsets_probe.c"
CONSTANTS = {
    "ZEND_CALL_CODE": ZEND_CALL_CODE,
    "ZEND_CALL_TOP": ZEND_CALL_TOP,
    "ZEND_CALL_CLOSURE": ZEND_CALL_CLOSURE,
    "ZEND_INTERNAL_FUNCTION": ZEND_INTERNAL_FUNCTION,
    "ZEND_USER_FUNCTION": ZEND_USER_FUNCTION,
    "ZEND_EVAL_CODE": ZEND_EVAL_CODE,
    "ZTS": 0,
}


def _header_trees() -> list[Path]:
    """Every PHP include root (the directory holding main/php_version.h) known to this machine."""
    roots = [Path(p) for p in os.environ.get("FLEETPROF_PHP_INCLUDE", "").split(os.pathsep) if p]
    roots += sorted(Path("/usr/include/php").glob("*"))
    return [root for root in roots if (root / "main" / "php_version.h").exists()]


def _version(root: Path) -> tuple[int, int]:
    text = (root / "main" / "php_version.h").read_text()
    found = re.search(r'#define PHP_VERSION "(\d+)\.(\d+)\.', text)
    assert found is not None, f"{root}: no PHP_VERSION"
    return int(found.group(1)), int(found.group(2))


TREES = _header_trees()


@pytest.mark.skipif(not TREES, reason="no PHP headers installed (apt-get install php8.2-dev)")
@pytest.mark.parametrize("root", TREES, ids=str)
def test_layout_rows_match_offsetof(root: Path, build_dir: Path) -> None:
    """Each field of the version's row equals offsetof() over that version's own headers."""
    version = _version(root)
    layout = layout_for(*version)
    assert layout is not None, f"PHP {version} headers installed but no layout row"
    includes = [f"-I{root / sub}" for sub in ("", "main", "Zend", "TSRM")]
    binary = compile_c(PROBE.read_text(), build_dir / f"php_probe_{version[0]}{version[1]}", *includes)
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    probed = {name: int(value) for name, value in (line.split() for line in output.splitlines())}
    fields = {name: probed[name] for name in PhpLayout.__dataclass_fields__ if name in probed}
    assert fields == {name: getattr(layout, name) for name in fields}
    assert len(fields) == 14
    assert {name: probed[name] for name in CONSTANTS} == CONSTANTS
    assert layout.source == "headers", "a row checked against headers should say so"


def test_rows_cover_the_documented_versions() -> None:
    """7.4 and 8.0-8.4 have rows; reads cover the fields; other versions have none."""
    assert SUPPORTED == ((7, 4), (8, 0), (8, 1), (8, 2), (8, 3), (8, 4))
    assert supported_text() == "7.4, 8.0-8.4"
    assert layout_for(7, 3) is None and layout_for(8, 5) is None
    for version in SUPPORTED:
        layout = layout_for(*version)
        assert layout is not None
        assert layout.ex_read_size == 56
        assert layout.fn_read_size >= layout.fn_line_start + 4

"""What every interpreter engine's discovery must say of what is not its engine (PHP, Ruby, Perl share
interpreters/engine.py): a non-engine file is None, a process without the engine gets the runtime's
NOT_<RUNTIME> (no marker frame is due), a gone pid a one-line reason."""

from __future__ import annotations

import subprocess

import pytest

from fleetprof.interpreters.perl.discovery import inspect_perl_binary
from fleetprof.interpreters.perl.process import NOT_PERL, find_perl
from fleetprof.interpreters.php.discovery import inspect_php_binary
from fleetprof.interpreters.php.process import NOT_PHP, find_php
from fleetprof.interpreters.ruby.discovery import inspect_ruby_binary
from fleetprof.interpreters.ruby.process import NOT_RUBY, find_ruby

ENGINES = {
    "php": (inspect_php_binary, find_php, NOT_PHP, "is_php"),
    "ruby": (inspect_ruby_binary, find_ruby, NOT_RUBY, "is_ruby"),
    "perl": (inspect_perl_binary, find_perl, NOT_PERL, "is_perl"),
}


@pytest.mark.parametrize("runtime", list(ENGINES))
def test_non_engine_files_and_processes(runtime: str) -> None:
    inspect, find, not_found, flag = ENGINES[runtime]
    assert inspect("/bin/sleep") is None
    assert inspect(f"/nonexistent/{runtime}") is None
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        try:
            assert find(sleeper.pid) == not_found
        finally:
            sleeper.kill()
    assert getattr(not_found, flag) is False and "\n" not in not_found.reason
    gone = find(2**22 + 1)
    assert type(gone) is type(not_found) and not getattr(gone, flag)
    assert gone.reason.startswith("process ")  # type: ignore[attr-defined]

"""Symbolization of sampled (code, lasti, checksum) triples from live processes: cache, checksum, exits,
reused pids."""

from __future__ import annotations

import pytest
from test_python_support import chain_lines, interpreters, parked_chain

from fleetprof.interpreters.python import symbolizer as symbolizer_module
from fleetprof.interpreters.python.procinfo import PY_LASTI_NONE
from fleetprof.interpreters.python.symbolizer import UNKNOWN_FUNCTION, PythonSymbolizer
from fleetprof.interpreters.python.walker import walk_thread_stacks

LINES = chain_lines()


def _some(minors: tuple[int, ...]) -> list:
    found = [i for i in interpreters() if i.minor in minors and i.library is not None]
    return [pytest.param(i, id=i.name) for i in found] or [pytest.param(None, marks=pytest.mark.skip("none"))]


@pytest.mark.parametrize("interpreter", _some((9, 12)))
def test_symbolizer_for_live_processes(interpreter, monkeypatch: pytest.MonkeyPatch) -> None:
    symbolizer = PythonSymbolizer()
    with parked_chain(interpreter) as child:
        main = next(s for s in walk_thread_stacks(child.pid) if s.thread_id == child.threads["MainThread"])
        hot = main.raw[1]
        frame = symbolizer.symbolize(child.pid, hot.code, hot.lasti, hot.checksum)
        assert (frame.function, frame.line) == ("hot", LINES["hot"])
        assert frame.folded_name().startswith("hot (") and frame.folded_name().endswith(f":{LINES['hot']})")
        assert symbolizer.symbolize(child.pid, hot.code, PY_LASTI_NONE, hot.checksum).line == frame.start_line
        assert (
            symbolizer.symbolize(child.pid, hot.code, hot.lasti, hot.checksum + 1).function
            == UNKNOWN_FUNCTION
        )
        assert symbolizer.symbolize(child.pid, 0x10, 0, 0).function == UNKNOWN_FUNCTION
        assert symbolizer.stats == {"checksum mismatch": 1, "code object unreadable": 1}
        # A different process under the same pid (same pid, new start time) starts afresh.
        first = symbolizer._for_pid(child.pid)
        monkeypatch.setattr(symbolizer_module, "RECHECK_SECONDS", 0.0)
        real_start_time = symbolizer_module.process_start_time
        monkeypatch.setattr(
            symbolizer_module, "process_start_time", lambda pid: (real_start_time(pid) or 0) + 1
        )
        assert symbolizer._for_pid(child.pid) is not first
        assert symbolizer.symbolize(child.pid, hot.code, hot.lasti, hot.checksum).function == "hot"
    assert symbolizer.symbolize(child.pid, hot.code, hot.lasti, hot.checksum).function == UNKNOWN_FUNCTION
    assert symbolizer.stats["no supported CPython in the process"] == 1
    symbolizer.forget(child.pid)
    assert child.pid not in symbolizer._processes

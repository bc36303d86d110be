"""speedscope output: schema validation (our schema, and speedscope's own from its npm package)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_output_profiles import PERIOD_HZ, START_NS, empty_profile, rich_profile, wide_profile

from fleetprof.output import get_format
from fleetprof.output.speedscope import SCHEMA_URL, to_speedscope
from fleetprof.profile.model import Profile

SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "output" / "speedscope-file-format.schema.json"
SPEEDSCOPE_SCHEMA = (
    Path(__file__).resolve().parents[2]
    / "tools/npm/node_modules/speedscope/dist/release/file-format-schema.json"
)
PERIOD_NS = 1_000_000_000 // PERIOD_HZ


def write(profile: Profile) -> dict[str, Any]:
    stream = io.BytesIO()
    get_format("speedscope").write(profile, stream)
    return json.loads(stream.getvalue().decode("utf-8"))


def check_semantics(doc: dict[str, Any]) -> None:
    frames = doc["shared"]["frames"]
    for profile in doc["profiles"]:
        assert len(profile["samples"]) == len(profile["weights"])
        assert profile["endValue"] - profile["startValue"] == sum(profile["weights"])
        assert all(0 <= i < len(frames) for stack in profile["samples"] for i in stack)


@pytest.mark.parametrize("make", [rich_profile, empty_profile, lambda: wide_profile(300)])
def test_validates_against_schema(make) -> None:
    doc = write(make())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    check_semantics(doc)


def test_schema_rejects_broken_files() -> None:
    schema = json.loads(SCHEMA.read_text())
    doc = write(rich_profile())
    doc["profiles"][0]["samples"][0].append(-1)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_one_profile_per_process_hottest_first() -> None:
    doc = write(rich_profile())
    assert doc["$schema"] == SCHEMA_URL
    assert doc["activeProfileIndex"] == 0
    names = [p["name"] for p in doc["profiles"]]
    assert names[:2] == ["app (100)", "python3 (200)"]  # 10 samples, then 5
    assert len(names) == 3
    app = doc["profiles"][0]
    assert app["unit"] == "nanoseconds"
    assert app["endValue"] == 10 * PERIOD_NS


def test_frames_and_stacks() -> None:
    doc = write(rich_profile())
    frames = doc["shared"]["frames"]
    names = [f["name"] for f in frames]
    assert len(names) == len({(f["name"], f.get("file"), f.get("line")) for f in frames})
    assert "app" not in names  # the process is the profile, not a frame
    python = doc["profiles"][1]
    (stack,) = {tuple(s) for s in python["samples"]}
    assert [frames[i] for i in stack] == [
        {"name": "_start [python3.11]"},
        {"name": "<module>", "file": "/app/main.py", "line": 12},
        {"name": "work;semi\nline naïve_λ", "file": "/app/w.py", "line": 7},
    ]
    app = doc["profiles"][0]
    leaves = {frames[s[-1]]["name"] for s in app["samples"]}
    assert leaves == {"ksys_read_[k]", "[unwind: no mapping]", "libc.so.6+0x41a2b [libc.so.6]"}
    main = next(f for f in frames if f["name"] == "main [app]")
    assert main == {"name": "main [app]", "file": "app.c", "line": 10}


def test_samples_in_time_order() -> None:
    profile = rich_profile()
    a, b, untimed = profile.samples[0], profile.samples[3], profile.samples[2]
    a.timestamps_ns = [START_NS + 30, START_NS + 10, START_NS + 50]
    b.timestamps_ns = [START_NS + 20, START_NS + 40, START_NS + 60, START_NS + 70]
    profile.samples = [a, b, untimed]
    doc = to_speedscope(profile)
    (app,) = doc["profiles"]
    frames = doc["shared"]["frames"]
    leaves = [frames[s[-1]]["name"] for s in app["samples"]]
    read, error, unsym = "ksys_read_[k]", "[unwind: no mapping]", "libc.so.6+0x41a2b [libc.so.6]"
    # the untimed sample weighs its whole count at the profile start; b's last two neighbours merge
    assert leaves == [error, read, unsym, read, unsym, read, unsym]
    assert app["weights"] == [PERIOD_NS * w for w in (1, 1, 1, 1, 1, 1, 2)]


def test_validates_against_speedscope_own_schema() -> None:
    """speedscope's npm package ships its file format's schema; `make setup` installs it in tools/npm."""
    if not SPEEDSCOPE_SCHEMA.is_file():
        pytest.fail(f"{SPEEDSCOPE_SCHEMA} is not installed (make setup installs it: npm ci in tools/npm)")
    schema = json.loads(SPEEDSCOPE_SCHEMA.read_text())
    for profile in (rich_profile(), empty_profile(), wide_profile(100)):
        jsonschema.validate(write(profile), schema)

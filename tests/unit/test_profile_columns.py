"""Profiles as columns (profile/columns.py): a Profile's columns give it back; columns joined keep every
sample; the server's merge per host joins columns like objects."""

from __future__ import annotations

import dataclasses

from test_output_profiles import rich_profile

from fleetprof.profile.columns import ColumnarProfile, as_columns, concat
from fleetprof.server.ingest import merge_by_host


def test_a_profile_round_trips_through_columns() -> None:
    profile = rich_profile()
    columns = ColumnarProfile.from_profile(profile)
    assert len(columns) == len(profile.samples) and columns.total == profile.total
    assert columns.to_profile() == profile
    assert as_columns(columns) is columns


def test_joined_columns_keep_every_sample() -> None:
    a, b = rich_profile(), rich_profile()
    b.samples = b.samples[1:]
    joined = concat([as_columns(a), as_columns(b)], as_columns(a)).to_profile()
    assert joined.samples == a.samples + b.samples
    assert concat([], as_columns(a)).to_profile().samples == []


def test_merge_by_host_joins_columns_like_objects() -> None:
    first = rich_profile()
    second = dataclasses.replace(rich_profile(), start_time_ns=first.start_time_ns + 10**9)
    objects = merge_by_host([first, second])
    columns = merge_by_host([as_columns(first), as_columns(second)])
    assert len(objects) == len(columns) == 1
    assert isinstance(columns[0], ColumnarProfile)
    assert columns[0].to_profile() == objects[0]

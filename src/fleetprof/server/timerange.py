"""Time ranges as users write them: durations (`15m`, `2h`, `7d`), instants (epoch s/ms/ns, ISO 8601,
`now`, `now-1h`); shared by the query API and `fleetprof export`/`top --server` (no web dependencies)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_UNITS |= {"d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d|w)?\s*$")
_NOW = re.compile(r"^\s*now\s*(?:-\s*(.+))?$", re.IGNORECASE)
DEFAULT_SINCE_NS = 15 * 60 * 10**9
MAX_SPAN_NS = 3650 * 86_400 * 10**9


class InputError(ValueError):
    """A duration, instant, range or filter that can't be used; the message is one line."""


def parse_duration(text: str) -> int:
    """Nanoseconds of `15m`, `90s`, `2h`, `7d`, `1w`, `500ms` (a bare number is seconds)."""
    match = _DURATION.match(text or "")
    if not match:
        raise InputError(f"bad duration {text!r} (examples: 30s, 15m, 2h, 7d)")
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if value <= 0 or value > MAX_SPAN_NS:
        raise InputError(f"duration {text!r} must be positive and at most ten years")
    return int(value)


def parse_instant(text: str, now_ns: int | None = None) -> int:
    """Epoch ns of an instant: `now`, `now-15m`, epoch seconds/ms/ns, or ISO 8601 (UTC without a zone)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    text = (text or "").strip()
    relative = _NOW.match(text)
    if relative:
        return now_ns - (parse_duration(relative.group(1)) if relative.group(1) else 0)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        value = float(text)
        if value < 1e11:  # seconds
            return int(value * 1e9)
        if value < 1e14:  # milliseconds
            return int(value * 1e6)
        if value < 1e17:  # microseconds
            return int(value * 1e3)
        return int(text.split(".")[0])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"bad time {text!r} (ISO 8601, epoch seconds, or now-15m)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 10**9 + parsed.microsecond * 1000


def resolve_range(
    since: str | None = None, start: str | None = None, end: str | None = None, now_ns: int | None = None
) -> tuple[int, int]:
    """[start, end) in epoch ns from `since` or `start`/`end`; the last 15 minutes when none is given."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if since and (start or end):
        raise InputError("give either since or start/end, not both")
    if since:
        return now_ns - parse_duration(since), now_ns
    end_ns = parse_instant(end, now_ns) if end else now_ns
    start_ns = parse_instant(start, now_ns) if start else end_ns - DEFAULT_SINCE_NS
    if end_ns <= start_ns:
        raise InputError("the time range is empty (end must be after start)")
    if end_ns - start_ns > MAX_SPAN_NS:
        raise InputError("the time range is longer than ten years")
    return start_ns, end_ns


def parse_filters(items: list[str] | None) -> dict[str, list[str]]:
    """`KEY=VALUE` strings grouped by key (values of one key are OR'ed)."""
    out: dict[str, list[str]] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"bad filter {item!r} (KEY=VALUE, e.g. host=web-1)")
        out.setdefault(key.strip(), []).append(value)
    return out

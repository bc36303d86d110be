"""What a query looks at: a time range, label filters and an optional function, as SQL parameters only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Filter key -> (samples column, ClickHouse element type). Keys are fixed; values only travel as parameters.
FILTER_COLUMNS: dict[str, tuple[str, str]] = {
    "host": ("host", "String"),
    "host_id": ("host_id", "String"),
    "process": ("process", "String"),
    "pid": ("pid", "UInt32"),
    "thread": ("thread", "String"),
    "tid": ("tid", "UInt32"),
    "container": ("container", "String"),
    "pod": ("pod_uid", "String"),
    "executable": ("executable", "String"),
}


LABEL_FILTER = "label."  # `label.KEY`: a program label (Go pprof label) of the samples


class QueryError(ValueError):
    """A query was asked with bad input; the message is one line meant for the user."""


def is_filter_key(key: str) -> bool:
    """Whether `key` names a filter: a fixed column, or `label.KEY` for a program label."""
    return key in FILTER_COLUMNS or (key.startswith(LABEL_FILTER) and len(key) > len(LABEL_FILTER))


def known_filters() -> str:
    """The filter keys, for error messages."""
    return ", ".join([*FILTER_COLUMNS, f"{LABEL_FILTER}KEY"])


def label_column(key: str, param: str, params: dict[str, Any]) -> str:
    """The SQL of program label `key` (its name passed as parameter `param`, added to `params`)."""
    params[param] = key
    return f"labels[{{{param}:String}}]"


@dataclass(frozen=True)
class Selection:
    """Samples in [start_ns, end_ns) matching every filter (values OR'ed per key) and the function if set."""

    start_ns: int
    end_ns: int
    filters: dict[str, list[str]] = field(default_factory=dict)
    function: str | None = None

    def where(self, store: Any, prefix: str = "") -> tuple[str, dict[str, Any]]:
        """A WHERE condition over the samples table and its parameters (names start with `prefix`)."""
        if self.end_ns <= self.start_ns:
            raise QueryError("the time range is empty (end must be after start)")
        params: dict[str, Any] = {
            f"{prefix}start": self.start_ns // 1_000_000,
            f"{prefix}end": self.end_ns // 1_000_000,
        }
        conds = [
            f"ts >= fromUnixTimestamp64Milli({{{prefix}start:Int64}}, 'UTC')",
            f"ts < fromUnixTimestamp64Milli({{{prefix}end:Int64}}, 'UTC')",
        ]
        for number, key in enumerate(sorted(self.filters)):
            values = self.filters[key]
            if not is_filter_key(key):
                raise QueryError(f"unknown filter {key!r} (known: {known_filters()})")
            if not values:
                continue
            if key.startswith(LABEL_FILTER):
                name = f"{prefix}f_label{number}"
                params[name] = [str(v) for v in values]
                column = label_column(key[len(LABEL_FILTER) :], f"{name}_key", params)
                conds.append(f"{column} IN {{{name}:Array(String)}}")
                continue
            column, kind = FILTER_COLUMNS[key]
            name = f"{prefix}f_{key}"
            if kind == "UInt32":
                try:
                    params[name] = [int(v) for v in values]
                except ValueError:
                    raise QueryError(f"filter {key} takes numbers, not {values!r}") from None
            else:
                params[name] = [str(v) for v in values]
            conds.append(f"{column} IN {{{name}:Array({kind})}}")
        if self.function:
            params[f"{prefix}fn"] = self.function
            conds.append(f"stack_id GLOBAL IN ({stacks_with_function(store, f'{prefix}fn')})")
        return " AND ".join(conds), params


def stacks_with_function(store: Any, param: str) -> str:
    """Subquery: ids of stacks with a frame named `{param}`, directly or through its symbols."""
    value = f"{{{param}:String}}"
    raw_name = "concat(basename(module), '+0x', replaceRegexpOne(lower(hex(address)), '^0+(.)', '\\\\1'))"
    symbolized = f"SELECT file_id, address FROM {store.t('symbols')} WHERE has(functions, {value})"
    frames = (
        f"SELECT groupArray(frame_id) FROM {store.t('frames')} WHERE function = {value} "
        f"OR (function = '' AND {raw_name} = {value}) "
        f"OR (function = '' AND (file_id, address) GLOBAL IN ({symbolized}))"
    )
    return f"SELECT stack_id FROM {store.t('stacks')} WHERE hasAny(frame_ids, ({frames}))"

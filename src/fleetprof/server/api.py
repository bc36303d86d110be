"""The read-only query API under /api/v1: flame graph, sandwich, top functions, timeline, diff, export, hosts
and filter value suggestions. Every value a user gives reaches the store as a query parameter only."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from fleetprof.query import CostModel, Selection, diff, export_profile, flame_graph, sandwich, timeline
from fleetprof.query import top_functions as query_top
from fleetprof.query.selection import (
    FILTER_COLUMNS,
    LABEL_FILTER,
    QueryError,
    is_filter_key,
    known_filters,
    label_column,
)
from fleetprof.server.timerange import InputError, parse_filters, resolve_range

EXPORT_TYPES = {
    "pprof": "application/octet-stream",
    "folded": "text/plain; charset=utf-8",
    "speedscope": "application/json",
    "otlp": "application/x-protobuf",
}
Values = Annotated[list[str] | None, Query()]
SHAPE_DOC = (
    "nested: children lists; columns: `strings` and one array per field (name, kind, module, file as "
    "indexes into strings; line, depth, self, total) over the nodes in preorder, children largest first"
)
Exact = Annotated[bool, Query(description="read every sample, never the sampled copies long ranges use")]


@dataclass(frozen=True)
class SelectionParams:
    """The query parameters every read route takes, before they become a Selection."""

    since: str | None
    start: str | None
    end: str | None
    filters: dict[str, list[str]]
    function: str | None

    def selection(self) -> Selection:
        """The Selection these parameters describe (400 for bad times or filters)."""
        start_ns, end_ns = resolve_range(self.since, self.start, self.end)
        return Selection(start_ns, end_ns, self.filters, self.function or None)


def selection_params(
    since: Annotated[str | None, Query(description="duration back from now: 30s, 15m, 2h, 7d")] = None,
    start: Annotated[str | None, Query(description="ISO 8601, epoch s/ms/ns, or now-1h")] = None,
    end: Annotated[str | None, Query(description="ISO 8601, epoch s/ms/ns, or now (default)")] = None,
    host: Values = None,
    host_id: Values = None,
    process: Values = None,
    pid: Values = None,
    thread: Values = None,
    tid: Values = None,
    container: Values = None,
    pod: Values = None,
    executable: Values = None,
    filter: Annotated[list[str] | None, Query(description="KEY=VALUE, repeatable (same keys)")] = None,
    function: Annotated[str | None, Query(description="only stacks containing this function")] = None,
) -> SelectionParams:
    """Time range, filters (values OR'ed per key, keys AND'ed) and function from the query string."""
    filters = parse_filters(filter)
    given = {"host": host, "host_id": host_id, "process": process, "pid": pid, "thread": thread, "tid": tid}
    given |= {"container": container, "pod": pod, "executable": executable}
    for key, values in given.items():
        if values:
            filters.setdefault(key, []).extend(values)
    unknown = sorted(key for key in filters if not is_filter_key(key))
    if unknown:
        raise InputError(f"unknown filter {unknown[0]!r} (known: {known_filters()})")
    return SelectionParams(since, start, end, filters, function)


def cost_model(
    watts_per_core: Annotated[float, Query(gt=0)] = CostModel.watts_per_core,
    pue: Annotated[float, Query(gt=0)] = CostModel.pue,
    co2_tons_per_kwh: Annotated[float, Query(ge=0)] = CostModel.co2_tons_per_kwh,
    cost_per_core_hour: Annotated[float, Query(ge=0)] = CostModel.cost_per_core_hour,
) -> CostModel:
    """The CO2 and cost settings (Elastic's defaults)."""
    return CostModel(watts_per_core, pue, co2_tons_per_kwh, cost_per_core_hour)


Params = Annotated[SelectionParams, Depends(selection_params)]


def _store(request: Request) -> Any:
    return request.app.state.store


def build_router() -> APIRouter:
    """The /api/v1 read routes."""
    router = APIRouter(prefix="/api/v1", tags=["query"])

    @router.get("/flamegraph", summary="Flame graph tree of a selection")
    def get_flamegraph(
        request: Request,
        params: Params,
        exact: Exact = False,
        min_fraction: Annotated[float, Query(ge=0, le=1, description="leave out smaller nodes")] = 1e-4,
        shape: Annotated[Literal["nested", "columns"], Query(description=SHAPE_DOC)] = "nested",
    ) -> dict[str, Any]:
        """Nested nodes (name, kind, module, file, line, self, total, children) from the root, or the same
        nodes as columns (what the web UI reads: no object per node to parse)."""
        sel = params.selection()
        return _tree(flame_graph(_store(request), sel, min_fraction, long_range=not exact, shape=shape))

    @router.get("/sandwich", summary="Callers and callees of one function")
    def get_sandwich(
        request: Request, params: Params, function: Annotated[str, Query(min_length=1)], exact: Exact = False
    ) -> dict[str, Any]:
        """Callers tree (inverted) and callees tree of `function` within the selection."""
        return _tree(sandwich(_store(request), params.selection(), function, long_range=not exact))

    @router.get("/top", summary="Top functions by self samples, with CO2 and cost")
    def get_top(
        request: Request,
        params: Params,
        cost: Annotated[CostModel, Depends(cost_model)],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
        exact: Exact = False,
    ) -> dict[str, Any]:
        """Rows with self/total samples and %, CPU seconds, CO2 and cost (also annualized)."""
        sel = params.selection()
        rows = query_top(_store(request), sel, cost, limit, long_range=not exact)
        return {"start_ns": sel.start_ns, "end_ns": sel.end_ns, "functions": rows}

    @router.get("/timeline", summary="Sample counts over time, grouped")
    def get_timeline(
        request: Request,
        params: Params,
        group_by: str = "host",
        step_s: Annotated[int, Query(ge=0)] = 0,
        max_series: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        """Counts per time bucket for the largest groups (host, process, thread, container, executable)."""
        return timeline(_store(request), params.selection(), group_by, step_s, max_series)

    @router.get("/diff", summary="Differential flame graph and top-function deltas")
    def get_diff(
        request: Request,
        params: Params,
        cost: Annotated[CostModel, Depends(cost_model)],
        base_since: str | None = None,
        base_start: str | None = None,
        base_end: str | None = None,
        base_filter: Values = None,
        cmp_since: str | None = None,
        cmp_start: str | None = None,
        cmp_end: str | None = None,
        cmp_filter: Values = None,
        exact: Exact = False,
    ) -> dict[str, Any]:
        """Baseline vs comparison: each side's range (default: the common one) and extra KEY=VALUE filters
        on top of the common filters."""
        base = _side(params, base_since, base_start, base_end, base_filter)
        cmp = _side(params, cmp_since, cmp_start, cmp_end, cmp_filter)
        return _tree(diff(_store(request), base, cmp, cost, long_range=not exact))

    @router.get(
        "/export",
        summary="A selection as pprof, folded, speedscope or OTLP",
        response_class=Response,
        responses={200: {"content": {t: {} for t in EXPORT_TYPES.values()}}},
    )
    def get_export(request: Request, params: Params, format: str = "pprof") -> Response:
        """The selection's samples written by fleetprof.output's writer for `format`."""
        from fleetprof.output.registry import get_format

        name = format.strip().lower()
        if name not in EXPORT_TYPES:
            raise InputError(f"unknown export format {format!r} (known: {', '.join(EXPORT_TYPES)})")
        profile = export_profile(_store(request), params.selection())
        out = io.BytesIO()
        get_format(name).write(profile, out)
        suffix = get_format(name).suffix
        return Response(
            out.getvalue(),
            media_type=EXPORT_TYPES[name],
            headers={"Content-Disposition": f'attachment; filename="fleetprof{suffix}"'},
        )

    @router.get("/hosts", summary="Hosts that reported")
    def get_hosts(request: Request) -> dict[str, Any]:
        """Each host's identity, agent version, kernel, cores, last report and samples stored."""
        return {"hosts": _store(request).hosts()}

    @router.get("/values/{key}", summary="Suggestions for a filter's values")
    def get_values(
        request: Request,
        key: str,
        params: Params,
        prefix: str = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        """Values of filter `key` (or `function`) seen in the range, most samples first, matching `prefix`."""
        return {"key": key, "values": suggest(_store(request), key, params.selection(), prefix, limit)}

    return router


def _tree(answer: dict[str, Any]) -> Any:
    """A nested tree answer as JSON without pydantic, whose serializer refuses trees deeper than ~127 frames
    (real stacks are: a Python process's startup imports reach 200)."""
    return JSONResponse(answer)


def _side(
    common: SelectionParams, since: str | None, start: str | None, end: str | None, extra: list[str] | None
) -> Selection:
    """One side of a diff: its own range when given (else the common one), common filters plus its own."""
    filters = {k: list(v) for k, v in common.filters.items()}
    for key, values in parse_filters(extra).items():
        if not is_filter_key(key):
            raise InputError(f"unknown filter {key!r} (known: {known_filters()})")
        filters.setdefault(key, []).extend(values)
    if since or start or end:
        start_ns, end_ns = resolve_range(since, start, end)
    else:
        start_ns, end_ns = resolve_range(common.since, common.start, common.end)
    return Selection(start_ns, end_ns, filters, common.function or None)


def suggest(store: Any, key: str, sel: Selection, prefix: str, limit: int) -> list[dict[str, Any]]:
    """Values of a filter column in `sel` starting with `prefix` (function names: containing it; `label`:
    the program labels' keys)."""
    if key == "function":
        return _suggest_functions(store, prefix, limit)
    if key == "label":
        where, params = sel.where(store)
        params |= {"sugg_prefix": prefix, "sugg_limit": limit}
        return store.query(
            f"SELECT arrayJoin(mapKeys(labels)) AS value, sum(count) AS samples FROM {store.t('samples')} "
            f"WHERE {where} AND startsWith(value, {{sugg_prefix:String}}) "
            "GROUP BY value ORDER BY samples DESC, value LIMIT {sugg_limit:UInt32}",
            params,
        ).to_pylist()
    if not is_filter_key(key):
        raise QueryError(f"unknown filter {key!r} (known: function, {known_filters()})")
    where, params = sel.where(store)
    if key.startswith(LABEL_FILTER):  # the label's name travels as a parameter; samples without it: no value
        column = label_column(key[len(LABEL_FILTER) :], "sugg_label", params)
        where += " AND mapContains(labels, {sugg_label:String})"
    else:
        column = FILTER_COLUMNS[key][0]  # from the fixed table, never from the request
    params |= {"sugg_prefix": prefix, "sugg_limit": limit}
    table = store.query(
        f"SELECT toString({column}) AS value, sum(count) AS samples FROM {store.t('samples')} "
        f"WHERE {where} AND startsWith(toString({column}), {{sugg_prefix:String}}) "
        "GROUP BY value ORDER BY samples DESC, value LIMIT {sugg_limit:UInt32}",
        params,
    )
    return table.to_pylist()


def _suggest_functions(store: Any, text: str, limit: int) -> list[dict[str, Any]]:
    """Function names (host-named frames and central symbols) containing `text`, case-insensitively."""
    params = {"sugg_text": text, "sugg_limit": limit}
    table = store.query(
        "SELECT value FROM (SELECT function AS value FROM "
        f"{store.t('frames')} WHERE function != '' "
        "AND positionCaseInsensitiveUTF8(function, {sugg_text:String}) > 0 "
        f"UNION ALL SELECT arrayJoin(functions) AS value FROM {store.t('symbols')} "
        "WHERE arrayExists(f -> positionCaseInsensitiveUTF8(f, {sugg_text:String}) > 0, functions)) "
        "WHERE positionCaseInsensitiveUTF8(value, {sugg_text:String}) > 0 "
        "GROUP BY value ORDER BY length(value), value LIMIT {sugg_limit:UInt32}",
        params,
    )
    return [{"value": r["value"]} for r in table.to_pylist()]

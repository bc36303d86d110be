"""Queries over the store: flame graph, sandwich, top functions with CO2/cost, timeline, diff, export."""

from fleetprof.query.cost import CostModel
from fleetprof.query.diff import diff
from fleetprof.query.export import export_profile
from fleetprof.query.flame import flame_graph
from fleetprof.query.sandwich import sandwich
from fleetprof.query.selection import QueryError, Selection
from fleetprof.query.timeline import timeline
from fleetprof.query.top import top_functions

__all__ = [
    "CostModel",
    "QueryError",
    "Selection",
    "diff",
    "export_profile",
    "flame_graph",
    "sandwich",
    "timeline",
    "top_functions",
]

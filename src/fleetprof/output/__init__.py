"""Profile writers, one module per format behind the small `OutputFormat` interface.

fmt = get_format("pprof")            # or format_for_path("out.pb.gz")
with open(path, "wb") as stream:
    fmt.write(profile, stream)
"""

from fleetprof.output.base import OutputFormat
from fleetprof.output.registry import (
    FORMATS,
    UnknownFormatError,
    format_for_path,
    format_names,
    get_format,
)

__all__ = ["FORMATS", "OutputFormat", "UnknownFormatError", "format_for_path", "format_names", "get_format"]

"""``mlm-export search``: find models by task, bands, architecture, framework, size, place and time."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from rich.table import Table

from .. import mlm
from ..errors import MLMExportWarning, UsageError, first_line
from ._output import Output, add_output_flags, plain, printable
from ._paths import require_catalog

EPILOG = """examples:
  mlm-export search models/ --task semantic-segmentation --band red --band nir
  mlm-export search models/ --framework pytorch --max-parameters 30000000 --bbox 4,50,6,52
  mlm-export search postgresql://user@host/db --filter "\\"mlm:architecture\\" LIKE 'ResNet%'" --json
bands: --band X finds a model when X is the name or the common name of a band its inputs read: a band listed
  in mlm:input, or a band named inside an input band's expression (NDVI = (B08 - B04) / (B08 + B04) reads B08
  and B04, found as B08 or nir); names compare exactly, common names through the Item's band definitions.
list flags: --task and --band take a comma-separated list or repeat (--band red --band nir = --band red,nir);
  every value must match (AND).
queryables for --filter: id, collection, datetime, mlm:name, mlm:architecture, mlm:framework, mlm:accelerator,
  mlm:total_parameters, mlm:tasks, mlm:input.bands (the band names and common names above)
output: a table; --json a STAC ItemCollection (GeoJSON FeatureCollection) of the Items found; --quiet their ids
exit codes: 0 searched (also when nothing matched), 1 catalog error (unreachable, or a folder that is not a
  catalog), 2 usage error (bad option, unknown task, malformed CQL2)
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="find models in a catalog (folder, pgstac or STAC API)",
        description="Search a catalog; options combine with AND. A table by default; with --json the "
        "matching Items as a STAC ItemCollection.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("catalog", metavar="CATALOG", help="folder, postgresql://... or http(s)://...")
    p.add_argument(
        "--task",
        "--tasks",
        dest="task",
        action="append",
        default=[],
        metavar="TASK",
        help=f"an mlm:tasks value every model must have (repeat, or comma-separate): {', '.join(mlm.TASK_NAMES)}",
    )
    p.add_argument(
        "--band",
        "--bands",
        dest="band",
        action="append",
        default=[],
        metavar="NAME",
        help="a band name or common name the model's inputs read (repeat, or comma-separate; see bands below)",
    )
    p.add_argument("--architecture", help="mlm:architecture (case-insensitive)")
    p.add_argument("--framework", help="mlm:framework (case-insensitive: pytorch = PyTorch)")
    p.add_argument("--max-parameters", type=int, metavar="N", help="mlm:total_parameters at most N")
    p.add_argument("--bbox", metavar="W,S,E,N", help="training extent intersecting this box (degrees)")
    p.add_argument("--datetime", metavar="A/B", help="an instant or an interval (.. for open), RFC 3339")
    p.add_argument("--filter", metavar="CQL2", help="a CQL2 text filter over the queryables listed below")
    p.add_argument(
        "--limit", "--max-items", dest="limit", type=int, default=100, metavar="N", help="at most N Items (default 100)"
    )
    add_output_flags(p, items=True)
    p.set_defaults(run=run)


def query_from(args: argparse.Namespace) -> Any:
    """The Query for the flags; a QueryError for a bad value."""
    from ..catalog import Query, QueryError
    from ..catalog._query import bands_arg

    bbox = None
    if args.bbox:
        try:
            bbox = tuple(float(v) for v in args.bbox.split(","))
        except ValueError as e:
            raise QueryError(f"--bbox {args.bbox!r} is not four numbers W,S,E,N") from e
        if len(bbox) != 4:
            raise QueryError(f"--bbox {args.bbox!r} is not four numbers W,S,E,N")
    tasks = bands_arg(args.task)  # the same list syntax as --band: repeated, comma-separated
    return Query(
        task=tasks[0] if tasks else None,
        tasks=tasks[1:],
        bands=bands_arg(args.band),
        architecture=args.architecture,
        framework=args.framework,
        max_parameters=args.max_parameters,
        bbox=bbox,  # type: ignore[arg-type]
        datetime=args.datetime,
        filter=args.filter,
        limit=args.limit,
    )


def run(args: argparse.Namespace, out: Output) -> int:
    from .. import catalog
    from ..catalog._fields import searchable_bands

    try:
        query = query_from(args)
    except catalog.QueryError as e:
        raise UsageError(first_line(e)) from e
    with catalog.open(require_catalog(args.catalog)) as source, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MLMExportWarning)
        try:
            items = source.search(query)
        except catalog.QueryError as e:  # a filter the catalog cannot parse: the user's to fix
            raise UsageError(first_line(e)) from e
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)):
        out.note(f"warning: {message}")  # a part of a folder catalog that could not be used, and was skipped
    table = Table(title=plain(f"{len(items)} model(s) in {args.catalog}"))
    for column in ("id", "architecture", "tasks", "parameters", "bands", "framework"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for item in items:
        props = item.get("properties", {})
        params = props.get(mlm.TOTAL_PARAMETERS)
        bands = searchable_bands(item)
        table.add_row(  # every cell from a stranger's Item: shown as written
            plain(item["id"]),
            plain(props.get(mlm.ARCHITECTURE, "")),
            plain(", ".join(map(str, props.get(mlm.TASKS) or []))),
            f"{params:,}" if isinstance(params, int) else "",
            plain(", ".join(bands[:6]) + (" ..." if len(bands) > 6 else "")),
            plain(props.get(mlm.FRAMEWORK, "")),
        )
    out.table(table)
    for item in items:
        out.quiet_line(printable(item["id"]))
    out.finish_items(list(items), True, numberReturned=len(items))
    return 0

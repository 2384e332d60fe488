"""``mlm-export search``: find models by task, bands, architecture, framework, size, place and time."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from rich.table import Table

from .. import mlm
from ..errors import MLMExportWarning, UsageError, first_line
from ._output import Output, add_output_flags
from ._paths import require_catalog

EPILOG = """examples:
  mlm-export search models/ --task semantic-segmentation --band red --band nir
  mlm-export search models/ --framework pytorch --max-parameters 30000000 --bbox 4,50,6,52
  mlm-export search postgresql://user@host/db --filter "\\"mlm:architecture\\" LIKE 'ResNet%'" --json
queryables for --filter: id, collection, datetime, mlm:name, mlm:architecture, mlm:framework, mlm:accelerator,
  mlm:total_parameters, mlm:tasks, mlm:input.bands (band names and common names)
exit codes: 0 searched (also when nothing matched), 1 catalog error, 2 usage error (bad option or CQL2)
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="find models in a catalog (folder, pgstac or STAC API)",
        description="Search a catalog; options combine with AND. A table by default; with --json the "
        "matching Items are the envelope's results.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("catalog", metavar="CATALOG", help="folder, postgresql://... or http(s)://...")
    p.add_argument("--task", help="an mlm:tasks value, e.g. classification, semantic-segmentation")
    p.add_argument(
        "--band",
        action="append",
        default=[],
        metavar="NAME",
        help="a band name or common name every input must include (repeat, or comma-separate)",
    )
    p.add_argument("--architecture", help="mlm:architecture (case-insensitive)")
    p.add_argument("--framework", help="mlm:framework (case-insensitive: pytorch = PyTorch)")
    p.add_argument("--max-parameters", type=int, metavar="N", help="mlm:total_parameters at most N")
    p.add_argument("--bbox", metavar="W,S,E,N", help="training extent intersecting this box (degrees)")
    p.add_argument("--datetime", metavar="A/B", help="an instant or an interval (.. for open), RFC 3339")
    p.add_argument("--filter", metavar="CQL2", help="a CQL2 text filter over the queryables listed below")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N Items (default 100)")
    add_output_flags(p)
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
    return Query(
        task=args.task,
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
    table = Table(title=f"{len(items)} model(s) in {args.catalog}")
    for column in ("id", "architecture", "tasks", "parameters", "bands", "framework"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for item in items:
        props = item.get("properties", {})
        params = props.get(mlm.TOTAL_PARAMETERS)
        bands = searchable_bands(item)
        table.add_row(
            item["id"],
            str(props.get(mlm.ARCHITECTURE, "")),
            ", ".join(props.get(mlm.TASKS) or []),
            f"{params:,}" if isinstance(params, int) else "",
            ", ".join(bands[:6]) + (" ..." if len(bands) > 6 else ""),
            str(props.get(mlm.FRAMEWORK, "")),
        )
    out.table(table)
    for item in items:
        out.result(item)
    out.finish(True, numberReturned=len(items))
    return 0

"""``mlm-export match``: the models in a catalog that can run on a STAC data Item or Collection."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from rich.table import Table

from ..errors import MLMExportWarning, NotJSONError, UsageError
from ._output import Output, add_output_flags
from ._paths import read_json, require_catalog, require_files

EPILOG = """examples:
  mlm-export match scene.json models/                      which models run on this Sentinel-2 scene, and why not
  mlm-export match scene.json postgresql://user@host/db --json
exit codes: 0 at least one model fits, 1 none fits (or a catalog error), 2 usage error
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "match",
        help="list the models that can run on a STAC data Item or Collection, with reasons for the others",
        description="A model fits when every input band is in the data (by name or common name), the data "
        "type casts to the input's, the value scaling applies, and the data's footprint overlaps the training "
        "extent (overlap reported).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA.json", help="a STAC Item or Collection of the data")
    p.add_argument("catalog", metavar="CATALOG", help="folder, postgresql://... or http(s)://...")
    p.add_argument("--limit", type=int, default=10_000, metavar="N", help="judge at most N models (default 10000)")
    add_output_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from .. import catalog
    from ..catalog._match import match_models

    (path,) = require_files([args.data], what="a STAC Item or Collection JSON file")
    try:
        data = read_json(path)
    except NotJSONError as e:
        raise UsageError(str(e)) from e
    except RecursionError as e:
        raise UsageError(f"{args.data} nests lists and objects too deeply to be read") from e
    if not isinstance(data, dict) or data.get("type") not in ("Feature", "Collection"):
        raise UsageError(f"{args.data} is not a STAC Item or Collection")
    with catalog.open(require_catalog(args.catalog)) as source, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MLMExportWarning)
        models = source.search(catalog.Query(limit=max(1, args.limit)))
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)):
        out.note(f"warning: {message}")  # a part of a folder catalog that could not be used, and was skipped
    results = match_models(data, models)
    table = Table(title=f"models for {data.get('id')} ({sum(m.fits for m in results)} of {len(results)} fit)")
    for column in ("id", "fits", "overlap", "why not / notes"):
        table.add_column(column)
    for m in results:
        overlap = "" if m.overlap is None else f"{m.overlap:.0%}"
        table.add_row(m.id, "yes" if m.fits else "no", overlap, "; ".join(m.reasons or m.notes))
    out.table(table)
    for m in results:
        out.result(m.as_dict())
    fits = any(m.fits for m in results)
    out.finish(fits, data=data.get("id"))
    return 0 if fits else 1

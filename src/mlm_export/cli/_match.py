"""``mlm-export match``: the models in a catalog that can run on a STAC data Item or Collection."""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from .. import mlm
from ..errors import MLMExportWarning, NotJSONError, UsageError
from ._output import Output, add_output_flags, plain, printable
from ._paths import read_json, require_catalog, require_files

EPILOG = """examples:
  mlm-export match scene.json models/                      which models run on this Sentinel-2 scene, and why not
  mlm-export match --example-scene sentinel-2-l2a models/  the same against a scene shipped with mlm-export
  mlm-export match scene.json postgresql://user@host/db --json
example scenes (--example-scene; built from each mission's band table, see --print-example-scene):
{scenes}
output: a table; --json a STAC ItemCollection of the models judged, each with mlm_export:fits, mlm_export:reasons,
  mlm_export:notes, mlm_export:overlap and mlm_export:band_mapping in its properties; --quiet the ids that fit
exit codes: 0 at least one model fits, 1 none fits (or a catalog error), 2 usage error
"""


def add_parser(sub: Any) -> None:
    from ..catalog._scenes import SCENES

    scenes = "\n".join(f"  {name:16} {scene.title}" for name, scene in SCENES.items())
    p = sub.add_parser(
        "match",
        help="list the models that can run on a STAC data Item or Collection, with reasons for the others",
        description="A model fits when every input band is in the data (by name or common name), the data "
        "type casts to the input's, the value scaling applies, and the data's footprint overlaps the training "
        "extent (overlap reported).",
        epilog=EPILOG.format(scenes=scenes),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", type=Path, nargs="?", metavar="DATA.json", help="a STAC Item or Collection of the data")
    p.add_argument("catalog", metavar="CATALOG", nargs="?", help="folder, postgresql://... or http(s)://...")
    p.add_argument(
        "--example-scene",
        choices=list(SCENES),
        metavar="NAME",
        help=f"use a data Item shipped with mlm-export instead of DATA.json: {', '.join(SCENES)}",
    )
    p.add_argument(
        "--print-example-scene", action="store_true", help="print the --example-scene data Item as JSON and exit"
    )
    p.add_argument(
        "--limit", "--max-items", dest="limit", type=int, default=10_000, metavar="N",
        help="judge at most N models (default 10000)",
    )  # fmt: skip
    add_output_flags(p, items=True, quiet="print the ids of the models that fit only, one a line")
    p.set_defaults(run=run)


def _data(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    """The data Item (or Collection) to match, and the catalog named (the positionals shift with --example-scene)."""
    from ..catalog._scenes import example_scene

    if args.example_scene:
        if args.data is not None and args.catalog is not None:
            raise UsageError("name either DATA.json or --example-scene, not both")
        catalog = args.catalog or (str(args.data) if args.data is not None else None)
        return example_scene(args.example_scene), catalog
    if args.data is None:
        raise UsageError("name the data: DATA.json, or --example-scene NAME")
    (path,) = require_files([args.data], what="a STAC Item or Collection JSON file")
    try:
        data = read_json(path)
    except NotJSONError as e:
        raise UsageError(str(e)) from e
    except RecursionError as e:
        raise UsageError(f"{args.data} nests lists and objects too deeply to be read") from e
    if not isinstance(data, dict) or data.get("type") not in ("Feature", "Collection"):
        raise UsageError(f"{args.data} is not a STAC Item or Collection")
    return data, args.catalog


def run(args: argparse.Namespace, out: Output) -> int:
    from .. import catalog
    from ..catalog._match import match_models

    if args.print_example_scene:
        if not args.example_scene:
            raise UsageError("--print-example-scene needs --example-scene NAME")
        print(json.dumps(_data(args)[0], indent=2))
        return 0
    data, target = _data(args)
    if target is None:
        raise UsageError("name the CATALOG to search for models")
    with catalog.open(require_catalog(target)) as source, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MLMExportWarning)
        models = source.search(catalog.Query(limit=max(1, args.limit)))
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)):
        out.note(f"warning: {message}")  # a part of a folder catalog that could not be used, and was skipped
    results = match_models(data, models)
    title = f"models for {data.get('id')} ({sum(m.fits for m in results)} of {len(results)} fit)"
    table = Table(title=plain(title))
    for column in ("id", "fits", "overlap", "why not / notes"):
        table.add_column(column)
    for m in results:
        overlap = "" if m.overlap is None else f"{m.overlap:.0%}"
        table.add_row(plain(m.id), "yes" if m.fits else "no", overlap, plain("; ".join(m.reasons or m.notes)))
        if m.fits:
            out.quiet_line(printable(m.id))
    out.table(table)
    fits = any(m.fits for m in results)
    if out.as_json and not out.envelope:
        by_id = {str(model.get("id")): model for model in models}
        out.finish_items([_judged(by_id[m.id], m) for m in results], fits)
    else:
        out.finish_items([m.as_dict() for m in results], fits, data=data.get("id"))
    return 0 if fits else 1


def _judged(model: Mapping[str, Any], m: Any) -> dict[str, Any]:
    """The model's Item with the verdict in its properties (``mlm_export:fits``, ``...:reasons``, ...)."""
    props = {
        **model.get("properties", {}),
        mlm.MATCH_FITS: m.fits,
        mlm.MATCH_REASONS: m.reasons,
        mlm.MATCH_NOTES: m.notes,
        mlm.MATCH_OVERLAP: m.overlap,
        mlm.MATCH_BANDS: m.bands,
    }
    return {**model, "properties": props}

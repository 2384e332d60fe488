"""``mlm-export validate``: JSON Schemas and MLM's cross-field rules, offline."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from .. import validation_problems
from .._checks import STRUCTURE_RULES, consistency_problems
from .._validate import default_store, is_mlm_item, schema_urls
from ..errors import InputTooLargeError, ItemValidationError, MLMExportError, MLMExportWarning, NotJSONError, Problem
from ._offline import add_offline_flag
from ._output import Output, add_output_flags
from ._paths import read_json, require_files


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check Items and Collections against STAC, MLM and every declared extension (offline)",
        description="Validate STAC Items and Collections against the JSON Schemas they declare (resolved through "
        "$MLM_EXPORT_SCHEMA_DIR and the cache) and, for MLM Items, the rules a schema cannot express: shape vs "
        "dim_order, bands and value scalings vs the band dim, classes vs the class dim, one mlm:model asset, and "
        "the size and checksum of local assets. "
        "Exit 1 if any file fails, 2 if a path is missing or a directory.",
        epilog="example:\n  mlm-export validate demo-output/tinyunet-water-segmentation.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", type=Path, help="Item or Collection JSON files")
    p.add_argument("--allow-outside", action="store_true", help="follow hrefs out of each Item's folder tree")
    add_offline_flag(p)
    add_output_flags(p)
    p.set_defaults(run=run)


def check_file(
    path: Path, *, allow_outside: bool = False, notes: list[str] | None = None, fetched: list[str] | None = None
) -> list[Problem]:
    """Schema problems, then cross-field problems of an MLM Item; the check's notes (a schema checked in place
    of another) are appended to ``notes``, and the schemas fetched from the network to check it (neither
    shipped, cached nor in an override directory) to ``fetched``, when given."""
    try:
        data = read_json(path)
    except (NotJSONError, InputTooLargeError) as e:
        return [Problem("$", str(e), "file")]
    except OSError as e:
        return [Problem("$", f"cannot read: {e.strerror or e}", "file")]
    if not isinstance(data, dict):
        return [Problem("$", f"holds a JSON {type(data).__name__}, not a STAC Item or Collection", "file")]
    with warnings.catch_warnings(record=True) as caught:  # the command owns its process: notes go to the user
        warnings.simplefilter("always", MLMExportWarning)
        try:
            store = default_store()
            remote = [url for url in schema_urls(data) if not store.is_local(url)]
            problems = validation_problems(data, store)
        except ItemValidationError as e:  # not a STAC object at all
            return e.problems
        except MLMExportError as e:
            return [Problem("$", f"cannot check: {e}", "schema")]
    if fetched is not None:
        fetched += remote
    if notes is not None:
        notes += [str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)]
    if is_mlm_item(data):
        try:
            found = consistency_problems(data, path.parent, allow_outside=allow_outside)
        except (AttributeError, KeyError, TypeError, ValueError) as e:  # a structure the schemas reject
            found = [Problem("$", f"cross-field rules not checked: {type(e).__name__}: {e}", "consistency")]
        problems += [p for p in found if p.schema not in STRUCTURE_RULES]  # those are in validation_problems
    return problems


def run(args: argparse.Namespace, out: Output) -> int:
    for path in require_files(args.paths):
        notes: list[str] = []
        fetched: list[str] = []
        problems = check_file(path, allow_outside=args.allow_outside, notes=notes, fetched=fetched)
        result = {"path": str(path), "valid": not problems, "problems": [p.__dict__ for p in problems]}
        out.result({**result, "fetched": fetched, **({"notes": notes} if notes else {})})
        for text in notes:
            out.note(f"{path}: {text}")
        note = f" (fetched {', '.join(fetched)})" if fetched else ""
        if problems:
            out.error(f"{path}: {len(problems)} problem(s){note}")
            for p in problems:
                out.error(f"  {p.json_path}: {p.message} [{p.schema}]")
        else:
            out.line(f"{path}: valid{note}")
    ok = all(r["valid"] for r in out.results)
    out.finish(ok)
    return 0 if ok else 1

"""``mlm-export publish``: put Items, checkpoint folders and Collections into a catalog."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UsageError, first_line
from ._offline import add_offline_flag
from ._output import Output, add_output_flags
from ._paths import require_existing

EPILOG = """examples:
  mlm-export publish demo-output/ --to models/                       a folder catalog (created if needed)
  mlm-export publish runs/checkpoints/ --to postgresql://user@host/db  pgstac (installed if missing)
  mlm-export publish model.json --to https://stac.example.com --on-conflict update
exit codes: 0 published, 1 nothing published (invalid Items, id conflicts, unreachable catalog), 2 usage error
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "publish",
        help="add Items, checkpoint folders or Collections to a catalog (folder, pgstac or STAC API)",
        description="Validate every Item, make relative hrefs absolute and add them all to the catalog in one "
        "step: either every Item goes in or none does. CATALOG is a folder (default; created when missing), a "
        "postgresql:// DSN (pgstac) or an http(s):// STAC API with the Transactions extension.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="Item or Collection files, or folders")
    p.add_argument("--to", required=True, metavar="CATALOG", help="folder, postgresql://... or http(s)://...")
    p.add_argument(
        "--on-conflict",
        choices=("error", "skip", "update"),
        default="error",
        help="when an Item id is already in the catalog: fail (default), keep the old one, or replace it",
    )
    p.add_argument("--skip-invalid", action="store_true", help="add the valid Items even if others fail validation")
    p.add_argument("--base-url", help="URL the named folder is served at; relative hrefs are joined to it")
    add_offline_flag(p)
    add_output_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from .. import catalog
    from ..catalog._sources import gather

    require_existing(args.paths)
    found = gather(args.paths, base_url=args.base_url)
    for problem in found.problems:
        out.note(f"warning: {problem}")
    if not found.items and not found.collections:
        raise UsageError("no STAC Item or Collection found in the paths given")
    try:
        with catalog.open(args.to) as opened:
            result = opened.add(
                found.items,
                collections=found.collections,
                on_conflict=args.on_conflict,
                skip_invalid=args.skip_invalid,
            )
    except catalog.RefusedItemsError as e:
        out.error(f"error: {first_line(e)}")
        for item_id, problems in e.refused.items():
            for p in problems:
                out.error(f"  {item_id}: {p}")
        out.finish(False, refused={k: [str(p) for p in v] for k, v in e.refused.items()})
        return 1
    for item_id, problems in result.refused.items():
        out.note(f"skipped invalid {item_id}: {problems[0]}")
    out.line(
        f"{args.to}: {len(result.added)} added, {result.updated} updated, {len(result.skipped)} skipped, "
        f"{len(result.refused)} invalid, {len(found.collections)} collection(s)"
    )
    summary = result.as_dict()
    for status in ("added", "updated", "skipped"):
        for item_id in summary[status]:
            out.result({"id": item_id, "status": status})
    for item_id in summary["refused"]:
        out.result({"id": item_id, "status": "refused"})
    out.finish(True, catalog=str(args.to), **summary, collections=[c["id"] for c in found.collections])
    return 0

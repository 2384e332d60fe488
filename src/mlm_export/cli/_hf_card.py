"""``mlm-export hf-card``: a Hugging Face model card (README.md) for an MLM Item, written beside it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .._huggingface import CARD_FILE, read_item, render_card
from .._write import atomic_write_bytes
from ..errors import OutputExistsError, UsageError
from ._output import Output, add_output_flags
from ._paths import require_existing


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "hf-card",
        help="write a Hugging Face model card (README.md) summarising an MLM Item",
        description="Render a model card from an MLM Item alone: YAML metadata (license, tags including stac-mlm, "
        "library name, pipeline tag where one fits), then inputs, bands, outputs, classes, training extent and "
        "how to load the model. Reads only the Item JSON; nothing is uploaded. Needs huggingface_hub "
        "(pip install 'mlm-export[hf]').",
        epilog="examples:\n  mlm-export hf-card exports/unet/            (a folder holding mlm.json or one Item)\n"
        "  mlm-export hf-card exports/unet.json --output -",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("item", type=Path, help="the Item JSON file, or a folder holding mlm.json (or one Item)")
    p.add_argument(
        "--output", "-o", help=f"where to write the card (default: {CARD_FILE} beside the Item; - for stdout)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the card if the file exists (else refused)")
    add_output_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    require_existing([args.item])
    if args.output == "-" and args.json:
        raise UsageError("--output - and --json both write to stdout; choose one")
    item, path = read_item(args.item)
    target = Path(args.output) if args.output not in (None, "-") else path.parent / CARD_FILE
    if args.output != "-" and (target.exists() or target.is_symlink()) and not args.overwrite:
        raise OutputExistsError(target, "model card")  # a README.md beside an Item is often the user's own
    card = render_card(item, _relative_href(path, target))
    if args.output == "-":
        sys.stdout.write(card)
        return 0
    atomic_write_bytes(target, card.encode("utf-8"))
    out.line(f"{target}: model card for {item.get('id')}")
    out.result({"item": str(path), "card": str(target)})
    out.finish(True)
    return 0


def _relative_href(item: Path, card: Path) -> str:
    """Where the card links its Item: the Item's real file name, relative to the card's folder."""
    rel = Path(os.path.relpath(item.resolve(), card.resolve().parent)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"

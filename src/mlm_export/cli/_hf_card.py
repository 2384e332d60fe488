"""``mlm-export hf-card``: a Hugging Face model card (README.md) for an MLM Item, written beside it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._huggingface import CARD_FILE, read_item, render_card
from .._write import atomic_write_bytes
from ..errors import UsageError
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
    add_output_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    require_existing([args.item])
    if args.output == "-" and args.json:
        raise UsageError("--output - and --json both write to stdout; choose one")
    item, path = read_item(args.item)
    card = render_card(item)
    if args.output == "-":
        sys.stdout.write(card)
        return 0
    target = Path(args.output) if args.output else path.parent / CARD_FILE
    atomic_write_bytes(target, card.encode("utf-8"))
    out.line(f"{target}: model card for {item.get('id')}")
    out.result({"item": str(path), "card": str(target)})
    out.finish(True)
    return 0

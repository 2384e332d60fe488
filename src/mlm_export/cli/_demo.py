"""``mlm-export demo``: train a small model on synthetic data, export its Item, print a summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError
from ._output import Output, add_output_flags

#: The id of the demo's Item (from its name, "TinyUNet water segmentation"): its files are ``<id>.*``.
ITEM_ID = "tinyunet-water-segmentation"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train a small model on synthetic data and export its Item",
        description="Train a small U-Net on synthetic 6-band scenes for a few seconds, export its MLM Item and "
        "print a summary. Exit 1 if the Item does not validate.",
        epilog="examples:\n  mlm-export demo demo-output\n  mlm-export demo /tmp/demo --epochs 1 --json\n"
        "  mlm-export demo demo-output --overwrite     run it again over the files of an earlier run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out_dir", nargs="?", default="demo-output", help="where to write (default: demo-output)")
    p.add_argument(
        "--epochs", type=_positive, default=2, metavar="N", help="training epochs, about a second each (default: 2)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the demo's files from an earlier run")
    add_output_flags(p)
    p.set_defaults(run=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace, out: Output) -> int:
    from .._summary import item_table
    from ..demo import run as run_demo

    earlier = Path(args.out_dir) / f"{ITEM_ID}.json"
    if earlier.exists() and not args.overwrite:  # checked before training: the one overwrite rule
        raise OutputExistsError(earlier, "demo's Item and model files")

    demo = run_demo(args.out_dir, args.epochs)
    out.line(f"trained TinyUNet for {args.epochs} epoch(s) on synthetic 6-band scenes (loss {demo.loss:.3f})")
    for message in demo.warnings:
        out.note(f"warning: {message}")
    out.table(item_table(demo.item))
    status = "valid" if not demo.problems else f"{len(demo.problems)} problem(s)"
    out.line(f"Item written to {demo.path} ({status} against the STAC/MLM v1.5.2 schemas)")
    for problem in demo.problems:
        out.error(f"{demo.path}: {problem}")
    for asset in demo.item.assets.values():
        out.line(f"  asset {asset.href.rsplit('/', 1)[-1]}: {', '.join(asset.roles or [])}")
    out.line(f"done in {demo.seconds:.1f} s")
    assets = {key: a.href for key, a in demo.item.assets.items()}
    out.result({"item": str(demo.path), "valid": not demo.problems, "assets": assets, "loss": demo.loss})
    out.finish(not demo.problems)
    return 0 if not demo.problems else 1

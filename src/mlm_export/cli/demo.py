"""``mlm-export demo``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train a small model on synthetic data and export its Item",
        description="Train a small U-Net on synthetic 6-band scenes for a few seconds, export its MLM Item and "
        "print a summary.",
        epilog="example:\n  mlm-export demo demo-output",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out_dir", nargs="?", default="demo-output", help="where to write (default: demo-output)")
    p.add_argument("--epochs", type=int, default=2)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import main

    return main([args.out_dir, "--epochs", str(args.epochs)])

"""The ``mlm-export`` command line: one module per subcommand, one output object for human, JSON or quiet."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import convert, demo, form, hf_card, match, publish, search, validate, verify

EPILOG = """examples:
  mlm-export demo                                  train a small model on synthetic data, export its Item
  mlm-export convert runs/checkpoints/             an Item per checkpoint and a collection.json
  mlm-export validate demo-output/*.json           schema and cross-field checks, offline
  mlm-export verify demo-output/tinyunet-water-segmentation.json
  mlm-export hf-card exports/unet/                 a Hugging Face model card (README.md) for an Item
  mlm-export form demo-output/tinyunet-water-segmentation.json   edit it in a local web form
  mlm-export publish demo-output/ --to models/     add Items to a folder, pgstac or STAC API catalog
  mlm-export search models/ --task classification --band red   find models
  mlm-export match scene.json models/              the models that can run on a STAC data Item
exit codes: 0 success, 1 some file failed, 2 usage error
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlm-export``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="mlm-export",
        description="Write, check and verify STAC Items with the Machine Learning Model (MLM) extension.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, validate, verify, publish, search, match, form, hf_card, demo):
        module.add_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help exits 0, a usage error 2
        return int(e.code or 0)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())

"""The ``mlm-export`` command line: one module per subcommand, one output object for human, JSON or quiet.

Every command runs inside :func:`main`, which turns any error into one line on stderr and an exit code
(:mod:`._errors`), and renders the options named in error messages as this command line's flags.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import flag_spelling
from . import _convert as convert
from . import _demo as demo
from . import _form as form
from . import _hf_card as hf_card
from . import _match as match
from . import _publish as publish
from . import _search as search
from . import _validate as validate
from . import _verify as verify
from ._errors import FLAGS, USAGE, debugging, describe
from ._imports import user_modules_from_cwd
from ._offline import offline_schemas
from ._output import Output

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
exit codes: 0 success, 1 some file failed, 2 usage error, 130 interrupted
"""


class ArgumentError(Exception):
    """argparse refused the command line (exit 2); argparse already printed its usage and the reason."""

    def __init__(self, prog: str, message: str) -> None:
        self.line = f"{prog}: error: {message}"
        super().__init__(self.line)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (so ``--json`` can still print its envelope), not an exit."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise ArgumentError(self.prog, message)


def parser() -> argparse.ArgumentParser:
    """The ``mlm-export`` argument parser with every subcommand."""
    from .. import __version__

    p = _Parser(
        prog="mlm-export",
        description="Write, check and verify STAC Items with the Machine Learning Model (MLM) extension.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mlm-export {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, validate, verify, publish, search, match, form, hf_card, demo):
        module.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlm-export``; returns the exit code (0 success, 1 some file failed, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help and --version
        return int(e.code or 0)
    except ArgumentError as e:
        if "--json" in argv:  # the envelope still comes, holding the line argparse printed
            out = Output(next((a for a in argv if not a.startswith("-")), ""), as_json=True)
            out.errors.append(e.line)
            out.finish(False)
        return USAGE
    out = Output.for_args(args)
    try:
        with flag_spelling(FLAGS), user_modules_from_cwd(args), offline_schemas(args):
            return int(args.run(args, out))
    except (Exception, KeyboardInterrupt) as e:
        if debugging() and not isinstance(e, KeyboardInterrupt):
            raise
        with flag_spelling(FLAGS):
            line, code = describe(e)
        out.error(f"error: {line}")
        out.finish(False)
        return code


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "main",
    "parser",
]

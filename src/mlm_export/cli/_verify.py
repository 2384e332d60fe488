"""``mlm-export verify``: prove an Item describes its model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from ._convert import add_limit_flags, add_trust_flags, init_args_value
from ._offline import add_offline_flag
from ._output import Output, add_output_flags
from ._paths import require_files


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="check files and checksums, run the model on a batch built from mlm:input, compare the outputs",
        description="Prove that an Item describes its model: validate it, check every local asset's size and "
        "checksum, load the mlm:model artifact without the training code where its type allows (torch.export "
        "archive; safetensors or checkpoints with --model), run it on a synthetic batch built from mlm:input "
        "alone, and compare the outputs' shapes, data types and class counts with mlm:output. Exit 1 on any "
        "mismatch. Models load and run in a child process limited in memory (--max-memory) and time (--timeout), "
        "without network, in a scratch folder; --no-run checks the files without running anything. Full "
        "Lightning checkpoints are rebuilt as convert rebuilds them: the class LightningCLI recorded, "
        "or the TorchGeo task their hyper_parameters fit (same allowlist, offline).",
        epilog="examples:\n  mlm-export verify demo-output/tinyunet-water-segmentation.json\n"
        "  mlm-export verify runs/last.mlm.json --model my_pkg.models:Segmenter",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("item", type=Path, help="the Item JSON file")
    p.add_argument("--model", help="architecture for weights-only artifacts: module:Class or module:function")
    p.add_argument("--init-args", type=init_args_value, help="arguments for --model, as JSON or YAML (or @file)")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of a trusted checkpoint and building any class it names",
    )
    add_trust_flags(p)
    add_limit_flags(p)
    p.add_argument(
        "--no-run",
        dest="run_models",
        action="store_false",
        help="check the files (checksums, what loading each model file would run) without loading or running any",
    )
    p.add_argument("--allow-outside", action="store_true", help="follow hrefs out of the Item's folder tree")
    add_offline_flag(p)
    add_output_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from .. import verify_item

    (item,) = require_files([args.item], what="an Item JSON file")
    checks = verify_item(
        item,
        model=args.model,
        init_args=args.init_args,
        trust=args.trust_checkpoint,
        allow_modules=tuple(args.allow_module),
        allow_outside=args.allow_outside,
        download=args.download,
        run=args.run_models,
        max_memory=args.max_memory,
        timeout=args.timeout,
    )
    table = Table(title=Text(f"verify {item}"), title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in checks:
        result = Text(c.status, style={"ok": "green", "limited": "yellow", "skipped": "yellow"}.get(c.status, "red"))
        table.add_row(Text(c.name), result, Text(c.detail))  # Text: paths and messages are not markup
        out.result(c.as_dict())
    out.table(table)
    failed = [c for c in checks if not c.ok]
    if out.quiet:
        for c in failed:
            out.error(f"{item}: {c.name}: {c.detail}")
    out.finish(not failed, item=str(item))
    return 0 if not failed else 1

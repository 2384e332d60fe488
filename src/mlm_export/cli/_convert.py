"""``mlm-export convert``: an Item beside every existing checkpoint, and a Collection per directory."""

from __future__ import annotations

import argparse
import datetime as dt
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from .. import mlm
from .._hrefs import loads
from .._isolate import MAX_MEMORY, MAX_MEMORY_CONVERT, TIMEOUT, human, size_of
from .._limits import JSON_DEPTH, check_structure
from ..errors import InputTooLargeError, InvalidOptionError, MLMExportError, MLMExportWarning, UsageError, first_line
from ._offline import add_offline_flag
from ._output import Output, add_output_flags
from ._paths import require_existing

if TYPE_CHECKING:  # torch comes with these: imported when convert runs, not when the command line starts
    from .._convert import Result
    from .._options import ExportOptions

EPILOG = """examples:
  mlm-export convert lightning_logs/version_0/checkpoints/
  mlm-export convert 'runs/**/*.ckpt' --model my_pkg.tasks:Segmenter --license MIT
  mlm-export convert weights.pth --factory torchvision.models:resnet18 --init-args '{num_classes: 10}' \\
      --input-shape 1,3,224,224 --tasks classification
  mlm-export convert ckpts/ --defaults mlm.yaml      # name, license, bands, classes, ... as YAML or JSON
  mlm-export convert ckpts/ --item-version 2.1.0 --band red --band nir   # = --bands red,nir
  mlm-export convert resnet50_s2_moco.pth --weights ResNet50_Weights.SENTINEL2_ALL_MOCO --tasks similarity-search

Models are rebuilt from, in order: the Item embedded by MLMExportCallback; the class LightningCLI recorded;
a TorchGeo task whose arguments the hyper_parameters are; --model/--factory with --init-args (default: the
checkpoint's hyper_parameters); --weights for a state dict of published TorchGeo weights. Checkpoints load with
torch.load(weights_only=True) and an allowlist of safe types; only torch.nn.Module classes of torch, torchvision,
torchgeo, timm, segmentation_models_pytorch and lightning are built (--allow-module PKG adds a package);
pretrained weights are never downloaded (--download allows it); --trust-checkpoint allows full unpickling and
any class.
Existing Items are kept unless --overwrite (the files skipped are counted). Exit codes: 0 all converted or
skipped, 1 some failed, 2 usage error (a missing path, an unknown --tasks value, a bad --defaults file).
"""

#: Options of export_mlm that can be given on the command line, as comma-separated lists where plural.
LIST_OPTIONS = ("tasks", "bands", "classes", "artifacts")
TEXT_OPTIONS = ("name", "description", "license", "architecture", "pretrained_source", "version", "doi", "citation")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="write an MLM Item beside each checkpoint (.ckpt/.pt/.pth/.safetensors) and a Collection per directory",
        description="Turn existing checkpoints into MLM Items: files, directories (searched recursively) and "
        "globs. Each Item lands beside its checkpoint as <stem>.mlm.json; each directory gets collection.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", help="checkpoint files, directories or globs")
    arch = p.add_mutually_exclusive_group()
    arch.add_argument("--model", help="the model class, module:Class (built with --init-args)")
    arch.add_argument("--factory", help="a function that returns the model, module:function")
    arch.add_argument(
        "--weights",
        help="the TorchGeo weights these files are, e.g. ResNet50_Weights.SENTINEL2_ALL_MOCO (builder, "
        "bands and normalization come from the enum)",
    )
    p.add_argument("--init-args", type=init_args_value, help="arguments for --model/--factory: JSON, YAML or @file")
    p.add_argument("--input-shape", type=_shape, help="example input shape to trace with, e.g. 1,3,224,224")
    p.add_argument("--defaults", type=Path, help="YAML or JSON file of export_mlm options (name, license, bands, ...)")
    for name in TEXT_OPTIONS:
        flag = "--item-version" if name == "version" else f"--{name.replace('_', '-')}"
        p.add_argument(flag, dest=name, help=f"the Item's {name.replace('_', ' ')}")
    # --version is the program's version in every command; convert's old --version VALUE still sets the Item's
    p.add_argument("--version", dest="legacy_version", help=argparse.SUPPRESS)
    for name in LIST_OPTIONS:
        kind = _tasks if name == "tasks" else _csv
        singular = {"tasks": "--task", "bands": "--band", "classes": "--class", "artifacts": "--artifact"}[name]
        p.add_argument(
            f"--{name}",
            singular,
            dest=name,
            type=kind,
            action="extend",
            metavar=name.upper().rstrip("S"),
            help=f"{name}: a comma-separated list, or repeat the flag",
        )
    p.add_argument(
        "--profile",
        choices=("default", "openeo"),
        help="openeo: a TorchScript <stem>.torchscript beside each checkpoint as the mlm:model, dims bands/t/y/x, "
        "fixed sizes (needs --base-url)",
    )
    p.add_argument("--base-url", dest="base_url", help="http(s)/s3 URL the files are published under (absolute hrefs)")
    p.add_argument(
        "--deprecate-superseded", action="store_true", default=None,
        help="mark every Item of a directory but the latest revision deprecated",
    )  # fmt: skip
    p.add_argument(
        "--primary", help="which of --artifacts is the mlm:model asset (default: the first; 'checkpoint': the file)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing Items")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling and building any class a checkpoint names (only for trusted files)",
    )
    add_trust_flags(p)
    add_limit_flags(p, MAX_MEMORY_CONVERT)
    add_offline_flag(p)
    add_output_flags(p)
    p.set_defaults(run=run)


def add_trust_flags(p: argparse.ArgumentParser) -> None:
    """``--allow-module`` and ``--download``: what rebuilding a model from a checkpoint may do beyond the default."""
    p.add_argument(
        "--allow-module",
        action="append",
        default=[],
        metavar="PKG",
        help="also build model classes (and factories) from this package, e.g. your own (repeatable)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="let model constructors download pretrained weights (off: never contacts a model hub)",
    )


def add_limit_flags(p: argparse.ArgumentParser, memory: int = MAX_MEMORY) -> None:
    """``--max-memory`` and ``--timeout``: the limits of the child process that runs (or rebuilds) a model."""
    p.add_argument(
        "--max-memory",
        type=_size,
        default=memory,
        metavar="SIZE",
        help=f"memory a model may use beyond the runtime's own, e.g. 4G (default {human(memory)})",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=TIMEOUT,
        metavar="SECONDS",
        help=f"wall-clock seconds an Item's models (verify) or a checkpoint (convert) may take before they are killed "
        f"(default {TIMEOUT:g})",
    )


def _size(text: str) -> int:
    try:
        return size_of(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from e
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _shape(text: str) -> tuple[int, ...]:
    from .._convert import parse_shape

    try:
        return parse_shape(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(first_line(e)) from e


def init_args_value(text: str) -> dict[str, Any]:
    """``--init-args``: a JSON or YAML mapping, or @path to a file holding one."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    value = _parse_mapping(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a mapping, got {type(value).__name__}")
    return value


def _parse_mapping(text: str) -> Any:
    """JSON, else YAML; nested deeper than ``_limits.JSON_DEPTH`` is a one-line usage error, never a
    ``RecursionError``."""
    try:
        return loads(text, "the value")
    except InputTooLargeError as e:
        raise argparse.ArgumentTypeError(first_line(e)) from e
    except ValueError:
        pass
    try:
        import yaml
    except ImportError as e:
        raise argparse.ArgumentTypeError("not valid JSON (install PyYAML to pass YAML)") from e
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f"neither JSON nor YAML: {e}") from e
    except RecursionError:
        raise argparse.ArgumentTypeError(f"the value is nested deeper than {JSON_DEPTH} levels") from None
    try:
        check_structure(value, "the value")  # YAML anchors can share a list at every level
    except InputTooLargeError as e:
        raise argparse.ArgumentTypeError(first_line(e)) from e
    return value


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _tasks(text: str) -> list[str]:
    """``--tasks``: MLM task names, checked before any file is read (a typo is a usage error)."""
    tasks = _csv(text)
    if problem := _unknown_tasks(tasks):
        raise argparse.ArgumentTypeError(problem)
    return tasks


def _unknown_tasks(tasks: list[str]) -> str:
    unknown = [t for t in tasks if t not in mlm.TASK_NAMES]
    return f"unknown task(s) {', '.join(unknown)}; MLM tasks: {', '.join(mlm.TASK_NAMES)}" if unknown else ""


def options_from(args: argparse.Namespace) -> ExportOptions:
    """The defaults file, then the flags over it."""
    from .._options import ExportOptions

    values: dict[str, Any] = {}
    if args.defaults:
        try:
            loaded = _parse_mapping(args.defaults.read_text(encoding="utf-8"))
        except (OSError, argparse.ArgumentTypeError) as e:
            raise UsageError(f"--defaults {args.defaults}: {e}") from e
        if not isinstance(loaded, dict):
            raise UsageError(f"--defaults {args.defaults} must hold a mapping of export_mlm options")
        values.update(loaded)
    for name in (*TEXT_OPTIONS, *LIST_OPTIONS, "profile", "base_url", "deprecate_superseded", "primary"):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if isinstance(values.get("tasks"), list) and (problem := _unknown_tasks([str(t) for t in values["tasks"]])):
        raise UsageError(f"--defaults {args.defaults}: {problem}")
    unknown = set(values) - set(ExportOptions.__dataclass_fields__)
    if unknown:
        known = ", ".join(sorted(ExportOptions.__dataclass_fields__))
        raise UsageError(f"unknown option(s) {sorted(unknown)} in --defaults; known: {known}")
    for key in ("datetime", "start_datetime", "end_datetime"):
        if isinstance(values.get(key), str):
            try:
                values[key] = dt.datetime.fromisoformat(values[key].replace("Z", "+00:00"))
            except ValueError as e:
                raise UsageError(f"--defaults {args.defaults}: {key} {values[key]!r} is not an ISO 8601 time") from e
    try:
        return ExportOptions(**values)
    except InvalidOptionError as e:  # the flags (or --defaults) name options that cannot be used together
        raise UsageError(str(e)) from e


def run(args: argparse.Namespace, out: Output) -> int:
    from .._convert import ConvertSettings, IsolatedConverter, Result
    from .._sources.checkpoint import find_checkpoints

    if args.legacy_version is not None:
        if args.version is not None:
            raise UsageError("--version VALUE is the old spelling of --item-version; pass --item-version alone")
        out.note("warning: convert --version VALUE is now --item-version VALUE (--version is the program's version)")
        args.version = args.legacy_version

    options = options_from(args)
    settings = ConvertSettings(
        model=args.model or args.factory,
        weights=args.weights,
        init_args=args.init_args,
        input_shape=args.input_shape,
        trust=args.trust_checkpoint,
        overwrite=args.overwrite,
        allow_modules=tuple(args.allow_module),
        download=args.download,
        max_memory=args.max_memory,
        timeout=args.timeout,
    )
    require_existing(args.paths, globs=True)
    files = [(f, Path(raw).is_dir()) for raw in args.paths for f in find_checkpoints([raw])]
    if not files:
        raise UsageError(f"no checkpoint files (.ckpt, .pt, .pth, .safetensors) in {' '.join(args.paths)}")
    results: list[Result] = []
    total = sum(f.stat().st_size for f, _ in files if f.exists())
    collections = []
    with IsolatedConverter(options, settings) as converter:  # one limited child rebuilds every model
        with warnings.catch_warnings(record=True) as caught, out.progress(total, len(files)) as advance:
            warnings.simplefilter("always", MLMExportWarning)
            for f, in_directory in files:
                result = converter.convert(f, catalog_dir=f.parent if in_directory else None)
                results.append(result)
                advance(result.size)
                if result.status == "failed":
                    out.error(f"{f}: {_without_name(result.error or '', f)}")
        warned = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)))
        for message in warned:
            out.note(f"warning: {message}")
        try:
            collections = [str(p) for p in converter.write_collections()]
        except MLMExportError as e:
            out.error(f"collection: {e}")
            results.append(Result(Path("collection.json"), "failed", error=str(e)))
    out.table(_summary(results))
    for c in collections:
        out.line(f"collection: {c}")
    counts = Counter(r.status for r in results)
    out.line(_counts(counts))
    if counts["skipped"]:
        out.note(
            f"{counts['skipped']} file(s) skipped: an Item exists beside each; pass --overwrite to write them anew"
        )
    for r in results:
        out.result(r.as_dict())
    failed = counts["failed"] > 0
    out.finish(not failed, collections=collections, warnings=warned)
    return 1 if failed else 0


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in ("converted", "skipped", "failed"))


def _without_name(error: str, path: Path) -> str:
    """A checkpoint error without its own leading file name: the line already starts with the path."""
    return error.removeprefix(f"{path.name}: ").removeprefix(f"{path}: ")


def _summary(results: list[Result]) -> Table:
    table = Table(title="mlm-export convert", title_justify="left")
    for col in ("file", "model", "parameters", "task", "Item or error"):
        table.add_column(col, overflow="fold")
    for r in results:
        outcome = str(r.item_path) if r.status == "converted" else f"{r.status}: {r.error}"
        style = {"converted": "", "skipped": "yellow", "failed": "red"}[r.status]
        table.add_row(  # Text: file names and errors are printed as they are, never read as markup
            Text(str(r.path)),
            Text(r.model or ""),
            Text(f"{r.parameters:,}" if r.parameters else ""),
            Text(", ".join(r.tasks)),
            Text(outcome),
            style=style,
        )
    return table

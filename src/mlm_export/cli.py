"""The ``mlm-export`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import MLMExportError

EXAMPLES = """examples:
  mlm-export demo                      train a small model on synthetic data and export its Item
  mlm-export validate demo-output/*.json
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 usage error)."""
    parser = argparse.ArgumentParser(
        prog="mlm-export",
        description="Write and check STAC Items with the Machine Learning Model (MLM) extension.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "validate",
        help="check Items and Collections against STAC core, MLM and every declared extension (offline)",
        description="Validate STAC Items/Collections against the JSON Schemas they declare, resolved offline "
        "through $MLM_EXPORT_SCHEMA_DIR and the cache. Exit 1 if any fails.",
        epilog="example:\n  mlm-export validate demo-output/tinyunet-water-segmentation.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("paths", nargs="+", type=Path, help="Item or Collection JSON files")
    v.add_argument("--json", action="store_true", help="print machine-readable results")
    d = sub.add_parser("demo", help="train a small model on synthetic data and export its Item")
    d.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(args.args)
    return _validate(args.paths, as_json=args.json)


def _validate(paths: Sequence[Path], *, as_json: bool) -> int:
    from .validate import validation_problems

    results = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            problems = [str(p) for p in validation_problems(data)]
        except (OSError, ValueError, MLMExportError) as e:
            problems = [f"cannot check: {e}"]
        results.append({"path": str(path), "valid": not problems, "problems": problems})
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["valid"]:
                print(f"{r['path']}: valid")
            else:
                print(f"{r['path']}: {len(r['problems'])} problem(s)", file=sys.stderr)
                for p in r["problems"]:
                    print(f"  {p}", file=sys.stderr)
    return 0 if all(r["valid"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

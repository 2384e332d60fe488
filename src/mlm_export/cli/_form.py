"""``mlm-export form [ITEM.json]``: edit an Item in a local web form, with live validation."""

from __future__ import annotations

import argparse
import json
import sys
import webbrowser
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ._offline import add_offline_flag
from ._output import Output


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "form",
        help="edit an Item in a local web form (fields from the MLM schema, live validation)",
        description="Open a web form on 127.0.0.1 to fill in what mlm-export cannot derive (description, license, "
        "class and band descriptions, keywords, ...), checked as you type with the same schemas and rules as "
        "`mlm-export validate`. Derived fields are locked unless unlocked; Save writes ITEM atomically, keeps "
        "ITEM.bak and refuses if the file changed on disk since the form opened it. The URL, with its access token, "
        "is the first line on stdout. Without ITEM (or with a new file name) the form starts blank. Stop with Ctrl-C.",
        epilog="examples:\n  mlm-export form demo-output/tinyunet-water-segmentation.json\n"
        "  mlm-export form new-model.json --no-browser",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("item", nargs="?", type=Path, help="the Item JSON file to edit (created on Save if it is new)")
    p.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument(
        "--json", action="store_true", help='first stdout line: the JSON envelope, results [{"url": ..., "item": ...}]'
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print the URL only (no notice on stderr)")
    add_offline_flag(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from .._form.server import FormServer
    from .._form.session import FormSession

    if args.item is not None and args.item.is_dir():
        raise UsageError(f"{args.item} is a directory; name an Item JSON file")
    server = FormServer(FormSession(args.item), port=args.port)
    item = str(args.item) if args.item else None
    if args.json:  # the envelope, on one line: the URL is read while the form is serving
        envelope = {"command": "form", "ok": True, "results": [{"url": server.url, "item": item}], "errors": []}
        print(json.dumps(envelope), flush=True)
    else:
        print(server.url, flush=True)
    if not args.quiet:
        print("serving the form on 127.0.0.1 only; press Ctrl-C to stop", file=sys.stderr, flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

"""One output object for every command: results to stdout, problems and progress to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


class Output:
    """Human (rich tables), ``--json`` (one JSON document on stdout) or ``--quiet`` (errors only)."""

    def __init__(self, *, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.out = Console(file=sys.stdout, soft_wrap=True)
        self.err = Console(file=sys.stderr, soft_wrap=True)

    def table(self, table: Table) -> None:
        if not (self.as_json or self.quiet):
            self.out.print(table)

    def line(self, text: str) -> None:
        if not (self.as_json or self.quiet):
            self.out.print(text, markup=False, highlight=False)

    def error(self, text: str) -> None:
        self.err.print(text, markup=False, highlight=False)

    def json(self, data: Any) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2))

    @contextmanager
    def progress(self, total_bytes: int, files: int) -> Iterator[Any]:
        """A bar over files and bytes, shown only to a person at a terminal."""
        show = not (self.as_json or self.quiet) and self.err.is_terminal
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=self.err,
            disable=not show,
        )
        with progress:
            task = progress.add_task(f"0/{files} files", total=total_bytes)
            done = [0]

            def advance(nbytes: int) -> None:
                done[0] += 1
                progress.update(task, advance=nbytes, description=f"{done[0]}/{files} files")

            yield advance


def add_output_flags(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")

"""One output object for every command: results to stdout, problems and progress to stderr.

With ``--json`` every command prints one envelope on stdout::

    {"command": "convert", "ok": true, "results": [...], "errors": [...], ...}

``results`` holds one object per file, check or model (the command's own shape, see the README); ``errors`` the
one-line messages also printed on stderr; a few commands add keys of their own (``collections``, ``item``).
``search`` and ``match`` answer with Items: their ``--json`` prints a STAC ItemCollection (a GeoJSON
FeatureCollection STAC tools read), and the envelope only when the command fails (or with ``--json-envelope``).

``--quiet`` drops tables, notes and progress, never results: commands whose results are Items print their ids,
one a line; the others print only errors (their result is the exit code and the files they write).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

#: Width of tables written to a pipe or file: wide enough that no path or message is wrapped.
PIPE_WIDTH = 10_000


def console(file: TextIO) -> Console:
    """A console that wraps to the terminal's width, and not at all when piped (unless $COLUMNS says)."""
    interactive = file.isatty()
    width = None if interactive or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(file=file, soft_wrap=not interactive, width=width)


def printable(value: Any) -> str:
    """Text from strangers' data (an id, a file name) with its control characters escaped: ``\\x1b`` in a file
    name drove the terminal."""
    text = str(value)
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
        text = "".join(c.encode("unicode_escape").decode() if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)
    return text


def plain(value: Any) -> Text:
    """A table cell or title from strangers' data, shown as written: no rich markup (``[/bold]`` stopped the
    command, ``[link=...]`` made a link) and control characters escaped."""
    return Text(printable(value))


class Output:
    """Human (rich tables), ``--json`` (one envelope, or an ItemCollection, on stdout) or ``--quiet`` (errors, and
    the ids of the Items a command found)."""

    def __init__(
        self, command: str = "", *, as_json: bool = False, quiet: bool = False, envelope: bool = False
    ) -> None:
        self.command = command
        self.as_json = as_json or envelope
        self.quiet = quiet
        #: ``--json-envelope``: the envelope even where ``--json`` prints an ItemCollection.
        self.envelope = envelope
        self.out = console(sys.stdout)
        self.err = console(sys.stderr)
        self.results: list[Any] = []
        self.errors: list[str] = []
        self.finished = False

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Output:
        return cls(
            args.command,
            as_json=getattr(args, "json", False),
            quiet=getattr(args, "quiet", False),
            envelope=getattr(args, "json_envelope", False),
        )

    def table(self, table: Table) -> None:
        if not (self.as_json or self.quiet):
            self.out.print(table)

    def line(self, text: str) -> None:
        """A result line for a person (not in ``--json`` or ``--quiet``)."""
        if not (self.as_json or self.quiet):
            self.out.print(text, markup=False, highlight=False)

    def quiet_line(self, text: str) -> None:
        """A result in ``--quiet`` form (one line each, e.g. an Item id): only when quiet (a table shows it else)."""
        if self.quiet and not self.as_json:
            print(text, flush=False)

    def note(self, text: str) -> None:
        """Something a person should know that is not an error (a warning, a skip): stderr, not when quiet."""
        if not self.quiet:
            self.err.print(text, markup=False, highlight=False)

    def error(self, text: str) -> None:
        """One line on stderr, and in the envelope's ``errors``."""
        self.errors.append(text)
        self.err.print(text, markup=False, highlight=False)

    def result(self, data: Any) -> None:
        """One entry of the envelope's ``results``."""
        self.results.append(data)

    def finish(self, ok: bool, **extra: Any) -> None:
        """Print the ``--json`` envelope (once)."""
        if self.finished:
            return
        self.finished = True
        if self.as_json:
            envelope = {"command": self.command, "ok": ok, "results": self.results, "errors": self.errors, **extra}
            print(json.dumps(envelope, indent=2))

    def finish_items(self, features: list[Any], ok: bool, **extra: Any) -> None:
        """End a command whose results are Items: ``--json`` prints them as a STAC ItemCollection (GeoJSON
        FeatureCollection with ``numberReturned``), ``--json-envelope`` as the envelope's ``results``."""
        if self.as_json and not self.envelope and not self.finished:
            self.finished = True
            collection = {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}
            print(json.dumps({**collection, "links": []}, indent=2))
            return
        self.results.extend(features)
        self.finish(ok, **extra)

    @contextmanager
    def progress(self, total_bytes: int, files: int) -> Iterator[Callable[[int], None]]:
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


def add_output_flags(parser: argparse.ArgumentParser, *, items: bool = False, quiet: str = "") -> None:
    """``--json`` and ``--quiet``; for commands whose results are Items (``items``), also ``--json-envelope``
    (``quiet``: what ``--quiet`` prints, when not every Item's id)."""
    if items:
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the Items as a STAC ItemCollection (GeoJSON FeatureCollection) on stdout; on failure the "
            "JSON envelope",
        )
        parser.add_argument(
            "--json-envelope", action="store_true", help="print the JSON envelope of every command, Items as results"
        )
        parser.add_argument("--quiet", "-q", action="store_true", help=quiet or "print the Items' ids only, one a line")
        return
    parser.add_argument("--json", action="store_true", help="print one JSON envelope on stdout (see the README)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")

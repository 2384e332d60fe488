"""``--offline``: the commands that may fetch a JSON Schema (convert, validate, verify, publish, form) never do.

The flag does what ``MLM_EXPORT_OFFLINE=1`` does, for the run of one command only: the variable is set while
the command runs (child processes it starts, such as ``verify``'s, inherit it) and put back afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from .._validate import OFFLINE_ENV


def add_offline_flag(parser: argparse.ArgumentParser) -> None:
    """``--offline`` on a command that may fetch a schema an Item names and the package does not ship."""
    parser.add_argument(
        "--offline",
        action="store_true",
        help=f"never fetch a JSON Schema from the network (as {OFFLINE_ENV}=1): a schema neither shipped, cached "
        "nor in $MLM_EXPORT_SCHEMA_DIR is reported as not fetched",
    )


@contextlib.contextmanager
def offline_schemas(args: Any) -> Iterator[None]:
    """While a command runs: no schema fetched when it was given ``--offline``."""
    if not getattr(args, "offline", False):
        yield
        return
    before = os.environ.get(OFFLINE_ENV)
    os.environ[OFFLINE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(OFFLINE_ENV, None)
        else:
            os.environ[OFFLINE_ENV] = before

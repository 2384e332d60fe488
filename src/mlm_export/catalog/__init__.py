"""Publish MLM Items to a catalog and find them: a local folder (default), pgstac, or a STAC API.

``open(CATALOG)`` picks the backend from the string: ``postgresql://`` (or ``postgres://``) is pgstac,
``http(s)://`` a STAC API with the Transactions extension, anything else a local folder. Every backend has
``add(items, on_conflict=..., skip_invalid=...)``, ``search(Query(...))`` and ``get(id)``, and answers the
same query with the same Items. The optional dependencies (``pip install 'mlm-export[catalog]'``) are
imported on first use.
"""

from __future__ import annotations

import os
from typing import Any

from ._base import AddResult, CatalogBase
from ._errors import (
    CatalogError,
    CatalogFormatError,
    CatalogUnreachableError,
    ConflictError,
    ItemNotFoundError,
    QueryError,
    RefusedItemsError,
)
from ._fields import QUERYABLES
from ._query import Query


def open(target: str | os.PathLike[str], **options: Any) -> CatalogBase:  # noqa: A001 - mirrors builtins.open
    """The catalog named by ``target``: a folder path, a ``postgresql://`` DSN or a STAC API URL."""
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        from ._pgstac import PgstacCatalog

        return PgstacCatalog(text, **options)
    if text.startswith(("http://", "https://")):
        from ._stacapi import StacApiCatalog

        return StacApiCatalog(text, **options)
    from ._folder import FolderCatalog

    return FolderCatalog(text, **options)


__all__ = [
    "QUERYABLES",
    "AddResult",
    "CatalogBase",
    "CatalogError",
    "CatalogFormatError",
    "CatalogUnreachableError",
    "ConflictError",
    "ItemNotFoundError",
    "Query",
    "QueryError",
    "RefusedItemsError",
    "open",
]

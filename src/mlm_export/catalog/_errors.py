"""Errors of the model catalog (defined in :mod:`mlm_export.errors` with every other error, named here too)."""

from __future__ import annotations

from ..errors import CatalogError as CatalogError
from ..errors import CatalogFormatError as CatalogFormatError
from ..errors import CatalogUnreachableError as CatalogUnreachableError
from ..errors import ConflictError as ConflictError
from ..errors import ItemNotFoundError as ItemNotFoundError
from ..errors import QueryError as QueryError
from ..errors import RefusedItemsError as RefusedItemsError

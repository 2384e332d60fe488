"""Errors of the model catalog; each derives from :class:`MLMExportError` and the matching built-in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import MLMExportError, Problem


class CatalogError(MLMExportError):
    """Base class of the catalog's errors."""


class CatalogUnreachableError(CatalogError, ConnectionError):
    """The database or STAC API named by the catalog string cannot be reached."""


class CatalogFormatError(CatalogError, ValueError):
    """A catalog folder, or something a server answered, is not what this catalog expects."""


class QueryError(CatalogError, ValueError):
    """A search option or CQL2 filter cannot be used (malformed, or naming an unknown field)."""


class ConflictError(CatalogError, FileExistsError):
    """Items with these ids are in the catalog already and ``on_conflict="error"``."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        shown = ", ".join(self.ids[:5]) + (f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else "")
        super().__init__(
            f"{len(self.ids)} Item id(s) already in the catalog: {shown}. Nothing was added; pass "
            "on_conflict='skip' or 'update' (--on-conflict skip|update) to keep or replace them."
        )


class RefusedItemsError(CatalogError, ValueError):
    """Items failed validation; nothing of the call was added (unless ``skip_invalid``)."""

    def __init__(self, refused: Mapping[str, Sequence[Problem]]) -> None:
        self.refused = {k: list(v) for k, v in refused.items()}
        lines = [f"  - {item_id}: {problems[0]}" for item_id, problems in list(self.refused.items())[:10]]
        super().__init__(
            f"{len(self.refused)} Item(s) fail validation and nothing was added; fix them or pass skip_invalid=True "
            "(--skip-invalid) to add the others:\n" + "\n".join(lines)
        )


class ItemNotFoundError(CatalogError, KeyError):
    """No Item with this id is in the catalog."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Item not found"

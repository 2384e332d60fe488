"""Where an Item's files are: the one function that decides the href of a file written beside the Item (the
``mlm:model`` file, weights, checkpoints, runtime files), and what an Item states for model files not written.

A written file is named relative to its Item (``./<name>``), or under the URL its folder is published at
(``base_url=``). An Item made without writing (``export_mlm`` without ``out_dir``) still needs an ``mlm:model``
asset (the schema requires one): it names the file that writing would make, without ``file:size`` or
``file:checksum`` (no file was measured), and its description says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ._facts import ArtifactFacts

if TYPE_CHECKING:  # the builder imports this module
    from ._item import ItemPlan

#: The description of a model file an Item names but nobody wrote.
UNWRITTEN_NOTE = (
    "Not written: this Item was made without out_dir=, so no file exists at this href yet; export_mlm(..., "
    "out_dir=...) (or mlm-export convert, or MLMExportCallback) writes it and states its size and checksum."
)


def file_href(name: str, base_url: str | None = None) -> str:
    """The href of the file ``name`` written beside its Item: ``./<name>``, or ``<base_url><name>`` when the
    folder is published under ``base_url`` (which ends with ``/``)."""
    return f"{base_url}{name}" if base_url else f"./{name}"


def is_beside(href: str) -> bool:
    """Whether ``href`` names a file beside its Item (as :func:`file_href` spells it without a URL)."""
    return href.startswith("./")


def unwritten(plan: ItemPlan) -> ItemPlan:
    """``plan`` as an Item states it when no file was written: no ``file:*`` fields on its model files, and a
    note on those that name a file beside the Item (published weights at a URL keep their href, unmeasured)."""
    artifacts = tuple(_unwritten(a) for a in plan.artifacts)
    return replace(plan, artifacts=artifacts)


def _unwritten(a: ArtifactFacts) -> ArtifactFacts:
    note = a.description
    if is_beside(a.href):
        note = f"{a.description} {UNWRITTEN_NOTE}" if a.description else UNWRITTEN_NOTE
    return replace(a, size=None, checksum=None, description=note)

"""``add``'s options are checked once, by the shared ``add``, before any backend reads or writes anything."""

from __future__ import annotations

import pytest

from mlm_export import catalog
from mlm_export.catalog._base import AddOptions
from mlm_export.errors import InvalidOptionError

from .catalog_data import naip_model

pytestmark = pytest.mark.usefixtures("foreign_schemas")


def test_a_misspelt_on_conflict_fails_before_the_folder_is_touched(tmp_path):
    target = tmp_path / "models"
    with pytest.raises(InvalidOptionError, match=r"on_conflict must be one of .*'replace'"):
        catalog.open(target).add([naip_model()], on_conflict="replace")
    assert not target.exists()  # no folder, lock or part file made for a call that cannot run


def test_conflicts_fail_only_under_error():
    result = catalog._base.AddResult(conflicts=["a"])
    with pytest.raises(catalog.ConflictError):
        AddOptions(on_conflict="error").check(result)
    AddOptions(on_conflict="update").check(result)  # an update is not a conflict


def test_refused_items_fail_unless_skipped():
    from mlm_export.errors import Problem

    refused = {"bad": [Problem("$.id", "is wrong", "catalog")]}
    with pytest.raises(catalog.RefusedItemsError):
        AddOptions().check(catalog._base.AddResult(refused=refused))
    AddOptions(skip_invalid=True).check(catalog._base.AddResult(refused=refused))

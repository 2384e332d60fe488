"""The export options have one definition (``ExportOptions``); ``export_mlm``'s keywords are checked against it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from mlm_export import export_mlm
from mlm_export._options import RUN_OPTIONS, ExportOptions
from mlm_export.errors import InvalidOptionError

#: ``export_mlm``'s arguments that are about the call, not about the model (no ExportOptions field).
CALL_ARGUMENTS = {"model", "datamodule", "example_input", "out_dir", "export_program"}


def test_export_mlm_keywords_are_the_option_fields() -> None:
    params = inspect.signature(export_mlm).parameters
    fields = {f.name: f for f in dataclasses.fields(ExportOptions) if f.name not in RUN_OPTIONS}
    assert set(params) - CALL_ARGUMENTS == set(fields)
    for name, f in fields.items():
        p = params[name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert p.default == f.default, f"{name}: export_mlm default {p.default!r}, ExportOptions {f.default!r}"
        assert p.annotation == f.type, f"{name}: export_mlm says {p.annotation}, ExportOptions {f.type}"


def test_callback_keywords_are_the_option_fields() -> None:
    """Every option is a typed keyword of the callback: LightningCLI (jsonargparse) checks YAML init_args by them."""
    pytest.importorskip("lightning")
    from mlm_export import MLMExportCallback

    params = inspect.signature(MLMExportCallback.__init__).parameters
    fields = {f.name: f for f in dataclasses.fields(ExportOptions)}
    own = {"self", "example_input", "write_weights", "export_program", "strict", "collection_id"}
    assert set(params) - own == set(fields)
    for name, f in fields.items():
        p = params[name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert p.default == f.default, f"{name}: callback default {p.default!r}, ExportOptions {f.default!r}"
        assert p.annotation == f.type, f"{name}: callback says {p.annotation}, ExportOptions {f.type}"


def test_datetimes_may_be_iso_text_as_in_a_yaml_config() -> None:
    import datetime as dt

    options = ExportOptions(datetime="2024-06-01T00:00:00Z", start_datetime="2024-01-01", end_datetime="2024-12-31")
    assert options.datetime == dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    assert options.start_datetime == dt.datetime(2024, 1, 1)
    with pytest.raises(InvalidOptionError, match=r"datetime= must be a datetime or ISO 8601 text"):
        ExportOptions(datetime="June 2024")


def test_from_keywords_takes_the_fields_and_ignores_the_rest() -> None:
    options = ExportOptions.from_keywords({"name": "Tiny net", "tasks": "regression", "model": object()})
    assert options == ExportOptions(name="Tiny net", tasks="regression")


def test_from_keywords_checks_like_the_constructor() -> None:
    with pytest.raises(InvalidOptionError, match=r"batch_size= must be a positive integer"):
        ExportOptions.from_keywords({"batch_size": 0})


def test_a_class_without_description_is_written_with_its_name(assert_valid) -> None:
    """The record keeps the description unknown; classification v1.1.0 requires one, so the name stands in."""
    import datetime as dt

    import torch

    from mlm_export import mlm

    item = export_mlm(
        torch.nn.Linear(4, 2),
        example_input=torch.zeros(2, 4),
        classes=[{"name": "water"}, {"name": "land", "description": "Not water"}],
        datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )
    classes = item.properties[mlm.OUTPUT][0][mlm.CLASSES]
    assert classes == [
        {"value": 0, "name": "water", "description": "water"},
        {"value": 1, "name": "land", "description": "Not water"},
    ]
    assert mlm.ClassObject(value=0, name="water").description is None
    assert_valid(item.to_dict())


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"type": "z-scor", "mean": 0.0, "stddev": 1.0}, r"value_scaling type 'z-scor' is not one of min-max, z-score"),
        ({"type": "z-score", "mean": "zero", "stddev": 1.0}, r"value_scaling entry .* is not valid: .*mean"),
    ],
)
def test_value_scaling_out_of_the_vocabulary_names_the_option(scaling: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        ExportOptions(value_scaling=[scaling])

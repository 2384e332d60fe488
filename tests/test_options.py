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


# -- every option that becomes an Item field is checked against the schema when the options are made -------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"name": "A (B)"},
            r"^name='A \(B\)' is not a valid mlm:name: an mlm:name must start with a letter"
            r".*\(no '=', '/', ':' or brackets\)$",
        ),
        ({"name": "epoch=3-step=40"}, r"^name='epoch=3-step=40' is not a valid mlm:name"),
        ({"license": "MIT License"}, r"^license='MIT License' is not a valid license: give an SPDX license identifier"),
        ({"tasks": ["classifcation"]}, r"^tasks= must list MLM tasks \(regression, .*\); got \['classifcation'\]$"),
        ({"tasks": {"logits": "segmentaton"}}, r"^tasks= must list MLM tasks \(.*\); got \['segmentaton'\]$"),
        ({"pretrained": "yes"}, r"^pretrained='yes' is not a valid mlm:pretrained: 'yes' is not of type 'boolean'"),
        ({"properties": {"mlm:accelerator": "cpu"}}, r"mlm:accelerator: 'cpu' is not one of .*no 'cpu'"),
        ({"properties": {"mlm:batch_size_suggestion": -1}}, r"not a valid mlm:batch_size_suggestion: -1 is less"),
        ({"properties": {"license": "two words"}}, r"^properties=\{'license': 'two words'\} is not a valid license"),
    ],
)
def test_options_the_schema_refuses_are_refused_when_made(options: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        ExportOptions(**options)


def test_options_the_schema_accepts_pass() -> None:
    ExportOptions(
        name="ResNet-18 v2.1 fine-tuned",
        license="CC-BY-4.0",
        tasks={"logits": ["semantic-segmentation"]},
        pretrained=True,
        pretrained_source=None,
        properties={"mlm:accelerator": "amd64", "mlm:accelerator_constrained": False, "custom:key": "(anything)"},
    )


def test_the_callback_and_export_mlm_refuse_a_name_the_schema_refuses_at_once() -> None:
    from mlm_export import MLMExportCallback

    with pytest.raises(InvalidOptionError, match=r"^name='A \(B\)' is not a valid mlm:name"):
        MLMExportCallback(name="A (B)")
    with pytest.raises(InvalidOptionError, match=r"^license='MIT License' is not a valid license"):
        export_mlm(object(), license="MIT License")  # refused before the model is looked at


def test_convert_flags_the_schema_refuses_are_usage_errors_naming_the_flag(tmp_path, capsys) -> None:
    from mlm_export.cli import main

    (tmp_path / "w.pt").write_bytes(b"not read")
    for argv, flag in ((["--name", "A (B)"], "--name 'A (B)'"), (["--license", "MIT License"], "--license")):
        assert main(["convert", str(tmp_path / "w.pt"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {flag}"), err
        assert "=" not in err.split(" is not a valid")[0]  # the flag, not the keyword

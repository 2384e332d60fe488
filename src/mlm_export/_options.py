"""The options a user states about a model (:class:`ExportOptions`), checked once, and the facts they state.

Every entry point takes these options by name: ``export_mlm`` as keyword arguments, the callback as
``**options``, ``convert`` from its flags. Checks run when the options are made, so an error names the option
before any model is traced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from . import _artifacts as art
from ._facts import DataFacts
from ._sources.values import coerce_bands, coerce_classes, coerce_scaling
from ._times import iso_utc, parse_iso
from .errors import InvalidOptionError

#: How a schema violation ends an export: an error, or a warning and the Item as built.
Validate = Literal["raise", "warn"]

#: ExportOptions fields that only runs of checkpoints use (the callback, ``convert``): not ``export_mlm``'s.
RUN_OPTIONS = frozenset({"deprecate_superseded"})


@dataclass(frozen=True)
class ExportOptions:
    """What the user states about a model: everything that cannot be observed, and overrides of what was.

    This dataclass is the one definition of the options: :func:`mlm_export.export_mlm` takes each field but
    those in :data:`RUN_OPTIONS` as a keyword argument of the same name, type and default (a test compares
    the signatures), and the callback and ``convert`` take them by name.
    """

    name: str | None = None
    item_id: str | None = None
    description: str | None = None
    architecture: str | None = None
    tasks: str | Sequence[str] | Mapping[str, Sequence[str]] | None = None
    bands: Sequence[Any] | None = None
    classes: Sequence[Any] | Mapping[int, str] | None = None
    value_scaling: Any = None
    batch_size: int | None = None
    license: str | None = None
    pretrained: bool | None = None
    pretrained_source: str | None = None
    hyperparameters: Mapping[str, Any] | None = None
    bbox: Sequence[float] | None = None
    datetime: dt.datetime | str | None = None
    start_datetime: dt.datetime | str | None = None
    end_datetime: dt.datetime | str | None = None
    #: Item properties to set as given (they override what was observed).
    properties: Mapping[str, Any] | None = None
    weights: Any = None
    validate: Validate = "raise"
    #: "openeo": an Item openEO's ML back-end runs (TorchScript model, y/x dims, fixed sizes); see openeo.py.
    profile: str = "default"
    #: The http(s)/s3 folder the files are published under: hrefs become absolute (the openEO profile needs it).
    base_url: str | None = None
    #: "huggingface": the folder ``save_pretrained`` writes, with ``mlm.json`` beside it; see huggingface.py.
    layout: str = "flat"
    #: The model's ``version`` (a run's checkpoints add their epoch and step to it).
    version: str | None = None
    #: ``sci:doi`` and ``sci:citation`` of the model (else from a CITATION.cff of the training project).
    doi: str | None = None
    citation: str | None = None
    #: Mark every Item of a run but the latest ``deprecated: true``.
    deprecate_superseded: bool = False
    #: STAC Collection(s) or Item(s) the model was trained on (or a mapping train/validate/test -> one).
    training_data: Any = None
    #: Model files to write (see :data:`mlm_export._artifacts.ARTIFACT_NAMES`); None: as ``export_program`` says.
    artifacts: str | Sequence[str] | None = None
    #: The one of ``artifacts`` that is the ``mlm:model`` asset (default: the first).
    primary: str | None = None
    #: Seconds one model file's export may take (None: ``MLM_EXPORT_ARTIFACT_TIMEOUT``, else 300; 0: no bound).
    artifact_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("datetime", "start_datetime", "end_datetime"):  # ISO 8601 text (a YAML config's) as a datetime
            object.__setattr__(self, name, _datetime(name, getattr(self, name)))
        if self.validate not in ("raise", "warn"):
            raise InvalidOptionError(f"validate= must be 'raise' or 'warn', not {self.validate!r}")
        from ._huggingface import check_layout
        from ._openeo import check_options
        from ._provenance import user_doi
        from ._sources.training_data import stac_training_data

        check_options(self.profile, self.base_url, self.pretrained)
        check_layout(self.layout, self.profile, self.base_url)
        if self.artifacts is not None or self.primary is not None:
            art.artifact_choice(self.artifacts, self.primary)
        t = self.artifact_timeout
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or t < 0):
            raise InvalidOptionError(f"artifact_timeout= must be a number of seconds >= 0, got {t!r}")
        user_facts(self)  # check bands, classes, bbox, dates now: errors at construction name the option
        user_doi(self.doi)
        stac_training_data(self.training_data)  # reads a local STAC file, never a URL

    @classmethod
    def from_keywords(cls, values: Mapping[str, Any]) -> ExportOptions:
        """The options among ``values`` (an entry point's keyword arguments by name); other names are ignored."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


def user_facts(options: ExportOptions) -> DataFacts:
    """The facts the user states, checked."""
    sources = {}
    if options.bands is not None:
        sources["bands"] = "bands="
    if options.classes is not None:
        sources["classes"] = "classes="
    if options.value_scaling is not None:
        sources["value_scaling"] = "value_scaling="
    bbox: tuple[float, float, float, float] | None = None
    if options.bbox is not None:
        given = tuple(float(v) for v in options.bbox)
        if len(given) != 4 or not (-180 <= given[0] <= given[2] <= 180 and -90 <= given[1] <= given[3] <= 90):
            raise InvalidOptionError(f"bbox= must be (west, south, east, north) in degrees (EPSG:4326), got {given}")
        bbox = (given[0], given[1], given[2], given[3])
    if (options.start_datetime is None) != (options.end_datetime is None):
        raise InvalidOptionError("pass start_datetime= and end_datetime= together")
    size = options.batch_size
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise InvalidOptionError(f"batch_size= must be a positive integer, got {size!r}")
    return DataFacts(
        bands=coerce_bands(options.bands) if options.bands is not None else None,
        classes=coerce_classes(options.classes) if options.classes is not None else None,
        value_scaling=coerce_scaling(options.value_scaling) if options.value_scaling is not None else None,
        batch_size=size,
        bbox=bbox,
        start_datetime=_iso(options.start_datetime),
        end_datetime=_iso(options.end_datetime),
        sources=sources,
    )


def _datetime(name: str, value: Any) -> dt.datetime | None:
    """An option's time: a datetime as it is, ISO 8601 text parsed; anything else names the option."""
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError:
            pass
    raise InvalidOptionError(f"{name}= must be a datetime or ISO 8601 text (2024-06-01T00:00:00Z), got {value!r}")


def _iso(t: Any) -> str | None:
    if t is None:
        return None
    if isinstance(t, str):
        return t
    if isinstance(t, dt.datetime):
        return iso_utc(t)
    raise InvalidOptionError(f"expected a datetime, got {type(t).__name__}")

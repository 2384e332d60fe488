"""Typed, frozen records of what was observed about a model and its data; unknown is None, never a guess."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from .mlm import ClassObject, ValueScaling

#: What a traced value is: one tensor, a positional sequence, a mapping, or a list of mappings (detection).
Structure = Literal["tensor", "sequence", "mapping", "list_of_mappings"]


@dataclass(frozen=True)
class TensorFacts:
    """One input or output tensor: its name, shape (-1 where dynamic), dim roles and dtype."""

    name: str
    shape: tuple[int, ...]
    #: Observed role per dim: "batch", "time", "channel" (when the first layer shows it), "height", "width",
    #: "item" (per-image detections) or None.
    roles: tuple[str | None, ...]
    dtype: str
    #: The shape seen in the base trace, before dynamic dims were replaced by -1.
    observed: tuple[int, ...] = ()


@dataclass(frozen=True)
class ParameterFacts:
    """Parameter counts, each shared tensor counted once."""

    total: int
    trainable: int
    buffers: int
    #: Bytes of parameters and buffers: what loading the weights takes.
    memory_bytes: int


@dataclass(frozen=True)
class ModelFacts:
    """What tracing the model showed."""

    class_name: str
    qualified_name: str
    inputs: tuple[TensorFacts, ...]
    outputs: tuple[TensorFacts, ...]
    input_structure: Structure
    output_structure: Structure
    parameters: ParameterFacts
    device: str
    #: "meta" when traced without weights, otherwise the device of the real forward pass.
    traced_on: str
    #: The number of classes the model itself states (``num_classes`` attribute or hyperparameter).
    num_classes: int | None = None
    hyperparameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class BandFacts:
    """A spectral band or channel of the input."""

    name: str
    common_name: str | None = None
    center_wavelength: float | None = None
    description: str | None = None


@dataclass(frozen=True)
class DataFacts:
    """What a datamodule, dataset or the user says about the data the model runs on."""

    bands: tuple[BandFacts, ...] | None = None
    #: Normalization, in MLM's own record (a fact and its field are the same thing).
    value_scaling: tuple[ValueScaling, ...] | None = None
    #: Output classes, in MLM's own record (the description stays None when unknown).
    classes: tuple[ClassObject, ...] | None = None
    batch_size: int | None = None
    patch_size: tuple[int, int] | None = None
    bbox: tuple[float, float, float, float] | None = None
    start_datetime: str | None = None
    end_datetime: str | None = None
    #: Links to the data the model was trained, validated and tested on (``derived_from``).
    links: tuple[dict[str, Any], ...] | None = None
    example_input: Any = field(default=None, compare=False, repr=False)
    #: The training target of the batch the example came from, with where it was found (``batch['mask']``).
    example_target: Any = field(default=None, compare=False, repr=False)
    #: The ``OSError`` the datamodule's ``setup()`` raised (its data is not on disk): raised as it is only when
    #: nothing else states a batch, since the facts a TorchGeo datamodule holds before ``setup`` often do.
    setup_error: OSError | None = field(default=None, compare=False, repr=False)
    #: Where each fact came from, for messages: {"bands": "datamodule.bands", ...}.
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def merged_over(self, other: DataFacts) -> DataFacts:
        """Facts of ``self``, with the gaps filled from ``other``."""
        changes: dict[str, Any] = {}
        sources = dict(other.sources)
        for f in fields(self):
            if f.name == "sources":
                continue
            mine = getattr(self, f.name)
            if mine is None:
                changes[f.name] = getattr(other, f.name)
            elif f.name in self.sources:
                sources[f.name] = self.sources[f.name]
        sources.update({k: v for k, v in self.sources.items() if getattr(self, k, None) is not None})
        return replace(self, **changes, sources=sources)


@dataclass(frozen=True)
class ArtifactFacts:
    """A file the Item points at, written or planned."""

    key: str
    href: str
    roles: tuple[str, ...]
    media_type: str
    title: str
    artifact_type: str | None = None
    size: int | None = None
    checksum: str | None = None
    #: ``mlm:compile_method`` of a model file: "aot" (torch.export), "jit" (TorchScript, torch.compile).
    compile_method: str | None = None
    #: What a reader should know about the file (sizes it refuses, how it was made).
    description: str | None = None

"""Gathering: every fact about one model, from the user, its datamodule, its weights enum and a trace."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from torch import nn

from ._facts import DataFacts, ModelFacts
from ._options import ExportOptions, user_facts
from ._sources.datamodule import datamodule_facts
from ._sources.dummy import DEFAULT_IMAGE_SIZE, fixed_image_size, stated_example
from ._sources.evidence import classes_from_config, feature_module
from ._sources.model import hyperparameters_of, inspect_model, qualified_name
from ._sources.values import coerce_bands, coerce_classes
from .errors import InputRequiredError, InvalidOptionError

if TYPE_CHECKING:
    from ._sources.weights import WeightsFacts


@dataclass(frozen=True)
class Gathered:
    """Everything observed about one model: facts from tracing, from the data, and the example used."""

    model: ModelFacts
    data: DataFacts
    example: Any = field(repr=False)
    #: What a pretrained-weights enum member states (``weights=``), else None.
    weights: WeightsFacts | None = None
    #: The network described: the model itself, or the part that does inference (an SSL task's backbone).
    module: nn.Module | None = field(default=None, repr=False, compare=False)
    #: Hyperparameters of the model as given (a task), which its inference network may not have.
    hyperparameters: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: Why the network described differs from the model given (an untrained head left out), for the Item.
    notes: tuple[str, ...] = ()


def gather(
    model: nn.Module, datamodule: Any, example_input: Any, options: ExportOptions, *, target: Any = None
) -> Gathered:
    """Facts from the user, the datamodule, the weights enum and a trace of the model (in that precedence).

    ``target`` is the training target of a batch the caller saw, with where it was found
    (:func:`._sources.targets.batch_target`): evidence of the task when the datamodule gives none.
    """
    from ._sources.libraries import inference_module

    given = model
    model = inference_module(model)
    data = user_facts(options)
    if datamodule is not None:
        data = data.merged_over(datamodule_facts(datamodule, load_batch=example_input is None))
    wfacts = None
    if options.weights is not None:
        from ._sources.weights import weights_facts

        wfacts = weights_facts(options.weights)
        data = data.merged_over(wfacts.data)
    if target is not None and data.example_target is None:
        data = replace(data, example_target=target)
    names = classes_from_config(model)  # a Hugging Face classifier's config.id2label
    if names and data.classes is None:
        data = replace(data, classes=coerce_classes(names), sources={**data.sources, "classes": "config.id2label"})
    data = _terratorch_facts(given, data)
    notes: tuple[str, ...] = ()
    if wfacts is not None:
        model, note = feature_module(model, wfacts)
        notes = (note,) if note else ()
    example = example_input if example_input is not None else data.example_input
    source = "the example_input= batch" if example_input is not None else data.sources.get("example_input")
    if example is None and wfacts is not None:
        example, source = _weights_example(model, wfacts), f"a batch for the weights {wfacts.name}"
    if example is None:
        try:
            stated = stated_example(given, model, data, datamodule)
        except InputRequiredError:
            if data.setup_error is not None:  # the datamodule's data is missing: that is the user's error
                raise data.setup_error from None
            raise
        example, source = stated.value, stated.source
    data = replace(data, sources={**data.sources, "example_input": source or "a batch"})
    facts = inspect_model(model, example)
    hparams = hyperparameters_of(given)
    if model is not given:  # the task's hyperparameters and MLM task describe its inference network too
        facts = replace(facts, hyperparameters=hparams, qualified_name=qualified_name(given))
    return Gathered(facts, data, example, wfacts, module=model, hyperparameters=hparams, notes=notes)


def _terratorch_facts(task: nn.Module, data: DataFacts) -> DataFacts:
    """Classes (``class_names``) and bands (``model_args``) a TerraTorch task was given, where nothing said them."""
    from ._sources import terratorch

    if terratorch.task_name(qualified_name(task)) is None:
        return data
    hparams = hyperparameters_of(task)
    names, bands = terratorch.class_names(hparams), terratorch.band_names(hparams)
    if names and data.classes is None:
        data = replace(data, classes=coerce_classes(names), sources={**data.sources, "classes": "class_names="})
    if bands and data.bands is None:
        data = replace(data, bands=coerce_bands(bands), sources={**data.sources, "bands": "model_args bands"})
    return data


def _weights_example(model: nn.Module, wfacts: WeightsFacts) -> Any:
    """A batch for a weights member's model: its channels (checked against the model), its image size."""
    import torch

    from ._sources.weights import builder_name, example_for, first_layer_channels

    special = example_for(builder_name(wfacts.member), wfacts) if wfacts.member is not None else None
    if special is not None:
        return special

    channels = first_layer_channels(model)
    if wfacts.in_channels and channels and wfacts.in_channels != channels:
        raise InvalidOptionError(
            f"{wfacts.name} is for {wfacts.in_channels}-channel input but the model's first layer takes {channels} "
            "channels: pass the model built for these weights, or weights= that match it"
        )
    size = wfacts.image_size or fixed_image_size(model) or DEFAULT_IMAGE_SIZE
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    return torch.zeros((2, wfacts.in_channels or channels or 3, size, size), device=device)

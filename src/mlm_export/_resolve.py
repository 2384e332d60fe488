"""Decide what the Item says from the facts: tasks, dim names, bands, classes, names, versions.

Everything here is a pure function of facts and options; conflicts are errors that name the option to pass.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from packaging.version import InvalidVersion, Version

from . import mlm
from ._facts import BandFacts, DataFacts, ModelFacts, TensorFacts
from .errors import InvalidOptionError, TaskInferenceError, option
from .mlm import Accelerator, ModelInput, ModelOutput, Structure, Task, ValueScaling

CLASS_TASKS = {"classification", "scene-classification", "segmentation", "semantic-segmentation"}
DETECTION_KEYS = {"boxes", "labels", "scores", "masks"}


def resolve_tasks(
    model: ModelFacts, data: DataFacts, tasks: Any, evidence: Mapping[str, tuple[Task, ...]] | None = None
) -> dict[str, tuple[Task, ...]]:
    """Tasks per output: the user's ``tasks=`` where given, else a TorchGeo task's, else what the model's
    library or weights state (``evidence``), else inferred where the outputs leave no doubt."""
    given = _given_tasks(model, tasks)
    if not given:
        from ._sources.libraries import mlm_tasks

        known = mlm_tasks(model.qualified_name)  # a TorchGeo or TerraTorch task says what it does
        given = {o.name: known for o in model.outputs} if known else dict(evidence or {})
    result: dict[str, tuple[Task, ...]] = {}
    detection = _detection_tasks(model)
    for out in model.outputs:
        if out.name in given:
            result[out.name] = given[out.name]
            continue
        inferred = detection or _infer(out, model, data)
        if inferred is None:
            tasks_option = option("tasks", "['classification']", "classification")
            raise TaskInferenceError(
                f"cannot tell the task of output '{out.name}' (shape {list(out.shape)}, {out.dtype}) from the model "
                f"alone: {_why(out)}. Pass {tasks_option} (or 'regression', "
                f"'semantic-segmentation', 'similarity-search', ...: one of {', '.join(mlm.TASK_NAMES)}), or "
                f"{option('classes', '[...]', 'NAME,NAME,...')} for a classifier."
            )
        result[out.name] = inferred
    return result


def _given_tasks(model: ModelFacts, tasks: Any) -> dict[str, tuple[Task, ...]]:
    if tasks is None:
        return {}
    if isinstance(tasks, str):
        tasks = [tasks]
    if isinstance(tasks, Mapping):
        unknown = set(tasks) - {o.name for o in model.outputs}
        if unknown:
            raise InvalidOptionError(
                f"tasks= names outputs {sorted(unknown)} that the model does not return; "
                f"its outputs are {[o.name for o in model.outputs]}"
            )
        return {k: _check_tasks([v] if isinstance(v, str) else v) for k, v in tasks.items()}
    checked = _check_tasks(tasks)
    return {o.name: checked for o in model.outputs}


def _check_tasks(tasks: Sequence[str]) -> tuple[Task, ...]:
    known = tuple(dict.fromkeys(t for t in tasks if mlm.is_task(t)))
    if len(known) != len(set(tasks)) or not tasks:
        raise InvalidOptionError(f"tasks= must list MLM tasks ({', '.join(mlm.TASK_NAMES)}); got {list(tasks)}")
    return known


def _detection_tasks(model: ModelFacts) -> tuple[Task, ...] | None:
    if model.output_structure != "list_of_mappings":
        return None
    names = {o.name for o in model.outputs}
    if "boxes" in names:
        return ("object-detection", "instance-segmentation") if "masks" in names else ("object-detection",)
    if "masks" in names:
        return ("instance-segmentation",)
    return None


def _infer(out: TensorFacts, model: ModelFacts, data: DataFacts) -> tuple[Task, ...] | None:
    n_classes = len(data.classes) if data.classes else model.num_classes
    shape, roles = out.observed, out.roles
    per_pixel = len(shape) >= 3 and roles[-2:] == ("height", "width")
    integer = not (out.dtype.startswith("float") or out.dtype.startswith("bfloat") or out.dtype.startswith("complex"))
    if per_pixel and len(shape) == 3 and integer:
        return ("semantic-segmentation",)
    if per_pixel and len(shape) == 4 and n_classes == shape[1]:  # one score per known class and pixel
        return ("semantic-segmentation",)
    if len(shape) == 2 and roles[0] == "batch" and n_classes is not None and shape[1] == n_classes:
        return ("classification",)
    return None


def _why(out: TensorFacts) -> str:
    if len(out.observed) == 2:
        return "a [batch, K] output may be class logits, regression targets or an embedding"
    if len(out.observed) == 4 and out.roles[-2:] == ("height", "width") and out.observed[1] == 1:
        return "a one-channel map may be a binary mask or a per-pixel regression"
    if len(out.observed) == 4 and out.roles[-2:] == ("height", "width"):
        return (
            f"a per-pixel map of {out.observed[1]} channels may be class scores, an image (a denoiser, "
            "super-resolution) or features, and no class count, segmentation library or task says which"
        )
    return "its shape matches no task unambiguously"


def input_specs(model: ModelFacts, data: DataFacts) -> tuple[ModelInput, ...]:
    """Inputs with named dims; bands and value scaling go to the first input that has a channel dim."""
    specs = []
    bands_used = False
    for t in model.inputs:
        channel = _channel_dim(t, len(data.bands) if data.bands else None)
        bands: tuple[BandFacts, ...] = ()
        scaling: tuple[ValueScaling, ...] | None = None
        if channel is not None and not bands_used:
            bands_used = True
            channels = t.observed[channel]
            if data.bands:
                if len(data.bands) != channels:
                    where = data.sources.get("bands", "bands=")
                    raise InvalidOptionError(
                        f"{len(data.bands)} bands are named ({where}: {[b.name for b in data.bands]}) but input "
                        f"'{t.name}' has {channels} channels; pass {option('bands')} with one name per channel"
                    )
                bands = data.bands
            if data.value_scaling:
                if len(data.value_scaling) not in (1, channels):
                    where = data.sources.get("value_scaling", "value_scaling=")
                    raise InvalidOptionError(
                        f"value scaling ({where}) has {len(data.value_scaling)} entries but input '{t.name}' has "
                        f"{channels} channels; pass value_scaling= with one entry per band or one for all"
                    )
                scaling = data.value_scaling
        names = _dim_names(t, channel, "bands" if bands else "channel")
        structure, description = _structure(t, names)
        specs.append(
            ModelInput(
                name=t.name, bands=tuple(b.name for b in bands), input=structure, value_scaling=scaling,
                description=description,
            )
        )  # fmt: skip
    return tuple(specs)


def output_specs(model: ModelFacts, data: DataFacts, tasks: Mapping[str, tuple[Task, ...]]) -> tuple[ModelOutput, ...]:
    """Outputs with named dims, and classes attached where the output has one score per class."""
    specs = []
    for t in model.outputs:
        out_tasks = tasks[t.name]
        class_dim = _class_dim(t, out_tasks, model.output_structure)
        names = _output_dim_names(t, out_tasks, class_dim, model.output_structure)
        detection_labels = model.output_structure == "list_of_mappings" and t.name.rsplit(".", 1)[-1] == "labels"
        classes = None
        if data.classes and (class_dim is not None or detection_labels):
            if class_dim is not None and t.observed[class_dim] != len(data.classes):
                where = data.sources.get("classes", "classes=")
                raise InvalidOptionError(
                    f"{len(data.classes)} classes are named ({where}) but output '{t.name}' has "
                    f"{t.observed[class_dim]} along its class dim; pass {option('classes')} with one entry per class"
                )
            classes = data.classes
        structure, description = _structure(t, names)
        specs.append(
            ModelOutput(name=t.name, tasks=out_tasks, result=structure, classes=classes, description=description)
        )
    return tuple(specs)


def _structure(t: TensorFacts, names: tuple[str, ...]) -> tuple[Structure, str | None]:
    """Shape, dims and MLM data type of a tensor, and a description naming a torch dtype MLM has no name for."""
    dtype = mlm.data_type(t.dtype)
    description = f"data type {t.dtype}" if dtype == "other" else None
    return Structure(shape=t.shape, dim_order=names, data_type=dtype), description


def _channel_dim(t: TensorFacts, n_bands: int | None = None) -> int | None:
    """Where the channels are: before height and width; in a 3-D input, last when that is where the named
    bands fit (a pixel time series [batch, time, bands]), else second."""
    n = len(t.shape)
    if "channel" in t.roles:  # observed (a video model's Conv3d takes [batch, channel, time, H, W])
        return t.roles.index("channel")
    if n >= 4:
        return n - 3
    if n == 3 and n_bands is not None and t.observed[2] == n_bands != t.observed[1]:
        return 2
    if n in (2, 3):
        return 1
    return None


def _class_dim(t: TensorFacts, tasks: Sequence[str], structure: str) -> int | None:
    if structure == "list_of_mappings" or not CLASS_TASKS & set(tasks):
        return None
    n = len(t.shape)
    if n == 2:
        return 1
    if n == 4 and t.roles[-2:] == ("height", "width"):
        return 1
    return None


def _dim_names(t: TensorFacts, channel: int | None, channel_name: str) -> tuple[str, ...]:
    names: list[str | None] = list(t.roles)
    if channel is not None and names[channel] in (None, "channel"):
        names[channel] = channel_name
    if len(names) == 3 and channel == 2 and names[1] is None:
        names[1] = "time"
    n = len(names)
    if n == 3 and names[2] is None:
        names[2] = "width"
    return _unique(names, ("feature", "depth", "token", "extra"))


def _output_dim_names(t: TensorFacts, tasks: Sequence[str], class_dim: int | None, structure: str) -> tuple[str, ...]:
    names: list[str | None] = [r if r != "item" else "detection" for r in t.roles]
    if class_dim is not None:
        names[class_dim] = "class"
    n = len(names)
    leaf = t.name.rsplit(".", 1)[-1]
    if structure == "list_of_mappings" and leaf == "boxes" and n == 3:
        names[2] = "coordinate"
    elif n == 2 and names[1] is None:
        if "regression" in tasks:
            names[1] = "value"
        elif {"similarity-search", "generative"} & set(tasks):
            names[1] = "embedding"
        else:
            names[1] = "feature"
    elif n == 3 and names[1] is None and names[2] is None and "similarity-search" in tasks:
        names[1], names[2] = "token", "embedding"
    elif n >= 4 and names[n - 3] is None:
        names[n - 3] = "channel"
    return _unique(names, ("feature", "depth", "token", "extra"))


def _unique(names: list[str | None], spares: Sequence[str]) -> tuple[str, ...]:
    used = {n for n in names if n}
    pool = [s for s in spares if s not in used]
    out = []
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    for n in names:
        if n is None:
            n = pool.pop(0) if pool else f"dim-{next(letters)}"
            used.add(n)
        out.append(n)
    return tuple(out)


# ------------------------------------------------------------------------------------------ identity


def mlm_name(name: str | None, fallback: str) -> str:
    """``mlm:name``: the user's name, checked, or the model's class name made valid."""
    if name is not None:
        if not mlm.NAME_PATTERN.match(name):
            raise InvalidOptionError(
                f"name={name!r} is not a valid mlm:name: it must start with a letter, end with a letter or digit, "
                "be 3+ characters and hold only letters, digits, spaces, '_', '.' or '-' (no '=', '/' or ':')"
            )
        return name
    cleaned = re.sub(r"[^a-zA-Z0-9_.\-\s]+", "-", fallback).strip("-_. ")
    cleaned = re.sub(r"^[^a-zA-Z]+", "", cleaned)
    if len(cleaned) < 3:
        cleaned = f"model-{cleaned}" if cleaned else "model"
    if not mlm.NAME_PATTERN.match(cleaned):
        cleaned = cleaned + "-model"
    return cleaned


def item_id(name: str) -> str:
    """An Item id made from a name: lowercase, words joined by '-'."""
    return re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-") or "model"


def framework_version(version: str | None = None) -> str | None:
    """torch's version as SemVer ('2.14.1+cu128' stays, '2.6.0a0+git1' becomes '2.6.0-a0+git1'); None when it
    has no major.minor.patch to state (the field is then left out, with a warning)."""
    raw = str(version or torch.__version__)  # torch.__version__ is a str subclass that pickles as a class
    if mlm.SEMVER.match(raw):
        return raw
    try:
        v = Version(raw)
    except InvalidVersion:
        match = re.match(r"(\d+)\.(\d+)\.(\d+)", raw)
        return ".".join(match.groups()) if match else None
    core = f"{v.major}.{v.minor}.{v.micro}"
    pre = []
    if v.pre:
        pre.append(f"{v.pre[0]}{v.pre[1]}")
    if v.dev is not None:
        pre.append(f"dev{v.dev}")
    if v.post is not None:
        pre.append(f"post{v.post}")
    text = core + ("-" + ".".join(pre) if pre else "")
    if v.local:
        text += "+" + re.sub(r"[^0-9a-zA-Z.-]", "-", v.local)
    return text if mlm.SEMVER.match(text) else core


def accelerator(device: str) -> tuple[Accelerator | None, str | None]:
    """``mlm:accelerator`` and a human summary for the device the model was on."""
    kind = mlm.accelerator(device, platform.machine(), platform.system())
    if kind == "cuda":
        name = None
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(torch.cuda.current_device())
        return kind, name
    if kind == "macos-arm" and device == "mps":
        return kind, "Apple silicon (MPS)"
    if kind == "xla":
        return kind, None
    machine = platform.machine().lower()
    return kind, (platform.processor() or machine) if kind else (machine or None)


def architecture(model: torch.nn.Module, given: str | None) -> str:
    """The user's architecture, else the model's class, or that of the network a wrapper (a task) holds."""
    if given:
        return given
    total = sum(p.numel() for p in model.parameters())
    for attr in ("model", "net", "network"):
        inner = getattr(model, attr, None)
        if isinstance(inner, torch.nn.Module) and inner is not model:
            inner_total = sum(p.numel() for p in inner.parameters())
            if total and inner_total >= 0.9 * total:
                return type(inner).__name__
    return type(model).__name__


def pin_to_program(
    inputs: tuple[ModelInput, ...],
    outputs: tuple[ModelOutput, ...],
    model: ModelFacts,
    accepted: Mapping[str, tuple[int, ...]],
) -> tuple[tuple[ModelInput, ...], tuple[ModelOutput, ...], list[str]]:
    """Shapes as the exported program accepts them: dims torch.export fixed are fixed in the Item too.

    Returns the new inputs and outputs, and a description of each dim that was fixed.
    """
    pinned: list[str] = []
    batch: int | None = None
    spatial = False
    new_inputs = []
    roles = {t.name: t.roles for t in model.inputs}
    for spec in inputs:
        stated = spec.input
        shape = accepted.get(spec.name, stated.shape)
        for d, (before, after) in enumerate(zip(stated.shape, shape, strict=True)):
            if before == -1 and after != -1:
                pinned.append(f"{spec.name}.{stated.dim_order[d]}={after}")
                role = roles.get(spec.name, ())[d] if d < len(roles.get(spec.name, ())) else None
                if role == "batch":
                    batch = after
                elif role in ("height", "width"):
                    spatial = True
        new_inputs.append(replace(spec, input=replace(stated, shape=tuple(shape))))
    facts = {t.name: t for t in model.outputs}
    new_outputs = []
    for out in outputs:
        t = facts[out.name]
        sizes = list(out.result.shape)
        for d, role in enumerate(t.roles):
            if role == "batch" and batch is not None:
                sizes[d] = batch
            elif role in ("height", "width") and spatial and sizes[d] == -1:
                sizes[d] = t.observed[d]
        new_outputs.append(replace(out, result=replace(out.result, shape=tuple(sizes))))
    return tuple(new_inputs), tuple(new_outputs), pinned

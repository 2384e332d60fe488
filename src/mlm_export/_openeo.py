"""The openEO-ready profile: an Item that openEO's ML back-end (openeo-processes-dask-ml) loads and runs.

What that reader needs, read from its source (commit 60a75c8; the tests cite the lines): exactly one
``mlm:model`` asset, loaded with ``torch.jit.load`` whatever ``mlm:artifact_type`` says; an http(s) or s3
href it downloads; dims it can match to data-cube dims (``bands``, ``t``, ``y``, ``x``; ``batch`` is its own);
every non-batch size fixed, since it cuts the cube into chunks of exactly those sizes and sizes the result
chunks from the output shape; one tensor in, one tensor out; ``mlm:framework`` "PyTorch" (compared lower-cased).
The default Item stays spec-first (a ``.pt2``, ``height``/``width``, dynamic sizes); this profile is opt-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from torch import nn

from . import mlm
from ._facts import ArtifactFacts, TensorFacts
from ._model_asset import file_href, is_beside
from ._model_files import format_asset
from .errors import InvalidOptionError, option
from .mlm import ModelInput, ModelOutput, Structure

if TYPE_CHECKING:
    from ._item import ItemPlan
    from ._pipeline import Gathered

PROFILES = ("default", "openeo")
#: Our dim names -> the names openEO data cubes use (openeo-processes-dask-ml ``dim_utils.py`` lines 12-17).
DIM_NAMES = {"height": "y", "width": "x", "time": "t", "channel": "bands", "bands": "bands"}
#: Output dims keep ``channel`` (openEO names the result's bands itself).
_OUTPUT_DIM_NAMES = {"height": "y", "width": "x", "time": "t"}
URL_SCHEMES = ("http", "https", "s3")
#: Not ``.pt``: that is also a checkpoint suffix, and a TorchScript file beside ``x.pt`` must not replace it.
SUFFIX = ".torchscript"


def check_options(profile: str, base_url: str | None, pretrained: bool | None = None) -> None:
    """``profile=`` is known; the openEO profile has an absolute ``base_url=`` the back-end can download from."""
    if profile not in PROFILES:
        raise InvalidOptionError(
            f"{option('profile')} must be one of {', '.join(map(repr, PROFILES))}, not {profile!r}"
        )
    if profile == "openeo" and pretrained is False:
        raise InvalidOptionError(
            f"{option('profile', repr('openeo'), 'openeo')} with pretrained=False: openEO's ml_predict refuses a "
            "model that says it is not "
            "trained; drop pretrained=False"
        )
    if base_url is not None:
        check_base_url(base_url)
    elif profile == "openeo":
        raise InvalidOptionError(
            f"{option('profile', repr('openeo'), 'openeo')} needs {option('base_url')}: the http(s) or s3 URL the "
            "files will be published "
            "under, since openEO downloads the model from the Item's absolute href"
        )


def check_base_url(base_url: str) -> str:
    """An http(s) or s3 URL with a host and no query, fragment or credentials, ending in '/'."""
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if (
        parts is None
        or parts.scheme not in URL_SCHEMES
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or any(c.isspace() for c in base_url)
    ):
        raise InvalidOptionError(
            f"{option('base_url')} must be an http://, https:// or s3:// URL with a host and no query, fragment or "
            f"credentials (the folder the files are published under), not {base_url!r}"
        )
    return base_url if base_url.endswith("/") else base_url + "/"


def adapt(item_plan: ItemPlan, gathered: Gathered, base_url: str) -> ItemPlan:
    """The plan in openEO's terms: renamed dims, fixed sizes, a TorchScript model asset at an absolute href."""
    facts = gathered.model
    if (
        facts.input_structure != "tensor"
        or facts.output_structure != "tensor"
        or len(item_plan.inputs) != 1
        or len(item_plan.outputs) != 1
    ):
        raise InvalidOptionError(
            f"{option('profile', repr('openeo'), 'openeo')} needs a model with one tensor in and one tensor out "
            f"(openEO calls model(x) and saves one array); {facts.class_name} takes {facts.input_structure} input "
            f"and returns {facts.output_structure} output"
        )
    url = check_base_url(base_url)
    inputs = (_fixed_input(item_plan.inputs[0], facts.inputs[0]),)
    outputs = (_fixed_output(item_plan.outputs[0], facts.outputs[0]),)
    planned = item_plan.artifacts[0]  # the safetensors file writing would produce, with its size
    weights = format_asset(
        "safetensors", file_href(f"{item_plan.id}.safetensors", url), primary=False, size=planned.size
    )
    if item_plan.artifacts[0].href.startswith(("http://", "https://")):  # published weights: keep them as they are
        weights = replace(item_plan.artifacts[0], key="weights", roles=(mlm.ROLE_WEIGHTS,), artifact_type=None)
    return replace(item_plan, inputs=inputs, outputs=outputs, artifacts=(torchscript_asset(url, item_plan.id), weights))


def torchscript_asset(url: str, stem: str, size: int | None = None, checksum: str | None = None) -> ArtifactFacts:
    """The TorchScript file as the one ``mlm:model`` asset, under key ``model``."""
    from ._torchscript import ARTIFACT_TYPE, MEDIA_TYPE

    return ArtifactFacts(
        key="model",
        href=file_href(f"{stem}{SUFFIX}", url),
        roles=(mlm.ROLE_MODEL,),
        media_type=MEDIA_TYPE,
        title="Model (TorchScript, torch.jit.load)",
        artifact_type=ARTIFACT_TYPE,
        size=size,
        checksum=checksum,
    )


def _fixed(shape: tuple[int, ...], dims: tuple[str, ...], observed: tuple[int, ...]) -> tuple[int, ...]:
    """Every dim but the batch at the size seen in the trace: openEO cuts and sizes chunks from them."""
    return tuple(
        s if (s != -1 or d == "batch") else observed[i] for i, (s, d) in enumerate(zip(shape, dims, strict=True))
    )


def _fixed_input(spec: ModelInput, seen: TensorFacts) -> ModelInput:
    return replace(spec, input=_fixed_structure(spec.input, seen, DIM_NAMES))


def _fixed_output(spec: ModelOutput, seen: TensorFacts) -> ModelOutput:
    return replace(spec, result=_fixed_structure(spec.result, seen, _OUTPUT_DIM_NAMES))


def _fixed_structure(structure: Structure, seen: TensorFacts, names: Mapping[str, str]) -> Structure:
    """Dims renamed to openEO's, and every size but the batch's fixed at the traced one."""
    dims = tuple(names.get(d, d) for d in structure.dim_order)
    return replace(structure, dim_order=dims, shape=_fixed(structure.shape, dims, seen.observed or structure.shape))


def write_files(
    model: nn.Module, gathered: Gathered, item_plan: ItemPlan, out_dir: Path, base_url: str, *, stem: str | None = None
) -> ItemPlan:
    """Write ``<stem>.torchscript`` (checked against the model) and ``<stem>.safetensors``, hrefs under ``base_url``.

    ``stem`` is the Item's id by default, a checkpoint's stem in the callback.
    """
    from . import _artifacts as art
    from ._torchscript import write_torchscript

    module = gathered.module if gathered.module is not None else model
    url = check_base_url(base_url)
    example = _example_tensor(gathered.example)
    stem = stem or item_plan.id
    size, checksum = write_torchscript(module, example, out_dir / f"{stem}{SUFFIX}")
    weights, aliases = art.weights(module)
    written = art.write_safetensors(weights, out_dir / f"{stem}.safetensors", art.safetensors_metadata(aliases))
    href = file_href(f"{stem}.safetensors", url)
    weights_asset = format_asset("safetensors", href, primary=False, size=written.size, checksum=written.checksum)
    return replace(item_plan, artifacts=(torchscript_asset(url, stem, size, checksum), weights_asset))


def _example_tensor(example: Any) -> Any:
    """The one input tensor of the example (a dict or tuple holding one tensor counts too)."""
    import torch

    if isinstance(example, torch.Tensor):
        return example
    values = list(example.values()) if isinstance(example, dict) else list(example)
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    return tensors[0] if len(tensors) == 1 else example


def absolute_hrefs(item_plan: ItemPlan, base_url: str) -> ItemPlan:
    """The written files' relative hrefs (``./name``, model files and runtime files) as URLs under ``base_url``."""
    url = check_base_url(base_url)

    def absolute(href: str) -> str:
        return file_href(href.removeprefix("./"), url) if is_beside(href) else href

    return replace(
        item_plan,
        artifacts=tuple(replace(a, href=absolute(a.href)) for a in item_plan.artifacts),
        extra_assets={k: {**a, "href": absolute(str(a.get("href", "")))} for k, a in item_plan.extra_assets.items()},
    )


def torchscript_beside(model: nn.Module, item: dict[str, Any], path: Path, base_url: str) -> dict[str, Any]:
    """Write ``model`` as TorchScript at ``path`` (run on a batch shaped as the Item's input says) and return
    its ``mlm:model`` asset, href under ``base_url``: what ``mlm-export convert --profile openeo`` adds."""
    import torch

    from ._item import _asset
    from ._sources.libraries import inference_module
    from ._torchscript import write_torchscript

    spec = item["properties"][mlm.INPUT][0]["input"]
    dtype = getattr(torch, spec["data_type"], torch.float32)
    example = torch.zeros([2 if s == -1 else s for s in spec["shape"]], dtype=dtype)
    size, checksum = write_torchscript(inference_module(model), example, path)
    asset = torchscript_asset(check_base_url(base_url), path.name.removesuffix(SUFFIX), size, checksum)
    return _asset(asset, item["properties"].get("bands")).to_dict()

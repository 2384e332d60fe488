"""The Hugging Face folder: what ``save_pretrained`` writes (``model.safetensors``, ``config.json``, a model
card ``README.md``) plus ``mlm.json``, the Item, with relative hrefs to the files beside it.

The card is rendered from the Item alone (``render_card``), so ``mlm-export hf-card`` makes the same card
for any Item. Its YAML header is written by ``huggingface_hub`` (the ``[hf]`` extra), which also parses it
back in the tests; nothing is uploaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import mlm
from ._hrefs import read_json
from ._write import atomic_write_bytes, atomic_write_json, file_checksum
from .errors import InvalidOptionError, MLMExportError

if TYPE_CHECKING:
    import pystac
    from torch import nn

    from ._item import ItemPlan
    from ._options import ExportOptions
    from ._pipeline import Gathered
    from ._provenance import ProvenanceFacts

LAYOUTS = ("flat", "huggingface")
ITEM_FILE = "mlm.json"
CARD_FILE = "README.md"
CONFIG_FILE = "config.json"
#: The stem of every model file in the folder (``model.safetensors``, ``model.pt2``, ``model.onnx``, ...).
MODEL_STEM = "model"
#: MLM tasks -> the Hub's pipeline tags, where one fits.
PIPELINE_TAGS = {
    "semantic-segmentation": "image-segmentation",
    "segmentation": "image-segmentation",
    "instance-segmentation": "image-segmentation",
    "panoptic-segmentation": "image-segmentation",
    "classification": "image-classification",
    "scene-classification": "image-classification",
    "object-detection": "object-detection",
    "detection": "object-detection",
    "similarity-search": "image-feature-extraction",
    "super-resolution": "image-to-image",
    "downscaling": "image-to-image",
    "generative": "image-to-image",
    "image-captioning": "image-to-text",
}
LIBRARY_NAME = "pytorch"
#: The size the loading example uses for a dim the Item leaves dynamic (-1).
EXAMPLE_SIZE = 64


def check_layout(layout: str, profile: str, base_url: str | None = None) -> None:
    """``layout=`` is known, and not combined with a profile that names its files otherwise."""
    if layout not in LAYOUTS:
        raise InvalidOptionError(f"layout= must be one of {', '.join(map(repr, LAYOUTS))}, not {layout!r}")
    if layout == "huggingface" and profile != "default":
        raise InvalidOptionError(f"layout='huggingface' cannot be combined with profile={profile!r}; choose one")
    if layout == "huggingface" and base_url is not None:
        raise InvalidOptionError(
            "layout='huggingface' keeps hrefs relative (the folder moves as one repository); drop base_url="
        )


def write_folder(
    model: nn.Module,
    gathered: Gathered,
    item_plan: ItemPlan,
    out: Path,
    *,
    options: ExportOptions,
    provenance: ProvenanceFacts,
    export_program: bool,
) -> pystac.Item:
    """Write the model files (``model.<suffix>``: the same ``artifacts=``, ``primary=`` and
    ``artifact_timeout=`` as the flat layout) and their runtime files, ``config.json``, ``README.md``, and last
    ``mlm.json``. The layout changes where files go and what surrounds them, never which model files are written.
    """
    from ._item import json_safe_hyperparameters
    from ._pipeline import build_checked, write_model_files
    from ._provenance import with_runtime_files

    _hub()  # fail before writing anything when huggingface_hub is missing
    item_plan = write_model_files(
        model, gathered, item_plan, out, MODEL_STEM, export_program=export_program, artifacts=options.artifacts,
        primary=options.primary, timeout=options.artifact_timeout,
    )  # fmt: skip
    item_plan = with_runtime_files(item_plan, provenance, out, MODEL_STEM, training=True)
    validate = options.validate
    config = json_safe_hyperparameters(item_plan.hyperparameters or {})
    atomic_write_json(out / CONFIG_FILE, config)
    item = build_checked(_with_files(item_plan, out, (CONFIG_FILE,)), validate)
    card = render_card(item.to_dict(include_self_link=False, transform_hrefs=False))
    atomic_write_bytes(out / CARD_FILE, card.encode("utf-8"))
    item = build_checked(_with_files(item_plan, out, (CONFIG_FILE, CARD_FILE)), validate)
    path = out / ITEM_FILE
    item.set_self_href(str(path.resolve()))
    atomic_write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))
    return item


def _with_files(item_plan: ItemPlan, out: Path, names: Sequence[str]) -> ItemPlan:
    """The plan with ``config.json``/``README.md`` as metadata assets (relative href, size, checksum)."""
    media = {CONFIG_FILE: (mlm.MEDIA_JSON, "Model configuration (init arguments)"),
             CARD_FILE: (mlm.MEDIA_MARKDOWN, "Model card")}  # fmt: skip
    assets = dict(item_plan.extra_assets)
    for name in names:
        kind, title = media[name]
        path = out / name
        assets[Path(name).stem.lower().replace("readme", "card")] = {
            "href": f"./{name}", "type": kind, "title": title, "roles": [mlm.ROLE_METADATA],
            mlm.FILE_SIZE: path.stat().st_size, mlm.FILE_CHECKSUM: file_checksum(path),
        }  # fmt: skip
    return replace(item_plan, extra_assets=assets)


def _hub() -> Any:
    try:
        import huggingface_hub
    except ModuleNotFoundError as e:
        raise MLMExportError(
            "layout='huggingface' and hf-card need huggingface_hub: pip install 'mlm-export[hf]'"
        ) from e
    return huggingface_hub


def card_metadata(item: Mapping[str, Any]) -> dict[str, Any]:
    """The card's YAML header: license, library, pipeline tag (where one fits) and tags including ``stac-mlm``."""
    props = item.get("properties", {})
    tasks = [t for t in props.get(mlm.TASKS, []) if isinstance(t, str)]
    tags = ["stac-mlm", "earth-observation", *tasks]
    arch = props.get(mlm.ARCHITECTURE)
    meta: dict[str, Any] = {"library_name": LIBRARY_NAME, "tags": list(dict.fromkeys(tags))}
    if isinstance(arch, str) and arch:
        meta["tags"].append(arch)
    license_ = props.get("license")
    if isinstance(license_, str) and license_:
        meta["license"] = "other" if license_.lower() in ("proprietary", "various") else license_.lower()
    pipeline = next((PIPELINE_TAGS[t] for t in tasks if t in PIPELINE_TAGS), None)
    if pipeline:
        meta["pipeline_tag"] = pipeline
    source = props.get(mlm.PRETRAINED_SOURCE)
    if isinstance(source, str) and source:
        meta["datasets"] = [source]
    return meta


def render_card(item: Mapping[str, Any], item_href: str = f"./{ITEM_FILE}") -> str:
    """A model card for an MLM Item: YAML metadata, then inputs, bands, outputs, classes, extent and loading.

    ``item_href`` is where the card links the Item, relative to the card (``./mlm.json`` in the Hugging Face
    folder; the Item's own file name when ``hf-card`` writes the card beside another Item).
    """
    hub = _hub()
    link = _item_link(item_href)
    props = item.get("properties", {})
    data = hub.ModelCardData(**card_metadata(item))
    name = _text(props.get(mlm.NAME) or item.get("id") or "Model")
    lines = [f"# {name}", ""]
    if props.get("description"):
        lines += [_text(props["description"]), ""]
    lines += [
        f"Described by a STAC Item with the Machine Learning Model extension: {link} (written by mlm-export).",
        "",
        "| | |",
        "|---|---|",
    ]
    for label, key in (("Architecture", mlm.ARCHITECTURE), ("Tasks", mlm.TASKS), ("Framework", mlm.FRAMEWORK),
                       ("Framework version", mlm.FRAMEWORK_VERSION), ("Parameters", mlm.TOTAL_PARAMETERS),
                       ("Memory", mlm.MEMORY_SIZE), ("Pretrained on", mlm.PRETRAINED_SOURCE),
                       ("Suggested batch size", mlm.BATCH_SIZE_SUGGESTION)):  # fmt: skip
        value = props.get(key)
        if value not in (None, "", []):
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            lines.append(f"| {label} | {_cell(shown)}{' bytes' if key == mlm.MEMORY_SIZE else ''} |")
    lines += ["", "## Inputs", ""]
    for spec in props.get(mlm.INPUT, []):
        lines += _tensor_lines(spec, "input")
    lines += ["## Outputs", ""]
    for spec in props.get(mlm.OUTPUT, []):
        lines += _tensor_lines(spec, "result")
    lines += ["## Training data extent", "", *_extent_lines(item), "", "## How to load", "", *_load_lines(item, link)]
    card = hub.ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
    return str(card)


def _tensor_lines(spec: Mapping[str, Any], key: str) -> list[str]:
    struct = spec.get(key) or {}
    out = [
        f"**{_text(spec.get('name', ''))}**: shape `{_cell(struct.get('shape'))}`, dims "
        f"`{_cell(struct.get('dim_order'))}`, `{_text(struct.get('data_type', ''))}`"
        + (f"; tasks: {_cell(spec['tasks'])}" if spec.get("tasks") else ""),
        "",
    ]
    bands = [
        b if isinstance(b, str) else b.get("name", "") for b in spec.get("bands") or [] if isinstance(b, str | dict)
    ]
    if bands:
        out += [f"Bands, in order: {_cell(bands)}", ""]
    scaling = spec.get("value_scaling")
    if scaling:
        out += ["Value scaling (per band, or one for all):", "", "| type | parameters |", "|---|---|"]
        for s in scaling if isinstance(scaling, list) else []:
            params = {k: v for k, v in s.items() if k != "type"} if isinstance(s, dict) else {}
            out.append(f"| {_cell(s.get('type') if isinstance(s, dict) else s)} | {_cell(params)} |")
        out.append("")
    classes = spec.get(mlm.CLASSES)
    if classes:
        out += ["| value | class | color |", "|---|---|---|"]
        for c in classes if isinstance(classes, list) else []:
            if isinstance(c, dict):
                color = c.get("color_hint")
                out.append(f"| {_cell(c.get('value'))} | {_cell(c.get('name'))} | {_cell(color) if color else ''} |")
        out.append("")
    return out


def _extent_lines(item: Mapping[str, Any]) -> list[str]:
    props = item.get("properties", {})
    bbox = item.get("bbox")
    start, end = props.get("start_datetime"), props.get("end_datetime")
    when = f"{_text(start)} to {_text(end)}" if start and end else _text(props.get("datetime") or "unknown")
    where = f"bbox (west, south, east, north) `{_cell(bbox)}`" if bbox else "unknown (no bbox in the Item)"
    return [f"- Area: {where}", f"- Time: {when}"]


def _load_lines(item: Mapping[str, Any], link: str) -> list[str]:
    """How to run the model asset, by its ``mlm:artifact_type``; plain torch, no training code."""
    assets = item.get("assets", {})
    model = next((a for a in assets.values() if isinstance(a, dict) and mlm.ROLE_MODEL in (a.get("roles") or [])), {})
    href = _beside(str(model.get("href", "")))
    code = ["import torch", ""]
    if href.startswith(("http://", "https://")):  # loaders take local files
        code.append(f"# first download {href}")
        href = _beside(href.rsplit("/", 1)[-1])
    kind = model.get(mlm.ARTIFACT_TYPE)
    if kind == mlm.ARTIFACT_EXPORT:
        code.append(f'model = torch.export.load("{href}").module()')
    elif kind == mlm.ARTIFACT_TORCHSCRIPT:
        code.append(f'model = torch.jit.load("{href}").eval()')
    else:
        code[:0] = ["from safetensors.torch import load_file"]
        code += ["model = ...  # build the architecture first",
                 f'model.load_state_dict(load_file("{href}"), strict=False)']  # fmt: skip
    struct = (item.get("properties", {}).get(mlm.INPUT) or [{}])[0].get("input") or {}
    shape, dims = struct.get("shape") or [], struct.get("dim_order") or []
    if isinstance(shape, list) and shape and all(isinstance(s, int) for s in shape):
        sizes = [1 if i == 0 and s == -1 else EXAMPLE_SIZE if s == -1 else s for i, s in enumerate(shape)]
        code += [
            f"x = torch.zeros({', '.join(map(str, sizes))})  # {_text(', '.join(map(str, dims)))}"
            + "; -1 in the Item: any size",
            "prediction = model(x)",
        ]
    return ["```python", *code, "```", "", f"Every file's size and sha256 are in {link}."]


def _item_link(href: str) -> str:
    """A Markdown link to the Item file: the name shown as code, the target percent-encoded (inert)."""
    from urllib.parse import quote

    name = href.removeprefix("./")
    return f"[`{_text(name).replace('`', '')}`]({quote(href)})"


def _beside(href: str) -> str:
    """A model href the card may show in code: a file beside the card, or an http(s) URL; else a placeholder."""
    href = href.removeprefix("./")
    safe = re.fullmatch(r"https?://[^\s\"'\\]+|[A-Za-z0-9_][A-Za-z0-9_.\-]*", href)
    return href if safe and not href.startswith("..") else "MODEL_FILE"


def _text(value: Any) -> str:
    """Item text made inert in Markdown: one line, no HTML."""
    return " ".join(str(value).split()).replace("<", "&lt;").replace(">", "&gt;")


def _cell(value: Any) -> str:
    text = (
        ", ".join(map(str, value))
        if isinstance(value, list)
        else json.dumps(value)
        if isinstance(value, dict)
        else value
    )
    return _text(text).replace("|", "\\|").replace("`", "'")


def read_item(path: Path) -> tuple[dict[str, Any], Path]:
    """The Item at ``path``: a JSON file, or a folder holding ``mlm.json`` (else its one Item JSON)."""
    if path.is_dir():
        candidates = [path / ITEM_FILE] if (path / ITEM_FILE).is_file() else sorted(path.glob("*.json"))
        items = [p for p in candidates if _is_item(p)]
        if len(items) != 1:
            raise InvalidOptionError(
                f"{path} holds {len(items)} MLM Items; pass the Item's JSON file instead of the folder"
            )
        path = items[0]
    try:
        data = read_json(path)
    except (OSError, ValueError) as e:
        raise InvalidOptionError(f"cannot read an Item from {path}: {e}") from e
    if not _is_item_dict(data):
        raise InvalidOptionError(f"{path} is not a STAC Item with the MLM extension")
    return data, path


def _is_item(path: Path) -> bool:
    try:
        return _is_item_dict(read_json(path))
    except (OSError, ValueError):
        return False


def _is_item_dict(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("type") == "Feature"
        and isinstance(data.get("properties"), dict)
        and any(isinstance(u, str) and "/mlm/" in u for u in data.get("stac_extensions") or [])
    )

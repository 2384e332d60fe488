"""The form's description, generated from the JSON Schemas an MLM Item is validated against.

Each field is read from its schema (type, enum, examples, title, description, required) rather than written
out by hand; only the grouping (the MLM spec's own: model, inputs, outputs, assets, spatio-temporal, related
extensions) and a few widget choices (a license search, a colour picker, multi-line descriptions) are ours.
The browser renders the returned tree (``static/form.js``); unknown shapes fall back to a JSON editor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urldefrag, urljoin

from .. import mlm
from .._validate import SchemaStore, default_store

STAC_ITEM = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/"
#: Nesting deeper than this is edited as JSON.
MAX_DEPTH = 6
#: Widgets chosen by field name: what the schema cannot say about how a value is best typed.
WIDGETS = {"license": "license", "color_hint": "color", "description": "textarea", mlm.SCI_CITATION: "textarea"}
#: Help for fields whose schema says nothing about what to type.
HELP = {
    "license": "An SPDX license identifier or expression (type to search the list), or 'other' with a license link.",
    mlm.NAME: "A name for the model: starts with a letter; letters, digits, spaces, '.', '_' and '-'.",
}
#: MLM fields that belong on assets only (the schema forbids them in Item properties).
ASSET_ONLY = {mlm.ARTIFACT_TYPE, mlm.PREFIX + "compile_method", mlm.PREFIX + "entrypoint"}
#: The STAC common metadata document, mixed into assets and bands; its fields are not offered one by one.
COMMON = "common.json"
#: Suggested asset roles: the MLM ones this project writes, then STAC's usual ones.
ASSET_ROLES = [mlm.ROLE_MODEL, mlm.ROLE_WEIGHTS, mlm.ROLE_CHECKPOINT, mlm.ROLE_SOURCE_CODE]
ASSET_ROLES += [mlm.ROLE_DATA, mlm.ROLE_METADATA]
_NULL = {"type": "null"}
_EMPTY_ARRAY = {"type": "array", "maxItems": 0}

Spec = dict[str, Any]


class _Walker:
    """Turn schema nodes into field specs, following ``$ref`` across documents through a SchemaStore."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store

    def ref(self, url: str, base: str) -> tuple[Any, str]:
        """The node a reference points at and the document URL it lives in."""
        absolute = urljoin(base, url)
        doc_url, fragment = urldefrag(absolute)
        node = self.store.load(doc_url)
        for part in [p for p in fragment.split("/") if p]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, doc_url

    def flatten(self, node: Any, base: str) -> tuple[dict[str, Any], str]:
        """Follow ``$ref`` and merge ``allOf`` parts into one node (properties united, first type wins)."""
        if not isinstance(node, Mapping):
            return {}, base
        while "$ref" in node:
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target, base = self.ref(node["$ref"], base)
            node = {**target, **extra}
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for part in node.get("allOf", []):
            if isinstance(part, Mapping) and str(part.get("$ref", "")).endswith(COMMON):
                continue  # STAC common metadata (providers, instruments, ...): shown as JSON if present
            sub, _ = self.flatten(part, base)
            for key, value in sub.items():
                if key in ("properties",):
                    merged["properties"] = {**value, **merged.get("properties", {})}
                elif key == "required":
                    merged["required"] = sorted({*merged.get("required", []), *value})
                else:
                    merged.setdefault(key, value)
        return merged, base

    def field(self, key: str, node: Any, base: str, depth: int = 0) -> Spec:
        """The spec of one field: ``kind`` plus what its widget needs."""
        node, base = self.flatten(node, base)
        spec: Spec = {"key": key, "label": _label(key, node), "help": node.get("description") or HELP.get(key, "")}
        if depth > MAX_DEPTH:
            return {**spec, "kind": "json"}
        nullable = False
        for combinator in ("oneOf", "anyOf"):
            if combinator in node:
                alternatives = [self.flatten(a, base) for a in node[combinator]]
                nullable = any(a == _NULL for a, _ in alternatives)
                kept = [(a, b) for a, b in alternatives if a not in (_NULL, _EMPTY_ARRAY)]
                return {**spec, **self._union(key, kept, depth), "nullable": nullable}
        return {**spec, **self._typed(key, node, base, depth)}

    def _union(self, key: str, kept: list[tuple[dict[str, Any], str]], depth: int) -> Spec:
        if len(kept) == 1:
            return self.field(key, kept[0][0], kept[0][1], depth)
        alternatives = [a for a, _ in kept]
        enums = [a for a in alternatives if "enum" in a]
        free = [a for a in alternatives if a.get("type") == "string" and "enum" not in a]
        if enums and free:  # a recommended vocabulary that also accepts other names
            return {"kind": "text", "suggestions": [v for a in enums for v in a["enum"]]}
        consts = [a.get("properties", {}).get("type", {}).get("const") for a in alternatives]
        if all(isinstance(c, str) for c in consts):  # tagged variants: one form with the union of fields
            fields: dict[str, Spec] = {}
            for alt, base in kept:
                for name, sub in alt.get("properties", {}).items():
                    if name != "type":
                        fields.setdefault(name, self.field(name, sub, base, depth + 1))
            tag = {"key": "type", "label": "type", "help": "", "kind": "choice", "choices": consts}
            return {"kind": "object", "fields": [tag, *fields.values()], "required": ["type"]}
        if any(a.get("type") == "string" for a in alternatives):  # a band by name, or an object (then JSON)
            return {"kind": "text"}
        return {"kind": "json"}

    def _typed(self, key: str, node: dict[str, Any], base: str, depth: int) -> Spec:
        types = node.get("type")
        out: Spec = {}
        if isinstance(types, list):
            out["nullable"] = "null" in types
            types = next((t for t in types if t != "null"), None)
        if "enum" in node:
            return {"kind": "choice", "choices": list(node["enum"])}
        if key in WIDGETS and types in ("string", None):
            return {"kind": WIDGETS[key]}
        if types == "string":
            out["kind"] = "datetime" if node.get("format") == "date-time" else "text"
            if node.get("examples"):
                out["suggestions"] = list(node["examples"])
            if node.get("pattern"):
                out["pattern"] = node["pattern"]
            return out
        if types in ("integer", "number", "boolean"):
            return {"kind": types}
        if types == "array":
            items, items_base = self.flatten(node.get("items", {}), base)
            item = self.field(key, items, items_base, depth + 1)
            if item["kind"] == "choice":
                return {"kind": "multichoice", "choices": item["choices"]}
            if item["kind"] in ("text", "integer", "number"):
                return {"kind": "list", "item": item["kind"], "suggestions": items.get("examples", [])}
            if item["kind"] == "object":
                return {"kind": "objects", "item": item}
            return {"kind": "json"}
        if types == "object" and node.get("properties"):
            fields = [self.field(k, v, base, depth + 1) for k, v in node["properties"].items()]
            return {"kind": "object", "fields": fields, "required": list(node.get("required", []))}
        return {"kind": "json"}


def _label(key: str, node: Mapping[str, Any]) -> str:
    title = node.get("title")
    return title if isinstance(title, str) and len(title) <= 40 else key


def _path(spec: Spec, path: list[str]) -> Spec:
    return {**spec, "path": path}


def form_spec(store: SchemaStore | None = None) -> dict[str, Any]:
    """Every group of the form, each a list of top-level fields with their JSON path in the Item."""
    walker = _Walker(store or default_store())
    core = STAC_ITEM + "item.json"
    mlm_fields, _ = walker.ref("#/$defs/fields", mlm.MLM_SCHEMA)
    basics = walker.ref("basics.json", core)[0]["properties"]
    datetimes = walker.ref("datetime.json", core)[0]["properties"]
    licensing = walker.ref("licensing.json", core)[0]["properties"]
    item_props = walker.ref("#/definitions/core", core)[0]["allOf"][2]["properties"]

    def prop(key: str, node: Any, base: str) -> Spec:
        return _path(walker.field(key, node, base), ["properties", key])

    model = [
        _path(walker.field("id", item_props["id"], core), ["id"]),
        prop("title", basics["title"], core),
        prop("description", basics["description"], core),
        prop("license", licensing["license"], core),
        prop("keywords", basics["keywords"], core),
    ]
    model += [
        prop(k, v, mlm.MLM_SCHEMA)
        for k, v in mlm_fields["properties"].items()
        if k not in ASSET_ONLY and k not in (mlm.INPUT, mlm.OUTPUT)
    ]
    asset = walker.field("asset", {"$ref": "#/definitions/asset"}, core)
    asset["fields"] += [
        walker.field(mlm.ARTIFACT_TYPE, {"$ref": f"#/$defs/{mlm.ARTIFACT_TYPE}"}, mlm.MLM_SCHEMA),
        *(
            walker.field(k, {"$ref": f"#/definitions/fields/properties/{k}"}, mlm.FILE_SCHEMA)
            for k in (mlm.FILE_SIZE, mlm.FILE_CHECKSUM)
        ),
    ]
    for sub in asset["fields"]:
        if sub["key"] == "roles":
            sub["suggestions"] = ASSET_ROLES
    bands = prop("bands", walker.ref("bands.json", core)[0]["properties"]["bands"], core)
    eo = walker.ref("#/definitions/fields", mlm.EO_SCHEMA)[0]["properties"]
    bands["item"]["fields"] += [
        prop("description", basics["description"], core) | {"path": None},
        *(walker.field(k, eo[k], mlm.EO_SCHEMA) for k in (mlm.EO_COMMON_NAME, mlm.EO_CENTER_WAVELENGTH)),
    ]
    sci = walker.ref("#/definitions/fields", mlm.SCI_SCHEMA)[0]["properties"]
    return {
        "groups": [
            {"id": "model", "title": "Model", "fields": model},
            {
                "id": "inputs",
                "title": "Inputs",
                "fields": [prop(mlm.INPUT, mlm_fields["properties"][mlm.INPUT], mlm.MLM_SCHEMA)],
            },
            {
                "id": "outputs",
                "title": "Outputs",
                "fields": [prop(mlm.OUTPUT, mlm_fields["properties"][mlm.OUTPUT], mlm.MLM_SCHEMA)],
            },
            {
                "id": "assets",
                "title": "Assets",
                "fields": [
                    {"key": "assets", "label": "Assets", "help": "", "kind": "map", "item": asset, "path": ["assets"]}
                ],
            },
            {
                "id": "spatiotemporal",
                "title": "Spatio-temporal",
                "fields": [
                    _path(walker.field("geometry", {}, core), ["geometry"]),
                    _path(
                        {
                            "key": "bbox",
                            "label": "bbox",
                            "help": "west, south, east, north (EPSG:4326)",
                            "kind": "list",
                            "item": "number",
                        },
                        ["bbox"],
                    ),
                    *(prop(k, datetimes[k], core) for k in ("datetime", "start_datetime", "end_datetime")),
                ],
            },
            {
                "id": "extensions",
                "title": "Related extensions",
                "fields": [bands, *(prop(k, sci[k], mlm.SCI_SCHEMA) for k in (mlm.SCI_DOI, mlm.SCI_CITATION))],
            },
        ]
    }

"""Every cap on what a stranger's file may make mlm-export read, expand, hash or accept: one per kind of input.

Checkpoints, Items, Collections, model files and form requests come from people the user may not know. Each
kind of input has one bound, here, used the same way by every command and by the library; the README's
Security section lists them. Only the bounds a real user may need to raise (a large trusted checkpoint, a
huge model file on a slow disk) read an environment variable; the others are fixed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import InputTooLargeError

__all__ = [
    "CFF_BYTES",
    "FORM_BODY_BYTES",
    "HASH_BYTES",
    "HASH_SECONDS",
    "INFLATE_BYTES",
    "ITEM_BYTES",
    "JSON_DEPTH",
    "JSON_VALUES",
    "MODEL_READ_BYTES",
    "PICKLE_BYTES",
    "SAFETENSORS_HEADER_BYTES",
    "SCHEMA_BYTES",
    "STATE_KEYS",
]


def _env_number(name: str, default: float) -> float:
    """A positive number from the environment, else ``default`` (a typo never lifts a bound)."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


#: Largest Item or Collection JSON file read (validate, verify, hf-card, match, publish, form, convert), and a
#: STAC document named by ``training_data=``. The largest real Items are a few hundred kB.
ITEM_BYTES = 16 << 20
#: Deepest nesting of JSON read from a stranger (an Item, a Collection, a form request, an Item embedded in a
#: checkpoint). Real Items nest under 10 levels; deeper JSON is refused in one line, never a RecursionError.
JSON_DEPTH = 64
#: Most values (containers and scalars) expanded from one stranger's structure: an Item embedded in a
#: checkpoint and its hyperparameters. A pickle can share one list at every level (``L = [L, L]``): 2 KB that
#: expand to billions of values when written as JSON.
JSON_VALUES = 1_000_000
#: Largest pickle (``data.pkl`` of a zip checkpoint, the head of a legacy one) unpickled without ``--trust``:
#: it bounds the objects a load creates. Real checkpoints' pickles are a few MB (``MLM_EXPORT_MAX_PICKLE``).
PICKLE_BYTES = int(_env_number("MLM_EXPORT_MAX_PICKLE", 32 << 20))
#: Most bytes the compressed members of one zip checkpoint may inflate to, beyond the file's own size
#: (``torch.save`` never compresses; ``MLM_EXPORT_MAX_INFLATE``).
INFLATE_BYTES = int(_env_number("MLM_EXPORT_MAX_INFLATE", 256 << 20))
#: Most tensors in a state dict or a safetensors file read (the largest real models have a few thousand).
STATE_KEYS = 100_000
#: Largest safetensors header (its JSON table of tensors); safetensors itself allows 100 MB.
SAFETENSORS_HEADER_BYTES = 16 << 20
#: Largest local asset hashed to check a stated ``file:checksum`` (``MLM_EXPORT_HASH_BYTES``).
HASH_BYTES = int(_env_number("MLM_EXPORT_HASH_BYTES", 64 << 30))
#: Largest model file ``verify`` reads into memory to check and load from those bytes (``MLM_EXPORT_MAX_MODEL_READ``).
MODEL_READ_BYTES = int(_env_number("MLM_EXPORT_MAX_MODEL_READ", 16 << 30))
#: Longest a single asset's hash may take before the check stops and says so (``MLM_EXPORT_HASH_SECONDS``).
HASH_SECONDS = _env_number("MLM_EXPORT_HASH_SECONDS", 300.0)
#: Largest request body the local form accepts (an Item with long class and band lists is a few hundred kB).
FORM_BODY_BYTES = 8 << 20
#: Largest JSON Schema downloaded; the biggest published STAC schema is under 100 kB.
SCHEMA_BYTES = 5 << 20
#: Largest ``CITATION.cff`` read beside a model's source.
CFF_BYTES = 256 << 10


def check_structure(value: Any, what: str, *, values: int | None = JSON_VALUES) -> None:
    """Refuse a structure from a stranger nested deeper than :data:`JSON_DEPTH` or holding (once expanded: a
    list shared at every level counts each time) more than ``values`` values (None: JSON parsed from bytes,
    whose size already bounds it); walked without recursion, so the walk can neither recurse too deep nor
    expand what it counts."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    count = 1
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, Mapping):
            children: Any = obj.values()
        elif isinstance(obj, list | tuple | set | frozenset):
            children = obj
        else:
            continue
        if depth >= JSON_DEPTH:
            raise InputTooLargeError(f"{what} is nested deeper than {JSON_DEPTH} levels; it is not read")
        count += len(children)
        if values is not None and count > values:
            raise InputTooLargeError(
                f"{what} expands to over {values:,} values (a structure shared with itself?); it is not read"
            )
        stack.extend((child, depth + 1) for child in children)

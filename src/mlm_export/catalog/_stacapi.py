"""The STAC API backend: Items posted through the Transactions extension, found with pystac-client.

Tested against stac-fastapi-pgstac. A call checks every Item first (validation, conflicts) and posts nothing
unless all pass; Items go in one bulk request per Collection (an ItemCollection, one pgstac transaction on
stac-fastapi-pgstac), updates as one PUT each. If a later request fails, the Items this call created are
deleted again (best effort: a server that dies half-way can keep some). Through an API, pgstac's copy is
what comes back: null-valued fields are dropped (``datetime: null`` is restored) and links are the API's.

Ids come from strangers' Items and become URL path segments: every id and collection id must be made of the
characters :data:`ID_CHARS` allows (no ``/``, ``#``, ``?``, ``%``, ``\\`` or control characters, and no ``..``),
checked for the whole call before any request, and each segment is percent-quoted as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from ._base import AddOptions, AddResult, CatalogBase, as_dict, prepared_items
from ._errors import CatalogError, CatalogFormatError, CatalogUnreachableError
from ._pgstac import default_collection, indexed, search_body, unindexed, with_collection
from ._query import Query

TIMEOUT_S = 30
TRANSACTIONS = "ogcapi-features/extensions/transaction"
#: What an id sent to a STAC API may be made of: letters and digits of any script, and ``_ - . ~ : @ + , = ! $ &
#: ' ( ) * ;`` and spaces, at most 1024 of them, not containing ``..`` and not ``.`` alone (dot segments).
ID_CHARS = re.compile(r"[\w\-.~:@+,=!$&'()*; ]{1,1024}")


def checked_id(value: Any, what: str) -> str:
    """An id that can be one URL path segment of a STAC API, or a one-line :class:`CatalogFormatError`."""
    text = str(value)
    if not ID_CHARS.fullmatch(text) or ".." in text or text == "." or text.strip(" ") != text:
        raise CatalogFormatError(
            f"{what} {text!r} cannot be sent to a STAC API: ids there may hold letters, digits, spaces and "
            "_-.~:@+,=!$&'()*; only (no '/', '..', '#', '?', '%' or control characters, not '.' alone); rename it"
        )
    return text


def _path(*segments: str) -> str:
    """``/seg/seg...`` with every segment percent-quoted (checked ids, quoted again: nothing in one can start
    another segment, a query or a fragment)."""
    return "".join("/" + quote(s, safe="") for s in segments)


class StacApiCatalog(CatalogBase):
    """A STAC API at an ``http(s)://`` URL (search for everyone; Transactions to publish)."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        self._session: Any = None

    def __repr__(self) -> str:
        return f"StacApiCatalog({self.url!r})"

    def _request(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        import requests

        if self._session is None:
            self._session = requests.Session()
            self._session.headers.update(self.headers)
        url = f"{self.url}{path}"
        try:
            resp = self._session.request(method, url, json=body, timeout=TIMEOUT_S)
        except requests.RequestException as e:
            reason = " ".join(str(e).split())[:300]
            raise CatalogUnreachableError(f"cannot reach the STAC API at {self.url}: {reason}") from e
        if resp.status_code == 404 and 404 in ok:
            return None
        if resp.status_code not in ok:
            raise CatalogError(f"the STAC API answered {method} {url} with {resp.status_code}: {resp.text[:300]}")
        try:
            return resp.json() if resp.content else None
        except ValueError as e:
            raise CatalogFormatError(f"the STAC API at {self.url} answered {method} {path} with no JSON") from e

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _check_transactions(self) -> None:
        landing = self._request("GET", "/") or {}
        if not any(TRANSACTIONS in c for c in landing.get("conformsTo", [])):
            raise CatalogError(
                f"the STAC API at {self.url} does not offer the Transactions extension, so Items cannot be "
                "published to it; publish to a pgstac database (postgresql://...) or a folder instead"
            )

    def _existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            body = {"ids": chunk, "limit": len(chunk), "fields": {"include": ["id"]}}
            page = self._request("POST", "/search", body) or {}
            found |= {f["id"] for f in page.get("features", [])}
        return found

    def _add(self, items: Iterable[Any], collections: list[dict[str, Any]], options: AddOptions) -> AddResult:
        """Post Items (and Collections) after checking all of them; nothing is posted if any check fails."""
        pending = [as_dict(i) for i in items]
        for collection in collections:  # before any request: an id that would change the URL stops the call
            checked_id(collection.get("id"), "collection id")
        for item in pending:
            checked_id(item.get("id"), "Item id")
            checked_id(with_collection(item)["collection"], f"collection of Item {item.get('id')!r}:")
        self._check_transactions()
        existing = self._existing([str(i.get("id")) for i in pending])
        result = AddResult()
        ready = [item for item, _ in prepared_items(pending, existing, options, result)]
        options.check(result)
        for collection in collections:
            self._ensure_collection(dict(collection), replace=True)
        created: list[dict[str, Any]] = []
        try:
            by_collection: dict[str, list[dict[str, Any]]] = {}
            for item in (with_collection(i) for i in ready):
                by_collection.setdefault(item["collection"], []).append(indexed(item))
            for cid, group in by_collection.items():
                self._ensure_collection(default_collection(cid), replace=False)
                new = [i for i in group if i["id"] not in existing]
                if new:
                    body = {"type": "FeatureCollection", "features": new}
                    self._request("POST", _path("collections", cid, "items"), body)
                    created += new
                for item in (i for i in group if i["id"] in existing):
                    self._request("PUT", _path("collections", cid, "items", item["id"]), item)
        except CatalogError:
            for item in created:
                path = _path("collections", item["collection"], "items", item["id"])
                self._request("DELETE", path, ok=(200, 204, 404))
            raise
        return result

    def _ensure_collection(self, collection: dict[str, Any], *, replace: bool) -> None:
        cid = checked_id(collection["id"], "collection id")
        there = self._request("GET", _path("collections", cid), ok=(200, 404)) is not None
        if not there:
            self._request("POST", "/collections", collection)
        elif replace:
            self._request("PUT", _path("collections", cid), collection)

    def search(self, query: Query | None = None) -> list[dict[str, Any]]:
        """Items matching ``query`` (POST /search with a CQL2 JSON filter, through pystac-client)."""
        import pystac_client
        from pystac_client.exceptions import APIError

        query = query or Query()
        body = search_body(query)
        self._request("GET", "/")  # an unreachable API is one line, before pystac-client's retries
        try:
            client = pystac_client.Client.open(self.url, headers=self.headers or None, timeout=TIMEOUT_S)
            search = client.search(
                method="POST",
                max_items=query.limit,
                limit=min(query.limit, 1000),
                filter=body.get("filter"),
                filter_lang="cql2-json" if "filter" in body else None,
                bbox=body.get("bbox"),
                datetime=body.get("datetime"),
            )
            features = list(search.items_as_dicts())
        except APIError as e:
            raise CatalogError(
                f"the STAC API at {self.url} refused the search: {' '.join(str(e).split())[:300]}"
            ) from e
        except (OSError, json.JSONDecodeError) as e:
            reason = " ".join(str(e).split())[:300]
            raise CatalogUnreachableError(f"cannot reach the STAC API at {self.url}: {reason}") from e
        return [_restored(unindexed(f)) for f in features]


def _restored(item: dict[str, Any]) -> dict[str, Any]:
    """``datetime: null`` is required with an interval; pgstac drops it with the other nulls."""
    props = item.get("properties", {})
    if "datetime" not in props and "start_datetime" in props:
        item = {**item, "properties": {**props, "datetime": None}}
    return item

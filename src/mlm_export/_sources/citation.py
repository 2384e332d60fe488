"""What to cite: a ``CITATION.cff`` of the training project, read with PyYAML when installed, else a tiny reader.

The Citation File Format (https://citation-file-format.github.io) names the software's DOI (``doi`` or an
``identifiers`` entry of type doi), its title, version, authors and release date, and a ``preferred-citation``
(often the paper). Only plain values are read; nothing in the file is executed (``yaml.safe_load``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _limits as limits
from .._hrefs import read_regular

CFF_FILE = "CITATION.cff"
#: Larger files are not a citation: refuse them instead of parsing.
MAX_CFF_BYTES = limits.CFF_BYTES
DOI_PATTERN = re.compile(r"^10\.[0-9a-zA-Z]{4,}/\S+$")


@dataclass(frozen=True)
class CitationFacts:
    """A DOI and a citation text for the work, and the publications it asks to be cited with."""

    doi: str | None = None
    citation: str | None = None
    #: ``{"doi": ..., "citation": ...}`` per publication.
    publications: tuple[dict[str, str], ...] = ()
    source: str | None = None


def clean_doi(value: Any) -> str | None:
    """A bare DOI (``10.xxxx/yyy``) from a DOI, ``doi:`` form or doi.org URL; None if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    text = re.sub(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)", "", text, flags=re.IGNORECASE)
    return text if DOI_PATTERN.match(text) else None


def find_cff(root: Path | None) -> Path | None:
    """``CITATION.cff`` at the root of the training project, if there is one."""
    if root is None:
        return None
    path = root / CFF_FILE
    return path if path.is_file() else None


def read_cff(path: Path) -> CitationFacts:
    """The software's DOI and citation, and its preferred citation as a publication, from a ``CITATION.cff``."""
    try:  # a regular file of bounded size (never a FIFO or device swapped in), read once
        text = read_regular(path, MAX_CFF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return CitationFacts()
    data = _parse(text)
    if not isinstance(data, dict):
        return CitationFacts()
    doi = clean_doi(data.get("doi")) or _identifier_doi(data.get("identifiers"))
    publications: list[dict[str, str]] = []
    preferred = data.get("preferred-citation")
    if isinstance(preferred, dict):
        pub: dict[str, str] = {}
        pdoi = clean_doi(preferred.get("doi")) or _identifier_doi(preferred.get("identifiers"))
        if pdoi:
            pub["doi"] = pdoi
        ptext = _citation_text(preferred)
        if ptext:
            pub["citation"] = ptext
        if pub and pub.get("doi") != doi:
            publications.append(pub)
    return CitationFacts(doi=doi, citation=_citation_text(data), publications=tuple(publications), source=str(path))


def _parse(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        return _tiny_yaml(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _tiny_yaml(text: str) -> dict[str, Any]:
    """Top-level scalars and the ``authors`` names of a CFF file, for when PyYAML is not installed."""
    data: dict[str, Any] = {}
    authors: list[dict[str, str]] = []
    section = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        top = re.match(r"^([A-Za-z][\w-]*):\s*(.*)$", raw)
        if top:
            section = top.group(1)
            if top.group(2):
                data[section] = _scalar(top.group(2))
            continue
        if section == "authors":
            item = re.match(r"^\s*(-\s*)?([\w-]+):\s*(.+)$", raw)
            if item:
                if item.group(1) or not authors:
                    authors.append({})
                authors[-1][item.group(2)] = _scalar(item.group(3))
    if authors:
        data["authors"] = authors
    return data


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text.split(" #", 1)[0].strip()


def _identifier_doi(identifiers: Any) -> str | None:
    if isinstance(identifiers, list):
        for ident in identifiers:
            if isinstance(ident, dict) and ident.get("type") == "doi":
                doi = clean_doi(ident.get("value"))
                if doi:
                    return doi
    return None


def _citation_text(entry: dict[str, Any]) -> str | None:
    """``Authors (year). Title (version). Journal.`` from a CFF entry; None without a title."""
    title = entry.get("title")
    if not isinstance(title, str) or not title.strip():
        return None
    names = []
    for a in entry.get("authors") or []:
        if isinstance(a, dict):
            name = a.get("family-names") or a.get("name")
            given = a.get("given-names")
            if name:
                names.append(f"{name}, {given}" if given else str(name))
    year = entry.get("year") or str(entry.get("date-released") or entry.get("date-published") or "")[:4]
    parts = []
    if names:
        parts.append("; ".join(names) + (f" ({year})." if year else "."))
    version = entry.get("version")
    parts.append(f"{title.strip()}" + (f" (version {version})." if version else "."))
    journal = entry.get("journal")
    if isinstance(journal, str) and journal:
        parts.append(f"{journal}.")
    return " ".join(parts)

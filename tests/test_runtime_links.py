"""Runtime files per checkpoint, built once per run and hard-linked: each name stays right on its own."""

from __future__ import annotations

import os
from pathlib import Path

from mlm_export._provenance import Prepared, write_prepared
from mlm_export._write import file_checksum

TEXT = b"# what loading this model takes\ntorch==2.0\n"


def prepared(text: bytes = TEXT) -> Prepared:
    from mlm_export._provenance import _checksum

    asset = {"type": "text/plain", "title": "t", "roles": ["mlm:inference-runtime"], "file:size": len(text),
             "file:checksum": _checksum(text)}  # fmt: skip
    return {"inference_runtime": (".requirements.txt", text, asset)}


def test_later_runtime_files_are_links_and_survive_removal_of_the_first(tmp_path: Path):
    copies: dict[str, Path] = {}
    first = write_prepared(tmp_path, "a", prepared(), copies)
    second = write_prepared(tmp_path, "b", prepared(), copies)
    a, b = tmp_path / "a.requirements.txt", tmp_path / "b.requirements.txt"
    assert os.path.samefile(a, b)  # one file, two names
    a.unlink()  # its checkpoint was pruned
    third = write_prepared(tmp_path, "c", prepared(), copies)
    c = tmp_path / "c.requirements.txt"
    assert b.read_bytes() == c.read_bytes() == TEXT
    for asset, path in ((second, b), (third, c)):
        assert asset["inference_runtime"]["file:checksum"] == file_checksum(path)
        assert asset["inference_runtime"]["href"] == f"./{path.name}"
    assert first["inference_runtime"]["href"] == "./a.requirements.txt"


def test_a_changed_or_missing_source_is_not_linked(tmp_path: Path):
    copies: dict[str, Path] = {}
    write_prepared(tmp_path, "a", prepared(), copies)
    (tmp_path / "a.requirements.txt").write_bytes(b"edited by hand\n")  # same inode, other bytes
    write_prepared(tmp_path, "b", prepared(), copies)
    b = tmp_path / "b.requirements.txt"
    assert b.read_bytes() == TEXT and not os.path.samefile(tmp_path / "a.requirements.txt", b)
    copies["inference_runtime"] = tmp_path / "gone.requirements.txt"
    write_prepared(tmp_path, "c", prepared(), copies)
    assert (tmp_path / "c.requirements.txt").read_bytes() == TEXT


def test_an_existing_name_is_replaced_not_linked_over(tmp_path: Path):
    copies: dict[str, Path] = {}
    write_prepared(tmp_path, "a", prepared(), copies)
    (tmp_path / "b.requirements.txt").write_bytes(b"old contents\n")  # last.ckpt's, from the previous save
    write_prepared(tmp_path, "b", prepared(), copies)
    assert (tmp_path / "b.requirements.txt").read_bytes() == TEXT
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

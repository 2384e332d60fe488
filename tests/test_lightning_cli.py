"""MLMExportCallback from a LightningCLI YAML config: jsonargparse checks its init_args, and every Item keeps the
configuration the run was started from (an asset beside the checkpoint, named in ``processing:lineage``)."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

L = pytest.importorskip("lightning")
pytest.importorskip("jsonargparse")
from lightning.pytorch.cli import LightningCLI  # noqa: E402

from mlm_export import mlm  # noqa: E402

from .conftest import plain_validate  # noqa: E402
from .test_callback import Data, TinyClassifier  # noqa: E402


def _config(tmp_path: Path, **callback_args: object) -> Path:
    init_args = {"name": "CLI classifier", "license": "MIT", "datetime": "2024-06-01T00:00:00Z", **callback_args}
    args = "".join(f"\n          {k}: {json.dumps(v)}" for k, v in init_args.items())
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        trainer:
          max_epochs: 1
          accelerator: cpu
          logger: false
          enable_progress_bar: false
          enable_model_summary: false
          default_root_dir: {json.dumps(str(tmp_path / "run"))}
          callbacks:
            - class_path: lightning.pytorch.callbacks.ModelCheckpoint
              init_args:
                dirpath: {json.dumps(str(tmp_path / "ckpt"))}
            - class_path: mlm_export.MLMExportCallback
              init_args:""")
        + textwrap.indent(args, "      ")
        + "\n"
    )
    return path


def test_lightning_cli_config_builds_the_callback_and_every_item_keeps_the_config(tmp_path: Path) -> None:
    LightningCLI(TinyClassifier, Data, args=["fit", "--config", str(_config(tmp_path))])
    ckpts = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert ckpts, "no checkpoint was saved"
    for ckpt in ckpts:
        data = json.loads(ckpt.with_name(ckpt.stem + ".mlm.json").read_text())
        plain_validate(data)
        config = next(a for a in data["assets"].values() if a["type"] == mlm.MEDIA_YAML)
        assert config["roles"] == [mlm.ROLE_TRAINING_RUNTIME]
        written = (ckpt.parent / config["href"]).read_bytes()
        assert config[mlm.FILE_SIZE] == len(written)
        assert config[mlm.FILE_CHECKSUM] == "1220" + hashlib.sha256(written).hexdigest()
        text = written.decode()
        assert "class_path: mlm_export.MLMExportCallback" in text and "name: CLI classifier" in text
        assert "max_epochs: 1" in text  # the whole configuration, not only the callback's part
        assert Path(config["href"]).name in data["properties"][mlm.PROCESSING_LINEAGE]
        assert data["properties"][mlm.NAME] == "CLI classifier"
        assert data["properties"]["datetime"] == "2024-06-01T00:00:00Z"


def test_a_wrongly_typed_init_arg_is_refused_by_the_cli_before_training(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        LightningCLI(TinyClassifier, Data, args=["fit", "--config", str(_config(tmp_path, batch_size="many"))])
    assert exit_info.value.code == 2
    assert not (tmp_path / "ckpt").exists()

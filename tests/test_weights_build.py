"""Building the architecture of a weights member changes nothing outside that one builder call."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

pytest.importorskip("torchgeo")

from mlm_export._sources.weights import build_model  # noqa: E402

MEMBER = "ResNet18_Weights.SENTINEL2_ALL_MOCO"


def test_another_threads_load_state_dict_is_unaffected_during_a_build():
    want = {k: torch.randn_like(v) for k, v in nn.Linear(4, 4).state_dict().items()}
    started, stop = threading.Event(), threading.Event()
    results: list[bool] = []

    def load_all_the_time() -> None:
        while not stop.is_set():
            full = nn.Linear(4, 4)
            full.load_state_dict(want, strict=True)  # really loads the values
            partial = nn.Linear(4, 4).load_state_dict({"weight": want["weight"]}, strict=False)
            results.append(torch.equal(full.weight, want["weight"]) and partial.missing_keys == ["bias"])
            started.set()

    other = threading.Thread(target=load_all_the_time)
    other.start()
    overlapped = 0
    try:
        assert started.wait(300)
        # Build until the other thread has loaded during three builds (counted, not timed: a loaded machine
        # only takes more rounds); the bound is only reached if the other thread never runs during a build.
        for _ in range(100):
            before = len(results)
            build_model(MEMBER, on_meta=False)
            overlapped += len(results) > before
            if overlapped >= 3:
                break
    finally:
        stop.set()
        other.join()
    assert overlapped >= 3  # the other thread loaded while models were built
    assert all(results)


def test_the_built_model_loads_state_dicts_as_any_other():
    model = build_model(MEMBER, on_meta=False)
    assert model.conv1.in_channels == 13  # shaped by the member: 13 Sentinel-2 bands
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict({}, strict=True)
    weights = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    assert model.load_state_dict(weights, strict=True).missing_keys == []
    assert torch.equal(model.conv1.weight, weights["conv1.weight"])


def test_an_encoder_member_builds_the_encoder_its_builder_returns():
    """The builder runs to its end: Tessera's encoder members return a part of the model they build."""
    full = build_model("Tessera_Weights.TESSERA")
    encoder = build_model("Tessera_Weights.TESSERA_SENTINEL2_ENCODER")
    assert sum(p.numel() for p in encoder.parameters()) < sum(p.numel() for p in full.parameters())
    assert type(encoder) is type(full.s2_backbone)

"""The introspector: shapes equal a real forward, dynamic dims are found, counts are exact, the model is untouched."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from mlm_export import TraceError, UnsupportedOutputError, inspect_model
from mlm_export.errors import InvalidOptionError, MLMExportWarning

from .models import (
    BatchDict,
    DictInput,
    FixedSize,
    ItemCall,
    Regressor,
    ReturnsString,
    SmallUNet,
    TiedWeights,
    TinyDetector,
)


def real_shape(model: nn.Module, *args, **kwargs):
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        return model(*args, **kwargs)


def with_dynamic(observed, expected_dynamic):
    return tuple(-1 if i in expected_dynamic else s for i, s in enumerate(observed))


def test_resnet_classifier_is_any_size_with_batch_dynamic():
    model = torchvision.models.resnet18(num_classes=7)
    facts = inspect_model(model, torch.randn(3, 3, 64, 64))
    assert facts.traced_on == "meta"
    (inp,) = facts.inputs
    assert inp.shape == (-1, 3, -1, -1)
    assert inp.roles == ("batch", None, "height", "width")
    (out,) = facts.outputs
    real = real_shape(model, torch.randn(2, 3, 64, 64))
    assert out.observed == tuple(real.shape)
    assert out.shape == (-1, 7)
    assert out.dtype == "float32"
    assert facts.parameters.total == sum(p.numel() for p in model.parameters())
    assert facts.parameters.trainable == facts.parameters.total
    assert facts.parameters.buffers == sum(b.numel() for b in model.buffers())


def test_vit_keeps_its_fixed_image_size():
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    )
    facts = inspect_model(model, torch.randn(1, 3, 32, 32))
    assert facts.inputs[0].shape == (-1, 3, 32, 32)
    assert facts.outputs[0].shape == (-1, 5)
    assert facts.parameters.total == sum(p.numel() for p in model.parameters())


def test_unet_output_follows_input_size():
    model = SmallUNet(in_channels=4, num_classes=5)
    facts = inspect_model(model, torch.randn(2, 4, 32, 48))
    (out,) = facts.outputs
    real = real_shape(model, torch.randn(2, 4, 32, 48))
    assert out.observed == tuple(real.shape)
    assert out.shape == (-1, 5, -1, -1)
    assert out.roles == ("batch", None, "height", "width")
    assert facts.inputs[0].shape == (-1, 4, -1, -1)


def test_fixed_size_flatten_model():
    with pytest.warns(MLMExportWarning, match=r"ran only at the example's size 16x16.*48x48: RuntimeError"):
        facts = inspect_model(FixedSize(), torch.randn(4, 3, 16, 16))
    assert facts.inputs[0].shape == (-1, 3, 16, 16)
    assert facts.outputs[0].shape == (-1, 10)


def test_regression_output():
    model = Regressor()
    facts = inspect_model(model, torch.randn(2, 3, 20, 20))
    assert facts.outputs[0].shape == (-1, 1)
    assert facts.outputs[0].observed == tuple(real_shape(model, torch.randn(2, 3, 20, 20)).shape)


def test_detection_list_of_dicts_traced_for_real():
    torch.manual_seed(0)
    model = TinyDetector()
    x = torch.randn(2, 3, 32, 32)
    facts = inspect_model(model, x)
    assert facts.traced_on == "cpu"  # nonzero cannot run on meta
    assert facts.output_structure == "list_of_mappings"
    by_name = {o.name: o for o in facts.outputs}
    assert set(by_name) == {"boxes", "labels", "scores"}
    real = real_shape(model, x[:1])
    assert by_name["boxes"].shape == (-1, -1, 4)
    assert by_name["boxes"].observed[1:] == (real[0]["boxes"].shape[0], 4)
    assert by_name["labels"].shape == (-1, -1)
    assert by_name["labels"].dtype == "int64"
    assert by_name["scores"].roles == ("batch", "item")


def test_dict_input_passed_as_keywords():
    model = DictInput()
    facts = inspect_model(model, {"optical": torch.randn(2, 4, 16, 16), "radar": torch.randn(2, 2, 16, 16)})
    assert facts.input_structure == "mapping"
    assert [i.name for i in facts.inputs] == ["optical", "radar"]
    assert facts.inputs[1].shape == (-1, 2, -1, -1)
    assert facts.outputs[0].shape == (-1, 6)


def test_dict_batch_passed_as_one_argument_and_dict_output():
    model = BatchDict()
    facts = inspect_model(model, {"image": torch.randn(2, 3, 16, 16)})
    assert [i.name for i in facts.inputs] == ["image"]
    by_name = {o.name: o for o in facts.outputs}
    assert by_name["mask"].shape == (-1, 4, -1, -1)
    assert by_name["embedding"].shape == (-1, 4)
    assert facts.output_structure == "mapping"


def test_tuple_outputs_are_named_by_position():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            y = self.fc(x)
            return y, y.softmax(-1)

    facts = inspect_model(Two(), torch.randn(2, 8))
    assert [o.name for o in facts.outputs] == ["output_0", "output_1"]
    assert facts.inputs[0].shape == (-1, 8)


def test_shared_weights_counted_once():
    model = TiedWeights()
    facts = inspect_model(model, torch.randn(2, 16))
    expected = sum(p.numel() for p in model.parameters())
    assert facts.parameters.total == expected
    naive = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert naive > expected  # the model really shares weights
    assert facts.outputs[0].shape == (-1, 8)


def test_item_call_falls_back_to_cpu_at_batch_one():
    model = ItemCall()
    facts = inspect_model(model, torch.randn(4, 3, 8, 8))
    assert facts.traced_on == "cpu"
    assert facts.inputs[0].observed[0] == 1
    assert facts.outputs[0].shape == (-1, 2)
    assert facts.inputs[0].shape == (-1, 3, -1, -1)


def test_trainable_counts_frozen_layers():
    model = Regressor()
    for p in model.features.parameters():
        p.requires_grad_(False)
    facts = inspect_model(model, torch.randn(1, 3, 8, 8))
    assert facts.parameters.trainable == sum(p.numel() for p in model.out.parameters())
    assert facts.parameters.memory_bytes == 4 * sum(p.numel() for p in model.parameters())


def test_model_left_exactly_as_it_was():
    model = torchvision.models.resnet18(num_classes=3)
    model.train()
    model.layer1.eval()  # mixed flags must survive
    model.fc.weight.requires_grad_(False)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    x = torch.randn(2, 3, 32, 32)
    rng = torch.get_rng_state()
    inspect_model(model, x)
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == flags
    assert not model.fc.weight.requires_grad and model.conv1.weight.requires_grad
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running stats untouched
    assert all(v.device.type == "cpu" for v in after.values())
    calls.clear()
    with torch.no_grad():
        model(x)  # the user's hook still runs, once per forward; no other hook was left
    assert calls == [1]
    handle.remove()


class NoisyItemCall(ItemCall):
    """Draws from the global RNG in forward, so a trace that does not restore the RNG state is caught."""

    def forward(self, x):
        return super().forward(x + 0.01 * torch.randn_like(x))


def test_model_unchanged_after_cpu_fallback():
    model = NoisyItemCall().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    rng = torch.get_rng_state()
    inspect_model(model, x)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_half_precision_model_and_input():
    model = Regressor().to(torch.float16)
    facts = inspect_model(model, torch.randn(2, 3, 8, 8, dtype=torch.float16))
    assert facts.inputs[0].dtype == "float16"
    assert facts.outputs[0].dtype == "float16"
    assert facts.parameters.memory_bytes == 2 * facts.parameters.total


def test_model_failing_on_the_batch_names_shape_and_dtype():
    with pytest.raises(TraceError, match=r"x: float32\[1, 5, 16, 16\].*example_input="):
        inspect_model(torchvision.models.resnet18(), torch.randn(2, 5, 16, 16))


def test_unsupported_output_is_explained():
    with pytest.raises(UnsupportedOutputError, match="must return a tensor"):
        inspect_model(ReturnsString(), torch.randn(2, 4))


def test_non_tensor_input_is_explained():
    with pytest.raises(InvalidOptionError, match="holds no tensor"):
        inspect_model(Regressor(), {"x": [1, 2, 3]})
    with pytest.raises(InvalidOptionError, match="every input must be a tensor"):
        inspect_model(Regressor(), [torch.zeros(1, 3, 8, 8), "not a tensor"])


class Wavelengths(nn.Module):
    """Takes the wavelengths of its bands as a plain list, as DOFA does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x, wavelengths):
        weights = torch.tensor(wavelengths, device=x.device)[None, :, None, None]
        return self.conv((x * weights).sum(1, keepdim=True))


def test_non_tensor_arguments_are_passed_as_they_are():
    x = torch.randn(2, 3, 16, 16)
    for example in ((x, [0.49, 0.56, 0.665]), {"x": x, "wavelengths": [0.49, 0.56, 0.665]}):
        facts = inspect_model(Wavelengths(), example)
        assert [i.name for i in facts.inputs] == ["x"]  # the constant is not an input
        assert facts.outputs[0].shape == (-1, 4, -1, -1)


def test_lazy_modules_are_refused_with_advice():
    model = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(InvalidOptionError, match="lazy parameters"):
        inspect_model(model, torch.randn(2, 8))


PEAK_OF_INSPECT = """
import json, sys
from pathlib import Path
import torch, torchvision
from torch import nn
from mlm_export import inspect_model

def status(key):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
    return int(line.split()[1]) * 1024

def grown(fn):
    # the peak of fn alone: the kernel's peak mark (VmHWM) reset first, then compared with the memory before
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    result = fn()
    return status("VmHWM") - before, result

inspect_model(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))  # warm up the dispatcher
big = nn.Sequential(*[nn.Linear(4096, 4096) for _ in range(6)])  # 100M parameters, 400 MB
grown_inspect, facts = grown(lambda: inspect_model(big, torch.randn(2, 4096)))
grown_copy, _ = grown(lambda: [p.detach().clone() for p in big.parameters()])  # the gauge sees a copy
print(json.dumps({"inspect": grown_inspect, "copy": grown_copy, "traced_on": facts.traced_on,
                  "total": facts.parameters.total, "bytes": facts.parameters.memory_bytes}))
"""


def test_meta_trace_does_not_copy_weights_of_a_large_model():
    """A ~100M-parameter model traces on meta: the trace's own peak grows by far less than its weights.

    Measured in a process of its own: the peak of this one (ru_maxrss) is whatever an earlier test reached."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", PEAK_OF_INSPECT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["traced_on"] == "meta"
    assert m["total"] == 6 * (4096 * 4096 + 4096)
    assert m["copy"] > 0.9 * m["bytes"]  # the measurement sees a copy of the weights when there is one
    assert m["inspect"] < 0.1 * m["bytes"]


class CachesDuringForward(nn.Module):
    """Replaces an attribute (a list of tensors) in forward, as torchvision's AnchorGenerator does."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.cache = [torch.ones(3), torch.zeros(3)]

    def forward(self, x):
        self.cache = [c.to(x.device) for c in self.cache]
        return self.fc(x) + self.cache[0].sum()


def test_attributes_set_during_the_meta_trace_are_put_back():
    model = CachesDuringForward()
    before = model.cache
    facts = inspect_model(model, torch.randn(2, 4))
    assert facts.traced_on == "meta"
    assert model.cache is before and all(t.device.type == "cpu" for t in model.cache)
    model(torch.randn(1, 4))  # still runs for real

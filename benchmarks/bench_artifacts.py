"""Writing each model file format, against one forward pass and against ``torch.save`` of the state dict.

Cases: ViT-B/16 at 224x224 and a U-Net at 512x512 (segmentation_models_pytorch's ResNet-34 U-Net when
installed, else a plain U-Net of the same depth). Printed per format: seconds to write (export + save +
checksum, without the parity proof), that time over one CPU forward at batch 1 and over ``torch.save`` of
the state dict, the time to load the file back, and its size. No target: the figures say what each format
costs. ``--quick`` uses small models (seconds).
Run: ./dev bench  (or python benchmarks/bench_artifacts.py [--quick])
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import step, timed  # noqa: E402

from mlm_export import _artifacts as art  # noqa: E402
from mlm_export import _exporters as exporters  # noqa: E402
from mlm_export import inspect_model
from mlm_export._sources.model import call_spec  # noqa: E402


def unet(quick: bool) -> nn.Module:
    if not quick:
        try:
            import segmentation_models_pytorch as smp

            return smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=2)
        except ImportError:
            pass
    from mlm_export.demo import TinyUNet

    return TinyUNet(3, 2, width=8 if quick else 64)


def vit(quick: bool) -> nn.Module:
    if quick:
        return torchvision.models.VisionTransformer(64, 16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128)
    return torchvision.models.vit_b_16()


def bench(name: str, model: nn.Module, example: torch.Tensor, formats: list[str]) -> None:
    model.eval()
    facts = inspect_model(model, example)
    spec = call_spec(model, example)
    with torch.no_grad():
        t_forward, _ = timed(lambda: model(example[:1]), repeat=3)
    print(f"\n{name}: {facts.parameters.total / 1e6:.1f}M parameters, input {list(example.shape)}")
    print(f"  one forward at batch 1: {t_forward:.3f} s")
    with tempfile.TemporaryDirectory(dir=".") as d:
        base = Path(d) / "plain.pt"
        t_save, _ = timed(lambda: torch.save(model.state_dict(), base), repeat=3)
        print(f"  torch.save(state_dict): {t_save:.3f} s, {base.stat().st_size / 1e6:.1f} MB")
        print(f"  {'format':<12} {'write s':>8} {'/forward':>9} {'/torch.save':>12} {'load s':>7} {'MB':>8}")
        for fmt in formats:
            path = Path(d) / f"m{art.FORMATS[fmt].suffix}"
            step(f"{name}: writing {fmt}")
            start = time.perf_counter()
            try:
                if fmt == "pt2":
                    exporters.write_pt2(model, spec, facts.inputs, path)
                elif fmt == "torchscript":
                    exporters.write_torchscript(model, spec, path)
                elif fmt == "onnx":
                    exporters.write_onnx(model, spec, facts.inputs, path)
                elif fmt == "safetensors":
                    tensors, aliases = art.weights(model)
                    art.write_safetensors(tensors, path, art.safetensors_metadata(aliases))
                else:
                    exporters.write_checkpoint(model.state_dict(), path)
            except Exception as e:  # noqa: BLE001 - the failure is the benchmark's line
                print(f"  {fmt:<12} failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
                continue
            t_write = time.perf_counter() - start
            t_load = float("nan")
            if fmt in art.RUNNABLE:
                start = time.perf_counter()
                exporters.load_runner(fmt, path, input_names=spec.names)
                t_load = time.perf_counter() - start
            print(
                f"  {fmt:<12} {t_write:8.2f} {t_write / t_forward:8.1f}x {t_write / t_save:11.1f}x "
                f"{t_load:7.2f} {path.stat().st_size / 1e6:8.1f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, a few seconds")
    args = parser.parse_args()
    torch.manual_seed(0)
    formats = ["pt2", "torchscript", "onnx", "safetensors", "checkpoint"]
    size = 64 if args.quick else 224
    bench("ViT-B/16" if not args.quick else "ViT (2 layers)", vit(args.quick), torch.randn(2, 3, size, size), formats)
    size = 128 if args.quick else 512
    bench("U-Net", unet(args.quick), torch.randn(2, 3, size, size), formats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export a trained network for inference: TorchScript or ONNX, logits only.

The exported model is the network of a training checkpoint in eval mode, without its auxiliary head and
with drop-path off, wrapped so that it maps a batch of normalised images (N, 3, S, S) float32 to logits
(N, classes). Normalisation stays outside: a sidecar `<out>.json` gives the mean and std (on the [0, 1]
pixel scale), the input size, the class names and the genotype.

Both formats are traced at the training image size S; the batch dimension stays free. After writing, the
exported file is loaded back and its outputs are compared with the eager model's on a random batch
(ONNX only when onnxruntime is installed); the largest difference is reported.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rarts.errors import UsageError
from rarts.utils import check_out_file, write_json

FORMATS = ("torchscript", "onnx")


class LogitsOnly(nn.Module):
    """The final network without its auxiliary output: forward(x (N, 3, S, S)) -> logits (N, classes)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def inference_model(net: nn.Module) -> LogitsOnly:
    """A copy of `net` on the CPU in float32, eval mode, auxiliary head removed, drop-path off."""
    net = copy.deepcopy(net).cpu().float().to(memory_format=torch.contiguous_format)
    net.auxiliary_head = None
    net.drop_path_prob = 0.0
    return LogitsOnly(net).eval()


def export_torchscript(model: LogitsOnly, example: torch.Tensor, out: Path) -> None:
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript files are still what many C++ and
        # mobile runtimes load; the tracer warnings are about shape checks that are constant at a fixed size.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        traced.save(str(out))


# What `<out>.json` of an earlier export holds: only such a pair of files may be overwritten by a new export.
_EXPORT_RECORD_KEYS = ("format", "file", "check_max_abs_diff")


def check_export_target(out: Path, checkpoint: Path) -> None:
    """Refuse an --out that would overwrite the checkpoint being exported, or files that are not an earlier
    export (a run folder's result.json, config.json, ... by way of `<out>.json`): only an earlier export of rarts,
    recognised by its `<out>.json`, is replaced."""
    record = out.with_name(out.name + ".json")
    check_out_file(out)  # not a folder, and a file can be made where it goes
    for path in (out, record):
        if path.exists() and path.resolve() == checkpoint.resolve():
            raise UsageError(f"--out {out} would overwrite the checkpoint being exported ({checkpoint})")
    if out.exists() or record.exists():
        try:
            previous = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if not (isinstance(previous, dict) and all(k in previous for k in _EXPORT_RECORD_KEYS)):
            taken = out if out.exists() else record
            raise UsageError(f"--out {out}: {taken} exists and is no earlier export of rarts; give another file name")


def export_onnx(model: LogitsOnly, example: torch.Tensor, out: Path) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as e:
        raise UsageError("ONNX export needs the onnx package: pip install 'rarts[onnx]'") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )


def run_exported(fmt: str, path: Path, x: torch.Tensor) -> torch.Tensor | None:
    """Logits of the exported file on x, or None when no runtime for the format is installed."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return loaded(x)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])


def export_checkpoint(
    checkpoint: str | Path, fmt: str, out: str | Path, check_batch: int = 4, seed: int = 0
) -> dict[str, Any]:
    """Export the network of a training checkpoint to `out`; write `<out>.json`; return what was done.

    The check runs the exported file and the eager model on `check_batch` random normalised images and reports
    the largest absolute difference of the logits (None when the format's runtime is not installed).
    """
    from rarts.train import load_checkpoint, model_from_checkpoint

    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: choose {' or '.join(FORMATS)}")
    out = Path(out)
    ckpt_path = Path(checkpoint)
    check_export_target(out, ckpt_path / "checkpoint.pt" if ckpt_path.is_dir() else ckpt_path)
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt["network"]
    model = inference_model(model_from_checkpoint(ckpt, torch.device("cpu"), source=str(checkpoint)))
    size = spec["input_size"]
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(check_batch, 3, size, size, generator=gen)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")  # renamed to `out` once whole: no half-written model file
    try:
        (export_torchscript if fmt == "torchscript" else export_onnx)(model, example, partial)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    check = torch.randn(check_batch + 1, 3, size, size, generator=gen)  # another batch size than the trace's
    with torch.no_grad():
        eager = model(check)
    exported = run_exported(fmt, out, check)
    max_diff = None if exported is None else float((exported - eager).abs().max())
    info = {
        "format": fmt,
        "file": str(out),
        "checkpoint": str(checkpoint),
        "input": {"shape": ["N", 3, size, size], "dtype": "float32", "mean": spec["mean"], "std": spec["std"]},
        "output": {"shape": ["N", spec["num_classes"]], "name": "logits"},
        "classes": spec["classes"],
        "genotype": ckpt["genotype"],
        "network": {k: spec[k] for k in ("kind", "channels", "layers", "num_classes")},
        "check_max_abs_diff": max_diff,
    }
    write_json(out.with_name(out.name + ".json"), info)
    return info

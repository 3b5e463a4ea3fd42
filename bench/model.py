"""`run.py bench model`: training-step speed and activation memory of models, and of one non-local block
under the reference and the fused implementation.

Models: forward + backward clips/s on this machine and the bytes autograd saves for backward (each
storage once, parameters excluded). Tiny configs run `--tiny-input` (batch x frames x size), R50-sized
ones (depth >= 50) `--large-input`, kept small so the CPU run stays short; `--config FILE` benchmarks
that one config (with the overrides) on the data section's batch, frames and crop size.
Non-local: one block (`--mode`, default embedded Gaussian; subsample on) at the res2 and res3 grids
that a `--frames` x `--size`^2 clip reaches in the default I3D-R50, with a unit output-BN scale (as
after training) so the attention path shows in the output; reports saved bytes and fwd+bwd seconds
(training mode), and max |fused - reference| of the eval-mode output x + BN(W_z y) (train-mode BN
would rescale rounding noise by the batch statistics of W_z y). Extra keys beside those of docs/interfaces.md:
`reference_seconds`, `fused_seconds`, `device`, `fused_kernel` (what the fused block ran, read off the
profiler) and, on CUDA, `reference_peak_bytes` / `fused_peak_bytes` (max allocated during fwd+bwd).
`--device auto` runs on the GPU when there is one.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List

import torch
from torch import nn

from analysis.profiling.attention_kernels import observe_kernels
from analysis.profiling.measure import cuda_peak_bytes, measure_forward
from models.attention.non_local import NonLocalBlock
from models.build import build_model
from models.config import ModelConfig

DEFAULT_MODELS = ("i3d_tiny", "i3d_tiny_nl", "i3d_tiny_nl_iaa", "tsn_tiny", "i3d_r50", "i3d_r50_nl5")
NUM_CLASSES = 400


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _best_seconds(step: Callable[[], None], repeats: int, device: str = "cpu") -> float:
    """Fastest of `repeats` runs after a warm-up: on a shared CPU the minimum is the least noisy."""
    step()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _train_step(model: nn.Module, inputs: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(inputs).float().square().mean().backward()

    return step


def bench_models(named_cfgs: Dict[str, tuple], repeats: int, device: str = "cpu") -> List[Dict[str, Any]]:
    """{config name: (ModelConfig, clip shape)} -> rows {config, clips_per_s, activation_bytes}."""
    rows = []
    for name, (model_cfg, clip_shape) in named_cfgs.items():
        model = build_model(model_cfg, NUM_CLASSES).to(device).train()
        seconds = _best_seconds(_train_step(model, torch.randn(clip_shape, device=device)), repeats, device)
        activation = measure_forward(model, clip_shape, device).activation_bytes
        rows.append({"config": name, "clips_per_s": clip_shape[0] / seconds, "activation_bytes": activation})
        print(f"{name:>18}  input {'x'.join(map(str, clip_shape))}  {clip_shape[0] / seconds:8.2f} clips/s  "
              f"{activation / 2**20:9.1f} MiB saved for backward")
    return rows


def nonlocal_grids(frames: int, size: int) -> Dict[str, tuple]:
    """(channels, T, H, W) of each stage output of the default I3D-R50 for a frames x size^2 clip."""
    backbone = build_model(ModelConfig(), NUM_CLASSES).backbone
    with torch.device("meta"):
        features = backbone.to("meta").stage_features(torch.empty(1, 3, frames, size, size))
    return {name: tuple(f.shape[1:]) for name, f in features.items()}


def bench_nonlocal(grids: Dict[str, tuple], frames: int, mode: str, repeats: int,
                   device: str = "cpu") -> List[Dict[str, Any]]:
    """One non-local block per grid: saved bytes, seconds and outputs of reference vs fused (and on
    CUDA the peak of fwd+bwd), and the kernel the fused block ran."""
    rows = []
    for placement, (channels, t, h, w) in grids.items():
        torch.manual_seed(0)
        block = NonLocalBlock(channels, mode=mode, subsample=True).to(device)
        nn.init.ones_(block.bn.weight)
        x = torch.randn(1, channels, t, h, w, device=device, requires_grad=True)
        result: Dict[str, Any] = {}
        for implementation in ("reference", "fused"):  # outputs first: training steps move BN statistics
            block.implementation = implementation
            with torch.no_grad():
                result[f"{implementation}_output"] = block.eval()(x)
        for implementation in ("reference", "fused"):
            block.implementation = implementation
            result[f"{implementation}_seconds"] = _best_seconds(_train_step(block.train(), x), repeats, device)
            result[f"{implementation}_bytes"] = measure_forward(block, x.shape, device).activation_bytes
            if device == "cuda":
                result[f"{implementation}_peak_bytes"] = cuda_peak_bytes(block, tuple(x.shape))
        kernel = observe_kernels({placement: block}, lambda: block(x))[0]["kernel"]  # fused, training mode
        row = {"placement": f"{placement} ({channels}x{t}x{h}x{w}, {mode})", "frames": frames,
               "reference_bytes": result["reference_bytes"], "fused_bytes": result["fused_bytes"],
               "ratio": result["fused_bytes"] / result["reference_bytes"],
               "max_abs_diff": (result["fused_output"] - result["reference_output"]).abs().max().item(),
               "reference_seconds": result["reference_seconds"], "fused_seconds": result["fused_seconds"],
               "device": device, "fused_kernel": kernel,
               **{key: result[key] for key in ("reference_peak_bytes", "fused_peak_bytes") if key in result}}
        rows.append(row)
        print(f"nonlocal {row['placement']}: memory fused/reference {row['ratio']:.3f} "
              f"({row['fused_bytes'] / 2**20:.1f} / {row['reference_bytes'] / 2**20:.1f} MiB), time fused/"
              f"reference {row['fused_seconds'] / row['reference_seconds']:.2f} ({row['fused_seconds']:.2f} s"
              f" / {row['reference_seconds']:.2f} s), max |diff| {row['max_abs_diff']:.2e}, fused kernel {kernel}")
    return rows

"""The memory and FLOPs of non-local placements (behind `run.py profile`).

For every case of the sweep in `profile.*` (placement x frames x size x batch x subsample x
implementation) one model is built and one training forward is measured: activation bytes saved for
backward (each storage once) and, on a GPU, the CUDA peak of forward + backward. Beside them: the
analytic prediction of the activation bytes from shapes alone (analysis/profiling/memory_model.py), which also
gives the bytes of the non-local Nq x Nk affinity matrices among them, and GFLOPs per clip counted as
multiply-adds (the mmaction2 convention of analysis.profiling.sizes). A row fits the budget when its footprint does:
the CUDA peak plus optimizer state, or without a GPU, activations plus weights, gradients and optimizer
state. Writes OUT/profile.json, .md, .png.
"""
from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any, Dict, List

import torch
from torch import nn

import analysis.profiling.attention_memory  # noqa: F401  (registers the attention blocks' memory rules)
from analysis.profiling.budget import format_bytes, largest_fitting_batch, parse_bytes
from analysis.profiling.measure import DEVICES, cuda_peak_bytes, measure_forward
from analysis.profiling.memory_model import predict_saved_bytes
from analysis.profiling.report import bar_chart, markdown_table
from analysis.profiling.sizes import forward_macs
from analysis.profiling.sweep import ProfileCase, expand_sweep
from analysis.profiling.config import ProfileConfig
from errors import UserError
from models.build import build_model
from models.config import ModelConfig

def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in DEVICES:
        raise UserError(f"profile.device='{name}' is not one of auto, {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("profile.device=cuda but no CUDA device is available")
    return name


def _case_model(base: ModelConfig, case: ProfileCase, num_classes: int) -> nn.Module:
    model_cfg = base.copy()
    model_cfg.attention = [dict(entry) for entry in case.attention]
    return build_model(model_cfg, num_classes)


def measure_case(model_cfg: ModelConfig, sweep: ProfileConfig, case: ProfileCase, device: str) -> Dict[str, Any]:
    """One row: build the case's model, measure a training forward, predict it, add the CUDA peak."""
    model = _case_model(model_cfg, case, sweep.num_classes)
    try:
        macs = forward_macs(model, case.clip_shape)  # shape-only passes run on the CPU copy
        prediction = predict_saved_bytes(model, case.clip_shape)
    except ValueError as exc:  # e.g. BatchNorm over one value per channel: a batch or size too small
        raise UserError(f"profile case {tuple(case.clip_shape)} (batch, channels, frames, height, width) "
                        f"cannot run a training forward: {str(exc).splitlines()[0]}") from exc
    if device == "cuda":
        model = model.cuda()
    measured = measure_forward(model, case.clip_shape, device).activation_bytes
    peak = cuda_peak_bytes(model, case.clip_shape) if device == "cuda" else None
    params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    optimizer_bytes = param_bytes * sweep.optimizer_states  # not allocated by a bare step
    state_bytes = 2 * param_bytes + optimizer_bytes  # weights and gradients too
    # the CUDA peak of fwd+bwd predicted as weights + saved activations + every weight's gradient (an
    # upper bound on what coexists, leaving out transient buffers and cuDNN workspaces)
    predicted_peak = 2 * param_bytes + prediction.activation_bytes
    return {
        "placement": case.placement, "frames": case.frames, "size": case.size, "batch": case.batch,
        "implementation": case.implementation or "-", "subsample": case.subsample,
        # per clip, in multiply-adds as mmaction2 and analysis.profiling.sizes count "FLOPs"
        "params": params, "gflops": macs / case.batch / 1e9,
        "activation_bytes": measured, "predicted_activation_bytes": prediction.activation_bytes,
        "prediction_error": prediction.activation_bytes / measured - 1,
        # the Nq x Nk matrices kept for backward, from the blocks' shapes (0 on the fused path)
        "nonlocal_affinity_bytes": prediction.affinity_bytes,
        "peak_bytes": peak, "device": device, "state_bytes": state_bytes,
        "predicted_peak_bytes": predicted_peak, "peak_error": None if peak is None else predicted_peak / peak - 1,
        "footprint_bytes": measured + state_bytes if peak is None else peak + optimizer_bytes,
        "unmodelled_layers": prediction.unknown_layers,
    }


def mark_budget(row: Dict[str, Any], budget: int | None) -> Dict[str, Any]:
    """fits_budget and max_fitting_batch for one row from its footprint (both null without a budget)."""
    footprint = row["footprint_bytes"]
    row["fits_budget"] = None if budget is None else footprint <= budget
    row["max_fitting_batch"] = (None if budget is None else
                                largest_fitting_batch(footprint, row["batch"], row["state_bytes"], budget))
    return row


def _peak_text(row: Dict[str, Any]) -> str:
    if row["peak_bytes"] is None:
        return ""
    return (f"; CUDA peak {format_bytes(row['peak_bytes'])}, predicted {format_bytes(row['predicted_peak_bytes'])} "
            f"({100 * row['peak_error']:+.1f}%)")


def run_profile(model_cfg: ModelConfig, sweep: ProfileConfig, out_dir: str | Path, json_path: str | Path | None = None,
                budget: str | None = None) -> Dict[str, Any]:
    """Measure every case of `sweep` on variants of `model_cfg`, write profile.json/.md/.png into `out_dir`,
    return the JSON."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    budget_text = budget if budget is not None else sweep.budget
    budget_bytes = parse_bytes(budget_text, "--budget") if budget_text else None
    device = resolve_device(sweep.device)
    cases = expand_sweep(sweep)
    rows: List[Dict[str, Any]] = []
    for number, case in enumerate(cases, start=1):
        row = mark_budget(measure_case(model_cfg, sweep, case, device), budget_bytes)
        rows.append(row)
        gc.collect()
        subsample = "" if case.subsample is None else (" subsample" if case.subsample else " no-subsample")
        print(f"[{number}/{len(cases)}] {case.placement} {case.frames}x{case.size} batch {case.batch} "
              f"{row['implementation']}{subsample}: activations {format_bytes(row['activation_bytes'])}, "
              f"predicted {100 * row['prediction_error']:+.2f}%{_peak_text(row)}", flush=True)
    worst = max(abs(row["prediction_error"]) for row in rows)
    peak_errors = [abs(row["peak_error"]) for row in rows if row["peak_error"] is not None]
    result = {"rows": rows, "device": device, "budget_bytes": budget_bytes, "worst_prediction_error": worst,
              "worst_peak_error": max(peak_errors) if peak_errors else None,
              "seconds": round(time.perf_counter() - start, 2)}
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in [out_dir / "profile.json"] + ([Path(json_path)] if json_path else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "profile.md").write_text(markdown_table(rows, budget_bytes))
    title = (f"{model_cfg.arch.upper()}-R{model_cfg.depth} (width x{model_cfg.width:g}): memory of one "
             f"training step, measured on {device}")
    bar_chart(out_dir / "profile.png", rows, budget_bytes, title)
    return result

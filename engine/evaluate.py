"""Evaluation: multi-view prediction gathered by video index over ranks (behind `run.py test`).

Each rank scores its shard of the videos; a video's views (test.clips x test.crops) are averaged in
softmax space. Scores are gathered by dataset index, so every video counts exactly once however the
loader shards. Videos that could not be decoded are reported, never scored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import torch
from omegaconf import OmegaConf
from torch import nn

from engine.config import ExperimentConfig
from engine.distributed import DistContext, all_gather_objects
from engine.inputs import model_input
from engine.metrics import classification_metrics, save_confusion_matrix
from engine.precision import autocast, check_amp
from errors import UserError
from video.formats import Dataset, describe_source, open_split
from video.loader import build_loader


@dataclass
class Evaluation:
    """Per-video averaged probabilities (by dataset index), the metrics, and the skipped videos."""

    scores: Dict[int, torch.Tensor]
    labels: Dict[int, int]
    skipped: Dict[int, str]  # dataset index -> reason
    metrics: Dict[str, object]


def _reason(path: str, failures: List[str]) -> str:
    """The loader's reason for an undecodable video, from its `path: reason` entries."""
    for entry in failures:
        if entry.startswith(path):
            return entry[len(path):].lstrip(": ")
    return "could not be decoded"


@torch.no_grad()
def view_probabilities(model: nn.Module, clips: torch.Tensor, device: torch.device, cfg: ExperimentConfig) -> torch.Tensor:
    """Softmax scores (N, classes) on the CPU of uint8 clips (N, 3, T, H, W), normalised on `device`."""
    inputs = model_input(clips, device, cfg.data, cfg.trainer.channels_last)
    with autocast(cfg.trainer.amp, device):
        logits = model(inputs)
    return logits.float().softmax(dim=1).cpu()


@torch.no_grad()
def evaluate(model: nn.Module, loader, ctx: DistContext, cfg: ExperimentConfig) -> Evaluation:
    """Score this rank's shard, gather every rank's results by index, and compute the metrics."""
    model.eval()
    samples = loader.dataset.samples
    local_scores, local_labels, local_skipped = {}, {}, {}
    for batch in loader:
        clips = batch["clip"]  # (B,V,3,T,H,W) uint8
        batch_size, views = clips.shape[:2]
        probs = view_probabilities(model, clips.flatten(0, 1), ctx.device, cfg).reshape(batch_size, views, -1).mean(dim=1)
        for row, (index, label, valid) in enumerate(zip(batch["index"].tolist(), batch["label"].tolist(),
                                                        batch["valid"].tolist())):
            if valid:
                local_scores[index], local_labels[index] = probs[row], label
            else:
                local_skipped[index] = _reason(samples[index][0], batch["failed"])
    scores, labels, skipped = {}, {}, {}
    for rank_scores, rank_labels, rank_skipped in all_gather_objects(
            (local_scores, local_labels, local_skipped), ctx):
        scores.update(rank_scores)
        labels.update(rank_labels)
        skipped.update(rank_skipped)
    order = sorted(scores)
    if order:
        metrics = classification_metrics(torch.stack([scores[i] for i in order]),
                                         torch.tensor([labels[i] for i in order]))
    else:
        metrics = {"top1": 0.0, "top5": 0.0, "mean_class_acc": 0.0, "per_class": [], "confusion": []}
    return Evaluation(scores=scores, labels=labels, skipped=skipped, metrics=metrics)


def results_document(evaluation: Evaluation, dataset: Dataset, views: int) -> dict:
    """The `test_results.json` document (keys fixed by docs/interfaces.md)."""
    names = dataset.labels
    per_video = [{"path": dataset.samples[i][0], "label": names[evaluation.labels[i]],
                  "pred": names[int(evaluation.scores[i].argmax())],
                  "scores": [round(p, 6) for p in evaluation.scores[i].tolist()]}
                 for i in sorted(evaluation.scores)]
    skipped = [{"path": dataset.samples[i][0], "reason": reason} for i, reason in sorted(evaluation.skipped.items())]
    return {"top1": evaluation.metrics["top1"], "top5": evaluation.metrics["top5"],
            "mean_class_acc": evaluation.metrics["mean_class_acc"], "views": views, "videos": len(per_video),
            "skipped_videos": skipped, "per_video": per_video}


def run_test(model: nn.Module, labels: List[str], cfg: ExperimentConfig, out_dir: Path, ctx: DistContext) -> dict:
    """Multi-view test of `model` on `cfg.test.split`; rank 0 writes test_results.json and the confusion matrix."""
    check_amp(cfg.trainer.amp, ctx.device)
    views = cfg.test.clips * cfg.test.crops
    dataset = open_split(cfg.data, cfg.test.split, train=False, rank=ctx.rank, world_size=ctx.world_size,
                         seed=cfg.run.seed, clips=cfg.test.clips, crops=cfg.test.crops)
    if list(dataset.labels) != list(labels):
        raise UserError(f"the classes of {describe_source(cfg.data, cfg.test.split)} differ from the checkpoint's "
                        f"({len(dataset.labels)} vs {len(labels)} classes)")
    data_cfg = OmegaConf.merge(cfg.data, {"batch_size": cfg.test.batch_size or cfg.data.batch_size})
    loader = build_loader(dataset, data_cfg, train=False, rank=ctx.rank, world_size=ctx.world_size,
                          seed=cfg.run.seed, device_type=ctx.device.type)
    evaluation = evaluate(model.to(ctx.device), loader, ctx, cfg)
    results = results_document(evaluation, dataset, views)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "test_results.json").write_text(json.dumps(results, indent=1))
        if evaluation.metrics["confusion"]:
            save_confusion_matrix(evaluation.metrics["confusion"], dataset.labels, out_dir, "test_confusion_matrix")
        print(f"test {cfg.test.split} ({views} views, {results['videos']} videos, "
              f"{len(results['skipped_videos'])} skipped): top1 {results['top1']:.4f}  "
              f"top5 {results['top5']:.4f}  mean class acc {results['mean_class_acc']:.4f}  "
              f"-> {out_dir / 'test_results.json'}")
    return results

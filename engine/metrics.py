"""Meters: classification metrics from per-video scores (top-k, mean class accuracy, per-class, confusion
matrix), windowed means, and the training throughput (clips/s and the share of time spent waiting for data)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import torch  # noqa: E402


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of rows whose label is among the k highest scores (k capped at the class count)."""
    if len(labels) == 0:
        return 0.0
    k = min(k, scores.shape[1])
    hits = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return hits.double().mean().item()


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [true class, predicted class]."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: torch.Tensor) -> List[float | None]:
    """Recall of each class; None for a class with no videos."""
    totals = matrix.sum(dim=1)
    return [matrix[i, i].item() / totals[i].item() if totals[i] > 0 else None for i in range(len(matrix))]


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor) -> Dict[str, object]:
    """top1, top5, mean_class_acc (over classes present), per_class and the confusion matrix."""
    num_classes = scores.shape[1]
    matrix = confusion_matrix(scores.argmax(dim=1), labels, num_classes)
    per_class = per_class_accuracy(matrix)
    present = [acc for acc in per_class if acc is not None]
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_acc": sum(present) / len(present) if present else 0.0,
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def save_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], out_dir: Path,
                          stem: str = "confusion_matrix") -> Dict[str, Path]:
    """Write the matrix as JSON ({labels, matrix}) and as a row-normalized PNG heat map."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    json_path.write_text(json.dumps({"labels": list(labels), "matrix": [list(r) for r in matrix]}))
    counts = torch.tensor(matrix, dtype=torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.35 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 30:
        for (i, j), value in zip(((i, j) for i in ticks for j in ticks), counts.flatten().tolist()):
            if value:
                ax.text(j, i, int(value), ha="center", va="center", fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return {"json": json_path, "png": png_path}


class WindowMeans:
    """Means of named scalar terms over the steps since the last `reduce`, summed across ranks."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: Dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float()
        self.count += 1

    def reduce(self, all_reduce_sum) -> Dict[str, float]:
        """Global means (`all_reduce_sum` sums a tensor over ranks), then start a new window."""
        names = list(self.sums)
        local = torch.stack([self.sums[n].cpu() for n in names] + [torch.tensor(float(self.count))])
        total = all_reduce_sum(local)
        self.sums, self.count = {}, 0
        return {name: (total[i] / total[-1].clamp(min=1)).item() for i, name in enumerate(names)}


class ThroughputMeter:
    """Clips/s and the share of wall time spent waiting for the next batch, over a window of steps."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.wait = 0.0
        self.clips = 0

    def waited(self, seconds: float, clips: int) -> None:
        self.wait += seconds
        self.clips += clips

    def summary(self, world_size: int) -> Dict[str, float]:
        """Global clips/s (every rank runs the same batch size) and this rank's data-wait share."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {"clips_per_s": self.clips * world_size / elapsed, "data_wait": self.wait / elapsed}

"""`run.py prep shards`: one split of a dataset folder as sequential tar shards in WebDataset's layout.

A sample is three tar members under one key (the video's row in `<split>.csv`, 8 digits): `KEY.mp4` (the
video's bytes as the folder holds them), `KEY.cls` (class index, decimal text) and `KEY.json` (label name,
source path, row), so WebDataset's own tools read the shards. The rows are shuffled once (`--seed`) before
they are cut into shards of `--shard-size` rows, so each shard mixes the classes. Each video is opened as
training would before it is written; a broken one is left out and reported in `S-prep_report.json`
(`prep kinetics` style: written, skipped with reasons). `S-shards.json` is the shard index (see
video/shard_stream.py). Resumable: a shard is written as `NAME.part` and renamed when complete; a re-run
keeps the complete shards (reading their members back) and writes the others again.
"""
from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import webdataset
from tqdm import tqdm
from webdataset.tariterators import base_plus_ext

from data_prep.kinetics import unreadable_reason
from errors import UserError
from video.dataset import read_flip_pairs, read_labels, read_split
from video.decode import VideoDecodeError, open_video
from video.shard_stream import INDEX_FORMAT, index_name, shard_name

Sample = Tuple[str, int]  # (key, class index)


@dataclass(frozen=True)
class Row:
    """One video of the split: its key, file, class index and row number in `<split>.csv`."""

    key: str
    path: str
    label: int
    row: int


def report_name(split: str) -> str:
    """The prep report of a split's shards, beside them."""
    return f"{split}-prep_report.json"


def broken_reason(path: str) -> Optional[str]:
    """Why training could not read the video `path` (not a readable file, no decodable video stream),
    or None when it opens."""
    reason = unreadable_reason(Path(path))
    if reason is not None:
        return reason
    try:
        with open_video(path):
            return None
    except VideoDecodeError as exc:
        return exc.reason


def plan_shards(rows: List[Row], shard_size: int, seed: int) -> List[List[Row]]:
    """The rows of each shard: all rows in an order drawn from `seed`, cut every `shard_size`."""
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = [rows[i] for i in order]
    return [shuffled[start:start + shard_size] for start in range(0, len(shuffled), shard_size)]


def write_shard(target: Path, rows: List[Row], labels: List[str], root: Path) -> Tuple[List[Sample], List[Dict]]:
    """Write the readable videos of `rows` to the shard `target` (through `target.part`); the samples
    written and the videos skipped, with their reasons."""
    partial = target.with_name(target.name + ".part")
    written, skipped = [], []
    with open(partial, "wb") as file, webdataset.TarWriter(file, mtime=0.0) as writer:
        for row in rows:
            reason = broken_reason(row.path)
            if reason is not None:
                skipped.append({"source": row.path, "reason": reason})
                continue
            meta = {"label": labels[row.label], "source": os.path.relpath(row.path, root), "row": row.row}
            writer.write({"__key__": row.key, "mp4": Path(row.path).read_bytes(), "cls": row.label, "json": meta})
            written.append((row.key, row.label))
    os.replace(partial, target)
    return written, skipped


def read_shard(target: Path, rows: List[Row]) -> Tuple[List[Sample], List[Dict]]:
    """The samples of the complete shard `target` and the videos of `rows` it left out (their reasons
    found again); a UserError when it holds other rows than this run plans for it."""
    planned = {row.key: row for row in rows}
    written: List[Sample] = []
    with tarfile.open(target) as archive:
        for member in archive:
            key, suffix = base_plus_ext(member.name)
            if suffix == "cls":
                if key not in planned:
                    raise UserError(f"{target} holds sample {key}, which this run puts in another shard: it was "
                                    "written with another --shard-size, --seed or split list; use a new --out")
                written.append((key, int(archive.extractfile(member).read())))
    kept = {key for key, _ in written}
    skipped = [{"source": row.path, "reason": broken_reason(row.path) or "left out when the shard was written"}
               for row in rows if row.key not in kept]
    return written, skipped


def prepare_shards(root: Path, split: str, out: Path, shard_size: int, seed: int = 0, progress: bool = True) -> Dict:
    """Write the shards of `root`'s `split` to `out` (keeping complete ones), then the shard index and
    the prep report; returns the report."""
    if shard_size < 1:
        raise UserError(f"--shard-size={shard_size}: must be at least 1")
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist (--root)")
    labels = read_labels(root)
    rows = [Row(f"{number:08d}", path, label, number)
            for number, (path, label) in enumerate(read_split(root, split, labels))]
    out.mkdir(parents=True, exist_ok=True)
    shards, skipped, kept = [], [], []
    plan = plan_shards(rows, shard_size, seed)
    for number, shard_rows in enumerate(tqdm(plan, desc=f"{split} shards", unit="shard", disable=not progress)):
        target = out / shard_name(split, number)
        if target.is_file():
            samples, left_out = read_shard(target, shard_rows)
            kept.append(target.name)
        else:
            samples, left_out = write_shard(target, shard_rows, labels, root)
        shards.append({"name": target.name, "count": len(samples), "samples": [list(sample) for sample in samples]})
        skipped.extend(left_out)
    flip_pairs = [list(pair) for pair in read_flip_pairs(root, labels)]
    index = {"format": INDEX_FORMAT, "split": split, "labels": labels, "flip_pairs": flip_pairs,
             "samples": sum(shard["count"] for shard in shards), "shard_size": shard_size, "seed": seed,
             "shards": shards}
    _write_json(out / index_name(split), index, indent=None)
    report = {"split": split, "index": str(out / index_name(split)), "shards": len(shards), "kept_shards": kept,
              "written": index["samples"], "skipped": skipped}
    _write_json(out / report_name(split), report)
    return report


def _write_json(path: Path, document: Dict, indent: Optional[int] = 1) -> None:
    """`document` to `path` through a temporary name, so a reader never sees half of it."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(document, indent=indent))
    os.replace(partial, path)

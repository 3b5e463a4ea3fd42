"""`prep merge`: join the dataset folders of `prep kinetics --shard i/N` runs into one folder and one report.

Each input must hold `labels.txt` (the same in all), `prep_report.json` and its `<split>.csv` lists.
Videos are hard-linked into the output (copied where links cannot cross file systems), lists and
reports are concatenated in path order. Shards recorded in the reports must be all of one N, each
present once; a video path listed by two inputs is refused (the shards overlap).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from errors import UserError
from video.dataset import read_labels

SPLITS = ("train", "val", "test")


def _read_report(folder: Path) -> Dict:
    path = folder / "prep_report.json"
    if not path.is_file():
        raise UserError(f"{folder} has no prep_report.json: not the output of prep kinetics (--inputs)")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    if not all(isinstance(report.get(key), list) for key in ("written", "skipped", "missing")):
        raise UserError(f"{path}: needs the lists 'written', 'skipped' and 'missing'")
    return report


def _check_shards(inputs: Sequence[Path], reports: Sequence[Dict]) -> None:
    """All inputs sharded alike, every shard once; unsharded inputs are joined as they are."""
    shards = [report.get("shard") for report in reports]
    if not any(shards):
        return
    if not all(shards):
        plain = [str(folder) for folder, shard in zip(inputs, shards) if not shard]
        raise UserError(f"{', '.join(plain)}: not made with --shard, unlike the other inputs")
    counts = {shard["count"] for shard in shards}
    if len(counts) != 1:
        raise UserError(f"the inputs come from different shard counts {sorted(counts)}")
    count = counts.pop()
    seen = sorted(shard["index"] for shard in shards)
    missing = sorted(set(range(count)) - set(seen))
    repeated = sorted({index for index in seen if seen.count(index) > 1})
    if missing or repeated:
        raise UserError(f"shards of {count}: missing {[f'{i}/{count}' for i in missing]}, "
                        f"given twice {[f'{i}/{count}' for i in repeated]}")


def _read_rows(folder: Path, split: str) -> List[Tuple[str, str]]:
    path = folder / f"{split}.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows or rows[0] != ["path", "label"]:
        raise UserError(f"{path}: the first line must be the header 'path,label'")
    return [(row[0], row[1]) for row in rows[1:]]


def _place(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (copy across file systems); an existing equal target is kept."""
    if target.exists():
        if target.stat().st_size == source.stat().st_size:
            return
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def merge(inputs: Sequence[Path], out: Path) -> Dict:
    """Join the shard folders `inputs` into `out`; the merged report (also written to `out`)."""
    if len(inputs) < 1:
        raise UserError("prep merge needs at least one --inputs folder")
    for folder in inputs:
        if not folder.is_dir():
            raise UserError(f"input folder {folder} does not exist (--inputs)")
    if out.resolve() in {folder.resolve() for folder in inputs}:
        raise UserError(f"--out {out} is one of the inputs; write the merged dataset to a new folder")
    reports = [_read_report(folder) for folder in inputs]
    _check_shards(inputs, reports)
    labels = read_labels(inputs[0])
    for folder in inputs[1:]:
        if read_labels(folder) != labels:
            raise UserError(f"{folder / 'labels.txt'} lists other classes than {inputs[0] / 'labels.txt'}")
    owner: Dict[str, Path] = {}
    for folder, report in zip(inputs, reports):
        for relative in report["written"]:
            if relative in owner:
                raise UserError(f"{relative} is in both {owner[relative]} and {folder}: the inputs overlap")
            owner[relative] = folder
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    for relative, folder in sorted(owner.items()):
        source = folder / relative
        if not source.is_file():
            raise UserError(f"{source} is listed in {folder / 'prep_report.json'} but missing")
        _place(source, out / relative)
    for split in SPLITS:
        rows = sorted(row for folder in inputs for row in _read_rows(folder, split))
        if rows:
            with open(out / f"{split}.csv", "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["path", "label"])
                writer.writerows(rows)
    merged = {
        "written": sorted(owner),
        "skipped": sorted((item for report in reports for item in report["skipped"]), key=lambda i: i["source"]),
        "missing": sorted(key for report in reports for key in report["missing"]),
    }
    (out / "prep_report.json").write_text(json.dumps(merged, indent=2))
    return merged

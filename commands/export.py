"""`run.py export checkpoint=PATH --format onnx|torchscript|mmaction2 --out FILE [--frames T --size S] [--dynamic-batch]`.

The model of a checkpoint of ours out to another runtime (models/export/, docs/export.md). The example
clip is the checkpoint's own test view unless --frames/--size say otherwise; the class names and the view
go into the file's metadata. Files are written into a temporary folder beside FILE and renamed into place,
so a failed export leaves nothing behind. `key=value` overrides may set the view keys stored in the
metadata (e.g. test.crops=3), nothing else.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Tuple

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from configs.compose import Config, checkpoint_path
from engine.checkpoint import load_trained
from errors import UserError
from inference.view_metadata import VIEW_KEYS, clip_shape, export_view, view_metadata
from models.export import FORMATS, ExportRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS.names())}")
    parser.add_argument("--out", required=True, type=Path, help="the file to write (companions go beside it)")
    parser.add_argument("--frames", type=int, help="T of the example clip (default: the checkpoint's test view)")
    parser.add_argument("--size", type=int, help="crop size S of the example clip (default: the test view's)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="ONNX: a variable batch axis; both formats are also checked on a second batch size")


def staging_folder(out: Path) -> Path:
    """A fresh temporary folder beside `out`; a folder that cannot be made or written is a UserError."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the file to write, e.g. {out / 'model.onnx'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write into the folder {out.parent} ({exc.strerror or exc})") from exc


def with_view_overrides(trained: Config, args: argparse.Namespace) -> Config:
    """The checkpoint's config with the `key=value` overrides of view keys (the metadata); the model and
    everything else come from the checkpoint, so any other key is refused rather than ignored."""
    if args.config:
        raise UserError("export takes the checkpoint's own config, not --config; set view keys as key=value")
    items = [item for item in args.overrides if item.partition("=")[0] not in ("checkpoint", "test.checkpoint")]
    for item in items:
        if item.partition("=")[0] not in VIEW_KEYS:
            raise UserError(f"export: '{item.partition('=')[0]}' is not a view key; these are: {', '.join(VIEW_KEYS)}")
    try:
        return OmegaConf.merge(trained, OmegaConf.from_dotlist(items))
    except OmegaConfBaseException as exc:
        raise UserError(f"export: override {str(exc).splitlines()[0]}") from exc


def check_clip_fits(model: nn.Module, shape: Tuple[int, ...]) -> None:
    """A model too deep for a --frames/--size clip (a pool left with no output) is a UserError, not a trace."""
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    except RuntimeError as exc:
        raise UserError(f"--frames/--size: the model cannot take a {'x'.join(map(str, shape))} clip "
                        f"({str(exc).splitlines()[0][:200]})") from exc


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    exporter = FORMATS.get(args.format)  # an unknown format ends here, before any work
    path = checkpoint_path(cfg, "export")
    model, trained, labels = load_trained(path, Config)
    view = export_view(with_view_overrides(trained, args), args.frames, args.size)
    shape = clip_shape(view)
    if args.frames is not None or args.size is not None:
        check_clip_fits(model, shape)
    staging = staging_folder(args.out)
    try:
        request = ExportRequest(model, view.model, shape, view_metadata(view, labels, shape, args.dynamic_batch),
                                staging / args.out.name, args.dynamic_batch,
                                (list(view.data.transforms.mean), list(view.data.transforms.std)))
        result = exporter(request)
        written = [args.out.parent / p.name for p in result.paths]
        for temporary, final in zip(result.paths, written):
            os.replace(temporary, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for note in result.notes:
        print(note)
    clip = "x".join(["N" if args.dynamic_batch else str(shape[0]), *map(str, shape[1:])])
    print(f"export: {args.format} of {path} for {clip} clips, {len(labels)} classes -> {', '.join(map(str, written))}")
    return 0

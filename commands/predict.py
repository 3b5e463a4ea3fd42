"""`run.py predict checkpoint=PATH|MODEL.onnx --video FILE_OR_DIR --out DIR [--top-k K] [--explain [--class NAME]]`.

Every video (a folder is searched recursively) gets its top-k labels over the checkpoint's test views
and a timeline of sliding windows (inference/predict.py); DIR/predictions.json holds them all with
every unreadable video and its reason, DIR/<stem>_timeline.png the timeline of each video longer than
one window, and with --explain DIR/<stem>_gradcam.png/.mp4 a Grad-CAM of `predict.gradcam_layer`.
An ONNX file from `run.py export` runs with onnxruntime, its views and class names from its metadata.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

from tqdm import tqdm

from configs.compose import Config, checkpoint_path, config_for_checkpoint
from engine.distributed import init_distributed
from errors import UserError
from inference.explain import explain_video
from inference.onnx_model import is_onnx
from inference.predict import check_options, load_predictor, predict_video, save_timeline
from video.decode import VideoDecodeError
from video.files import list_videos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, type=Path, help="a video file, or a folder searched recursively")
    parser.add_argument("--out", required=True, type=Path, help="folder for predictions.json and the pictures")
    parser.add_argument("--top-k", type=int, help="labels listed per video and window (default predict.top_k)")
    parser.add_argument("--explain", action="store_true", help="also write a Grad-CAM of predict.gradcam_layer")
    parser.add_argument("--class", dest="class_name", help="explain this class instead of the predicted one")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    path = checkpoint_path(cfg, "predict")
    if args.explain and is_onnx(path):
        raise UserError(f"--explain needs the PyTorch checkpoint (Grad-CAM takes gradients, which onnxruntime "
                        f"does not give); {path} is an ONNX file")
    model, trained, labels = load_predictor(path, Config)
    cfg = config_for_checkpoint(trained, cfg, args.config, args.overrides)
    options = cfg.predict
    if args.top_k is not None:
        options.top_k = args.top_k
    check_options(options)
    videos = list_videos(args.video, "--video")
    device = init_distributed(cfg.trainer.device).device
    model = model.to(device)
    args.out.mkdir(parents=True, exist_ok=True)
    document: Dict[str, list] = {"videos": [], "skipped": []}
    for path in tqdm(videos, desc="predict", unit="video", disable=len(videos) == 1):
        try:
            prediction = predict_video(model, str(path), cfg, options, device)
            entry = prediction.to_json(labels, options.top_k)
            if len(entry["windows"]) > 1:
                entry["timeline"] = str(save_timeline(args.out / f"{path.stem}_timeline.png", prediction, labels,
                                                      options.timeline_classes))
            if args.explain:
                entry["explain"] = explain_video(model, str(path), cfg.data, labels, options, args.out,
                                                 args.class_name)
        except VideoDecodeError as exc:
            document["skipped"].append({"path": str(path), "reason": exc.reason})
            tqdm.write(f"skipped {path}: {exc.reason}")
            continue
        document["videos"].append(entry)
        best = entry["top"][0]
        tqdm.write(f"{path}: {best['label']} {best['score']:.3f}  ("
                   + ", ".join(f"{t['label']} {t['score']:.3f}" for t in entry["top"][1:]) + ")")
    (args.out / "predictions.json").write_text(json.dumps(document, indent=1) + "\n")
    print(f"predict: {len(document['videos'])} videos, {len(document['skipped'])} skipped -> "
          f"{args.out / 'predictions.json'}")
    return 0

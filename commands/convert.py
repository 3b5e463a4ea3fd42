"""`run.py convert --source mmaction2|pytorchvideo|torchvision --checkpoint IN --out OUT.pt [--config FILE]
[key=value ...] [--labels FILE] [--verify]`.

Reads a published checkpoint, maps its weights onto our model (models/converters/), infers the config
the weights need; `--config` and overrides may fill in what it cannot tell, never contradict it
(models/converters/settings.py). `--verify` runs the source toolkit's own model beside ours. Writes OUT.pt, a checkpoint that `test`, `predict`, `visualize` and `profile` read and that
`train` starts from with `trainer.init_from=OUT.pt`, plus OUT.yaml, the model and data settings to
fine-tune with (`train --config OUT.yaml`); the printed report is read back from what was written.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
import yaml

import models.converters  # noqa: F401  (registers the converters)
from configs.compose import Config, load_config
from engine.checkpoint import FORMAT, config_to_container, save_checkpoint
from engine.config import config_from_dict
from engine.inputs import model_input
from errors import UserError
from models.build import build_model
from models.converters import reference
from models.converters.common import CONVERTERS, Conversion, take_state_dict
from models.converters.settings import reconcile, settle
from models.weights import read_torch_file

VERIFY_TOLERANCE = 1e-4
VERIFY_CLIP = {"mmaction2": (1, 3, 16, 112, 112), "pytorchvideo": (1, 3, 8, 224, 224)}  # their head pool needs 224


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help=f"where the checkpoint comes from: {', '.join(CONVERTERS.names())}")
    parser.add_argument("--checkpoint", required=True, type=Path, help="the published checkpoint file")
    parser.add_argument("--out", required=True, type=Path, help="our checkpoint to write (OUT.yaml beside it)")
    parser.add_argument("--labels", type=Path, help="class names, one per line (e.g. kinetics400.txt)")
    parser.add_argument("--arch", help="i3d | c2d | tsn, where the weights and file name cannot tell "
                                       "(mmaction2 C2D against TSN; torchvision: what to inflate into)")
    parser.add_argument("--nonlocal-mode", help="embedded_gaussian | dot_product, where the weights, the file "
                                                "name and its meta cannot tell")
    parser.add_argument("--verify", action="store_true",
                        help="run the source toolkit's own model (mmaction2, pytorchvideo) on the same random clip and "
                             f"refuse to write unless max |diff| / max |logit| <= {VERIFY_TOLERANCE:g}")
    parser.add_argument("--trust-file", action="store_true",
                        help="unpickle objects beside the tensors (runs code from the file: only for files you trust)")


def read_label_map(path: Path | None, count: int) -> List[str]:
    """`count` class names from the file, or class_0.. when none is given."""
    if path is None:
        print(f"no --labels: the {count} classes are named class_0 .. class_{count - 1}")
        return [f"class_{i}" for i in range(count)]
    if not path.is_file():
        raise UserError(f"--labels: file not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != count:
        raise UserError(f"--labels {path} lists {len(names)} classes, the checkpoint's classifier has {count}")
    return names


def verify(source: str, checkpoint: Any, name: str, model: torch.nn.Module, cfg: Config) -> str:
    """The source toolkit's own model and ours on one random clip (each normalising it as its config says):
    the line to print, or a UserError above the tolerance."""
    state = take_state_dict(checkpoint, name)
    clip = torch.randint(0, 256, VERIFY_CLIP[source], dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours_input = model_input(clip, torch.device("cpu"), cfg.data, channels_last=False)
    try:
        if source == "mmaction2":
            theirs, where, preprocessor = reference.mmaction2_model(checkpoint, name, state)
            mean, std = (torch.tensor(preprocessor.get(k, d), dtype=torch.float32).view(-1, 1, 1, 1)
                         for k, d in (("mean", [0.0]), ("std", [1.0])))
            their_input = (clip.float() - mean) / std
        else:  # pytorchvideo's hub models carry no normalisation: both see ours
            theirs, where = reference.pytorchvideo_model(name, state)
            their_input = ours_input
    except (RuntimeError, KeyError, TypeError) as exc:  # their builder or strict loading refused
        raise UserError(f"--verify: {source}'s own model does not take {name}: {str(exc).splitlines()[0][:200]}") from exc
    with torch.no_grad():
        expected, got = theirs(their_input), model.eval()(ours_input)
    ratio = ((got - expected).abs().max() / expected.abs().max()).item()
    line = (f"--verify: max |diff| / max |logit| = {ratio:.2e} against {source}'s own model from {where}, "
            f"on a random {'x'.join(map(str, VERIFY_CLIP[source]))} clip")
    if not ratio <= VERIFY_TOLERANCE:
        raise UserError(f"{line}: above {VERIFY_TOLERANCE:g}, so the converted model does not compute what "
                        f"{source}'s does; nothing written")
    return line


def write_atomic(path: Path, text: str) -> None:
    """Write `text` under a temporary name beside `path`, then rename, so no half-written file is left."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def compose(conversion: Conversion, config_file: str | None, overrides: List[str]) -> List[Tuple[str, Dict[str, Any]]]:
    """(label, settled config) after each layer: the checkpoint's settings, `--config`, each override."""
    layers = [("checkpoint", None, [])] + ([(f"--config {config_file}", config_file, [])] if config_file else [])
    layers += [(f"override {item}", config_file, overrides[:i + 1]) for i, item in enumerate(overrides)]
    return [(label, settle(config_to_container(load_config(file, items, base=conversion.settings)),
                           conversion.settings["model"])) for label, file, items in layers]


def convert(args: argparse.Namespace) -> Dict[str, Any]:
    """Convert, check and write; returns {"checkpoint", "config", "report", ...}: the report is read back
    from the written checkpoint's config, each line naming where its value came from."""
    converter = CONVERTERS.get(args.source)
    if args.verify and args.source not in VERIFY_CLIP:
        raise UserError(f"--verify: checks {' and '.join(VERIFY_CLIP)} conversions, not {args.source}")
    checkpoint = read_torch_file(args.checkpoint, "--checkpoint", args.trust_file,
                                 untrusted="if you trust the file, add --trust-file")
    conversion = converter(checkpoint, args.checkpoint.name, arch=args.arch, nonlocal_mode=args.nonlocal_mode)
    stages = compose(conversion, args.config, list(args.overrides))
    reconcile(stages, conversion.sources)  # refuses a contradiction before anything is built or written
    classes = int(conversion.state["head.fc.weight"].shape[0])
    labels = read_label_map(args.labels, classes)
    cfg: Config = config_from_dict(stages[-1][1], Config)
    model = build_model(cfg.model, classes)
    conversion.check_against(model, str(args.checkpoint))
    model.load_state_dict(conversion.state)
    checked = verify(args.source, checkpoint, args.checkpoint.name, model, cfg) if args.verify else None
    yaml_path = args.out.with_suffix(".yaml")
    fine_tune = config_to_container(cfg)
    fine_tune["model"]["num_classes"] = 0  # taken from the dataset when fine-tuning
    try:
        save_checkpoint({"format": FORMAT, "model": model.state_dict(), "config": config_to_container(cfg),
                         "labels": labels, "step": 0,
                         "converted_from": {"source": args.source, "file": str(args.checkpoint)}}, args.out)
        write_atomic(yaml_path, f"# converted from {args.checkpoint.name} ({args.source}); fine-tune with\n"
                     f"#   python run.py train --config {yaml_path} data.root=DATASET trainer.init_from={args.out}\n"
                     + yaml.safe_dump({k: fine_tune[k] for k in ("model", "data", "test")}, sort_keys=False))
    except OSError as exc:
        if args.out.is_file():  # both files or neither
            args.out.unlink()
        raise UserError(f"--out {args.out}: cannot write {exc.filename or args.out} ({exc.strerror or exc})") from exc
    written = read_torch_file(args.out, "--out", mmap=True)["config"]  # tensors stay on disk
    report = reconcile(stages[:-1] + [(stages[-1][0], written)], conversion.sources)
    return {"checkpoint": str(args.out), "config": str(yaml_path), "report": report, "verified": checked,
            "parameters": sum(p.numel() for p in model.parameters()), "arch": written["model"]["arch"]}


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    result = convert(args)
    print(f"{args.checkpoint.name}: {result['arch']}, {result['parameters'] / 1e6:.2f} M parameters; "
          "the settings written, each with where it came from:")
    for line in result["report"]:
        print(f"  {line}")
    if result["verified"]:
        print(result["verified"])
    print(f"every key accounted for; wrote {result['checkpoint']} and {result['config']}")
    return 0

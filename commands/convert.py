"""`run.py convert --source mmaction2|torchvision --checkpoint IN --out OUT.pt [--config MODEL_YAML] [--labels FILE]`.

Reads a published checkpoint, maps its weights onto our model (models/converters/), infers the config
the weights need (printed line by line; `--config` gives it instead and the weights are checked against
it), and writes OUT.pt, a checkpoint that `test`, `predict`, `visualize` and `profile` read and that
`train` starts from with `trainer.init_from=OUT.pt`, plus OUT.yaml, the model and data settings to
fine-tune with (`train --config OUT.yaml`).
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any, Dict, List

import torch
import yaml
from omegaconf import OmegaConf

import models.converters  # noqa: F401  (registers the converters)
from configs.compose import Config, load_config
from engine.checkpoint import FORMAT, config_to_container, save_checkpoint
from errors import UserError
from models.build import build_model
from models.converters.common import CONVERTERS, Conversion


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help=f"where the checkpoint comes from: {', '.join(CONVERTERS.names())}")
    parser.add_argument("--checkpoint", required=True, type=Path, help="the published checkpoint file")
    parser.add_argument("--out", required=True, type=Path, help="our checkpoint to write (OUT.yaml beside it)")
    parser.add_argument("--labels", type=Path, help="class names, one per line (e.g. kinetics400.txt)")
    parser.add_argument("--arch", help="i3d | c2d | tsn, where the weights and file name cannot tell "
                                       "(mmaction2 C2D against TSN; torchvision: what to inflate into)")
    parser.add_argument("--nonlocal-mode", help="embedded_gaussian | dot_product, where the weights, the file "
                                                "name and its meta cannot tell")
    parser.add_argument("--trust-file", action="store_true",
                        help="unpickle objects beside the tensors (runs code from the file: only for files you trust)")


def read_checkpoint(path: Path, trust: bool) -> Any:
    """The loaded file; with only tensors and plain types unless `trust` allows any pickle."""
    if not path.is_file():
        raise UserError(f"--checkpoint: file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} holds objects other than tensors and plain types "
                        f"({str(exc).splitlines()[0][:160]}); if you trust the file, add --trust-file") from exc
    except Exception as exc:  # zip, pickle and torch errors all mean "not a checkpoint file"
        raise UserError(f"{path} is not a readable checkpoint ({str(exc).splitlines()[0][:160] or type(exc).__name__})") from exc


def read_labels(path: Path | None, count: int) -> List[str]:
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


def converted_settings(conversion: Conversion) -> Dict[str, Any]:
    """The sections the conversion infers, for the checkpoint's config and for OUT.yaml."""
    return {"model": conversion.model, "data": conversion.data, "test": conversion.test}


def convert(args: argparse.Namespace) -> Dict[str, Any]:
    """Convert, check and write; returns {"checkpoint", "config", "notes"}."""
    converter = CONVERTERS.get(args.source)
    conversion = converter(read_checkpoint(args.checkpoint, args.trust_file), args.checkpoint.name,
                           arch=args.arch, nonlocal_mode=args.nonlocal_mode)
    classes = int(conversion.state["head.fc.weight"].shape[0])
    labels = read_labels(args.labels, classes)
    settings = converted_settings(conversion)
    cfg: Config = load_config(args.config, args.overrides, base=settings)
    cfg.model.num_classes = classes
    model = build_model(cfg.model, classes)
    conversion.check_against(model, str(args.checkpoint))
    model.load_state_dict(conversion.state)
    save_checkpoint({"format": FORMAT, "model": model.state_dict(), "config": config_to_container(cfg),
                     "labels": labels, "step": 0,
                     "converted_from": {"source": args.source, "file": str(args.checkpoint)}}, args.out)
    yaml_path = args.out.with_suffix(".yaml")
    fine_tune = config_to_container(cfg)
    fine_tune["model"]["num_classes"] = 0  # taken from the dataset when fine-tuning
    yaml_path.write_text(f"# converted from {args.checkpoint.name} ({args.source}); fine-tune with\n"
                         f"#   python run.py train --config {yaml_path} data.root=DATASET trainer.init_from={args.out}\n"
                         + yaml.safe_dump({k: fine_tune[k] for k in ("model", "data", "test")}, sort_keys=False))
    return {"checkpoint": str(args.out), "config": str(yaml_path), "notes": conversion.notes,
            "parameters": sum(p.numel() for p in model.parameters()), "arch": OmegaConf.select(cfg, "model.arch")}


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    result = convert(args)
    source = "--config " + args.config if args.config else "inferred"
    print(f"{args.checkpoint.name}: {result['arch']}, {result['parameters'] / 1e6:.2f} M parameters ({source}):")
    for note in result["notes"]:
        print(f"  {note}")
    print(f"every key accounted for; wrote {result['checkpoint']} and {result['config']}")
    return 0

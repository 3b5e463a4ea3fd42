"""A training step of mmaction2's own NL I3D-R50 against ours with the same weights, interleaved, on one device.

Theirs: mmaction2 1.2.0's ResNet3d with the five embedded-Gaussian non-local blocks of its published
config (mmcv's NonLocal3d) and its I3DHead, random weights. Ours: the same weights converted by
models/converters/mmaction2.py (the eval-mode logits of both on one clip are compared first), run as it
is, with channels_last, with torch.compile, and with both. A step is forward + cross-entropy + backward +
SGD (momentum 0.9) under `amp` autocast, on one random batch made on the device once, so the figures are
the models' ceiling, without data loading. Every round runs `steps` timed steps of every variant, in an
order rotated by one each round. clips/s = clips stepped / seconds, over all rounds; the peak (CUDA only)
is the variant's weights, buffers and optimizer state plus the most its timed steps allocated on top.
`width` < 1 shrinks both networks alike (mmaction2's base_channels, our model.width) for rehearsals.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from bench.random_weights import randomize
from engine.precision import autocast, check_amp
from errors import UserError
from models.build import build_model
from models.config import ModelConfig
from models.converters.mmaction2 import convert_mmaction2
from models.converters.reference import Mmaction2Recognizer, published_config

NUM_CLASSES = 400
# the model-zoo file name of that config's checkpoint: the converter reads the non-local mode from it
ZOO_FILE = "i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb.pth"
# name -> (channels_last, compile) of our variants; theirs runs as mmaction2 builds it
OUR_VARIANTS: Dict[str, Tuple[bool, bool]] = {"ours": (False, False), "ours channels_last": (True, False),
                                              "ours compile": (False, True), "ours channels_last+compile": (True, True)}
THEIRS = "mmaction2"

NL_I3D_R50 = "recognition/i3d/i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb.py"


@dataclass
class StepBenchSettings:
    """What to measure: the clip, the batch, the precision, the rounds, and which of our variants."""

    frames: int = 32
    size: int = 224
    batch: int = 8
    width: float = 1.0
    amp: str = "bf16"
    rounds: int = 3
    steps: int = 5  # timed steps per variant and round
    warmup: int = 3  # untimed steps per variant first (compilation happens there)
    compile_backend: str = "inductor"
    variants: List[str] = field(default_factory=lambda: list(OUR_VARIANTS))


@dataclass
class Side:
    """One model of the comparison with its optimizer, its input and its step."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], None]
    seconds: float = 0.0
    clips: int = 0
    peak_bytes: int | None = None


def their_model(width: float) -> nn.Module:
    """mmaction2's NL I3D-R50 recognizer from its published config (channels scaled by `width`), with random
    weights and BN terms everywhere (its non-local output BN starts at zero, which would hide the blocks)."""
    config = published_config(NL_I3D_R50)
    base = round(64 * width)
    model = Mmaction2Recognizer({**config.model, "backbone": {**config.model.backbone, "base_channels": base},
                                 "cls_head": {**config.model.cls_head, "in_channels": base * 32, "num_classes": NUM_CLASSES}})
    randomize(model, seed=0)
    return model


def converted_model(theirs: nn.Module, width: float) -> nn.Module:
    """Ours with their weights, through the converter `convert --source mmaction2` uses."""
    conversion = convert_mmaction2({"state_dict": theirs.state_dict(), "meta": {}}, ZOO_FILE)
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), conversion.settings["model"])
    cfg.width = width
    ours = build_model(cfg, NUM_CLASSES)
    conversion.check_against(ours, ZOO_FILE)
    ours.load_state_dict(conversion.state)
    return ours


def logit_error(theirs: nn.Module, ours: nn.Module, clip: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs| of eval-mode float32 logits on one clip."""
    with torch.no_grad():
        expected, got = theirs.eval()(clip[:1]), ours.eval()(clip[:1])
    return ((got - expected).abs().max() / expected.abs().max()).item()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_side(name: str, model: nn.Module, clip: torch.Tensor, labels: torch.Tensor, amp: str,
              compile_backend: str | None) -> Side:
    """The same step for every side: autocast forward, float32 cross-entropy, backward, SGD."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    forward = torch.compile(model, backend=compile_backend) if compile_backend else model

    def step() -> None:
        with autocast(amp, clip.device):
            logits = forward(clip)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Side(name, model, optimizer, step)


def state_bytes(side: Side) -> int:
    """Weights, buffers and optimizer state (momentum buffers exist once a step has run)."""
    tensors = list(side.model.parameters()) + list(side.model.buffers())
    tensors += [t for state in side.optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def timed_steps(side: Side, steps: int, batch: int, device: torch.device) -> None:
    """Run `steps` steps, adding their seconds and clips to the side; on CUDA, track its peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        side.step()
    _sync(device)
    side.seconds += time.perf_counter() - started
    side.clips += steps * batch
    if device.type == "cuda":
        peak = state_bytes(side) + torch.cuda.max_memory_allocated(device) - before
        side.peak_bytes = max(side.peak_bytes or 0, peak)


def build_sides(settings: StepBenchSettings, device: torch.device) -> Tuple[List[Side], Dict[str, Any]]:
    """Theirs and our variants on `device`, one random batch each (ours in channels_last where asked)."""
    unknown = sorted(set(settings.variants) - set(OUR_VARIANTS))
    if unknown:
        raise UserError(f"--variants {', '.join(unknown)}: choose from {', '.join(OUR_VARIANTS)}")
    torch.manual_seed(0)
    theirs = their_model(settings.width)
    ours = converted_model(theirs, settings.width)
    shape = (settings.batch, 3, settings.frames, settings.size, settings.size)
    clip = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    try:
        error = logit_error(theirs, ours, clip)
    except RuntimeError as exc:  # a grid pooled down to nothing on the way to res5
        raise UserError(f"--frames {settings.frames} --size {settings.size}: too small a clip for I3D-R50 "
                        f"({str(exc).splitlines()[0][:160]})") from exc
    facts = {"logit_error": error,
             "nonlocal_paths": {name: block.attention_path for name, block in ours.attention_blocks().items()}}
    clip = clip.to(device)
    labels = torch.randint(0, NUM_CLASSES, (settings.batch,), generator=torch.Generator().manual_seed(2)).to(device)
    sides = [make_side(THEIRS, theirs.to(device), clip, labels, settings.amp, None)]
    for name in settings.variants:
        channels_last, compiled = OUR_VARIANTS[name]
        fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        model = copy.deepcopy(ours).to(device, memory_format=fmt)
        sides.append(make_side(name, model, clip.contiguous(memory_format=fmt), labels, settings.amp,
                               settings.compile_backend if compiled else None))
    return sides, facts


def run_step_bench(settings: StepBenchSettings, device: torch.device) -> Dict[str, Any]:
    """Warm every side up, then interleaved rounds; one row per side with its ratio to mmaction2's."""
    check_amp(settings.amp, device)
    for name in ("frames", "size", "batch", "rounds", "steps", "warmup"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name}={getattr(settings, name)} must be at least 1")
    started = time.perf_counter()
    sides, facts = build_sides(settings, device)
    for side in sides:
        for _ in range(settings.warmup):
            side.step()
    _sync(device)
    for round_index in range(settings.rounds):
        shift = round_index % len(sides)
        for side in sides[shift:] + sides[:shift]:
            timed_steps(side, settings.steps, settings.batch, device)
    reference = sides[0]
    rows = []
    for side in sides:
        rate = side.clips / side.seconds
        rows.append({"name": side.name, "clips_per_s": rate, "step_seconds": side.seconds * settings.batch / side.clips,
                     "peak_bytes": side.peak_bytes, "speed_vs_mmaction2": rate / (reference.clips / reference.seconds),
                     "peak_vs_mmaction2": None if side.peak_bytes is None else side.peak_bytes / reference.peak_bytes})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    return {"device": str(device), "device_name": name, "torch": torch.__version__, "settings": asdict(settings),
            **facts, "rows": rows,
            "seconds": round(time.perf_counter() - started, 1)}

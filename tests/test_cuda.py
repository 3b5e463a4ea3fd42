"""`pytest -m cuda`: the CUDA path, for one short run on a GPU (scripts/gpu_check.sh).

Without CUDA these tests skip, unless GPU_CHECK_REHEARSAL=1 (the CPU mode of gpu_check.sh): then the
ones a CPU can run do so at tiny sizes, so the code stays alive; CUDA-only checks skip with a reason.
Figures go into the JUnit XML as properties (`record_property`), which gpu_check.sh turns into JSON.
Sizes on CUDA: the grids of a 32x224^2 clip in I3D-R50 (res2 256x8x56x56 ... res5 2048x4x7x7).
"""
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from analysis.profiling.attention_kernels import observe_kernels
from analysis.profiling.auto_batch import choose_batch, clip_shape
from analysis.profiling.measure import measure_forward
from bench.model import nonlocal_grids
from engine.checkpoint import load_checkpoint
from configs.compose import CONFIG_DIR, load_config
from engine.distributed import BACKENDS
from engine.inputs import model_input
from engine.optim import build_optimizer
from engine.precision import autocast
from engine.step import place_model, training_loss
from engine.train import train
from models.attention.non_local import NonLocalBlock
from models.attention.tokens import sdpa_has_fused_kernel, to_tokens
from models.build import build_model
from video.dataset import VideoDataset
from video.loader import build_loader
from video.transforms import normalize

ON_CUDA = torch.cuda.is_available()
REHEARSAL = os.environ.get("GPU_CHECK_REHEARSAL") == "1"
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not (ON_CUDA or REHEARSAL), reason="needs CUDA (GPU_CHECK_REHEARSAL=1 runs the CPU-able ones at tiny sizes)")]
cuda_only = pytest.mark.skipif(not ON_CUDA, reason="CUDA only")

DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
FRAMES, SIZE = (32, 224) if ON_CUDA else (8, 64)  # CPU: res2 256x2x16x16 ... res5 2048x1x2x2
STAGES = ("res2", "res3", "res4", "res5")
AMPS = ("none", "bf16", "fp16") if ON_CUDA else ("none", "bf16")
FUSED_KERNELS = {"flash", "efficient", "cudnn"}
DEMO = CONFIG_DIR / "experiments" / "demo.yaml"


@pytest.fixture(scope="module")
def grids():
    return nonlocal_grids(FRAMES, SIZE)


def _block(channels: int, mode: str = "embedded_gaussian") -> NonLocalBlock:
    """Default init (logits of order 1 at every width) with a unit output-BN scale, so the attention
    path shows in the output; eval-mode BN, as in bench model."""
    torch.manual_seed(0)
    block = NonLocalBlock(channels, mode=mode, subsample=True)
    nn.init.ones_(block.bn.weight)
    return block.to(DEVICE).eval()


def _outputs_and_grads(block: NonLocalBlock, x: torch.Tensor, amp: str, implementation: str):
    block.implementation = implementation
    block.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    with autocast(amp, DEVICE):
        y = block(x)
    (y.float() * torch.linspace(-1, 1, y.numel(), device=DEVICE).view_as(y)).sum().backward()
    return [y.detach().float(), x.grad.float()] + [p.grad.float() for p in block.parameters()]


def _errors(ours, truth) -> list:
    """Error of each tensor relative to its own largest value (gradients that are zero in theory, e.g.
    phi's bias under softmax, are measured against 1e-3 of the largest value overall)."""
    floor = 1e-3 * max(t.abs().max().item() for t in truth)
    return [(a - b).abs().max().item() / max(b.abs().max().item(), floor) for a, b in zip(ours, truth)]


@pytest.mark.parametrize("amp", AMPS)
@pytest.mark.parametrize("stage", STAGES)
def test_fused_equals_reference(stage, amp, grids, record_property):
    """Outputs and gradients against the fp32 reference: in fp32 to rounding; in bf16/fp16 the fused
    path may be at most twice as far from it as the reference computed in the same precision (the
    convs' half-precision weight gradients dominate both), and its output within 2%."""
    channels, t, h, w = grids[stage]
    block = _block(channels)
    x = torch.randn(1, channels, t, h, w, device=DEVICE)
    truth = _outputs_and_grads(block, x, "none", "reference")
    fused = _errors(_outputs_and_grads(block, x, amp, "fused"), truth)
    reference = _errors(_outputs_and_grads(block, x, amp, "reference"), truth)
    record_property(f"{stage}_{amp}_fused_error", max(fused))
    record_property(f"{stage}_{amp}_reference_error", max(reference))
    record_property(f"{stage}_{amp}_fused_output_error", fused[0])
    if amp == "none":
        assert max(fused) < 2e-3
    else:
        assert max(fused) <= 2 * max(reference) + 1e-3 and fused[0] < 0.02


@pytest.mark.parametrize("amp", AMPS)
def test_no_math_fallback_at_res2_res3(amp, grids, record_property):
    """The kernel each stage's fused block runs in a training forward, read off the profiler: a fused
    SDPA kernel at res2/res3; res4/res5 (q/k 512/1024 wide) may also take the chunked form, never math."""
    kernels = {}
    for stage in STAGES:
        channels, t, h, w = grids[stage]
        block = _block(channels).train()
        x = torch.randn(1, channels, t, h, w, device=DEVICE)

        def forward():
            with autocast(amp, DEVICE):
                block(x)

        kernels[stage] = observe_kernels({stage: block}, forward)[0]["kernel"]
        record_property(f"{stage}_{amp}_kernel", kernels[stage])
    assert kernels["res2"] in FUSED_KERNELS and kernels["res3"] in FUSED_KERNELS, kernels
    assert all(kernel in FUSED_KERNELS | {"chunked"} for kernel in kernels.values()), kernels


@pytest.mark.parametrize("amp", AMPS)
@pytest.mark.parametrize("mode", ["embedded_gaussian", "gaussian"])
def test_the_fused_kernel_rule_matches_the_dispatcher(mode, amp, grids, record_property):
    """sdpa_has_fused_kernel (which decides when to chunk) against what plain SDPA runs on the padded
    (B, 1, N, d) tensors of each stage's block, with gradients, as the profiler sees it."""
    dtype = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    for stage in STAGES:
        channels, t, h, w = grids[stage]
        block = _block(channels, mode)
        x = torch.randn(1, channels, t, h, w, device=DEVICE)
        with torch.no_grad():
            q, k, v = (to_tokens(z).to(dtype) for z in (block._query_map(x), block._key_map(x), block.pool(block.g(x))))
        width = max(q.shape[-1], v.shape[-1])
        q4, k4, v4 = (F.pad(z, (0, width - z.shape[-1])).unsqueeze(1).requires_grad_() for z in (q, k, v))
        probe = _Sdpa(q4, k4, v4, block.scale)
        seen = observe_kernels({"sdpa": probe}, probe)[0]["kernel"]
        record_property(f"{stage}_{mode}_{amp}_width{width}_plain_sdpa", seen)
        assert (seen != "math") == sdpa_has_fused_kernel(q4, k4, v4), (stage, width, seen)


class _Sdpa(nn.Module):
    attention_path = "sdpa"

    def __init__(self, q, k, v, scale):
        super().__init__()
        self.inputs, self.scale = (q, k, v), scale

    def forward(self):
        return F.scaled_dot_product_attention(*self.inputs, scale=self.scale)


def _block_peak(block: NonLocalBlock, x: torch.Tensor, implementation: str) -> int:
    """CUDA memory of one fwd+bwd of the block above what was allocated before (weights, input)."""
    block.implementation = implementation
    block.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    block(x).sum().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


@cuda_only
def test_fused_res2_block_needs_a_quarter_of_the_reference_memory(grids, record_property):
    channels, t, h, w = grids["res2"]
    block = _block(channels).train()
    x = torch.randn(1, channels, t, h, w, device=DEVICE)
    fused, reference = (_block_peak(block, x, impl) for impl in ("fused", "reference"))
    record_property("res2_fused_peak_bytes", fused)
    record_property("res2_reference_peak_bytes", reference)
    record_property("res2_peak_ratio", fused / reference)
    assert fused <= 0.25 * reference


# ---- training steps through the trainer ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(synthetic_dataset):
    return synthetic_dataset()


# the demo recipe; the CPU rehearsal shrinks clips to 8x32^2 (bf16 convolutions crawl on a CPU)
CLIP = [] if ON_CUDA else ["data.sampling.num_frames=8", "data.transforms.crop_size=32",
                           "data.transforms.train_scale=[32,36]", "data.transforms.test_scale=32"]


def _train(root, out, *overrides):
    cfg = load_config(str(DEMO), [f"data.root={root}", f"run.output_dir={out}", "logger.wandb.mode=disabled",
                                  "trainer.progress_bar=false", "trainer.max_steps=3", "trainer.log_every=1",
                                  f"trainer.device={DEVICE.type}", "data.batch_size=4", *CLIP, *overrides])
    result = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    return result, losses


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    pytest.param(["trainer.amp=fp16"], marks=cuda_only, id="fp16-gradscaler"),
    pytest.param(["trainer.amp=bf16", "trainer.channels_last=true"], id="bf16-channels_last"),
    pytest.param(["trainer.amp=bf16", "trainer.compile=true"], marks=cuda_only, id="bf16-compile"),
])
def test_training_steps_stay_finite(overrides, tiny_data, tmp_path, record_property):
    result, losses = _train(tiny_data, tmp_path, *overrides)
    record_property("losses", losses)
    assert result["steps"] == 3 and len(losses) == 3
    assert all(torch.isfinite(torch.tensor(losses)).tolist()), losses
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    if "trainer.amp=fp16" in overrides:  # the scaler ran and its scale stayed a finite positive number
        scale = state["scaler"]["scale"]
        record_property("grad_scale", scale)
        assert 0 < scale < float("inf")
    params = state["model"].values()
    assert all(torch.isfinite(p).all() for p in params if p.is_floating_point())


# ---- data.batch_size=auto against the real step ------------------------------------------------

def test_auto_batch_fits_the_real_step(record_property):
    """The batch the memory model picks for a budget: on CUDA its real training step (bf16, SGD with momentum)
    allocates at most the budget, and one clip more is predicted over it; on a CPU the bytes it saves for
    backward fit the budget and one clip more does not."""
    config, budget, clip = (("model/i3d_r50_nl5.yaml", "8GiB", ["data.sampling.num_frames=16",
                                                                "data.transforms.crop_size=112", "trainer.amp=bf16"])
                            if ON_CUDA else ("experiments/demo.yaml", "20MiB", []))
    cfg = load_config(str(CONFIG_DIR / config), ["data.batch_size=auto", f"trainer.memory_budget={budget}",
                                                 "optim.name=sgd", *clip])
    choice = choose_batch(cfg, DEVICE, 400)
    record_property("auto_batch", choice.batch)
    record_property("auto_batch_predicted_bytes", choice.predicted_bytes)
    assert choice.batch >= 1 and choice.next_predicted_bytes > choice.budget_bytes, choice.line
    torch.manual_seed(0)
    model = build_model(cfg.model, 400)
    if not ON_CUDA:
        saved = [measure_forward(model, clip_shape(cfg, b)).activation_bytes for b in (choice.batch, choice.batch + 1)]
        record_property("auto_batch_saved_bytes", saved)
        assert saved[0] <= choice.budget_bytes < saved[1], (choice.line, saved)
        return
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()  # what earlier tests left is not this run's
    model = place_model(model, cfg.trainer, DEVICE, distributed=False)
    optimizer = build_optimizer(model, cfg.optim)

    def step(batch: int) -> None:
        with autocast(cfg.trainer.amp, DEVICE):
            logits = model(torch.randn(clip_shape(cfg, batch), device=DEVICE))
        training_loss(model, logits, torch.zeros(batch, dtype=torch.long, device=DEVICE), 0.0)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(1)  # the optimizer state exists from here on, as in training
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step(choice.batch)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    record_property("auto_batch_step_peak_bytes", peak)
    record_property("auto_batch_peak_over_prediction", peak / choice.predicted_bytes)
    assert peak <= choice.budget_bytes, (choice.line, peak)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@cuda_only
def test_nccl_one_rank_ddp_with_sync_batchnorm(record_property):
    """The engine's backend for CUDA (NCCL) initialises with one rank; SyncBatchNorm conversion, DDP
    over it and a bf16 training step run; an all-reduce sums. (Synchronising BN statistics needs two
    ranks, which one GPU cannot host under NCCL: that part stays unexercised here.)"""
    backend = BACKENDS["cuda"]
    assert backend == "nccl"
    device = torch.device("cuda", torch.cuda.current_device())
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                            device_id=device)
    try:
        cfg = load_config(str(CONFIG_DIR / "model" / "i3d_tiny_nl.yaml"))
        model = nn.SyncBatchNorm.convert_sync_batchnorm(build_model(cfg.model, 10)).to(device)
        sync_layers = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
        assert sync_layers > 0
        ddp = DistributedDataParallel(model, device_ids=[device.index])
        with autocast("bf16", device):
            logits = ddp(torch.randn(2, 3, 8, 32, 32, device=device))
        logits.float().sum().backward()
        total = torch.ones(1, device=device)
        dist.all_reduce(total)
        record_property("sync_batchnorm_layers", sync_layers)
        assert total.item() == 1.0
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    finally:
        dist.destroy_process_group()


@cuda_only
def test_pinned_memory_loader_feeds_the_gpu(tiny_data):
    cfg = load_config(str(DEMO), [f"data.root={tiny_data}", "data.num_workers=2", "data.batch_size=4"])
    loader = build_loader(VideoDataset(tiny_data, "train", cfg.data, train=True), cfg.data, train=True,
                          device_type="cuda")
    batch = next(iter(loader))
    assert batch["clip"].is_pinned()
    on_gpu = model_input(batch["clip"], DEVICE, cfg.data, channels_last=True)
    expected = normalize(batch["clip"], list(cfg.data.transforms.mean), list(cfg.data.transforms.std))
    torch.testing.assert_close(on_gpu.cpu(), expected)

"""The attention family (SE, CBAM, BAM, DANet PAM/CAM, FLA): each block against its paper's formula,
written here element by element; identity at init where the paper says so; PAM's fused path."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from errors import UserError
from models.attention.bam import BAM
from models.attention.cbam import CBAM
from models.attention.danet import ChannelAttention, PositionAttention
from models.attention.fla import FullyAttentional
from models.attention.se import SqueezeExcitation
from models.build import build_model
from models.config import ModelConfig
from models.registry import ATTENTION
from tests.test_models_nonlocal import _LargestOutput

C, T, H, W = 8, 3, 4, 5


def _clip(seed=0):
    return torch.randn(2, C, T, H, W, generator=torch.Generator().manual_seed(seed))


def _randomize(block, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for p in block.parameters():
        p.data = torch.randn(p.shape, generator=gen) * 0.5
    for name, buf in block.named_buffers():
        if name.endswith("running_mean"):
            buf.uniform_(-0.3, 0.3, generator=gen)
        elif name.endswith("running_var"):
            buf.uniform_(0.5, 1.5, generator=gen)
    return block.eval()


def _mlp(seq, v):
    """Linear -> ReLU -> Linear, from the weights."""
    first, last = seq[0], seq[2]
    return last.weight @ torch.relu(first.weight @ v + first.bias) + last.bias


def _positions(x):
    """(C, T, H, W) -> list of (t, h, w) and the C-vector at each."""
    return [(p, x[:, p[0], p[1], p[2]]) for p in itertools.product(range(x.shape[1]), range(x.shape[2]),
                                                                        range(x.shape[3]))]


def _se(block, x):
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        gate = torch.sigmoid(_mlp(block.mlp, x[b].mean(dim=(1, 2, 3))))
        out[b] = x[b] * gate[:, None, None, None]
    return out


def _cbam(block, x):
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        avg = x[b].mean(dim=(1, 2, 3))
        top = torch.stack([x[b, c].max() for c in range(x.shape[1])])  # the max value, not its index
        f1 = x[b] * torch.sigmoid(_mlp(block.mlp, avg) + _mlp(block.mlp, top))[:, None, None, None]
        desc = torch.stack([f1.mean(dim=0), f1.max(dim=0).values])  # (2, T, H, W)
        kernel = block.spatial.weight[0]  # (2, kt, k, k)
        kt, k = kernel.shape[1], kernel.shape[2]
        padded = F.pad(desc, (k // 2, k // 2, k // 2, k // 2, kt // 2, kt // 2))
        logits = torch.empty(x.shape[2:])
        for t, h, w in itertools.product(*map(range, x.shape[2:])):
            logits[t, h, w] = (padded[:, t:t + kt, h:h + k, w:w + k] * kernel).sum()
        out[b] = f1 * torch.sigmoid(logits)
    return out


def _bn(bn, z):
    shape = (-1,) + (1,) * (z.dim() - 2)
    return ((z - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def _bam(block, x):
    channel = _bn(block.channel[1], torch.stack([_mlp(block.channel[0], x[b].mean(dim=(1, 2, 3)))
                                                  for b in range(x.shape[0])]))
    s = block.spatial
    z = x
    for conv, bn in ((s[0], s[1]), (s[3], s[4]), (s[6], s[7])):
        z = torch.relu(_bn(bn, F.conv3d(z, conv.weight, conv.bias, padding=conv.padding, dilation=conv.dilation)))
    spatial = _bn(s[10], F.conv3d(z, s[9].weight, s[9].bias))
    return x + x * torch.sigmoid(channel[:, :, None, None, None] + spatial)


def _pam(block, x):
    out = torch.empty_like(x)
    conv = lambda layer, v: layer.weight[:, :, 0, 0, 0] @ v + layer.bias  # noqa: E731
    for b in range(x.shape[0]):
        cells = _positions(x[b])
        for (t, h, w), xi in cells:
            energies = torch.stack([conv(block.query, xi) @ conv(block.key, xj) for _, xj in cells])
            weights = torch.exp(energies - energies.max())
            weights = weights / weights.sum()
            y = sum(wj * conv(block.value, xj) for wj, (_, xj) in zip(weights, cells))
            out[b, :, t, h, w] = block.gamma * y + xi
    return out


def _cam(block, x):
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        rows = x[b].reshape(x.shape[1], -1)
        energy = torch.tensor([[rows[i] @ rows[j] for j in range(len(rows))] for i in range(len(rows))])
        relative = energy.max(dim=1, keepdim=True).values - energy
        attention = torch.exp(relative - relative.max(dim=1, keepdim=True).values)
        attention = attention / attention.sum(dim=1, keepdim=True)
        out[b] = (block.beta * (attention @ rows) + rows).reshape(x.shape[1:])
    return out


def _fla(block, x):
    out = x.clone()
    for b in range(x.shape[0]):
        total = torch.zeros_like(x[b])
        for index, axis in enumerate((1, 2, 3)):  # T, H, W of x[b] (C, T, H, W)
            others = tuple(a for a in (1, 2, 3) if a != axis)
            context = block.context[index](x[b].mean(dim=others).T)  # (L, C)
            for fixed in itertools.product(*(range(x.shape[1 + a]) for a in others)):
                index_ = [slice(None)] * 4
                for a, v in zip(others, fixed):
                    index_[a] = v
                line = x[b][tuple(index_)]  # (C, L)
                total[tuple(index_)] += torch.softmax(line @ context, dim=1) @ line
        out[b] = block.gamma * total + x[b]
    return out


CASES = [
    (lambda: SqueezeExcitation(C, reduction=2), _se),
    (lambda: CBAM(C, reduction=2, spatial_kernel=3), _cbam),
    (lambda: CBAM(C, reduction=2, spatial_kernel=3, temporal_kernel=3), _cbam),
    (lambda: BAM(C, reduction=2, dilation=2), _bam),
    (lambda: BAM(C, reduction=2, dilation=1, temporal_kernel=3), _bam),
    (lambda: PositionAttention(C, reduction=2, implementation="reference"), _pam),
    (lambda: PositionAttention(C, reduction=2, implementation="fused"), _pam),
    (lambda: ChannelAttention(C), _cam),
    (lambda: FullyAttentional(C), _fla),
]


@pytest.mark.parametrize("make, formula", CASES, ids=["se", "cbam", "cbam3x7x7", "bam", "bam3x3x3", "pam_ref",
                                                      "pam_fused", "cam", "fla"])
def test_block_matches_its_formula(make, formula):
    block = _randomize(make())
    x = _clip()
    with torch.no_grad():
        torch.testing.assert_close(block(x), formula(block, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [lambda: PositionAttention(C), lambda: ChannelAttention(C),
                                  lambda: FullyAttentional(C)], ids=["pam", "cam", "fla"])
def test_zero_init_scale_makes_a_new_block_the_identity(make):
    x = _clip()
    assert torch.equal(make()(x), x)


def test_pam_fused_equals_reference_in_output_and_gradients():
    block = _randomize(PositionAttention(C, reduction=2)).train()
    results = []
    for implementation in ("reference", "fused"):
        block.implementation = implementation
        block.zero_grad()
        x = _clip().requires_grad_()
        y = block(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append([y.detach(), x.grad] + [p.grad for p in block.parameters()])
    scale = max(t.abs().max().item() for t in results[0])
    for ours, ref in zip(results[1], results[0]):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6 * scale)


def test_pam_fused_never_builds_the_position_matrix():
    x = torch.randn(1, 8, 4, 16, 16, requires_grad=True)  # 1024 positions
    block = _randomize(PositionAttention(8, implementation="fused")).train()
    with _LargestOutput() as probe:
        block(x).sum().backward()
    assert probe.largest < 1024 * 1024


def test_pam_attention_rows_are_the_rows_the_output_uses():
    block = _randomize(PositionAttention(C, reduction=2))
    x = _clip()
    queries = torch.tensor([0, 7, 59])
    with torch.no_grad():
        rows, grid = block.attention_rows(x, queries)
        v = block.value(x).flatten(2).transpose(1, 2)
        attended = ((block(x) - x) / block.gamma).flatten(2).transpose(1, 2)[:, queries]
    assert grid == (T, H, W) and rows.shape == (2, 3, T * H * W)
    torch.testing.assert_close(rows @ v, attended, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", [k for k in ATTENTION.names() if k != "nonlocal"])
def test_every_block_type_is_placeable_in_every_stage(kind):
    cfg = ModelConfig(arch="i3d", depth=18, width=0.25, attention=[{"type": kind, "stages": [2, 3, 4, 5]}])
    model = build_model(cfg, 3)
    assert len(model.attention_blocks()) == 8
    logits = model(torch.randn(2, 3, 8, 64, 64))
    logits.sum().backward()
    assert logits.shape == (2, 3)


@pytest.mark.parametrize("make, culprit", [
    (lambda: CBAM(8, temporal_kernel=0), "cbam temporal_kernel=0"),
    (lambda: SqueezeExcitation(8, reduction=-2), "se reduction=-2"),
    (lambda: BAM(8, dilation="4"), "bam dilation='4'"),
    (lambda: PositionAttention(8, implementation="flash"), "pam implementation='flash'"),
])
def test_bad_family_options_are_user_errors(make, culprit):
    with pytest.raises(UserError, match=culprit):
        make()

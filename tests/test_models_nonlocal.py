"""Non-local block: each mode against its formula, fused = reference, identity at init, linear memory."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from errors import UserError
from models.attention.non_local import MODES, NonLocalBlock

# fp32 tolerance of fused vs reference (the paths sum in different orders): rtol 1e-4, and atol 1e-6
# times the largest value compared, since some gradients are zero in theory (below) and only noise
RTOL, ATOL = 1e-4, 1e-6


def _randomize(block, seed=0):
    """Non-zero output BN (the zero init would hide the attention path) with random running stats."""
    torch.manual_seed(seed)
    for p in block.parameters():
        p.data.normal_(0, 0.5)
    block.bn.running_mean.uniform_(-0.5, 0.5)
    block.bn.running_var.uniform_(0.5, 1.5)
    return block


def _formula(block, x):
    """z = x + BN(W_z y), y_i = sum_j f(i, j) g_j / C, written from the paper's definitions, pair by pair."""
    b, c, t, h, w = x.shape
    conv = lambda layer, z: F.conv3d(z, layer.weight, layer.bias)  # noqa: E731
    pool = lambda z: F.max_pool3d(z, (1, 2, 2)) if isinstance(block.pool, torch.nn.MaxPool3d) else z  # noqa: E731
    theta = x if block.theta is None else conv(block.theta, x)
    phi = pool(x if block.phi is None else conv(block.phi, x))
    g = pool(conv(block.g, x))
    theta, phi, g = (z.flatten(2).transpose(1, 2)[0] for z in (theta, phi, g))  # (positions, channels)
    frames_per_group, q_per_frame, k_per_frame = t // block.groups, h * w, phi.shape[0] // t
    y = torch.zeros(theta.shape[0], g.shape[1])
    for i in range(theta.shape[0]):
        group = i // q_per_frame // frames_per_group
        keys = range(group * frames_per_group * k_per_frame, (group + 1) * frames_per_group * k_per_frame)
        if block.mode == "concatenation":
            inner = theta.shape[1]
            w_cat = block.concat_weight
            f = torch.stack([torch.relu(w_cat[:inner] @ theta[i] + w_cat[inner:] @ phi[j]) for j in keys])
        else:
            f = torch.stack([theta[i] @ phi[j] for j in keys])
        if block.mode in ("gaussian", "embedded_gaussian"):
            f = torch.exp(f * block.scale)
            f = f / f.sum()
        else:
            f = f / len(keys)
        y[i] = sum(f[n] * g[j] for n, j in enumerate(keys))
    y = y.T.reshape(1, -1, t, h, w)
    bn = block.bn
    out = F.batch_norm(conv(block.out, y), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0, bn.eps)
    return x + out


@pytest.mark.parametrize("mode, subsample, groups", list(itertools.product(MODES, [False, True], [1, 2])))
@pytest.mark.parametrize("implementation", ["reference", "fused"])
def test_each_mode_matches_its_formula(mode, subsample, groups, implementation):
    block = _randomize(NonLocalBlock(6, mode=mode, subsample=subsample, groups=groups,
                                     implementation=implementation)).eval()
    x = torch.randn(1, 6, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _formula(block, x), rtol=1e-4, atol=1e-5)


def _outputs_and_grads(block, x):
    x = x.clone().requires_grad_()
    block.zero_grad()
    y = block(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return [y.detach(), x.grad] + [p.grad for p in block.parameters()]


@pytest.mark.parametrize("mode, subsample, groups", list(itertools.product(MODES, [False, True], [1, 2])))
def test_fused_equals_reference_in_output_and_gradients(mode, subsample, groups):
    """Eval-mode BN (in train mode it removes per-channel shifts, making the g bias gradient zero in
    theory); the phi bias gradient is zero in theory under softmax (a constant per row), hence the atol."""
    block = _randomize(NonLocalBlock(8, mode=mode, subsample=subsample, groups=groups)).eval()
    x = torch.randn(2, 8, 4, 6, 6)
    block.implementation = "reference"
    expected = _outputs_and_grads(block, x)
    block.implementation = "fused"
    scale = max(ref.abs().max().item() for ref in expected)
    for ours, ref in zip(_outputs_and_grads(block, x), expected):
        torch.testing.assert_close(ours, ref, rtol=RTOL, atol=ATOL * scale)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("implementation", ["reference", "fused"])
def test_a_new_block_is_the_identity(mode, implementation):
    block = NonLocalBlock(8, mode=mode, implementation=implementation)
    x = torch.randn(2, 8, 2, 4, 4)
    assert torch.equal(block(x), x)
    assert torch.equal(block.eval()(x), x)


class _LargestOutput(TorchDispatchMode):
    """Records the number of elements of the largest tensor any operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("mode", MODES)
def test_fused_path_never_builds_the_affinity_matrix(mode):
    """1024 queries x 256 keys: no tensor of the fused forward or backward has that many elements,
    while the reference path does build it (so the probe can see it)."""
    x = torch.randn(1, 4, 4, 16, 16, requires_grad=True)
    pairs = 1024 * 256
    for implementation, builds in (("fused", False), ("reference", True)):
        block = _randomize(NonLocalBlock(4, mode=mode, implementation=implementation))
        with _LargestOutput() as probe:
            block(x).sum().backward()
        assert (probe.largest >= pairs) == builds, (implementation, probe.largest)


@pytest.mark.parametrize("mode, groups", [("embedded_gaussian", 1), ("embedded_gaussian", 2),
                                          ("dot_product", 2), ("concatenation", 2), ("gaussian", 1)])
def test_attention_rows_are_the_rows_the_output_uses(mode, groups):
    """rows @ g equals the aggregated features y at the query positions (captured at the output conv),
    under both implementations; keys outside the query's time group get zero weight."""
    block = _randomize(NonLocalBlock(6, mode=mode, groups=groups))
    x = torch.randn(2, 6, 4, 6, 6)
    queries = torch.tensor([0, 37, 100, 143])
    captured = []
    block.out.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    with torch.no_grad():
        g = block.pool(block.g(x)).flatten(2).transpose(1, 2)
        for implementation in ("reference", "fused"):
            block.implementation = implementation
            block(x)
            y = captured.pop().flatten(2).transpose(1, 2)[:, queries]
            rows, key_grid = block.attention_rows(x, queries)
            assert key_grid == (4, 3, 3) and rows.shape == (2, 4, 36)
            torch.testing.assert_close(rows @ g, y, rtol=1e-4, atol=1e-5)
    if groups == 2:  # query 143 is in frame 3 (second half): no weight on frames 0-1
        assert torch.all(rows[:, 3, :18] == 0) and torch.all(rows[:, 0, 18:] == 0)


@pytest.mark.parametrize("options, culprit", [
    (dict(mode="cosine"), "nonlocal mode='cosine'"),
    (dict(implementation="fast"), "nonlocal implementation='fast'"),
    (dict(reduction=0), "nonlocal reduction=0"),
    (dict(groups=1.5), "nonlocal groups=1.5"),
])
def test_bad_options_are_user_errors(options, culprit):
    with pytest.raises(UserError, match=culprit):
        NonLocalBlock(8, **options)


def test_groups_must_divide_the_frames():
    with pytest.raises(UserError, match="groups=3 does not divide the 4 frames"):
        NonLocalBlock(8, groups=3)(torch.randn(1, 8, 4, 4, 4))

"""The pyramid attention head: the defining properties of L_pca, and the head on TSN and I3D."""
import copy
import math

import pytest
import torch

from configs.compose import load_config
from models.build import build_model
from models.iaa import pca_loss
from tests.conftest import ROOT


def _data_with_spectrum(variances, n=2000, seed=0):
    """Rows x = mean + z diag(sqrt(variances)) U^T: principal directions U, variances as given."""
    gen = torch.Generator().manual_seed(seed)
    dim = len(variances)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
    z = torch.randn(n, dim, generator=gen)
    z = (z - z.mean(0)) / z.std(0)  # exact unit variances, so the spectrum is the one asked for
    x = z * torch.tensor(variances).sqrt() @ basis.T + 3.0
    return x.unsqueeze(0), basis


def _largest_principal_angle_deg(a, basis):
    q, _ = torch.linalg.qr(a)
    cosines = torch.linalg.svdvals(q.T @ basis)
    return math.degrees(math.acos(cosines.min().clamp(max=1.0).item()))


def test_pca_loss_is_non_negative():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        x = torch.randn(3, 50, 8, generator=gen) * torch.rand(1, 1, 8, generator=gen) * 5
        a = torch.randn(8, 3, generator=gen) * torch.rand(1, generator=gen) * 3
        assert pca_loss(x, a).item() >= 0


def test_pca_loss_is_zero_for_an_orthonormal_basis_of_the_principal_subspace():
    """Data of rank K after centring: the loss vanishes exactly at an orthonormal basis of its span."""
    x, basis = _data_with_spectrum([5.0, 3.0, 2.0, 0, 0, 0, 0, 0])
    rotation, _ = torch.linalg.qr(torch.randn(3, 3))
    assert pca_loss(x, basis[:, :3] @ rotation).item() < 1e-6
    assert pca_loss(x, basis[:, 1:4]).item() > 0.1  # a wrong subspace is penalised


def test_pca_loss_at_the_principal_subspace_is_the_discarded_variance():
    variances = [9.0, 7.0, 5.0, 1.0, 0.8, 0.6, 0.4, 0.2]
    x, basis = _data_with_spectrum(variances)
    expected = sum(variances[3:]) / sum(variances)
    assert pca_loss(x, basis[:, :3]).item() == pytest.approx(expected, rel=1e-4)
    random_basis, _ = torch.linalg.qr(torch.randn(8, 3))
    assert pca_loss(x, random_basis).item() > expected


def test_gradient_descent_on_pca_loss_recovers_the_principal_subspace():
    variances = [9.0, 7.0, 5.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.1, 0.05, 0.05]
    x, basis = _data_with_spectrum(variances)
    torch.manual_seed(3)
    a = torch.nn.Parameter(torch.randn(12, 3) * 0.3)
    start = _largest_principal_angle_deg(a.detach(), basis[:, :3])
    optimizer = torch.optim.SGD([a], lr=0.5)
    for _ in range(300):
        optimizer.zero_grad()
        pca_loss(x, a).backward()
        optimizer.step()
    assert start > 30
    assert _largest_principal_angle_deg(a.detach(), basis[:, :3]) < 5.0
    torch.testing.assert_close(a.T @ a, torch.eye(3), atol=0.02, rtol=0)  # and A became orthonormal


@pytest.mark.parametrize("config, grid", [("i3d_tiny_nl_iaa", (4, 2, 2)), ("tsn_tiny_iaa", (8, 2, 2))])
def test_head_attends_over_all_scales_and_times(config, grid):
    """3 scales resampled to res5's grid: N = 3*T*H*W positions; each of the K maps sums to 1 over N;
    the PCA loss trains A only (features detached)."""
    model = build_model(load_config(str(ROOT / f"configs/model/{config}.yaml")).model, num_classes=5)
    clip = torch.randn(2, 3, 8 if "tsn" in config else 16, 56, 56)
    features = model.backbone.stage_features(clip)
    x = model.head.positions(features)
    assert x.shape == (2, 3 * math.prod(grid), 64)
    maps = model.head.attention(x)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(2, 4))
    logits = model(clip)
    assert logits.shape == (2, 5)
    losses = model.aux_losses()
    assert set(losses) == {"pca"} and model.aux_loss_weights() == {"pca": 0.1}
    losses["pca"].backward()
    assert model.head.maps.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())


def test_a_trained_model_can_be_deep_copied():
    """The stored loss is a graph node; copying (e.g. for EMA) must not try to copy it."""
    model = build_model(load_config(str(ROOT / "configs/model/tsn_tiny_iaa.yaml")).model, num_classes=5)
    model(torch.randn(2, 3, 4, 32, 32))
    twin = copy.deepcopy(model)
    assert twin.aux_losses() == {} and set(model.aux_losses()) == {"pca"}


def test_models_without_the_head_have_no_aux_losses():
    model = build_model(load_config(str(ROOT / "configs/model/i3d_tiny_nl.yaml")).model, num_classes=5)
    model(torch.randn(1, 3, 8, 32, 32))
    assert model.aux_losses() == {} and model.aux_loss_weights() == {}

"""Activation memory: the saved-tensor measurement and the analytic model, against hand counts."""
import itertools

import pytest
import torch
from torch import nn

import analysis.profiling.attention_memory  # noqa: F401  (registers the attention blocks' memory rules)
from analysis.profiling.measure import measure_forward
from analysis.profiling.memory_model import SAVE_RULES, predict_saved_bytes
from configs.compose import load_config
from models.attention.non_local import MODES, NonLocalBlock
from models.build import build_model
from models.registry import ATTENTION
from tests.conftest import ROOT

FLOAT, INT64 = 4, 8


def test_saved_bytes_match_a_hand_count():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.ReLU(inplace=True), nn.MaxPool3d((1, 2, 2)),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 5))
    b, t, h, w = 2, 3, 4, 6
    expected = (b * 3 * t * h * w * FLOAT  # conv keeps the clip (its weight is a parameter: not counted)
                + b * 4 * t * h * w * FLOAT + 2 * 4 * FLOAT  # BN keeps its input, batch mean and invstd
                + b * 4 * t * h * w * FLOAT  # in-place ReLU keeps its output; max-pool keeps the same storage
                + b * 4 * t * (h // 2) * (w // 2) * INT64  # max-pool indices; the global mean keeps nothing
                + b * 4 * FLOAT)  # linear keeps its input
    for device in ("cpu", "fake"):
        assert measure_forward(model, (b, 3, t, h, w), device).activation_bytes == expected, device
    assert predict_saved_bytes(model, (b, 3, t, h, w)).activation_bytes == expected


class _SharedInput(nn.Module):
    """Two convs read the same tensor and a view of it: autograd keeps one storage."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv3d(3, 2, 1), nn.Conv3d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2  # a non-leaf tensor
        return self.a(x) + self.b(x[:, :, :1])


def test_a_storage_saved_twice_counts_once():
    cost = measure_forward(_SharedInput(), (1, 3, 2, 4, 4), "cpu")
    assert cost.activation_bytes == 1 * 3 * 2 * 4 * 4 * FLOAT


@pytest.mark.parametrize("mode, implementation, subsample, groups", [
    *itertools.product(MODES, ["reference", "fused"], [True, False], [1]),
    *itertools.product(MODES, ["reference", "fused"], [True], [2]),
])
def test_nonlocal_prediction_equals_measurement(mode, implementation, subsample, groups):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 16, 1), NonLocalBlock(16, mode=mode, implementation=implementation,
                                                            subsample=subsample, groups=groups))
    shape = (2, 3, 4, 6, 8)
    measured = measure_forward(model, shape, "cpu").activation_bytes
    assert measure_forward(model, shape, "fake").activation_bytes == measured  # shape-only run agrees
    predicted = predict_saved_bytes(model, shape)
    assert predicted.unknown_layers == []
    assert abs(predicted.activation_bytes / measured - 1) < 0.01


@pytest.mark.parametrize("implementation", ["reference", "fused"])
def test_affinity_bytes_are_the_saved_query_key_matrices(implementation):
    block = NonLocalBlock(16, implementation=implementation, subsample=True)  # 8 inner channels
    model = nn.Sequential(nn.Conv3d(3, 16, 1), block)
    b, t, h, w = 2, 4, 6, 8
    queries, keys = t * h * w, t * (h // 2) * (w // 2)  # 192 x 48: no token matrix has this shape
    cost = measure_forward(model, (b, 3, t, h, w), "cpu", scopes={"nl": block})
    saved = sum(s.nbytes for s in cost.saved if s.scope == "nl" and s.shape[-2:] == (queries, keys))
    hand = b * queries * keys * FLOAT if implementation == "reference" else 0
    assert saved == hand
    assert predict_saved_bytes(model, (b, 3, t, h, w)).affinity_bytes == hand


def test_every_attention_type_has_a_memory_rule():
    missing = [name for name in ATTENTION.names() if not any(c in SAVE_RULES for c in ATTENTION.get(name).__mro__)]
    assert missing == []


def _assert_predicted(model: nn.Module, shape: tuple) -> None:
    measured = measure_forward(model, shape, "cpu").activation_bytes
    predicted = predict_saved_bytes(model, shape)
    assert predicted.unknown_layers == []
    assert abs(predicted.activation_bytes / measured - 1) < 0.01


@pytest.mark.parametrize("kind, options", [("se", {}), ("cbam", {}), ("bam", {}), ("cam", {}), ("fla", {}),
                                           ("pam", {"implementation": "reference"}),
                                           ("pam", {"implementation": "fused"})])
def test_attention_family_prediction_equals_measurement(kind, options):
    torch.manual_seed(0)
    _assert_predicted(nn.Sequential(nn.Conv3d(3, 32, 1), ATTENTION.get(kind)(32, **options)), (2, 3, 4, 6, 10))


@pytest.mark.parametrize("config, overrides", [("i3d_tiny_nl_iaa", []), ("i3d_tiny_nl_iaa", ["model.iaa.detach_pca=false"]),
                                               ("tsn_tiny_iaa", [])])
def test_whole_model_prediction_equals_measurement(config, overrides):
    torch.manual_seed(0)
    cfg = load_config(str(ROOT / "configs" / "model" / f"{config}.yaml"), overrides)
    _assert_predicted(build_model(cfg.model, 5), (2, 3, 8, 32, 32))

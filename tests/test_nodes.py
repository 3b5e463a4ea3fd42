"""Two torchrun agents on 127.0.0.1 as two nodes (c10d rendezvous, one rank each, each on its own share
of the cores), against real SIGKILLs of whole nodes: the same weights as one node with two ranks, a
job that loses a node going on with the survivor at the same global batch, a node coming back, and a
job whose nodes all died started again."""
from pathlib import Path

import pytest
import torch

from bench.recovery import SHRINK_TOLERANCE, Nodes, launch, requeue_trial, shrink_trial, train_command
from configs.compose import CONFIG_DIR
from engine.checkpoint import load_checkpoint

DEMO = CONFIG_DIR / "experiments" / "demo.yaml"
STEPS = 24
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(synthetic_dataset) -> Path:
    return synthetic_dataset()


def overrides(root: Path) -> list:
    """The demo recipe, tiny; dropout stays on (each forward's mask follows its slot, not its rank) and
    the intra-op threads are left to the launch-invariant rule."""
    return ["--config", str(DEMO), f"data.root={root}", "data.batch_size=1", "data.num_workers=1",
            f"trainer.max_steps={STEPS}", "trainer.log_every=1", "trainer.checkpoint_every=2",
            "trainer.eval_every=100", "trainer.progress_bar=false", "logger.wandb.mode=disabled"]


@pytest.fixture(scope="module")
def standalone(data, tmp_path_factory) -> Path:
    """last.pt of an uninterrupted `torchrun --standalone --nproc_per_node 2` run."""
    out = tmp_path_factory.mktemp("standalone") / "run"
    proc = launch(train_command([*overrides(data), f"run.output_dir={out}"], ranks=2), out.parent / "run.log")
    assert proc.wait(timeout=300) == 0, (out.parent / "run.log").read_text()[-3000:]
    return out / "checkpoints" / "last.pt"


def threads_choice(*logs: Path) -> str:
    """What rank 0 logged about its intra-op threads, up to the reason (rank 0 may be on either node)."""
    lines = [line for log in logs for line in log.read_text().splitlines() if line.startswith("intra-op threads:")]
    assert len(lines) == 1, lines
    return lines[0].split("(")[0]


def test_two_nodes_give_the_weights_of_one_node_with_two_ranks(data, standalone, tmp_path):
    """(a) `--nnodes 2` with one rank per node ends bit-equal to `--standalone --nproc_per_node 2`,
    with no thread count pinned: both launches pick the same intra-op threads and log it."""
    with Nodes(overrides(data), tmp_path / "run", "2") as nodes:
        nodes.start(1)
        nodes.start(0)
        assert nodes.wait(timeout=300) == 0, nodes.log(0).read_text()[-3000:]
    final, reference = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt"), load_checkpoint(standalone)
    assert final["step"] == STEPS
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, final["model"][name]), name
    assert threads_choice(nodes.log(0), nodes.log(1)) == threads_choice(standalone.parents[2] / "run.log")


def test_a_lost_node_leaves_the_survivor_training_at_the_same_global_batch(data, standalone, tmp_path):
    """(b) `--nnodes 1:2`, node 1 (not the store's host) SIGKILLed after step 3: node 0 resumes alone
    from last.pt, accumulating the lost rank's micro-batches, and finishes within 1e-4 of the
    uninterrupted run (BN running statistics aside), no step logged twice."""
    trial = shrink_trial(overrides(data), tmp_path / "run", 3, standalone)
    log = (tmp_path / "run.node0.log").read_text()
    assert trial.exit_code == 0, log[-3000:]
    assert "keeping the global batch of 2" in log and "1 ranks x data.batch_size=1 x 2 micro-batches" in log
    assert trial.weight_gap <= SHRINK_TOLERANCE and trial.duplicated_steps == 0


def test_a_requeued_job_whose_nodes_all_died_ends_with_the_uninterrupted_weights(data, standalone, tmp_path):
    """(c) both nodes SIGKILLed after step 3, the whole job started again with trainer.resume=auto:
    bit-equal to the uninterrupted run, no step logged twice."""
    trial = requeue_trial(overrides(data), tmp_path / "run", 3, standalone)
    assert trial.exit_code == 0, (tmp_path / "run.node0.log").read_text()[-3000:]
    assert trial.weight_gap == 0.0 and trial.duplicated_steps == 0


def test_a_lost_node_that_comes_back_rejoins_the_running_job(data, standalone, tmp_path):
    """(d) as (b), with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, and node 1 started again as soon as node 0
    has resumed alone: node 0's agent stops its rank for the new member (SIGTERM: last.pt at the step
    in flight), and the two ranks go on from that global position, ending as (b) does."""
    trial = shrink_trial(overrides(data), tmp_path / "run", 3, standalone, rejoin=True)
    logs = "".join((tmp_path / f"run.node{node}.log").read_text() for node in (0, 1))
    assert trial.exit_code == 0, logs[-3000:]
    assert "1 ranks x data.batch_size=1 x 2 micro-batches" in logs and trial.rejoined, logs[-3000:]
    assert trial.weight_gap <= SHRINK_TOLERANCE and trial.duplicated_steps == 0

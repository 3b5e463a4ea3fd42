"""scripts/gpu_check.sh in its CPU mode (CUDA hidden): every check runs at tiny sizes or is listed as
skipped with its reason, so the one-shot GPU script cannot rot between GPU runs."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_KEYS = {"clips_per_s", "data_wait", "peak_bytes", "device", "attention"}
CUDA_ONLY_TESTS = {"test_fused_res2_block_needs_a_quarter_of_the_reference_memory",
                   "test_training_steps_stay_finite[fp16-gradscaler]", "test_training_steps_stay_finite[bf16-compile]",
                   "test_nccl_one_rank_ddp_with_sync_batchnorm", "test_pinned_memory_loader_feeds_the_gpu"}


@pytest.mark.slow
@pytest.mark.timeout(1100)
def test_cpu_mode_runs_every_check_or_names_why_not(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHON"}  # as after `make venv`
    env.update({"CUDA_VISIBLE_DEVICES": "", "GPU_CHECK_WHEELS": str(tmp_path / "no_wheels")})  # install nothing
    if not (ROOT / ".venv" / "bin" / "python").exists():
        env["PYTHON"] = sys.executable
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=1000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = "using .venv/bin/python (the project's .venv)" if "PYTHON" not in env else f"using {sys.executable}"
    assert expected in proc.stdout.splitlines()[0]
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["mode"] == "cpu" and summary["failed"] == []
    checks = {entry["name"]: entry for entry in summary["checks"]}
    assert {"pytest_cuda", "profile", "bench_model", "bench_train_i3d_tiny_nl_synthetic",
            "bench_mmaction2_step"} <= set(checks)
    for entry in checks.values():
        assert entry["status"] in ("passed", "skipped"), entry
        assert entry["status"] == "passed" or entry["reason"]
    for name, entry in checks.items():
        if name.startswith("bench_train") and entry["status"] == "passed":
            assert CONTRACT_KEYS <= set(entry["figures"]) and entry["figures"]["device"] == "cpu"
    tests = {t["test"]: t for t in checks["pytest_cuda"]["figures"]["tests"]}
    assert {name for name, t in tests.items() if t["outcome"] == "skipped"} == CUDA_ONLY_TESTS
    assert all(t["outcome"] == "passed" for name, t in tests.items() if name not in CUDA_ONLY_TESTS)
    assert tests["test_no_math_fallback_at_res2_res3[none]"]["figures"]["res2_none_kernel"] == "flash"
    assert tests["test_auto_batch_fits_the_real_step"]["outcome"] == "passed"
    step = checks["bench_mmaction2_step"]  # the venv has mmaction2: the side-by-side runs
    assert step["status"] == "passed" and step["figures"]["logit_error"] < 1e-5
    assert [row["name"] for row in step["figures"]["rows"]] == ["mmaction2", "ours", "ours channels_last+compile"]
    assert all(row["clips_per_s"] > 0 and row["speed_vs_mmaction2"] > 0 for row in step["figures"]["rows"])
    skipped = {item["check"] for item in summary["skipped"]}
    assert {f"pytest_cuda::{name}" for name in CUDA_ONLY_TESTS} <= skipped
    assert (tmp_path / "out" / "profile.md").is_file() and (tmp_path / "out" / "gpu_check.log").is_file()


def test_the_side_by_side_is_skipped_with_the_reason_where_mmaction2_is_missing(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # dataclasses look their module up there
    spec.loader.exec_module(gpu_check)
    monkeypatch.setitem(sys.modules, "mmaction", None)  # makes `import mmaction` fail as on a machine without it
    check = next(c for c in gpu_check.plan("cpu", tmp_path, tmp_path) if c.name == "bench_mmaction2_step")
    entry = gpu_check.run_check(check, tmp_path, None, deadline=float("inf"))
    assert entry["status"] == "skipped" and "mmaction2==1.2.0" in entry["reason"]
    assert "fetch_gpu_wheels.sh" in entry["reason"]

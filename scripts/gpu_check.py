"""The checks behind scripts/gpu_check.sh: one short run that proves the CUDA path, or rehearses it.

On a GPU: `pytest -m cuda` (fused = reference in fp32/bf16/fp16, kernels per stage, memory, fp16/bf16/
channels_last/compile training, NCCL, SyncBatchNorm, pinned memory, `data.batch_size=auto` against the real
step's max-allocated), `profile` of the I3D-R50 32x224 placements (CUDA peak against the analytic
prediction), `bench train` of I3D-R50 and NL I3D-R50 at 32x224 in bf16 on synthetic input and on the
decoded shared clips, `bench mmaction2-step` (a bf16 training step of mmaction2's own NL I3D-R50 against
ours with the same weights, plain / channels_last / compile; skipped where mmaction2 is not installed),
and `bench model` fused vs reference.
Without CUDA the same commands run at tiny sizes (GPU_CHECK_REHEARSAL=1 for the pytest part), and every
check or test that needs CUDA is listed as skipped with its reason.

Everything lands in OUT_DIR/gpu_check.json (each check: status, seconds, figures or reason), with the
commands' output in OUT_DIR/gpu_check.log and the profile's table and chart beside them: few files,
since a device run returns at most eight. The run stops starting checks when its time budget is spent.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from models.converters.reference import missing_mmaction2  # noqa: E402  (after the path; imports torch only)

# GPU: the 8 minutes of one device run. CPU: the bounds only catch a hang (a loaded CI machine is slow)
BUDGET_SECONDS = {"gpu": 480, "cpu": 900}
CPU_TIMEOUT = 300
REQUIRED_MODULES = ("omegaconf", "av", "yaml", "numpy", "PIL", "matplotlib", "tqdm", "einops", "torchvision")


@dataclass
class Check:
    """One command of the run and how to read its figures from the work folder."""

    name: str
    argv: List[str]
    timeout: int
    figures: Callable[[Path], Dict[str, Any]] = lambda work: {}
    env: Dict[str, str] = field(default_factory=dict)
    skip_reason: str = ""


def run_py(*args: str) -> List[str]:
    return [sys.executable, str(ROOT / "run.py"), *args]


def clips_dir() -> Path | None:
    """The shared real clips: $VIDEO_TEST_DATA/clips (gpu_check.sh points it at .gpu_data) or ../shared."""
    base = Path(os.environ.get("VIDEO_TEST_DATA", ROOT.parent / "shared" / "data"))
    return base / "clips" if (base / "clips").is_dir() else None


# ---- figures read back from each command's output ------------------------------------------------

def pytest_figures(xml_path: Path) -> Dict[str, Any]:
    """Every test's outcome (with the skip or failure message) and the properties it recorded."""
    if not xml_path.is_file():
        return {"tests": []}
    tests = []
    for case in ElementTree.parse(xml_path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "failed" if tag in ("failure", "error") else "skipped"
                message = (found.get("message") or "").splitlines()[0][:300] if found.get("message") else ""
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        tests.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0),
                      "reason": message, "figures": properties})
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "skipped")}
    return {"counts": counts, "tests": tests}


def profile_figures(json_path: Path) -> Dict[str, Any]:
    result = json.loads(json_path.read_text())
    keys = ("placement", "implementation", "subsample", "activation_bytes", "predicted_activation_bytes",
            "prediction_error", "peak_bytes", "predicted_peak_bytes", "peak_error", "max_fitting_batch")
    return {"device": result["device"], "worst_prediction_error": result["worst_prediction_error"],
            "worst_peak_error": result.get("worst_peak_error"), "seconds": result["seconds"],
            "rows": [{k: row.get(k) for k in keys} for row in result["rows"]]}


def json_figures(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text())


# ---- the plan -------------------------------------------------------------------------------------

def plan(mode: str, work: Path, out: Path) -> List[Check]:
    """The checks in order of importance (the time budget may cut the tail)."""
    gpu = mode == "gpu"
    cores = os.cpu_count() or 1
    clips = clips_dir()
    checks = [Check(
        "pytest_cuda",
        [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs",
         str(ROOT / "tests" / "test_cuda.py"), f"--junitxml={out / 'pytest_cuda.xml'}"],
        timeout=240 if gpu else CPU_TIMEOUT, figures=lambda _: pytest_figures(out / "pytest_cuda.xml"),
        env={} if gpu else {"GPU_CHECK_REHEARSAL": "1"})]
    shape = ["--frames", "32", "--size", "224", "--batch", "8", "--steps", "10"] if gpu else \
        ["--frames", "8", "--size", "32", "--batch", "2", "--steps", "2", "--warmup", "1"]
    models = ("i3d_r50", "i3d_r50_nl5") if gpu else ("i3d_tiny_nl",)
    amp = "bf16" if gpu else "none"  # bf16 convs crawl on a CPU; the pytest part rehearses bf16 there
    decoding = ["--data", str(clips), f"data.num_workers={cores if gpu else 2}", "data.backend=pyav",
                "data.sampling.stride=2"]
    no_clips = "" if clips else "no shared clips (../shared/data/clips, $VIDEO_TEST_DATA/clips or .gpu_data/clips)"

    def bench_train(model: str, source: str) -> Check:
        name, target = f"bench_train_{model}_{source}", work / f"bench_train_{model}_{source}.json"
        data = ["--data", "synthetic"] if source == "synthetic" else decoding
        return Check(name, run_py("bench", "train", "--config", f"configs/model/{model}.yaml", *shape, *data,
                                  f"trainer.amp={amp}", "--json", str(target)),
                     timeout=120 if gpu else CPU_TIMEOUT, figures=lambda _: json_figures(target),
                     skip_reason="" if source == "synthetic" else no_clips)

    checks += [bench_train(model, "synthetic") for model in models]  # the model's ceiling first
    step_args = (["--frames", "32", "--size", "224", "--batch", "8", "--amp", "bf16", "--rounds", "3", "--steps", "4",
                  "--warmup", "3"] if gpu else  # the CPU rehearsal: a quarter-width R50, one compiled variant
                 ["--frames", "8", "--size", "64", "--batch", "1", "--width", "0.25", "--amp", "none", "--rounds", "1",
                  "--steps", "1", "--warmup", "1", "--compile-backend", "eager", "--variants", "ours",
                  "ours channels_last+compile"])
    missing_mm = missing_mmaction2()
    checks.append(Check("bench_mmaction2_step", run_py("bench", "mmaction2-step", *step_args, "--device",
                                                       "cuda" if gpu else "cpu", "--json", str(work / "step.json")),
                        timeout=300 if gpu else CPU_TIMEOUT, figures=lambda _: json_figures(work / "step.json"),
                        skip_reason=f"mmaction2's modules cannot be built: {missing_mm} "
                                    "(scripts/fetch_gpu_wheels.sh fetches them, OpenCV with --with-opencv)"
                        if missing_mm else ""))
    profile_args = (["--config", "configs/profile/i3d_r50_32x224.yaml"] if gpu else
                    ["profile.frames=[8]", "profile.sizes=[32]", "profile.subsample=[true]", "profile.device=cpu"])
    checks.append(Check("profile", run_py("profile", "--out", str(work / "profile"), *profile_args),
                        timeout=200 if gpu else CPU_TIMEOUT,
                        figures=lambda _: profile_figures(work / "profile" / "profile.json")))
    checks += [bench_train(model, "clips") for model in models]
    model_args = (["--models", "i3d_r50_nl5", "--large-input", "1x32x224", "--frames", "32", "--size", "224"] if gpu
                  else ["--models", "i3d_tiny_nl", "--tiny-input", "2x8x32", "--frames", "8", "--size", "64",
                        "--repeats", "1"])
    checks.append(Check("bench_model", run_py("bench", "model", *model_args, "--stages", "res2", "res3", "res4",
                                              "res5", "--json", str(work / "bench_model.json")),
                        timeout=120 if gpu else CPU_TIMEOUT, figures=lambda _: json_figures(work / "bench_model.json")))
    return checks


def environment(mode: str) -> Dict[str, Any]:
    """What the run ran on: Python, torch, CUDA, cuDNN, the GPU, and the versions of carried packages."""
    info: Dict[str, Any] = {"mode": mode, "python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cpu_cores": os.cpu_count()}
    if mode == "gpu":
        info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                    gpu_memory_bytes=torch.cuda.get_device_properties(0).total_memory,
                    cudnn=torch.backends.cudnn.version())
    versions = {}
    for name in ("omegaconf", "av", "decord", "mmaction", "mmengine", "mmcv", "cv2"):
        try:
            versions[name] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            versions[name] = None
    info["packages"] = versions
    return info


def missing_modules() -> List[str]:
    missing = []
    for name in REQUIRED_MODULES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def run_check(check: Check, work: Path, log, deadline: float) -> Dict[str, Any]:
    """Run one check's command (bounded by its timeout and the deadline); its output goes to the log."""
    entry: Dict[str, Any] = {"name": check.name, "command": " ".join(check.argv)}
    left = deadline - time.monotonic()
    if check.skip_reason:
        return {**entry, "status": "skipped", "reason": check.skip_reason}
    if left < 20:
        return {**entry, "status": "skipped", "reason": f"time budget spent ({left:.0f} s left)"}
    timeout = int(min(check.timeout, left))
    log.write(f"\n===== {check.name}: {entry['command']}\n")
    log.flush()
    started = time.monotonic()
    try:
        proc = subprocess.run(check.argv, cwd=ROOT, env={**os.environ, **check.env, "PYTHONUNBUFFERED": "1"},
                              stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    entry["seconds"] = round(time.monotonic() - started, 1)
    if code is None:
        entry.update(status="timed_out", reason=f"stopped after {timeout} s")
    else:
        entry.update(status="passed" if code == 0 else "failed", exit_code=code)
    try:
        entry["figures"] = check.figures(work)
    except (OSError, ValueError, KeyError) as exc:
        entry.setdefault("reason", f"no figures: {exc}")
    return entry


def headline(entry: Dict[str, Any]) -> str:
    """One line of figures per check for the console (a device run returns the output's tail)."""
    figures = entry.get("figures") or {}
    if entry["name"].startswith("bench_train") and "clips_per_s" in figures:
        wait = figures["data_wait"]
        kernels = ", ".join(f"{a['block']}={a['kernel']}" for a in figures["attention"]) or "no attention"
        return (f"{figures['clips_per_s']:.1f} clips/s, data wait {'-' if wait is None else f'{100 * wait:.1f}%'}, "
                f"peak {figures['peak_bytes'] / 2**30:.2f} GiB; {kernels}")
    if entry["name"] == "profile" and "rows" in figures:
        peak = figures["worst_peak_error"]
        return (f"{len(figures['rows'])} rows on {figures['device']}, worst activation error "
                f"{100 * figures['worst_prediction_error']:.2f}%, worst CUDA-peak error "
                f"{'-' if peak is None else f'{100 * peak:.1f}%'}")
    if entry["name"] == "bench_mmaction2_step" and "rows" in figures:
        return "; ".join(f"{r['name']} {r['clips_per_s']:.1f} clips/s {r['speed_vs_mmaction2']:.2f}x" + (
            "" if r["peak_bytes"] is None else f" peak {r['peak_bytes'] / 2**30:.2f} GiB {r['peak_vs_mmaction2']:.2f}x")
            for r in figures["rows"])
    if entry["name"] == "bench_model" and "nonlocal_memory" in figures:
        return "; ".join(f"{r['placement'].split()[0]} {r['fused_kernel']} mem {r['ratio']:.3f} "
                         f"time {r['fused_seconds'] / r['reference_seconds']:.2f}" for r in figures["nonlocal_memory"])
    if entry["name"] == "pytest_cuda" and "counts" in figures:
        return ", ".join(f"{n} {k}" for k, n in figures["counts"].items())
    return entry.get("reason", "")


def main(out: Path) -> int:
    mode = "gpu" if torch.cuda.is_available() else "cpu"
    started = time.monotonic()
    deadline = started + BUDGET_SECONDS[mode]
    out.mkdir(parents=True, exist_ok=True)
    summary: Dict[str, Any] = {"mode": mode, "environment": environment(mode), "checks": []}
    missing = missing_modules()
    if missing:
        print(f"error: missing Python packages: {', '.join(missing)}; run scripts/fetch_gpu_wheels.sh where pip "
              "works and carry .whl (gpu_check.sh installs it)", file=sys.stderr)
        summary["error"] = f"missing packages {missing}"
        (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
        return 2
    print(f"gpu_check: {mode} mode, budget {BUDGET_SECONDS[mode]} s, output in {out}", flush=True)
    with tempfile.TemporaryDirectory() as scratch, open(out / "gpu_check.log", "w") as log:
        work = Path(scratch)
        for check in plan(mode, work, out):
            entry = run_check(check, work, log, deadline)
            summary["checks"].append(entry)
            print(f"[{entry['status']:>9}] {check.name} ({entry.get('seconds', 0):.0f} s): {headline(entry)}", flush=True)
        for name in ("profile.md", "profile.png"):
            if (work / "profile" / name).is_file():
                shutil.copy(work / "profile" / name, out / name)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["skipped"] = [{"check": e["name"], "reason": e["reason"]} for e in summary["checks"]
                          if e["status"] == "skipped"]
    for entry in summary["checks"]:
        for test in (entry.get("figures") or {}).get("tests", []):
            if test["outcome"] == "skipped":
                summary["skipped"].append({"check": f"{entry['name']}::{test['test']}", "reason": test["reason"]})
    failed = [e["name"] for e in summary["checks"] if e["status"] in ("failed", "timed_out")]
    summary["failed"] = failed
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    for item in summary["skipped"]:
        print(f"skipped: {item['check']}: {item['reason']}")
    counts = {s: sum(e["status"] == s for e in summary["checks"]) for s in ("passed", "failed", "timed_out", "skipped")}
    print(f"gpu_check ({mode}): {', '.join(f'{n} {s}' for s, n in counts.items())} in {summary['seconds']:.0f} s; "
          f"wrote {out / 'gpu_check.json'}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "runs/gpu_check"))))

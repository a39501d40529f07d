"""benchmarks/gpu_check.sh (issue 29): its dry run is how CI tests the script before a GPU minute is spent.

The dry run runs every step on the CPU (CUDA hidden, Triton interpreter, tiny shapes); the other tests check
that a failed or timed-out step is recorded and the run goes on, with a stand-in Python so they take seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STEPS = ["setup", "gpu_tests", "nll_target", "nll_grid", "scoring", "pipeline"]


def _run(args, tmp_path: Path, timeout: float, **env_extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, **env_extra}
    env.pop("OUT", None)  # the device tool's folder, if any: these runs write under tmp_path
    return subprocess.run(["bash", str(SCRIPT), *args, "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path)


def _rows(out: Path) -> list[dict[str, str]]:
    lines = (out / "summary.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:]]


@pytest.mark.slow
def test_dry_run_runs_every_step_on_the_cpu(tmp_path):
    proc = _run(["--dry-run", "--skip-setup"], tmp_path, timeout=600)
    out = tmp_path / "out"
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    rows = _rows(out)
    assert [r["step"] for r in rows] == STEPS
    for r in rows:
        if r["step"] == "nll_grid":  # the only step with nothing to run on a CPU
            assert r["status"] == "skipped" and "needs a GPU" in r["note"], r
        else:
            assert r["status"] == "ok" and r["rc"] == "0", r
    # one log per step, the two summaries, nothing else: the device tool sends back at most 8 files
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{s}.log" for s in STEPS] + ["summary.json", "summary.tsv"])
    doc = json.loads((out / "summary.json").read_text())
    assert doc["dry_run"] is True and doc["device"].startswith("cpu dry-run")
    assert [s["status"] for s in doc["steps"]] == [r["status"] for r in rows]
    keys = doc["key_numbers"]
    # the kernel's odd-shape tests run under the interpreter; the gpu-marked ones are skipped without CUDA
    assert "passed" in keys["gpu_tests"][0] and "skipped" in keys["gpu_tests"][0] and "failed" not in keys["gpu_tests"][0]
    assert sum(line.endswith("-> OK") for line in keys["nll_target"]) == 2  # both smoke shapes match the oracle
    assert len([k for k in keys["scoring"] if k.startswith("target >=")]) == 2  # both corpora
    assert any(k.startswith("trained on: cpu") for k in keys["pipeline"]), keys["pipeline"]
    assert "pplaw gpu_check summary" in proc.stdout and "device: cpu dry-run" in proc.stdout
    assert "torch " in proc.stdout and "triton " in proc.stdout


def _fake_python(tmp_path: Path) -> Path:
    """A stand-in interpreter: the helper runs for real, the kernel bench hangs, everything else fails."""
    fake = tmp_path / "fakepy"
    fake.write_text(f"""#!/usr/bin/env bash
case "$*" in
  *gpu_check_env.py*|-c*) exec {sys.executable} "$@" ;;
  *bench_nll_kernel.py*) sleep 60 ;;
  *) echo "fake failure of $1" >&2; exit 3 ;;
esac
""")
    fake.chmod(0o755)
    return fake


def test_failed_and_timed_out_steps_are_recorded_and_the_rest_still_runs(tmp_path):
    fake = _fake_python(tmp_path)
    proc = _run(["--dry-run", "--skip-setup"], tmp_path, timeout=120, PYTHON=str(fake),
                GPU_CHECK_LIMIT_NLL_TARGET="2", GPU_CHECK_MIN_STEP_S="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a failed step makes the run fail, at the end
    rows = {r["step"]: r for r in _rows(tmp_path / "out")}
    assert list(rows) == STEPS
    assert rows["setup"]["status"] == "ok"
    assert rows["nll_target"]["status"] == "timeout" and "killed after 2s" in rows["nll_target"]["note"]
    for step in ("gpu_tests", "scoring", "pipeline"):
        assert rows[step]["status"] == "failed" and rows[step]["rc"] == "3", rows[step]
        assert "fake failure" in rows[step]["note"]  # the log's last line says why
        assert "fake failure" in (tmp_path / "out" / f"{step}.log").read_text()
    assert "pplaw gpu_check summary" in proc.stdout


def test_gpu_mode_runs_the_gpu_commands_in_order(tmp_path):
    """Without --dry-run: the steps' command lines on a GPU machine (a recording stand-in Python runs them)."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "fakepy"
    fake.write_text(f"""#!/usr/bin/env bash
case "$*" in
  *gpu_check_env.py*|-c*) exec {sys.executable} "$@" ;;
  *) echo "$*" >> {calls} ;;
esac
""")
    fake.chmod(0o755)
    proc = _run([], tmp_path, timeout=120, PYTHON=str(fake))  # setup included: nothing is missing here
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["status"] for r in _rows(tmp_path / "out")] == ["ok"] * len(STEPS)
    got = calls.read_text().splitlines()
    assert len(got) == 5, got
    assert got[0].startswith("-m pytest") and "tests/kernels/test_fused_linear_nll.py" in got[0]
    assert "tests/scoring/test_scoring_gpu.py" in got[0]
    assert got[1] == "benchmarks/bench_nll_kernel.py --target-only"
    assert got[2] == "benchmarks/bench_nll_kernel.py --grid"
    assert got[3].startswith("benchmarks/bench_scoring.py --device cuda")
    assert got[4].startswith("-m pplaw.cli.main run tests/pipeline/micro.yaml")
    assert "plan.sizes=[0.1, 0.2]" in got[4] and got[4].endswith("scoring.dtype=bfloat16")
    rows = {r["step"]: r for r in _rows(tmp_path / "out")}
    assert rows["nll_grid"]["limit_s"] == "150"  # its own limit: the 540 s budget leaves more

    # a tight budget: the grid gets only what scoring and pipeline (150 s each) leave, here nothing
    calls.unlink()
    proc = _run(["--budget-s", "310"], tmp_path, timeout=120, PYTHON=str(fake))
    rows = {r["step"]: r for r in _rows(tmp_path / "out")}
    assert rows["nll_grid"]["status"] == "skipped" and "kept for scoring and pipeline" in rows["nll_grid"]["note"]
    assert rows["scoring"]["status"] == rows["pipeline"]["status"] == "ok"
    assert "--grid" not in calls.read_text()


def test_setup_without_an_index_or_wheels_fails_fast_and_the_rest_runs(tmp_path):
    """An offline machine lacking a dependency: setup says what is missing and how to bring it, in seconds."""
    fake = tmp_path / "fakepy"
    fake.write_text(f"""#!/usr/bin/env bash
case "$*" in
  *"gpu_check_env.py missing"*) echo "lm-eval" ;;
  *gpu_check_env.py*|-c*) exec {sys.executable} "$@" ;;
  *) true ;;
esac
""")
    fake.chmod(0o755)
    if (REPO / ".whl").is_dir():
        pytest.skip("a .whl/ folder in the checkout: setup would install from it")
    proc = _run([], tmp_path, timeout=120, PYTHON=str(fake), PIP_INDEX_URL="http://127.0.0.1:9/simple")
    rows = {r["step"]: r for r in _rows(tmp_path / "out")}
    assert proc.returncode == 1
    assert rows["setup"]["status"] == "failed" and int(rows["setup"]["seconds"]) < 30
    log = (tmp_path / "out" / "setup.log").read_text()
    assert "cannot install lm-eval" in log and "gpu_check_wheels.py" in log
    assert all(rows[s]["status"] == "ok" for s in STEPS[1:])  # the steps that need none of it still ran


def test_a_step_is_skipped_when_the_budget_is_spent(tmp_path):
    fake = _fake_python(tmp_path)
    proc = _run(["--dry-run", "--skip-setup", "--budget-s", "0"], tmp_path, timeout=60, PYTHON=str(fake))
    rows = _rows(tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # nothing failed: everything was skipped
    assert [r["status"] for r in rows] == ["skipped"] * len(STEPS)
    assert all("budget" in r["note"] for r in rows if r["step"] != "nll_grid")


def test_bad_options_are_refused_with_what_was_expected(tmp_path):
    proc = _run(["--budget-s", "ten"], tmp_path, timeout=30)
    assert proc.returncode == 2 and "--budget-s 'ten' is not a whole number" in proc.stderr
    proc = _run(["--gpu"], tmp_path, timeout=30)
    assert proc.returncode == 2 and "unknown option '--gpu'" in proc.stderr and "--dry-run" in proc.stderr


def test_wheels_lists_the_dependencies_the_gpu_machine_lacks(tmp_path):
    """gpu_check_wheels.py: the project's dependency closure here, minus what the machine has, at the versions here."""
    import importlib.metadata as md
    import re

    names = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in md.distributions()}
    if not {"datasets", "dill", "multiprocess"} <= names:
        pytest.skip("needs datasets, dill and multiprocess installed (the project's environment)")
    have = tmp_path / "have.txt"
    have.write_text("\n".join(sorted(names - {"datasets", "dill", "multiprocess"})) + "\n")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check_wheels.py"), "--have", str(have)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    want = [f"{n}=={md.version(n)}" for n in ("datasets", "dill", "multiprocess")]
    assert proc.stdout.split() == want
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check_wheels.py"), "--have",
                           str(tmp_path / "nope.txt")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "nope.txt: no such file" in proc.stderr


def test_summary_warns_when_the_micro_run_trained_on_the_cpu_beside_a_gpu(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    (run / "final" / "r0").mkdir(parents=True)
    (run / "final" / "r0" / "run_record.json").write_text(json.dumps({"environment": {"device": "cpu"}}))
    out.mkdir()
    (out / "summary.tsv").write_text("step\tstatus\trc\tseconds\tlimit_s\tnote\npipeline\tok\t0\t9\t150\t\n")
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"cuda_available": True, "nvidia_smi": "NVIDIA H100 80GB HBM3, 81559 MiB, 580"}))
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_check_env.py"), "summary", "--out", str(out), "--env",
           str(env), "--run-dir", str(run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "device: NVIDIA H100 80GB HBM3" in proc.stdout and "trained on: cpu (1 runs)" in proc.stdout
    assert "WARNING: torch sees CUDA but the micro run did not train on it" in proc.stdout
    doc = json.loads((out / "summary.json").read_text())
    assert doc["steps"][0]["status"] == "ok" and doc["key_numbers"]["pipeline"][-1].startswith("WARNING")

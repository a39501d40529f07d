"""Helpers of benchmarks/gpu_check.sh (standard library only: it runs before anything is installed).

    python benchmarks/gpu_check_env.py missing        # import names the check needs that do not import
    python benchmarks/gpu_check_env.py requirements   # pyproject.toml requirements of the missing ones
    python benchmarks/gpu_check_env.py info           # device and versions, JSON
    python benchmarks/gpu_check_env.py summary --out DIR --env ENV.json ...   # summary.json + one screen
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# distribution (as pyproject.toml names it) -> the module the check imports
MODULES = {
    "numpy": "numpy", "pyarrow": "pyarrow", "pandas": "pandas", "scipy": "scipy", "threadpoolctl": "threadpoolctl",
    "matplotlib": "matplotlib", "tqdm": "tqdm", "pyyaml": "yaml", "torch": "torch", "transformers": "transformers",
    "tokenizers": "tokenizers", "datasets": "datasets", "accelerate": "accelerate", "trl": "trl",
    "lm-eval": "lm_eval", "pytest": "pytest", "hypothesis": "hypothesis", "triton": "triton",
}
# the test extra's tools the check runs (not mypy/polars: nothing here uses them)
EXTRA = ["pytest>=8", "hypothesis>=6.100", "triton>=3.2"]


def _requirements() -> list[str]:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
    if block is None:
        raise SystemExit("gpu_check_env: no [project] dependencies list in pyproject.toml")
    reqs = re.findall(r'"([^"]+)"', block.group(1))
    return [r for r in reqs if not r.startswith("pplaw-kernels")] + EXTRA  # the kernels: on PYTHONPATH


def _dist(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower()


def missing() -> list[str]:
    """Distributions whose module does not import here (find_spec: no import, so fast)."""
    out = []
    for req in _requirements():
        mod = MODULES.get(_dist(req), _dist(req).replace("-", "_"))
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(_dist(req))
    return out


def info() -> dict:
    env: dict = {"python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if shutil.which("nvidia-smi"):
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
            env["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
        except (OSError, subprocess.SubprocessError) as err:
            env["nvidia_smi"] = f"failed: {err}"
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda_build"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            env["gpu"] = torch.cuda.get_device_name()
            env["gpu_count"] = torch.cuda.device_count()
    except Exception as err:  # a broken torch is itself what the summary must say
        env["torch"] = f"not importable: {type(err).__name__}: {err}"
    for name in ("triton", "transformers", "lm_eval"):
        try:
            mod = __import__(name)
            env[name] = getattr(mod, "__version__", "?")
        except Exception as err:
            env[name] = f"not importable ({type(err).__name__})"
    return env


# ---------------------------------------------------------------- the summary


def _grep(path: Path, pattern: str) -> list[str]:
    if not path.is_file():
        return []
    rx = re.compile(pattern)
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if rx.search(line)]


def _find(obj, key: str):
    """The first value of ``key`` anywhere in a JSON document (run_record.json nests it)."""
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], (dict, list)):
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            got = _find(v, key)
            if got is not None:
                return got
    return None


def _run_devices(run_dir: Path) -> list[str]:
    """Where the micro run trained (each run_record.json's device) and the dtype it scored in."""
    if not run_dir.is_dir():
        return []
    devices: dict[str, int] = {}
    for rec in sorted(run_dir.glob("*/*/run_record.json")):
        try:
            dev = str(_find(json.loads(rec.read_text(encoding="utf-8")), "device"))
        except (OSError, json.JSONDecodeError):
            dev = "unreadable"
        devices[dev] = devices.get(dev, 0) + 1
    out = []
    if devices:
        out.append("trained on: " + ", ".join(f"{d} ({n} runs)" for d, n in sorted(devices.items())))
    manifest = run_dir / "score" / "chunks" / "manifest.yaml"
    dtype = _grep(manifest, r"^dtype:")
    if dtype:
        out.append(f"scoring dtype: {dtype[0].split(':', 1)[1].strip()} (the scorer takes CUDA whenever torch sees it)")
    return out


def key_numbers(out: Path, run_dir: Path) -> dict[str, list[str]]:
    """Per step, the lines that carry its result (pytest's tally, the benches' target and check lines)."""
    keys: dict[str, list[str]] = {}
    keys["gpu_tests"] = _grep(out / "gpu_tests.log", r"^=*\s*\d+ (passed|failed|skipped|deselected|error)")[-1:]
    keys["nll_target"] = (_grep(out / "nll_target.log", r"^(target:|check:)")
                          + _grep(out / "nll_target.log", r"^\| (ours \(triton\)|gemm \(floor\)|torch eager) \|"))
    grid = out / "nll_grid.log"
    shapes = _grep(grid, r"^### M=")
    checks = _grep(grid, r"^check:")
    if shapes:
        bad = [c for c in checks if c.endswith("MISMATCH")]
        keys["nll_grid"] = [f"{len(shapes)} shapes started, {len(checks)} checked, {len(bad)} mismatched"] + bad[:3]
    keys["scoring"] = _grep(out / "scoring.log", r"^(device:|target >=)")
    pipe = _grep(out / "pipeline.log", r"^\[(score|sweep|final)\] done|^law's prediction")
    pipe += _run_devices(run_dir)
    keys["pipeline"] = pipe
    return {k: v for k, v in keys.items() if v}


def summary(args) -> int:
    out = Path(args.out)
    rows = []
    tsv = out / "summary.tsv"
    lines = tsv.read_text(encoding="utf-8").splitlines() if tsv.is_file() else []
    head = lines[0].split("\t") if lines else []
    for line in lines[1:]:
        rows.append(dict(zip(head, line.split("\t"))))
    env = {}
    if args.env and Path(args.env).is_file():
        try:
            env = json.loads(Path(args.env).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            env = {}
    dry = args.dry_run == "1"
    device = "cpu dry-run (CUDA hidden, TRITON_INTERPRET=1)" if dry else (
        env.get("nvidia_smi") or env.get("gpu") or "no GPU found (torch.cuda.is_available() is False)")
    keys = key_numbers(out, Path(args.run_dir))
    trained = [k for k in keys.get("pipeline", []) if k.startswith("trained on:")]
    if not dry and env.get("cuda_available") and trained and "cuda" not in trained[0]:
        # the point of the step is training on CUDA: a silent fallback to the CPU must not pass for it
        keys["pipeline"].append("WARNING: torch sees CUDA but the micro run did not train on it")
    doc = {"device": device, "dry_run": dry, "env": env, "budget_s": int(args.budget_s),
           "seconds": int(args.seconds), "steps": rows, "key_numbers": keys}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    bar = "=" * 78
    print(f"\n{bar}\npplaw gpu_check summary   {env.get('date', time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}")
    print(f"device: {device}")
    print(f"python {env.get('python', '?')}; torch {env.get('torch', '?')} (CUDA build {env.get('cuda_build')}); "
          f"triton {env.get('triton', '?')}; transformers {env.get('transformers', '?')}; lm_eval {env.get('lm_eval', '?')}")
    print(f"total {args.seconds}s of a {args.budget_s}s budget; outputs: {out}\n")
    print(f"{'step':<11} {'status':<8} {'rc':>4} {'s':>5}  note")
    for r in rows:
        print(f"{r.get('step', ''):<11} {r.get('status', ''):<8} {r.get('rc', ''):>4} {r.get('seconds', ''):>5}  "
              f"{r.get('note', '')[:60]}")
    for step, vals in keys.items():
        print(f"\n{step}:")
        for v in vals[:8]:
            print(f"  {v[:110]}")
    print(bar)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["missing", "requirements", "info", "summary"])
    ap.add_argument("--out")
    ap.add_argument("--env")
    ap.add_argument("--dry-run", default="0")
    ap.add_argument("--run-dir", default="")
    ap.add_argument("--budget-s", default="0")
    ap.add_argument("--seconds", default="0")
    args = ap.parse_args(argv)
    if args.what == "missing":
        print(" ".join(missing()))
    elif args.what == "requirements":
        gone = set(missing())
        print(" ".join(r for r in _requirements() if _dist(r) in gone))
    elif args.what == "info":
        print(json.dumps(info(), indent=1))
    else:
        if not args.out:
            ap.error("summary needs --out DIR")
        return summary(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

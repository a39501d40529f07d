"""Wheels for a GPU machine that cannot reach a package index (gpu_check.sh's setup installs them from .whl/).

    python benchmarks/gpu_check_wheels.py --have have.txt            # list what would be fetched
    python benchmarks/gpu_check_wheels.py --have have.txt --fetch    # download / build them into .whl/

``have.txt``: the distributions the GPU machine already holds, one name a line (``python3 -m pip list
--format=freeze`` there, or its image's package list). The rest of the project's dependency closure, as this
environment resolved it (so at the versions tested here), is fetched as wheels for ``--python-version`` on
x86-64 Linux; pure-Python packages published only as source (rouge-score, sqlitedict, word2number) are built
into wheels here. Run it where pip reaches an index; carry ``.whl`` (and ``python/pplaw/_core.abi3.so``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_env import _dist, _requirements  # noqa: E402

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_ok(req: str, py: str) -> bool:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # without packaging: keep every requirement (fetching one too many is harmless)
        return "extra ==" not in req
    r = Requirement(req)
    env = {"python_version": py, "python_full_version": py + ".0", "sys_platform": "linux", "platform_system": "Linux",
           "platform_machine": "x86_64", "implementation_name": "cpython", "os_name": "posix", "extra": ""}
    return r.marker is None or r.marker.evaluate(env)


def closure(have: set[str], py: str) -> dict[str, str]:
    """name -> version here, of every dependency the machine lacks (what this environment resolved)."""
    todo = [_dist(r) for r in _requirements()]
    out: dict[str, str] = {}
    while todo:
        name = norm(todo.pop())
        if name in out or name in have:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(f"gpu_check_wheels: {name} is a dependency but not installed here: run it in the "
                             "project's environment (.venv)") from None
        out[name] = dist.version
        todo += [_dist(r) for r in dist.requires or [] if _marker_ok(r, py)]
    return out


def fetch(pins: dict[str, str], dest: Path, py: str) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, ver in sorted(pins.items()):
        plat = [a for p in PLATFORMS for a in ("--platform", p)]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               py, "--implementation", "cp", *plat, "-d", str(dest), f"{name}=={ver}"]
        if subprocess.run(cmd).returncode != 0:  # published as source only: build a wheel here (pure Python)
            cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), f"{name}=={ver}"]
            if subprocess.run(cmd).returncode != 0:
                failed.append(f"{name}=={ver}")
    size = sum(p.stat().st_size for p in dest.glob("*.whl")) / 2**20
    print(f"{dest}: {len(list(dest.glob('*.whl')))} wheels, {size:.1f} MiB" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--have", required=True, help="file: the GPU machine's installed distributions, one a line")
    ap.add_argument("--dest", default=".whl")
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    ap.add_argument("--fetch", action="store_true", help="download/build the wheels (else only list them)")
    args = ap.parse_args(argv)
    path = Path(args.have)
    if not path.is_file():
        ap.error(f"--have {path}: no such file (expected one distribution name a line)")
    have = {norm(re.split(r"[=<> ]", line.strip(), maxsplit=1)[0]) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    pins = closure(have, args.python_version)
    for name, ver in sorted(pins.items()):
        print(f"{name}=={ver}")
    return fetch(pins, Path(args.dest), args.python_version) if args.fetch else 0


if __name__ == "__main__":
    sys.exit(main())

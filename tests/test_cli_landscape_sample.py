"""`pplaw landscape` and `pplaw sample`: round trip on Parquet/JSONL files and directories, the outputs,
YAML configs, and one-line errors. Also once through the installed `pplaw` script in a subprocess."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pplaw._core", reason="the Rust extension is not built (run `make build`)")

from pplaw import Landscape  # noqa: E402
from pplaw.cli.main import main  # noqa: E402


def scored_table(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({
        "chunk_id": (rng.permutation(n) * 5 + 2).astype(np.uint64),
        "ppl": np.exp(rng.normal(2.4, 0.7, n)),
        "n_scored": rng.integers(100, 512, n).astype(np.int32),
        "nll_sum": rng.random(n),
    })


@pytest.fixture()
def scored(tmp_path):
    table = scored_table()
    path = tmp_path / "scored.parquet"
    pq.write_table(table, path, row_group_size=1000)
    return path, table


def test_landscape_then_sample_round_trip(tmp_path, scored, capsys):
    path, table = scored
    out = tmp_path / "land"
    assert main(["landscape", str(path), "--bins", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4,000 chunks" in printed and "mean" in printed and "wrote" in printed
    for name in ("landscape.json", "bins.parquet", "bins.csv", "landscape.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "landscape.png").read_bytes()[:4] == b"\x89PNG"
    land = Landscape.load(out / "landscape.json")
    ref = Landscape.from_arrow(table, n_bins=20)
    np.testing.assert_array_equal(land.quantiles, ref.quantiles)
    bins = pq.read_table(out / "bins.parquet")
    assert bins.num_rows == 20 and bins.equals(ref.bins)
    assert (out / "bins.csv").read_text().splitlines()[0].startswith('"bin","ppl_lo"')

    # sample to a target inside the landscape's range
    target_mean, target_std = land.mean * 0.95, land.std * 0.8
    sel = tmp_path / "subset.parquet"
    assert main(["sample", str(path), "--token-budget", "200000", "--target-mean", str(target_mean),
                 "--target-std", str(target_std), "--seed", "3", "--out", str(sel)]) == 0
    printed = capsys.readouterr().out
    assert "target:" in printed and "subset.json" in printed
    chosen = pq.read_table(sel)
    assert chosen.column_names == ["row", "chunk_id", "ppl", "n_scored"]
    rows = chosen.column("row").to_numpy()
    np.testing.assert_array_equal(chosen.column("chunk_id").to_numpy(), table.column("chunk_id").to_numpy()[rows])
    report = json.loads(sel.with_suffix(".json").read_text())
    got = report["achieved"]["ppl"]
    assert report["method"] == "target" and report["request"]["seed"] == 3
    assert got["tokens"] >= 200000 and got["count"] == len(rows)
    assert abs(got["mean"] / target_mean - 1) <= 0.01 and abs(got["std"] / target_std - 1) <= 0.02
    assert got["tokens"] == int(chosen.column("n_scored").to_numpy().sum())

    # DOS from a YAML config, with the CLI overriding one key
    cfg = tmp_path / "dos.yaml"
    cfg.write_text(f"dos: true\ntarget_mean: {target_mean}\ntarget_std: {target_std}\ntoken_budget: 1000\n")
    dos = tmp_path / "dos.parquet"
    assert main(["sample", str(path), "--config", str(cfg), "--token-budget", "150000", "--out", str(dos)]) == 0
    report = json.loads(dos.with_suffix(".json").read_text())
    assert report["method"] == "dos" and report["request"]["token_budget"] == 150000
    assert not list(tmp_path.glob(".*.tmp"))


def test_directory_of_mixed_files(tmp_path):
    table = scored_table(3000, seed=1)
    d = tmp_path / "shards"
    d.mkdir()
    pq.write_table(table.slice(0, 1000), d / "part-000.parquet")
    pq.write_table(table.slice(1000, 1200), d / "part-001.parquet")
    with open(d / "part-002.jsonl", "w") as f:
        for row in table.slice(2200).to_pylist():
            f.write(json.dumps(row) + "\n")
    (d / "README.txt").write_text("ignored")
    out = tmp_path / "land"
    assert main(["landscape", "--input", str(d), "--out", str(out), "--bins", "10", "--no-plot"]) == 0
    land = Landscape.load(out / "landscape.json")
    ref = Landscape.from_arrow(table, n_bins=10)
    # a directory is read shard by shard: grid-resolution edges (--in-memory: the exact ones)
    assert not land.exact and land.n_chunks == 3000 and land.n_tokens == ref.n_tokens
    np.testing.assert_allclose(land.quantiles, ref.quantiles, rtol=land.grid_resolution["quantile_rel_error"])
    assert main(["landscape", "--input", str(d), "--out", str(out), "--bins", "10", "--no-plot", "--in-memory"]) == 0
    np.testing.assert_array_equal(Landscape.load(out / "landscape.json").quantiles, ref.quantiles)
    assert not (out / "landscape.png").exists()
    sel = tmp_path / "s.parquet"
    assert main(["sample", str(d), "--token-budget", "50000", "--out", str(sel)]) == 0
    chosen = pq.read_table(sel)
    assert {"row", "chunk_id", "file", "file_row"} <= set(chosen.column_names)
    files = chosen.column("file").to_pylist()
    file_rows = chosen.column("file_row").to_numpy()
    rows = chosen.column("row").to_numpy()
    starts = {"part-000.parquet": 0, "part-001.parquet": 1000, "part-002.jsonl": 2200}
    assert all(starts[Path(f).name] + r == g for f, r, g in zip(files, file_rows, rows))
    assert json.loads(sel.with_suffix(".json").read_text())["method"] == "random"
    # the streaming default selects the rows the in-memory path selects
    sel2 = tmp_path / "s2.parquet"
    assert main(["sample", str(d), "--token-budget", "50000", "--out", str(sel2), "--in-memory"]) == 0
    assert pq.read_table(sel2).equals(chosen)


@pytest.mark.parametrize(
    "argv,match",
    [
        (["landscape", "{missing}", "--out", "{tmp}/o"], "does not exist"),
        (["landscape", "{scored}", "--out", "{tmp}/o", "--ppl-column", "perplexity"],
         "column 'perplexity' not found in .*scored.parquet.*available columns: 'chunk_id', 'ppl'"),
        (["landscape", "{scored}"], "--out is required"),
        (["landscape", "{scored}", "--out", "{tmp}/o", "--bins", "0"], "--bins must be >= 1"),
        (["sample", "{scored}", "--out", "{tmp}/s.parquet"], "--token-budget is required"),
        (["sample", "{scored}", "--out", "{tmp}/s.parquet", "--token-budget", "10", "--dos",
          "--target-mean", "5"], "--dos needs both"),
        (["sample", "{scored}", "--out", "{tmp}/s.csv", "--token-budget", "10"], "must be a .parquet file"),
        (["sample", "{scored}", "--out", "{tmp}/s.parquet", "--token-budget", "999999999999"], "token"),
        (["sample", "{scored}", "--out", "{tmp}/s.parquet", "--token-budget", "1000", "--target-mean", "1e6",
          "--target-std", "1"], "range"),
        (["sample", "{scored}", "--out", "{tmp}/s.parquet", "--token-budget", "1000",
          "--quantile-window", "0.5"], "two numbers"),
        (["sample", "{scored}", "--out", "{tmp}/s.parquet", "--token-budget", "1000",
          "--ppl-window", "9", "3"], "ppl_window: lo must be < hi"),
        (["landscape", "{scored}", "--out", "{tmp}/o", "--config", "{tmp}/bad.yaml"], "unknown key"),
    ],
)
def test_errors_are_one_readable_line(tmp_path, scored, capsys, argv, match):
    (tmp_path / "bad.yaml").write_text("binz: 3\n")
    fill = {"missing": str(tmp_path / "nope.parquet"), "scored": str(scored[0]), "tmp": str(tmp_path)}
    rc = main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"pplaw {argv[0]}: error:")
    import re

    assert re.search(match, err), err


def test_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    assert main(["landscape", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["landscape", str(empty), "--out", str(tmp_path / "o")]) == 1
    assert "holds no Parquet or JSONL files" in capsys.readouterr().err
    nan = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"ppl": [1.0, float("nan")], "n_scored": [3, 3]}), nan)
    assert main(["landscape", str(nan), "--out", str(tmp_path / "o")]) == 1
    assert "row 1" in capsys.readouterr().err


def _pplaw_command() -> list[str]:
    script = Path(sys.executable).parent / "pplaw"
    if script.exists():
        return [str(script)]
    found = shutil.which("pplaw")
    if found is None:
        pytest.skip("the `pplaw` console script is not installed (pip install -e .)")
    return [found]


def test_installed_script_round_trip(tmp_path, scored):
    path, _ = scored
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "land"
    res = subprocess.run([*_pplaw_command(), "landscape", str(path), "--out", str(out), "--bins", "8"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (out / "landscape.png").exists() and "chunks" in res.stdout
    sel = tmp_path / "sel.parquet"
    res = subprocess.run([*_pplaw_command(), "sample", str(path), "--token-budget", "30000", "--out", str(sel)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert pq.read_table(sel).num_rows > 0
    res = subprocess.run([*_pplaw_command(), "sample", str(path), "--token-budget", "-3", "--out", str(sel)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1 and "token_budget" in res.stderr and "Traceback" not in res.stderr

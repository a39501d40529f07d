"""`pplaw score`: Parquet shards written atomically, equal to the library's numbers, resumable, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pplaw.cli import main as cli
from pplaw.score import job as score_job  # the job behind `pplaw score`
from pplaw.score.scorer import PerplexityScorer

from ._tiny import synthetic_corpus


@pytest.fixture()
def corpus_jsonl(tmp_path):
    path = tmp_path / "corpus.jsonl"
    docs = synthetic_corpus(30, seed=5)
    docs[3] = "   "  # dropped and counted
    path.write_text("".join(json.dumps({"text": d, "source": "synthetic"}) + "\n" for d in docs), encoding="utf-8")
    return path


def _run(*args) -> int:
    return cli.main(["score", *map(str, args)])


def _read(out):
    files = sorted(out.glob("scores-*.parquet"))
    return pq.read_table(files).to_pydict() if files else {}


def test_score_writes_shards_equal_to_library(tmp_path, corpus_jsonl, llama_path, capsys):
    out = tmp_path / "out"
    assert _run("--model", llama_path, "--data", corpus_jsonl, "--chunk-tokens", 32, "--out", out,
                "--shard-docs", 8) == 0
    shards = sorted(p.name for p in out.glob("scores-*.parquet"))
    assert shards == [f"scores-{k:05d}-of-00004.parquet" for k in range(4)]
    assert not list(out.glob(".*partial"))
    table = _read(out)
    assert set(table) == {"chunk_id", "doc_id", "chunk_index", "n_tokens", "nll_sum", "n_scored", "ppl", "input_ids"}
    assert 3 not in table["doc_id"]
    expect = PerplexityScorer(str(llama_path)).score_token_ids(table["input_ids"])
    np.testing.assert_allclose(table["nll_sum"], expect["nll_sum"], rtol=1e-6)
    np.testing.assert_array_equal(table["n_scored"], np.asarray(table["n_tokens"]) - 1)
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["documents"] == 30 and summary["chunks"] == len(table["ppl"])
    assert summary["dropped"]["empty_docs"] == 1
    assert summary["corpus_ppl"] == pytest.approx(np.exp(np.sum(table["nll_sum"]) / np.sum(table["n_scored"])))
    printed = capsys.readouterr()
    assert "tok/s" in printed.err and "corpus PPL" in printed.out


def test_interrupted_run_resumes_and_matches_a_clean_run(tmp_path, corpus_jsonl, llama_path, monkeypatch):
    args = ["--model", llama_path, "--data", corpus_jsonl, "--chunk-tokens", 32, "--shard-docs", 8]
    clean = tmp_path / "clean"
    assert _run(*args, "--out", clean) == 0

    real = score_job._score_shard
    calls = []

    def flaky(ds, start, stop, *rest):
        calls.append(start)
        if len(calls) == 3:  # killed while scoring the third shard
            raise KeyboardInterrupt
        return real(ds, start, stop, *rest)

    monkeypatch.setattr(score_job, "_score_shard", flaky)
    out = tmp_path / "out"
    assert _run(*args, "--out", out) == 130
    assert sorted(p.name for p in out.glob("scores-*.parquet")) == ["scores-00000-of-00004.parquet",
                                                                    "scores-00001-of-00004.parquet"]
    assert not list(out.glob(".*partial")) and not (out / "summary.yaml").exists()
    first = (out / "scores-00000-of-00004.parquet").stat().st_mtime_ns

    calls.clear()
    assert _run(*args, "--out", out) == 0
    assert calls == [16, 24]  # only the unfinished shards
    assert (out / "scores-00000-of-00004.parquet").stat().st_mtime_ns == first
    a, b = _read(clean), _read(out)
    assert a["chunk_id"] == b["chunk_id"]
    np.testing.assert_allclose(a["nll_sum"], b["nll_sum"], rtol=1e-9)
    assert yaml.safe_load((out / "summary.yaml").read_text()) == yaml.safe_load((clean / "summary.yaml").read_text())


def test_other_settings_in_same_out_are_refused(tmp_path, corpus_jsonl, llama_path, capsys):
    out = tmp_path / "out"
    base = ["--model", llama_path, "--data", corpus_jsonl, "--out", out, "--shard-docs", 100]
    assert _run(*base, "--chunk-tokens", 32) == 0
    assert _run(*base, "--chunk-tokens", 64) == 1
    assert "chunk_tokens differ" in capsys.readouterr().err
    assert _run(*base, "--chunk-tokens", 64, "--overwrite") == 0


def test_bad_inputs_give_clear_errors(tmp_path, corpus_jsonl, llama_path, capsys):
    out = tmp_path / "out"
    assert _run("--model", llama_path, "--data", corpus_jsonl, "--out", out, "--text-column", "body") == 1
    assert "column 'body' not found" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the patient was given aspirin\nthe fever \xff went down\n")
    assert _run("--model", llama_path, "--data", bad, "--out", tmp_path / "o2") == 1
    err = capsys.readouterr().err
    assert "bad.txt" in err and "not valid UTF-8" in err and "line 2" in err and "offset 40" in err
    assert _run("--model", llama_path, "--data", bad, "--out", tmp_path / "o3", "--chunk-tokens", 8,
                "--encoding-errors", "replace") == 0
    assert _run("--model", llama_path, "--data", tmp_path / "nope.jsonl", "--out", out) == 1
    assert "does not exist" in capsys.readouterr().err
    assert _run("--data", corpus_jsonl, "--out", out) == 1
    assert "--model is required" in capsys.readouterr().err


@pytest.mark.shared_data
def test_score_wikitext(tmp_path, shared_data, llama_path):
    out = tmp_path / "wt"
    assert _run("--model", llama_path, "--data", shared_data / "wikitext-2" / "valid.txt", "--out", out,
                "--chunk-tokens", 64, "--max-docs", 300, "--no-keep-input-ids") == 0
    table = _read(out)
    assert "input_ids" not in table and len(table["ppl"]) > 100
    assert np.all(np.isfinite(table["ppl"]))
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["documents"] == 300 and summary["dropped"]["empty_docs"] > 0


@pytest.fixture()
def small_disk(tmp_path):
    """A real 256 KiB filesystem (tmpfs, mounted as root): writes there hit a real ENOSPC. Skips, saying why,
    where it cannot be mounted (not root, no mount permission in a container)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root to mount a small tmpfs (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_disk_is_one_clear_error_and_the_run_resumes_after_space_is_freed(
        tmp_path, corpus_jsonl, llama_path, small_disk, capsys):
    """Issue 14: the disk fills up mid-run (a real ENOSPC, not a simulated one): the error is one line naming
    the problem, nothing half-written is left as a shard, and once space is freed the same command finishes
    with the same numbers as a run that never hit the limit."""
    args = ["--model", llama_path, "--data", corpus_jsonl, "--chunk-tokens", 32, "--shard-docs", 4]
    clean = tmp_path / "clean"
    assert _run(*args, "--out", clean) == 0
    shard = max(p.stat().st_size for p in clean.glob("scores-*.parquet"))
    out = small_disk / "out"
    filler = small_disk / "filler"
    # leave room for about two shards: the third write fails for real
    free = __import__("shutil").disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(free - int(2.5 * shard) - 8192, 0))
    capsys.readouterr()
    assert _run(*args, "--out", out) != 0
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err, err
    done = sorted(out.glob("scores-*.parquet"))
    for p in done:  # every shard that exists is whole (atomic writes): readable, not truncated
        pq.read_table(p)
    assert len(done) < len(list(clean.glob("scores-*.parquet")))
    filler.unlink()  # space freed: the same command resumes and finishes
    assert _run(*args, "--out", out) == 0
    assert _read(out) == _read(clean)
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".partial"))]

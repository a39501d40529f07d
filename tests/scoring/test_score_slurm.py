"""`pplaw score --slurm`: the shards scored as a job array (issue 13) equal a one-process run: with
submitit's local executor always, and on a real Slurm cluster when one answers (.ci/start_slurm.sh)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from pplaw.cli import main as cli

from ._tiny import synthetic_corpus

pytest.importorskip("submitit")


@pytest.mark.parametrize("cluster", ["local", "slurm"])
def test_score_as_a_job_array_equals_one_process(tmp_path, llama_path, cluster, capsys, slurm_why_not):
    if cluster == "slurm" and (why := slurm_why_not):
        pytest.skip(why)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in synthetic_corpus(30, seed=3)), encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"slurm": {"cluster": cluster, "poll_s": 1, "time_min": 10}}), encoding="utf-8")
    args = ["--model", str(llama_path), "--data", str(corpus), "--chunk-tokens", "32", "--shard-docs", "8"]
    assert cli.main(["score", *args, "--out", str(tmp_path / "one")]) == 0
    assert cli.main(["score", *args, "--out", str(tmp_path / "array"), "--slurm", str(recipe),
                     "--slurm_tasks", "2"]) == 0
    assert "submitted 2 job(s)" in capsys.readouterr().out
    one, arr = (sorted((tmp_path / d).glob("scores-*.parquet")) for d in ("one", "array"))
    assert [p.name for p in one] == [p.name for p in arr] and len(one) == 4
    for a, b in zip(one, arr):
        assert pq.read_table(a).to_pydict() == pq.read_table(b).to_pydict()
    assert yaml.safe_load((tmp_path / "one" / "summary.yaml").read_text()) == \
        yaml.safe_load((tmp_path / "array" / "summary.yaml").read_text())


def test_a_bad_slurm_file_names_the_key(tmp_path, llama_path):
    from pplaw.exceptions import ConfigError
    from pplaw.pipeline.slurm_executor import load_slurm

    bad = tmp_path / "bad.yaml"
    bad.write_text("slurm: {time_min: soon}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="slurm.time_min"):
        load_slurm(bad)
    (tmp_path / "none.yaml").write_text("train: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="`slurm:` section"):
        load_slurm(tmp_path / "none.yaml")

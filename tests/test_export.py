"""Publishing a selection: pplaw.export_subset, pplaw export RUN (a hand-made finished run), the Hub push."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import pplaw
from pplaw.exceptions import InvalidInputError, RunDirError
from pplaw.export import export_subset, size_category

datasets = pytest.importorskip("datasets")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "laws"))


def _chunks(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    tok = rng.integers(40, 400, n)
    return pa.table({"chunk_id": np.arange(n, dtype=np.int64) * 5 + 2, "doc_id": np.arange(n) // 3,
                     "input_ids": pa.array([list(range(int(t) % 7 + 1)) for t in tok], type=pa.list_(pa.int32())),
                     "n_scored": tok, "ppl": np.exp(rng.normal(2.5, 0.5, n))})


def _stage(run: Path, name: str, outputs: dict) -> Path:
    d = run / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "stage.json").write_text(json.dumps({"stage": name, "status": "done", "outputs": outputs}))
    return d


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A finished run as the stages leave it: score (2 shards), landscape, fit (a real fit.json), select."""
    from laws_testdata import perplexity_runs

    from pplaw.io import write_indices
    from pplaw.laws import PerplexityLaw
    from pplaw.pipeline.plan import stats_both

    run = tmp_path_factory.mktemp("run")
    table = _chunks()
    chunks = _stage(run, "score", {"chunks": "chunks", "summary": {}}) / "chunks"
    chunks.mkdir()
    pq.write_table(table.slice(0, 1800), chunks / "shard-00000.parquet")
    pq.write_table(table.slice(1800), chunks / "shard-00001.parquet")
    land = pplaw.Landscape.from_arrow(table, n_bins=20)
    _stage(run, "landscape", {"landscape": "landscape.json", "summary": land.summary})
    fit_dir = _stage(run, "fit", {
        "fit": "fit.json", "law": "PerplexityLaw",
        "optimum": {"mu": 12.0, "sigma": 5.0, "band": [0.35, 0.7], "selected": "law", "why": "the law's band wins"},
        "law_choice": {"chosen": "perplexity", "validated": True, "n_val": 4, "reason": "lowest held-out MAPE",
                       "table": [{"law": "perplexity", "holdout_mape": 1.25}]}})
    PerplexityLaw().fit(perplexity_runs(), target="loss", bootstrap=20, seed=0, progress=False).to_json(
        fit_dir / "fit.json")
    budget = 150_000
    subsets = []
    (run / "select" / "subsets").mkdir(parents=True)
    for seed in (0, 1):
        idx = pplaw.sample_subset(table, token_budget=budget, quantile_window=(0.35, 0.7), seed=seed,
                                  return_indices=True)
        write_indices(table, idx, run / "select" / "subsets" / f"dos_s{seed}.parquet")
        st = stats_both(table, np.asarray(idx))
        subsets.append({"method": "dos", "seed": seed, "indices": f"subsets/dos_s{seed}.parquet", **st,
                        "D": st["tokens"]})
    subsets.append({"method": "full", "seed": 0, "indices": None, "D": budget, "mu_ppl": 1.0, "sigma_ppl": 1.0})
    _stage(run, "select", {"subsets": subsets, "budget": budget})
    final = _stage(run, "final", {"runs": "runs.json"})
    (final / "runs.json").write_text(json.dumps([
        {"method": "dos", "seed": 0, "status": "ok", "domain_loss": 11.5},
        {"method": "dos", "seed": 1, "status": "ok", "domain_loss": 11.7},
        {"method": "dos", "seed": 2, "status": "failed", "domain_loss": None}]))
    (run / "recipe.json").write_text(json.dumps({
        "name": "fake", "model": {"base_model": "org/base-model"}, "corpus": {"domain_data": "org/pubmed-abstracts"},
        "fit": {"space": "ppl", "target": "domain_loss"}}))
    return run, table


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_export_run_writes_parquet_shards_and_a_hub_card(fake_run, tmp_path):
    run, table = fake_run
    out = pplaw.export_run(run, tmp_path / "pub", num_shards=2, command="pplaw export RUN --to pub")
    shards = sorted((out / "data").glob("train-*.parquet"))
    assert [s.name for s in shards] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    # the rows are those of the select stage's indices file, with every column of the scored chunks
    got = datasets.load_dataset("parquet", data_files=[str(s) for s in shards], split="train")
    want_rows = pq.read_table(run / "select" / "subsets" / "dos_s0.parquet").column("row").to_numpy()
    assert sorted(got["chunk_id"]) == sorted(table.column("chunk_id").to_numpy()[want_rows].tolist())
    assert set(got.column_names) == set(table.column_names)
    meta, body = _card(out)
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train",
                                                                          "path": "data/train-*.parquet"}]}]
    assert meta["size_categories"] == [size_category(len(got))]
    assert (size_category(999), size_category(1000), size_category(10**6)) == ("n<1K", "1K<n<10K", "1M<n<10M")
    assert meta["source_datasets"] == ["org/pubmed-abstracts"] and meta["base_model"] == "org/base-model"
    # the provenance: landscape, law and its held-out error, band, budget, forecast with interval, commands
    for text in ("3,000 chunks", "law: perplexity", "1.25% on 4 validation runs",
                 "quantiles 0.35 .. 0.7", "budget: 150,000 tokens", "confidence interval [", "; measured 11.6.",
                 "pplaw export RUN --to pub",
                 f"pplaw run {run / 'recipe.yaml'} --out {run}"):
        assert text in body, text
    prov = json.loads((out / "pplaw_provenance.json").read_text())
    fc = prov["forecast"]
    assert fc["lo"] <= fc["prediction"] <= fc["hi"] and prov["n_rows"] == len(got)
    assert prov["n_tokens"] == sum(got["n_scored"])


def test_export_run_as_a_datasets_folder_other_seed_and_replace(fake_run, tmp_path):
    run, _ = fake_run
    out = pplaw.export_run(run, tmp_path / "pub", format="dataset", seed=1)
    ds = datasets.load_from_disk(str(out))
    rows = pq.read_table(run / "select" / "subsets" / "dos_s1.parquet")
    assert sorted(ds["chunk_id"]) == sorted(rows.column("chunk_id").to_pylist())
    meta, _ = _card(out)
    assert meta["configs"][0]["data_files"][0]["path"] == "data-*.arrow"
    assert list(out.glob("data-*.arrow"))
    # an earlier export is replaced; nothing else is left beside it
    again = pplaw.export_run(run, tmp_path / "pub", seed=0)
    assert (again / "data").is_dir() and not list(again.glob("data-*.arrow"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pub"]


def test_export_refuses_what_it_cannot_do(fake_run, tmp_path):
    run, _ = fake_run
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="not a pplaw export"):
        pplaw.export_run(run, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(InvalidInputError, match="'random'.*dos \\(seed 0\\)"):
        pplaw.export_run(run, tmp_path / "x", method="random")
    with pytest.raises(InvalidInputError, match="every chunk"):
        pplaw.export_run(run, tmp_path / "x", method="full")
    with pytest.raises(InvalidInputError, match="no finished 'select' stage"):
        pplaw.export_run(tmp_path, tmp_path / "x")
    with pytest.raises(InvalidInputError, match="format"):
        pplaw.export_run(run, tmp_path / "x", format="csv")
    assert not (tmp_path / "x").exists()


def test_export_subset_of_a_view_writes_only_its_rows(tmp_path):
    ds = datasets.Dataset(_chunks(2000, seed=3))
    view = pplaw.select_dos(ds.shuffle(seed=1), token_budget=50_000, target_mean=12.0, target_std=5.0)
    out = export_subset(view, tmp_path / "v", provenance={"method": "dos", "source_dataset": "me/corpus",
                                                          "selection": {"filter": "5 <= ppl <= 40"}})
    back = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert sorted(back["chunk_id"]) == sorted(view["chunk_id"])
    _, body = _card(out)
    assert "filter: 5 <= ppl <= 40" in body and f"{len(view):,} chunks" in body


def test_push_with_the_hub_unreachable_fails_clearly_and_keeps_the_local_copy(fake_run, tmp_path):
    run, _ = fake_run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_fake",
           "PYTHONPATH": os.pathsep.join([str(REPO / "python"), os.environ.get("PYTHONPATH", "")])}
    to = tmp_path / "pub"
    proc = subprocess.run([sys.executable, "-m", "pplaw.cli.main", "export", str(run), "--to", str(to),
                           "--push-to-hub", "someone/medical-dos"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    err = proc.stderr
    assert "pplaw export: error: could not push the subset to the Hub repo 'someone/medical-dos'" in err
    assert "Nothing is lost" in err and str(to) in err and "Traceback" not in err
    assert (to / "README.md").is_file() and list((to / "data").glob("*.parquet"))
    with pytest.raises(InvalidInputError, match="user/name"):
        pplaw.export_run(run, tmp_path / "p2", push_to_hub="not-a-repo")
    assert not (tmp_path / "p2").exists()  # checked before anything is written


def test_pplaw_sample_exports_the_subset_with_a_card(tmp_path, capsys):
    from pplaw.cli.main import main

    table = _chunks(2500, seed=5).append_column("text", pa.array([f"doc {i}" for i in range(2500)]))
    scored = tmp_path / "scored"
    scored.mkdir()
    pq.write_table(table.slice(0, 1000), scored / "a.parquet")
    pq.write_table(table.slice(1000), scored / "b.parquet")
    argv = ["sample", str(scored), "--token-budget", "60000", "--quantile-window", "0.2", "0.6",
            "--target-mean", "11", "--target-std", "2", "--seed", "4", "--out", str(tmp_path / "s.parquet"),
            "--export", str(tmp_path / "pub")]
    assert main(argv) == 0
    assert "card:" in capsys.readouterr().out
    chosen = pq.read_table(tmp_path / "s.parquet")
    back = datasets.load_dataset("parquet", data_files=str(tmp_path / "pub" / "data" / "*.parquet"), split="train")
    assert sorted(back["chunk_id"]) == sorted(chosen.column("chunk_id").to_pylist())
    assert set(back.column_names) == set(table.column_names)  # every column of SCORED, the text too
    meta, body = _card(tmp_path / "pub")
    assert meta["source_datasets"] == [str(scored)]
    assert "token-weighted quantiles 0.2..0.6" in body and "budget: 60,000 tokens, seed 4" in body
    assert "pplaw sample " + str(scored) in body
    assert main(["sample", str(scored), "--token-budget", "60000", "--out", str(tmp_path / "t.parquet"),
                 "--export", str(tmp_path / "q"), "--export-format", "zip"]) == 1
    assert not (tmp_path / "t.parquet").exists()


def test_decode_text_adds_the_chunks_text_with_the_runs_tokenizer(fake_run, tmp_path):
    import shutil

    from pplaw.synth.base_model import train_tokenizer

    src, _ = fake_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    tok = train_tokenizer([f"the patient {i} was given dose {i * 3}" for i in range(200)], vocab_size=300)
    tok.save_pretrained(tmp_path / "tok")
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["model"]["tokenizer"] = str(tmp_path / "tok")
    (run / "recipe.json").write_text(json.dumps(recipe))
    out = pplaw.export_run(run, tmp_path / "pub", decode_text=True)
    got = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert list(got["text"]) == tok.batch_decode([list(x) for x in got["input_ids"]], skip_special_tokens=True)
    assert any(got["text"]) and "text" in json.loads((out / "pplaw_provenance.json").read_text())["columns"]


def test_push_reaches_the_hub_calls_with_the_subset_and_a_parquet_card(fake_run, tmp_path, monkeypatch):
    """Up to the call: Dataset.push_to_hub gets the exported rows, then the card (Parquet configs) follows."""
    import huggingface_hub

    from pplaw.exceptions import HubError
    from pplaw.export import push_export

    calls = []
    monkeypatch.setattr(datasets.Dataset, "push_to_hub",
                        lambda self, repo, **kw: calls.append(("data", repo, sorted(self["chunk_id"]))))
    monkeypatch.setattr(huggingface_hub.DatasetCard, "push_to_hub",
                        lambda self, repo, **kw: calls.append(("card", repo, self.data.to_dict())))
    run, _ = fake_run
    out = pplaw.export_run(run, tmp_path / "pub", format="dataset")
    assert push_export(out, "me/subset") == "me/subset"
    rows = pq.read_table(run / "select" / "subsets" / "dos_s0.parquet").column("chunk_id").to_pylist()
    assert calls[0] == ("data", "me/subset", sorted(rows))
    assert calls[1][0] == "card" and calls[1][2]["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"

    def refuse(self, repo, **kw):
        raise ConnectionError("Hub unreachable")

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", refuse)
    with pytest.raises(HubError, match="ConnectionError: Hub unreachable.*Nothing is lost"):
        push_export(out, "me/subset")
    assert len(datasets.load_from_disk(str(out))) == len(rows)  # the local copy is untouched

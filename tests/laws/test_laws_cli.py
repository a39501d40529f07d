"""``pplaw fit`` end to end: run records in, fit.json + summary + PNGs out; errors that name the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from laws_testdata import perplexity_runs

from pplaw.cli.fit import load_runs
from pplaw.cli.main import main
from pplaw.exceptions import SerializationError
from pplaw.laws import Fit

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """One nested JSON record per run, as a run directory holds them."""
    d = tmp_path_factory.mktemp("runs")
    for i, row in perplexity_runs(seed=7).iterrows():
        rec = {"run_id": row["run_id"], "config": {"regime": int(row["regime"]), "seed": 0},
               "subset": {"mu": row["mu"], "sigma": row["sigma"], "tokens": row["D"]},
               "eval": {"domain_loss": row["loss"], "general_loss": 2.5}}
        (d / f"run{i:03d}.json").write_text(json.dumps(rec))
    return d


def test_fit_command_on_run_records(runs_dir, tmp_path, capsys):
    out = tmp_path / "fit"
    rc = main(["fit", str(runs_dir), "--law", "perplexity", "--target", "domain_loss", "--bootstrap", "20",
               "--group", "config.regime", "--regime", "regime", "--holdout", "largest D", "--optimum_D", "1e7",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "mu='subset.mu'" in text and "D='subset.tokens'" in text  # dotted-suffix and alias matching
    assert "optimum in ppl space" in text and "validation (largest D)" in text
    names = sorted(p.name for p in out.iterdir())
    assert names == ["contour.png", "fit.json", "loss_vs_D.png", "predicted_vs_observed.png", "summary.txt"]
    for png in ("contour.png", "loss_vs_D.png", "predicted_vs_observed.png"):
        assert (out / png).read_bytes()[:8] == PNG
    fit = Fit.from_json(out / "fit.json")
    assert fit.n_boot == 20 and fit.data.group == "config.regime"
    opt = fit.extras["optimum"]
    assert opt["mu"] == pytest.approx(20, rel=0.05) and opt["sigma"] == pytest.approx(8, rel=0.05)
    assert fit.extras["validation"]["n_test"] == 20


def test_fit_command_on_a_csv_with_column_mapping(tmp_path, capsys, chin_synth):
    path = tmp_path / "runs.csv"
    chin_synth.rename(columns={"N": "n_params_total", "loss": "val_loss"}).to_csv(path, index=False)
    rc = main(["fit", str(path), "--law", "chinchilla", "--target", "val_loss", "--columns", "N=n_params_total",
               "--bootstrap", "0", "--plots", "false", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert "L = E + A/N^alpha + B/D^beta" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["fit.json", "summary.txt"]


def test_fit_command_errors_name_the_problem(runs_dir, tmp_path, capsys):
    rc = main(["fit", str(runs_dir), "--law", "chinchilla", "--target", "domain_loss", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "no column for variable 'N'" in err and "--columns N=" in err
    rc = main(["fit", str(runs_dir), "--target", "accuracy", "--out", str(tmp_path)])
    assert rc == 1 and "target column 'accuracy' not found" in capsys.readouterr().err
    rc = main(["fit", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert rc == 1 and "does not exist" in capsys.readouterr().err
    rc = main(["fit", str(runs_dir), "--law", "perplexity", "--law_options", "sigma=iqr", "--out", str(tmp_path)])
    assert rc == 1 and "sigma must be" in capsys.readouterr().err


def test_loader_layouts(tmp_path, runs_dir):
    flat = load_runs(runs_dir)
    assert {"subset.mu", "eval.domain_loss", "_source"} <= set(flat.columns) and len(flat) == 60
    jl = tmp_path / "runs.jsonl"
    jl.write_text("\n".join(p.read_text() for p in sorted(runs_dir.glob("*.json"))))
    assert np.allclose(load_runs(jl)["subset.mu"], flat["subset.mu"])
    pq = tmp_path / "runs.parquet"
    flat.to_parquet(pq)
    assert len(load_runs(pq)) == 60
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "r.json").write_text("{not json")
    with pytest.raises(SerializationError, match="r.json"):
        load_runs(bad)


def test_pplaw_run_directories_use_the_canonical_loader(tmp_path, capsys):
    runs = pytest.importorskip("pplaw.runs")
    df = perplexity_runs(seed=9)
    for i, row in df.iterrows():
        run_dir = tmp_path / "runs" / f"run{i:02d}"
        run_dir.mkdir(parents=True)
        rec = runs.new_record(f"run{i:02d}", run_dir, {"cpt": {}})
        rec.update(status="evaluated", subset={"mu": row["mu"], "sigma": row["sigma"], "space": "ppl"},
                   training={"tokens_domain": row["D"], "seed": 0}, eval={"domain": {"loss": row["loss"]}})
        runs.save_record(run_dir, rec)
    table = load_runs(tmp_path / "runs")
    assert {"mu", "sigma", "D", "domain_loss"} <= set(table.columns) and len(table) == 60
    rc = main(["fit", str(tmp_path / "runs"), "--bootstrap", "0", "--plots", "false", "--out", str(tmp_path / "o")])
    assert rc == 0 and "mu='mu', sigma='sigma', D='D'" in capsys.readouterr().out

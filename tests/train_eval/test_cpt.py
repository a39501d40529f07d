"""Training: loss falls on domain text, replay ratio in tokens, resume after an interruption, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import TrainerCallback

from pplaw import runs
from pplaw.train import cpt
from pplaw.train.evaluate import EvalConfig, heldout_loss, heldout_token_ids
from pplaw.exceptions import BudgetError, ConfigError, EmptyInputError, InvalidInputError, MissingColumnError


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_domain_loss_falls_and_record_is_complete(world, make_args, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(world["model"], dtype=torch.float32)
    ids = heldout_token_ids(str(world["domain_eval"]), tokenizer, chunk_tokens=64, max_chunks=30)
    base_loss = heldout_loss(base, tokenizer, ids)["loss"]

    cfg, ecfg, targs = make_args(tmp_path / "run", domain_eval_data=str(world["domain_eval"]),
                                 general_eval_data=str(world["general_eval"]), eval_max_chunks=30,
                                 budget_tokens=64 * 4 * 40)
    rec = cpt.train(cfg, ecfg, targs)
    assert rec["status"] == "evaluated"
    dom = rec["eval"]["domain"]
    assert dom["n_chunks"] == 30 and dom["n_tokens"] == sum(len(x) - 1 for x in ids)
    # ln(vocab) ~ 6 for the random model; 40 steps on this grammar take it far below.
    assert dom["loss"] < base_loss - 1.0, (base_loss, dom["loss"])
    assert rec["eval"]["general"]["loss"] > dom["loss"]
    tr = rec["training"]
    assert tr["steps"] == 40 and tr["global_step"] == 40
    assert tr["tokens_total"] == tr["tokens_domain"] == 40 * 4 * 64 == tr["num_input_tokens_seen"]
    assert rec["subset"]["R"] == 0 and rec["subset"]["R_actual"] == 0
    assert rec["model"]["n_params"] > 0 and rec["environment"]["versions"]["torch"] == torch.__version__.split("+")[0]
    assert set(runs.SECTIONS) <= set(rec)
    assert rec["config"]["cpt"]["domain_data"] == str(world["domain"])
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert not list((tmp_path / "run").glob("checkpoint-*"))  # cleaned after the final save
    assert (tmp_path / "run" / runs.CURVE_PNG).stat().st_size > 1000
    # The table has the run.
    df = runs.load_runs(tmp_path)
    assert df.loc[0, "domain_loss"] == pytest.approx(dom["loss"]) and df.loc[0, "D"] == tr["tokens_domain"]


def _id_rows(lo, hi, n_docs, length, seed):
    rng = np.random.default_rng(seed)
    return [{"input_ids": rng.integers(lo, hi, size=length).tolist()} for _ in range(n_docs)]


def test_replay_ratio_is_honoured_in_tokens(world, make_args, tmp_path):
    # Domain and general token ids come from disjoint ranges, so every token fed can be attributed.
    dom, gen = tmp_path / "dom.jsonl", tmp_path / "gen.jsonl"
    for path, rows in ((dom, _id_rows(10, 150, 100, 50, 0)), (gen, _id_rows(150, 300, 200, 70, 1))):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg, ecfg, targs = make_args(tmp_path / "run", domain_data=str(dom), general_data=str(gen), replay_ratio=0.25,
                                 budget_tokens=64 * 8 * 10 + 100, gradient_accumulation_steps=2)
    model, tok = cpt._load_model(cfg, targs)
    mix, subset = cpt.prepare(cfg, targs, tok)
    trainer = cpt.build_trainer(cfg, targs, model, tok, mix)
    n_dom = n_gen = n_batches = 0
    for batch in trainer.get_train_dataloader():
        ids, labels = batch["input_ids"], batch["labels"]
        assert ids.shape[1] == 64 and torch.equal(ids, labels)  # full rows, loss on every token
        n_dom += int(((ids >= 10) & (ids < 150)).sum())
        n_gen += int(((ids >= 150) & (ids < 300)).sum())
        n_batches += 1
    assert mix.steps == 10 and n_batches == 10 * 2  # budget // (64 tokens x 8 sequences); x grad. accumulation
    assert n_dom + n_gen == 64 * 4 * 2 * 10  # nothing else was fed (no padding, no EOS in id data)
    assert n_gen / (n_dom + n_gen) == pytest.approx(0.25, abs=1 / 80)  # R up to one sequence of 80
    assert (n_dom, n_gen) == (mix.tokens_domain, mix.tokens_general)
    assert subset["R_actual"] == pytest.approx(n_gen / (n_dom + n_gen))


class _Crash(TrainerCallback):
    """Simulates a kill: the process dies right after the first checkpoint is written."""

    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def test_interrupted_run_resumes_from_last_checkpoint(world, make_args, tmp_path):
    kw = dict(budget_tokens=64 * 4 * 10, save_steps=4, lr_scheduler_type="constant_with_warmup")
    cfg, ecfg, targs = make_args(tmp_path / "straight", **kw)
    cpt.train(cfg, ecfg, targs)

    run = tmp_path / "killed"
    cfg, ecfg, targs = make_args(run, **kw)
    with pytest.raises(KeyboardInterrupt):
        cpt.train(cfg, ecfg, targs, callbacks=[_Crash()])
    assert (run / "checkpoint-4").is_dir() and not (run / "model").exists()
    assert runs.read_record(run)["status"] == "training"
    with pytest.raises(EmptyInputError, match="no finished run records"):  # an unfinished run is not a row
        runs.load_runs(run)
    with pytest.raises(InvalidInputError, match="has not finished training"):
        cpt.evaluate_run(run, EvalConfig(domain_eval_data=str(world["domain_eval"])))

    cfg, ecfg, targs = make_args(run, **kw)
    rec = cpt.train(cfg, ecfg, targs)
    assert rec["status"] == "trained" and rec["training"]["resumed_from"].endswith("checkpoint-4")
    assert rec["training"]["global_step"] == 10
    # Same data order, RNG and optimizer state: the resumed run ends where the uninterrupted one did.
    a, b = _weights(tmp_path / "straight" / "model"), _weights(run / "model")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)

    # A finished run is not trained again.
    mtime = (run / "model" / "model.safetensors").stat().st_mtime_ns
    cfg, ecfg, targs = make_args(run, **kw)
    assert cpt.train(cfg, ecfg, targs)["status"] == "trained"
    assert (run / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    # ... and a changed recipe in the same directory is refused.
    cfg, ecfg, targs = make_args(run, **{**kw, "learning_rate": 1e-4})
    with pytest.raises(ConfigError, match="learning_rate"):
        cpt.train(cfg, ecfg, targs)


def test_subset_from_indices_file_and_stats(world, make_args, tmp_path):
    rows = [json.loads(x) for x in world["domain"].read_text().splitlines()]
    rng = np.random.default_rng(0)
    ppl = rng.uniform(5, 50, size=len(rows))
    data = tmp_path / "chunks.jsonl"
    data.write_text("".join(json.dumps({**r, "ppl": float(p), "n_scored": 100}) + "\n" for r, p in zip(rows, ppl, strict=True)))
    pick = np.arange(0, len(rows), 2)
    pq.write_table(pa.table({"index": pick}), tmp_path / "subset.parquet")
    cfg, ecfg, targs = make_args(tmp_path / "run", domain_data=str(data), domain_indices=str(tmp_path / "subset.parquet"))
    _, tok = cpt._load_model(cfg, targs)
    mix, subset = cpt.prepare(cfg, targs, tok)
    assert subset["n_chunks"] == len(pick)
    assert subset["mu"] == pytest.approx(ppl[pick].mean()) and subset["sigma"] == pytest.approx(ppl[pick].std())
    # one pass over the subset: its packed rows fill the steps (up to one global batch)
    assert mix.domain_rows_available - mix.n_domain_rows < mix.global_batch_size

    # What `pplaw sample` writes: `row` (positions), `chunk_id`, and the chunks' ppl/n_scored; the domain
    # data may lack ppl (then the stats come from the indices file) and be matched by chunk_id instead.
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({**r, "chunk_id": 1000 + i}) + "\n" for i, r in enumerate(rows)))
    sample = pa.table({"row": pa.array(pick, pa.uint64()), "chunk_id": pa.array(1000 + pick, pa.uint64()),
                       "ppl": ppl[pick], "n_scored": np.full(len(pick), 100)})
    pq.write_table(sample, tmp_path / "sample.parquet")
    pq.write_table(sample.drop(["row"]), tmp_path / "by_id.parquet")
    for name in ("sample.parquet", "by_id.parquet"):
        cfg, ecfg, targs = make_args(tmp_path / "run", domain_data=str(plain), domain_indices=str(tmp_path / name))
        mix2, subset2 = cpt.prepare(cfg, targs, tok)
        assert subset2["n_chunks"] == len(pick) and subset2["mu"] == pytest.approx(ppl[pick].mean())
        assert mix2.domain_rows_available == mix.domain_rows_available  # the same documents


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan")])
def test_replay_ratio_outside_unit_interval(world, make_args, tmp_path, ratio):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):  # refused when the arguments are parsed (issue 25)
        cfg, ecfg, targs = make_args(tmp_path / "run", replay_ratio=ratio, general_data=str(world["general"]))
        cpt.train(cfg, ecfg, targs)


def test_bad_subsets_and_budgets(world, make_args, tmp_path):
    def run(**kw):
        cfg, ecfg, targs = make_args(tmp_path / "run", **kw)
        try:
            cpt.train(cfg, ecfg, targs)
        finally:  # a run refused for bad input leaves no record behind
            assert not (tmp_path / "run" / runs.RECORD_NAME).exists()

    with pytest.raises(InvalidInputError, match="missing.jsonl"):
        run(domain_data=str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"index": pa.array([], pa.int64())}), empty)
    with pytest.raises(EmptyInputError, match="empty"):
        run(domain_indices=str(empty))
    pq.write_table(pa.table({"position": [1, 2]}), tmp_path / "nocol.parquet")
    with pytest.raises(MissingColumnError, match="index/row"):
        run(domain_indices=str(tmp_path / "nocol.parquet"))
    pq.write_table(pa.table({"index": [0, 10_000]}), tmp_path / "range.parquet")
    with pytest.raises(InvalidInputError, match="outside"):
        run(domain_indices=str(tmp_path / "range.parquet"))
    with pytest.raises(InvalidInputError, match="does not exist"):
        run(domain_indices=str(tmp_path / "nope.parquet"))
    with pytest.raises(BudgetError, match="smaller than one optimizer step"):
        run(budget_tokens=100)
    with pytest.raises(BudgetError, match="allow_repeat"):
        run(budget_tokens=64 * 4 * 10_000)
    with pytest.raises(ConfigError, match="general_data"):
        run(replay_ratio=0.2)
    with pytest.raises(ConfigError, match="budget"):
        run(max_steps=3)
    text_less = tmp_path / "ids.jsonl"
    text_less.write_text(json.dumps({"body": "no text column"}) + "\n")
    with pytest.raises(MissingColumnError, match="'text'"):
        run(domain_data=str(text_less))
    with pytest.raises(ConfigError, match="domain_data is required"):
        run(domain_data=None)


def test_unknown_recipe_key_is_an_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: x\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        cpt.parse_args(["--config", str(recipe)])
    # command line beats YAML beats defaults
    recipe.write_text("model_name_or_path: x\nlearning_rate: 0.1\nreplay_ratio: 0.3\n")
    cfg, _, targs = cpt.parse_args(["--config", str(recipe), "--learning_rate", "0.2", "--output_dir", str(tmp_path)])
    assert targs.learning_rate == 0.2 and cfg.replay_ratio == 0.3 and targs.max_length == 1024
    assert targs.packing and targs.packing_strategy == "wrapped" and targs.bf16 is False  # CPU: fp32

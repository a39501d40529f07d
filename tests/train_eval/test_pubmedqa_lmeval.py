"""The real benchmark: local PubMedQA (PQA-L test set from ../shared/data) through lm-eval.

- In-process (``pplaw.train.evaluate``): a tiny model CPT-trained on the exact evaluation prompts followed by
  their answers scores far above chance on a balanced subset, and an untrained one does not.
- The ``lm_eval`` command line runs the local task on a tiny model (the CI check of the lm-eval integration).
"""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from pplaw.train import cpt
from pplaw.train.evaluate import EvalConfig, run_benchmarks
from pplaw.tasks import render_local_tasks
from pplaw.tasks.pubmedqa import build_pubmedqa

PER_ANSWER = 8  # 8 yes + 8 no + 8 maybe: chance is 1/3 and answering one label always scores 1/3


@pytest.fixture(scope="module")
def pubmedqa_dir(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pubmedqa")
    build_pubmedqa(shared_data / "pubmedqa", out / "full")
    return out


def _prompt(row) -> str:
    # What lm-eval renders for pubmedqa(_local): see templates/_pubmedqa_local_yaml
    return "Abstract: " + "\n".join(row["CONTEXTS"]) + "\nQuestion: " + row["QUESTION"] + "\nAnswer:"


def test_model_trained_on_answers_beats_chance(pubmedqa_dir, tokenizer, build_model, make_args, tmp_path):
    rows = [json.loads(x) for x in (pubmedqa_dir / "full" / "pubmedqa" / "test.jsonl").read_text().splitlines()]
    pick = []
    for answer in ("yes", "no", "maybe"):
        pick += [r for r in rows if r["final_decision"] == answer][:PER_ANSWER]
    random.Random(0).shuffle(pick)
    data = tmp_path / "tasks"
    (data / "pubmedqa").mkdir(parents=True)
    (data / "pubmedqa" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pick))

    # A 64-position model sees the last 64 tokens of each prompt (lm-eval truncates from the left):
    # train on exactly those windows, ending with the answer, as token-id rows of max_length tokens.
    length = 64
    base = build_model(tokenizer, tmp_path / "base", hidden=64, max_positions=length)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(
        json.dumps({"input_ids": tokenizer(_prompt(r) + " " + r["final_decision"])["input_ids"][-length:]}) + "\n"
        for r in pick))
    ecfg_kw = dict(tasks=["pubmedqa"], task_source="local", task_data=str(data))
    before = run_benchmarks(str(base), None, EvalConfig(**ecfg_kw))["tasks"]["pubmedqa_local"]

    cfg, ecfg, targs = make_args(tmp_path / "run", model_name_or_path=str(base), domain_data=str(train),
                                 max_length=length, per_device_train_batch_size=8, budget_tokens=length * 8 * 300,
                                 allow_repeat=True, learning_rate=5e-3, lr_scheduler_type="constant_with_warmup",
                                 **ecfg_kw)
    rec = cpt.train(cfg, ecfg, targs)
    after = rec["benchmarks"]["tasks"]["pubmedqa_local"]
    assert after["n_samples"] == before["n_samples"] == 3 * PER_ANSWER
    # P(acc >= 0.6 | guessing) < 0.002 for 24 three-way questions
    assert after["acc"] >= 0.6 and after["acc"] > before["acc"], (before, after)
    assert rec["benchmarks"]["source"] == "local" and after["acc_stderr"] is not None


def test_lm_eval_command_line_runs_local_pubmedqa(pubmedqa_dir, world, tmp_path, child_env, venv_bin):
    inc = render_local_tasks(pubmedqa_dir / "full", tmp_path / "include")
    out = tmp_path / "results"
    cmd = [venv_bin("lm_eval"), "--model", "hf", "--model_args", f"pretrained={world['model']}",
           "--tasks", "pubmedqa_local", "--include_path", str(inc), "--limit", "6", "--device", "cpu",
           "--batch_size", "4", "--output_path", str(out)]
    proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = list(out.rglob("results*.json"))
    assert found, f"no results JSON under {out}: {proc.stdout[-2000:]}"
    res = json.loads(found[0].read_text())
    metrics = res["results"]["pubmedqa_local"]
    assert 0.0 <= metrics["acc,none"] <= 1.0 and "acc_norm,none" in metrics
    assert res["n-samples"]["pubmedqa_local"] == {"original": 500, "effective": 6}

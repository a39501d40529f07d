"""Benchmark suites and local lm-eval tasks: export layout, rendered YAMLs, prompts, bad names, missing files."""

from __future__ import annotations

import json

import datasets
import pytest

from pplaw import tasks
from pplaw.train.evaluate import EvalConfig, plan_benchmarks, run_benchmarks
from pplaw.exceptions import ConfigError, InvalidInputError, PplawError
from pplaw.tasks.export import export_suite, export_tasks

# One fake row per Hub dataset, in each dataset's own schema (what lm-eval's online tasks read).
FAKE_ROWS = {
    "openlifescienceai/medmcqa": {"question": "Which vitamin prevents scurvy?", "opa": "A vit", "opb": "B12",
                                  "opc": "C", "opd": "D", "cop": 2},
    "GBaker/MedQA-USMLE-4-options-hf": {"sent1": "A 5-year-old has a rash.", "ending0": "measles", "ending1": "flu",
                                        "ending2": "cold", "ending3": "mumps", "label": 0},
    "bigbio/pubmed_qa": {"QUESTION": "Does aspirin help?", "CONTEXTS": ["First part.", "Second part."],
                         "final_decision": "no"},
    "cais/mmlu": {"question": " What is the largest organ? ", "choices": ["skin", "liver", "lung", "heart"], "answer": 0},
    "haonan-li/cmmlu": {"Question": "人体最大的器官是？", "A": "皮肤", "B": "肝", "C": "肺", "D": "心", "Answer": "A"},
    "ceval/ceval-exam": {"question": "一加一等于几？", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "B"},
}


def fake_load(path, name=None, split=None):
    row = dict(FAKE_ROWS[path])
    return datasets.Dataset.from_list([row, row])


def test_builtin_suites():
    s = tasks.suites()
    assert s["medical"]["tasks"][:3] == ["medmcqa", "medqa_4options", "pubmedqa"] and len(s["medical"]["tasks"]) == 9
    assert s["general"]["tasks"] == ["mmlu", "cmmlu", "ceval-valid"]
    assert tasks.suite_members("medical", "local")[0] == "medmcqa_local"
    assert tasks.suite_members("general", "local") == ["mmlu_local", "cmmlu_local", "ceval-valid_local"]
    leaves, groups = tasks.catalog()
    assert len(groups["mmlu"]) == 57 and len(groups["cmmlu"]) == 67 and len(groups["ceval-valid"]) == 52
    assert tasks.suite_members("mine", "local", {"mine": ["pubmedqa", "my_own_task"]}) == ["pubmedqa_local", "my_own_task"]
    with pytest.raises(ConfigError, match="did you mean: medical"):
        tasks.suite_members("medicl", "online")


def test_export_render_and_prompts(tmp_path):
    files = export_suite("medical", tmp_path / "data", load=fake_load)
    files += export_tasks(["cmmlu_anatomy", "ceval-valid_accountant"], tmp_path / "data", load=fake_load)
    rel = sorted(str(f.relative_to(tmp_path / "data")) for f in files)
    assert "pubmedqa/test.jsonl" in rel and "medmcqa/validation.jsonl" in rel and "mmlu_anatomy/dev.jsonl" in rel
    assert "ceval-valid_accountant/val.jsonl" in rel and len(rel) == 3 + 6 * 2 + 2 * 2
    # a second export skips finished files; a failing download says which dataset
    def broken(*a, **k):
        raise ConnectionError("Hub unreachable")
    assert export_suite("medical", tmp_path / "data", load=broken) == files[:15]
    with pytest.raises(PplawError, match="openlifescienceai/medmcqa"):
        export_tasks(["medmcqa"], tmp_path / "other", load=broken)

    inc = tasks.render_local_tasks(tmp_path / "data", tmp_path / "inc")
    assert str(tmp_path) not in "".join(p.read_text() for p in tasks.TEMPLATES.iterdir())  # templates hold no paths
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(inc), include_defaults=False)
    names = ["medmcqa_local", "medqa_4options_local", "pubmedqa_local", "mmlu_anatomy_local", "cmmlu_anatomy_local",
             "ceval-valid_accountant_local"]
    loaded = tm.load(names)["tasks"]
    text = {n: loaded[n].doc_to_text(next(iter(loaded[n].eval_docs))) for n in names}
    target = {n: loaded[n].doc_to_target(next(iter(loaded[n].eval_docs))) for n in names}
    # the prompts of lm-eval's own online tasks (their python preprocessors / jinja templates)
    from lm_eval.tasks.medmcqa import utils_medmcqa
    from lm_eval.tasks.medqa import preprocess_medqa
    from lm_eval.tasks.pubmedqa import preprocess_pubmedqa

    assert text["medmcqa_local"] == utils_medmcqa.doc_to_text(FAKE_ROWS["openlifescienceai/medmcqa"])
    assert text["medqa_4options_local"] == preprocess_medqa.doc_to_text(FAKE_ROWS["GBaker/MedQA-USMLE-4-options-hf"])
    assert text["pubmedqa_local"] == preprocess_pubmedqa.doc_to_text(FAKE_ROWS["bigbio/pubmed_qa"])
    assert text["mmlu_anatomy_local"] == "What is the largest organ?\nA. skin\nB. liver\nC. lung\nD. heart\nAnswer:"
    assert text["cmmlu_anatomy_local"].endswith("D. 心\n答案：")
    assert target == {"medmcqa_local": 2, "medqa_4options_local": 0, "pubmedqa_local": "no", "mmlu_anatomy_local": 0,
                      "cmmlu_anatomy_local": 0, "ceval-valid_accountant_local": 1}
    assert loaded["mmlu_anatomy_local"].config.description.startswith("The following are multiple choice questions")


def test_medical_suite_runs_offline_with_suite_average(world, tmp_path):
    export_suite("medical", tmp_path / "data", load=fake_load)
    ecfg = EvalConfig(suites=["medical"], task_source="local", task_data=str(tmp_path / "data"), bench_limit=2,
                      bench_bootstrap_iters=0)
    out = run_benchmarks(str(world["model"]), None, ecfg)
    members = tasks.suite_members("medical", "local")
    assert out["suites"]["medical"]["tasks"] == members
    accs = [out["tasks"][m]["acc"] for m in members]
    assert all(a in (0.0, 0.5, 1.0) for a in accs)  # 2 identical docs per task
    assert out["suites"]["medical"]["avg"] == pytest.approx(sum(accs) / len(accs))
    assert all(out["tasks"][m]["n_samples"] == 2 for m in members)


def test_missing_local_file_and_data_dir(tmp_path, monkeypatch):
    export_tasks(["mmlu_anatomy"], tmp_path / "data", load=fake_load)
    ecfg = EvalConfig(suites=["general"], task_source="local", task_data=str(tmp_path / "data"))
    with pytest.raises(InvalidInputError, match=r"mmlu_abstract_algebra_local: data file .*test\.jsonl' is missing"):
        plan_benchmarks(ecfg, tmp_path / "work")
    ecfg = EvalConfig(tasks=["pubmedqa"], task_source="local", task_data=str(tmp_path / "data"))
    with pytest.raises(InvalidInputError, match="pplaw tasks pubmedqa"):
        plan_benchmarks(ecfg, tmp_path / "work")
    monkeypatch.delenv(tasks.DATA_ENV, raising=False)
    with pytest.raises(ConfigError, match=tasks.DATA_ENV):
        plan_benchmarks(EvalConfig(tasks=["pubmedqa"], task_source="local"), tmp_path / "work")
    with pytest.raises(InvalidInputError, match="does not exist"):
        plan_benchmarks(EvalConfig(tasks=["pubmedqa"], task_source="local", task_data=str(tmp_path / "no")), tmp_path)
    # the environment selects the source and the data
    monkeypatch.setenv(tasks.SOURCE_ENV, "local")
    monkeypatch.setenv(tasks.DATA_ENV, str(tmp_path / "data"))
    names, _, _ = plan_benchmarks(EvalConfig(tasks=["mmlu_anatomy"]), tmp_path / "work")
    assert names == ["mmlu_anatomy_local"]
    with pytest.raises(ConfigError, match="task_source"):
        plan_benchmarks(EvalConfig(tasks=["x"], task_source="offline"), tmp_path)


def test_unknown_task_name_suggests_close_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown benchmark task 'medmcqa_locall' \(did you mean: .*medmcqa"):
        plan_benchmarks(EvalConfig(tasks=["medmcqa_locall"], task_source="online"), tmp_path)
    with pytest.raises(ConfigError, match="suite_definitions"):
        plan_benchmarks(EvalConfig(suites=["x"], suite_definitions="{not json"), tmp_path)


def test_pubmedqa_builder(shared_data, tmp_path):
    from pplaw.tasks.pubmedqa import build_pubmedqa

    path = build_pubmedqa(shared_data / "pubmedqa", tmp_path)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    truth = json.loads((shared_data / "pubmedqa" / "test_ground_truth.json").read_text())
    assert len(rows) == 500 and {r["pubid"] for r in rows} == set(truth)
    assert all(r["final_decision"] == truth[r["pubid"]] for r in rows)
    assert [int(r["pubid"]) for r in rows] == sorted(int(r["pubid"]) for r in rows)
    assert (tmp_path / "pubmedqa" / "LICENSE").is_file()
    with pytest.raises(InvalidInputError, match="ori_pqal.json"):
        build_pubmedqa(tmp_path, tmp_path / "x")

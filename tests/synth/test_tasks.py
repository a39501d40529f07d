"""The multiple-choice benchmarks: answerable from the corpus, never contradicted, runnable in lm-eval."""

from __future__ import annotations

import json
import re

import pytest

from pplaw.synth import tasks as TK
from pplaw.synth import text
from pplaw.synth.io import read_jsonl


def _docs_by_kind(world) -> dict[str, list[str]]:
    kinds = {r["doc_id"]: r["kind"] for r in read_jsonl(world.domain_kinds)}
    out: dict[str, list[str]] = {}
    for r in read_jsonl(world.domain_corpus):
        out.setdefault(kinds[r["doc_id"]], []).append(r["text"])
    return out


def test_stems_are_prefixes_of_corpus_templates():
    for table, templates in ((TK.GENERAL_MC, text.GENERAL_TEMPLATES), (TK.LEARNABLE_MC, text.LEARNABLE_TEMPLATES),
                             (TK.HARD_MC, text.HARD_TEMPLATES)):
        for rel, (template, _, _) in table.items():
            assert any(t.startswith(template.rstrip(".")) for t in templates[rel]), rel


def test_questions_are_well_formed(tiny_world):
    for path in (tiny_world.domain_mcq, tiny_world.general_mcq):
        qs = read_jsonl(path)
        assert qs and len({q["id"] for q in qs}) == len(qs)
        for q in qs:
            options = [q[x] for x in "ABCD"]
            assert len(set(options)) == 4 and q["answer"] in "ABCD" and q["stem"] and q["question"].endswith("?")
        # answers are spread over the four positions
        assert len({q["answer"] for q in qs}) == 4


def test_domain_questions_cover_every_fact_of_the_knowledge_base(tiny_world, tiny_config):
    facts = json.loads(tiny_world.facts.read_text())["domain"]
    qs = read_jsonl(tiny_world.domain_mcq)
    by_id = {q["id"]: q for q in qs}
    assert sum(q["kind"] == "learnable" for q in qs) == 3 * tiny_config.n_drugs + tiny_config.n_diseases
    assert sum(q["kind"] == "hard" for q in qs) == 3 * tiny_config.n_hard_drugs + tiny_config.n_enzymes
    for drug, disease in facts["treats"].items():
        q = by_id[f"learnable-treats-{drug}"]
        assert q[q["answer"]] == disease
    for hard, dose in facts["dose"].items():
        q = by_id[f"hard-dose-{hard}"]
        assert q[q["answer"]] == dose


def _stated(sentences: list[str], text: str) -> bool:
    # a document may be cut inside a sentence: the sentence up to (not including) its final word is not
    # enough, but the whole sentence without the full stop is
    return any(sent.rstrip(".") in text for sent in sentences)


def test_every_fact_is_stated_in_its_kind_of_text(tiny_world):
    """The questions are answerable: the facts of the popular drugs are stated (in some paraphrase) in
    documents of their own kind, and no domain fact is ever stated in the general corpus. Drugs are named
    with Zipf popularity (fact_zipf), so tail drugs may be missing from a tiny world by design."""
    docs = _docs_by_kind(tiny_world)
    kb = text.DomainKB(**json.loads(tiny_world.facts.read_text())["domain"])
    general = tiny_world.general_corpus.read_text()
    assert kb.drug_weight == sorted(kb.drug_weight, reverse=True) and abs(sum(kb.drug_weight) - 1) < 1e-9

    def head(drugs, weights):  # the most popular half of the drugs
        return drugs[: max(1, len(drugs) // 2)] if weights else drugs

    for kind, facts, templates in (
        ("learnable", [f for d in head(kb.drugs, kb.drug_weight) for f in text.learnable_facts(kb, d)],
         text.LEARNABLE_TEMPLATES),
        ("hard", [f for h in head(kb.hard_drugs, kb.hard_weight) for f in text.hard_facts(kb, h)], text.HARD_TEMPLATES),
    ):
        corpus = "\n".join(docs[kind])
        stated = [_stated([t.format(**slots) for t in templates[rel]], corpus) for rel, slots in facts]
        # every popular learnable fact; hard facts recur less often by design (a few may be missing)
        assert sum(stated) / len(stated) >= (1.0 if kind == "learnable" else 0.8), kind
    for facts, templates in (([f for d in kb.drugs for f in text.learnable_facts(kb, d)], text.LEARNABLE_TEMPLATES),
                             ([f for h in kb.hard_drugs for f in text.hard_facts(kb, h)], text.HARD_TEMPLATES)):
        assert not any(_stated([t.format(**slots) for t in templates[rel]], general) for rel, slots in facts)


def test_zipf_popularity_shapes_mentions():
    """Documents name drug k in proportion to k**-fact_zipf: the head drug is named far more often than the
    tail, and fact_zipf=0 names every drug about equally often."""
    import random
    from collections import Counter

    for zipf, lo, hi in ((1.1, 8.0, None), (0.0, None, 1.6)):
        kb = text.make_domain_kb(0, 4, 20, 20, 4, set(), zipf=zipf)
        rng = random.Random(0)
        sample = " ".join(text.learnable_doc(kb, rng, 12) for _ in range(600))
        counts = Counter(w.strip(".,:") for w in sample.split())
        head, tail = counts[kb.drugs[0]], max(1, counts[kb.drugs[-1]])
        if lo is not None:
            assert head / tail >= lo, (head, tail)
        if hi is not None:
            assert head / tail <= hi, (head, tail)


def test_benchmark_asks_popular_drugs():
    kb = text.make_domain_kb(0, 4, 40, 40, 4, set(), zipf=1.1)
    drugs, hard = TK.asked_drugs(kb, 0, 10)
    assert len(drugs) == len(hard) == 10 and kb.drugs[0] in drugs and kb.hard_drugs[0] in hard
    assert TK.asked_drugs(kb, 0, 0) == (kb.drugs, kb.hard_drugs)
    qs = TK.domain_questions(kb, 0, 10)
    assert sum(q["kind"] == "learnable" for q in qs) == 3 * 10 + 4


def test_questions_are_never_contradicted(tiny_world):
    """Wherever a question's stem occurs in domain text, the next word is the question's answer."""
    docs = _docs_by_kind(tiny_world)
    # one document per line: a document cut after a stem must not borrow the next document's first word
    everything = "\n".join(sum(docs.values(), []) + [r["text"] for r in read_jsonl(tiny_world.domain_val)])
    seen = 0
    for q in read_jsonl(tiny_world.domain_mcq):
        for m in re.finditer(re.escape(q["stem"]) + r" ([^\s.,:]+)", everything):
            assert m.group(1) == q[q["answer"]], (q["id"], m.group(0))
            seen += 1
    assert seen > 0


def test_general_questions_are_stated_in_the_general_corpus(tiny_world):
    general = " ".join(r["text"] for r in read_jsonl(tiny_world.general_corpus))
    qs = read_jsonl(tiny_world.general_mcq)
    assert all(f"{q['stem']} {q[q['answer']]}" in general for q in qs)


@pytest.mark.slow
def test_lm_eval_task_matches_our_scorer(tiny_world):
    """The rendered lm-eval task runs offline and its acc equals our own log-likelihood scoring."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from pplaw.synth.base_model import load_base, mc_accuracy

    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={tiny_world.base_model_dir},add_bos_token=True,dtype=float32",
        tasks=["pplaw_synth_domain"], task_manager=TaskManager(include_path=str(tiny_world.tasks_dir)),
        device="cpu", batch_size=32,
    )
    acc = res["results"]["pplaw_synth_domain"]["acc,none"]
    model, tok = load_base(tiny_world.base_model_dir)
    assert acc == pytest.approx(mc_accuracy(model, tok, read_jsonl(tiny_world.domain_mcq)), abs=1e-9)

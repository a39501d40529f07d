"""Multiple-choice benchmarks of the synthetic world and their lm-eval local task YAMLs.

Each question is MedMCQA-style JSONL: ``question`` (natural wording, for people), ``stem`` (a cloze prefix
in the corpus's canonical wording, which is what a tiny model is scored on), options ``A``-``D``,
``answer`` (a letter), plus ``kind`` and ``relation`` for per-kind diagnostics.

The lm-eval task scores the four continuations ``" " + option`` after ``stem`` by log-likelihood
(``output_type: multiple_choice``; ``acc`` and ``acc_norm``), like the cloze form of ARC or MMLU.
"""

from __future__ import annotations

import random
from pathlib import Path

from pplaw.synth import text

# relation -> (template whose prefix before the answer slot is the stem, answer slot, question wording)
GENERAL_MC = {
    "home": ("{p} lives in {city}.", "city", "Where does {p} live?"),
    "job": ("{p} works as a {job}.", "job", "What is the job of {p}?"),
    "pet": ("{p} has a pet {pet}.", "pet", "Which pet does {p} have?"),
    "food": ("{p} likes to eat {food}.", "food", "What does {p} like to eat?"),
    "capital": ("the capital of {country} is {city}.", "city", "What is the capital of {country}?"),
}
LEARNABLE_MC = {
    "treats": ("{drug} is used to treat {disease}.", "disease", "Which disease is {drug} used to treat?"),
    "side_effect": ("{drug} can cause {symptom}.", "symptom", "Which side effect can {drug} cause?"),
    "form": ("{drug} is given as a {form}.", "form", "In which form is {drug} given?"),
    "organ": ("{disease} is a disease of the {organ}.", "organ", "Which organ does {disease} affect?"),
}
HARD_MC = {
    "enzyme": ("{hard} is cleared by {enzyme}.", "enzyme", "Which isoenzyme clears {hard}?"),
    "inhibitor": ("{enzyme} is blocked by {inhibitor}.", "inhibitor", "Which drug blocks the isoenzyme {enzyme}?"),
    "dose": ("the daily dose of {hard} is {dose} mg.", "dose", "What is the daily dose of {hard} in mg?"),
    "second_line": ("{hard} is second line for {disease} after {first}.", "disease",
                    "For which disease is {hard} second-line therapy?"),
}

# Each stem is the prefix of one of the corpus's own templates (checked by tests/synth).


def _question(rng: random.Random, qid: str, kind: str, relation: str, spec: tuple, slots: dict,
              pool: list[str]) -> dict:
    template, slot, wording = spec
    answer = slots[slot]
    stem = template.split("{" + slot + "}")[0].format(**slots).rstrip()
    options = [answer, *rng.sample(sorted(set(pool) - {answer}), 3)]
    rng.shuffle(options)
    q = {"id": qid, "kind": kind, "relation": relation, "question": wording.format(**slots), "stem": stem}
    q.update(zip("ABCD", options))
    q["answer"] = "ABCD"[options.index(answer)]
    return q


def general_questions(kb: text.GeneralKB, seed: int) -> list[dict]:
    """One question per general fact (people's four relations and each country's capital)."""
    rng = text.stream(seed, "general-mcq")
    pools = {"city": list(kb.city_country), "job": text.JOBS, "pet": text.PETS, "food": text.FOODS}
    out = []
    for p in kb.people:
        for rel, slots in text.general_facts(kb, p):
            spec = GENERAL_MC[rel]
            out.append(_question(rng, f"general-{rel}-{p}", "general", rel, spec, slots, pools[spec[1]]))
    for c in kb.countries:
        out.append(_question(rng, f"general-capital-{c}", "general", "capital", GENERAL_MC["capital"],
                             {"country": c, "city": kb.capital[c]}, list(kb.capital.values()) + list(kb.city_country)))
    return out


def asked_drugs(kb: text.DomainKB, seed: int, n: int) -> tuple[list[str], list[str]]:
    """The learnable and hard drugs the benchmark asks about: all of them (``n`` 0 or >= the count), else
    ``n`` of each drawn by popularity without replacement, kept in list order (a benchmark asks mostly about
    what text often talks about, and sometimes about the long tail)."""
    rng = text.stream(seed, "domain-mcq-drugs")
    picks = []
    for drugs, weights in ((kb.drugs, kb.drug_weight), (kb.hard_drugs, kb.hard_weight)):
        if n <= 0 or n >= len(drugs):
            picks.append(list(drugs))
        else:
            chosen = set(text.weighted_sample(rng, drugs, weights or [1.0] * len(drugs), n))
            picks.append([d for d in drugs if d in chosen])
    return picks[0], picks[1]


def domain_questions(kb: text.DomainKB, seed: int, n_drugs: int = 0) -> list[dict]:
    """One question per learnable fact and per hard fact (kinds ``learnable`` and ``hard``) of the drugs
    :func:`asked_drugs` picks, plus every disease's organ and every enzyme's inhibitor."""
    drugs, hard_drugs = asked_drugs(kb, seed, n_drugs)
    rng = text.stream(seed, "domain-mcq")
    out = []
    pools = {"disease": kb.diseases, "symptom": text.SYMPTOMS, "form": text.FORMS, "organ": list(text.ORGANS)}
    for drug in drugs:
        for rel, slots in text.learnable_facts(kb, drug):
            if rel != "organ":  # organ facts belong to diseases: asked once per disease below
                spec = LEARNABLE_MC[rel]
                out.append(_question(rng, f"learnable-{rel}-{drug}", "learnable", rel, spec, slots, pools[spec[1]]))
    for disease in kb.diseases:
        out.append(_question(rng, f"learnable-organ-{disease}", "learnable", "organ", LEARNABLE_MC["organ"],
                             {"disease": disease, "organ": kb.organ[disease]}, pools["organ"]))
    pools = {"enzyme": kb.enzymes, "dose": text.HARD_DOSES, "disease": kb.diseases}
    for hard in hard_drugs:
        for rel, slots in text.hard_facts(kb, hard):
            if rel != "inhibitor":  # inhibitor facts belong to enzymes: asked once per enzyme below
                spec = HARD_MC[rel]
                out.append(_question(rng, f"hard-{rel}-{hard}", "hard", rel, spec, slots, pools[spec[1]]))
    for enzyme in kb.enzymes:
        out.append(_question(rng, f"hard-inhibitor-{enzyme}", "hard", "inhibitor", HARD_MC["inhibitor"],
                             {"enzyme": enzyme, "inhibitor": kb.inhibitor[enzyme]}, kb.drugs))
    return out


TASK_TEMPLATE = """\
# lm-evaluation-harness local task, written by pplaw.synth for the world in {world_dir}.
# Cloze multiple choice: the four continuations " <option>" after the question stem are scored by
# log-likelihood. Use with: lm_eval --include_path {tasks_dir} --tasks {name} ...
# (pass add_bos_token=True in --model_args: the world's model was trained with <s> first).
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{stem}}}}"
doc_to_choice: "{{{{[A, B, C, D]}}}}"
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(answer)}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

GROUP_TEMPLATE = """\
group: pplaw_synth
task:
  - pplaw_synth_domain
  - pplaw_synth_general
aggregate_metric_list:
  - metric: acc
    weight_by_size: true
metadata:
  version: 1.0
"""

TASK_NAMES = {"domain": "pplaw_synth_domain", "general": "pplaw_synth_general"}


def render_tasks(tasks_dir: Path, world_dir: Path, data_files: dict[str, Path]) -> dict[str, Path]:
    """Write one lm-eval YAML per benchmark (absolute data paths: lm-eval resolves relative ones from the
    working directory, not from the YAML) plus a ``pplaw_synth`` group. Returns name -> YAML path."""
    tasks_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, name in TASK_NAMES.items():
        path = tasks_dir / f"{name}.yaml"
        data = Path(data_files[key]).resolve()
        _atomic_write(path, TASK_TEMPLATE.format(world_dir=world_dir, tasks_dir=tasks_dir, name=name,
                                                 data_file=_yaml_quote(str(data))))
        out[name] = path
    _atomic_write(tasks_dir / "pplaw_synth.yaml", GROUP_TEMPLATE)
    out["pplaw_synth"] = tasks_dir / "pplaw_synth.yaml"
    return out


def _yaml_quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _atomic_write(path: Path, content: str) -> None:
    from pplaw._atomic import atomic_write_text

    atomic_write_text(path, content)

"""Build the local PubMedQA task data from the original PQA-L release (no Hub needed).

The release (https://github.com/pubmedqa/pubmedqa, MIT licence) has ``ori_pqal.json`` (1,000 expert-labelled
questions keyed by PubMed id) and ``test_ground_truth.json`` (the 500 test ids -> yes/no/maybe). The test
set written here is exactly those 500 questions, sorted by PubMed id (``test_ground_truth.json`` lists them
grouped by answer, so its order would make ``--limit N`` smoke tests all-"yes"), with the field
names of bigbio's ``pubmed_qa_labeled_fold0_source`` (what lm-eval's online ``pubmedqa`` task reads), so the
local task ``pubmedqa_local`` and the online one see the same documents.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pplaw._atomic import atomic_write_lines
from pplaw.exceptions import EmptyInputError, InvalidInputError, SerializationError

FIELDS = ("QUESTION", "CONTEXTS", "LABELS", "MESHES", "YEAR", "reasoning_required_pred", "reasoning_free_pred",
          "final_decision", "LONG_ANSWER")
ANSWERS = ("yes", "no", "maybe")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InvalidInputError(f"PubMedQA release file {str(path)!r} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SerializationError(f"PubMedQA release file {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise SerializationError(f"PubMedQA release file {str(path)!r}: expected a JSON object keyed by PubMed id")
    return data


def load_pubmedqa_test(source: str | os.PathLike) -> list[dict]:
    """The 500 PQA-L test questions as rows (``pubid`` + the bigbio source fields)."""
    source = Path(source)
    if not source.is_dir():
        raise InvalidInputError(f"PubMedQA source {str(source)!r} is not a directory (expected the PQA-L release)")
    questions = _read_json(source / "ori_pqal.json")
    truth = _read_json(source / "test_ground_truth.json")
    if not truth:
        raise EmptyInputError(f"{str(source / 'test_ground_truth.json')!r} lists no test ids")
    rows = []
    for pubid, answer in sorted(truth.items(), key=lambda kv: (len(kv[0]), kv[0])):  # numeric id order
        if pubid not in questions:
            raise InvalidInputError(f"test id {pubid!r} of test_ground_truth.json is not in ori_pqal.json")
        q = questions[pubid]
        missing = [f for f in ("QUESTION", "CONTEXTS", "final_decision") if f not in q]
        if missing:
            raise InvalidInputError(f"ori_pqal.json entry {pubid!r} lacks field(s) {missing}")
        if answer not in ANSWERS or q["final_decision"] != answer:
            raise InvalidInputError(
                f"PubMedQA id {pubid!r}: ground truth {answer!r} and final_decision {q['final_decision']!r} disagree"
            )
        rows.append({"pubid": pubid, **{f: q.get(f) for f in FIELDS}})
    return rows


def build_pubmedqa(source: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/pubmedqa/test.jsonl`` (atomically) and the release's licence next to it."""
    rows = load_pubmedqa_test(source)
    target_dir = Path(out_dir) / "pubmedqa"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "test.jsonl"
    atomic_write_lines(target, rows)
    licence = Path(source) / "LICENSE"
    if licence.is_file():  # MIT: copies keep the notice
        shutil.copyfile(licence, target_dir / "LICENSE")
    return target


__all__ = ["build_pubmedqa", "load_pubmedqa_test"]

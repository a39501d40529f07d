"""Issue 14, items 4 and 5: repeated or null ids are refused; a scored directory is read from its summary."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pplaw.exceptions import InvalidInputError
from pplaw.io import read_scored, scored_files


def _shard(path, ids, seed=0):
    rng = np.random.default_rng(seed)
    pq.write_table(pa.table({"chunk_id": pa.array(ids, pa.uint64()), "ppl": rng.uniform(2, 9, len(ids)),
                             "n_scored": np.full(len(ids), 31, np.int32)}), path)


def _scored_dir(d, n_shards=2):
    d.mkdir()
    names = []
    for k in range(n_shards):
        name = f"scores-{k:05d}-of-{n_shards:05d}.parquet"
        _shard(d / name, list(range(10 * k, 10 * k + 10)), k)
        names.append(name)
    (d / "manifest.yaml").write_text(yaml.safe_dump({"scorer_fingerprint": "x"}))
    (d / "summary.yaml").write_text(yaml.safe_dump({"shards": names}))
    return d


def test_a_copied_shard_is_refused_naming_the_column(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    _shard(d / "a.parquet", [1, 2, 3])
    shutil.copy(d / "a.parquet", d / "a_copy.parquet")
    with pytest.raises(InvalidInputError, match=r"column 'chunk_id' has 3 repeated value\(s\)"):
        read_scored(d, ["ppl", "n_scored"], ["chunk_id"])


def test_null_chunk_ids_are_refused(tmp_path):
    p = tmp_path / "n.parquet"
    pq.write_table(pa.table({"chunk_id": pa.array([1, None], pa.uint64()), "ppl": [2.0, 3.0], "n_scored": [3, 3]}), p)
    with pytest.raises(InvalidInputError, match="column 'chunk_id' has 1 null"):
        read_scored(p, ["ppl", "n_scored"], ["chunk_id"])


@pytest.mark.parametrize("ids,match", [(["a", "b", "a"], "repeated"), (["a", None, "c"], "null")])
def test_repeated_or_null_document_ids_are_refused_before_scoring(tmp_path, ids, match):
    from pplaw.score.job import ScoreConfig, load_corpus

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"doc": i, "text": "some text"}) + "\n" for i in ids))
    cfg = ScoreConfig(model="unused", data=str(data), out=str(tmp_path / "out"), id_column="doc")
    with pytest.raises(InvalidInputError, match=f"column 'doc' has 1 {match}"):
        load_corpus(cfg)


def test_the_chunker_refuses_a_null_document_id():
    from pplaw.score.chunking import TextChunker

    class Tok:
        eos_token_id = 0

        def __call__(self, texts, **kw):
            return {"input_ids": [[1, 2, 3, 4] for _ in texts]}

    chunker = TextChunker(Tok(), 4, "text", id_column="doc")
    with pytest.raises(InvalidInputError, match="column 'doc' has a null document id"):
        chunker({"text": ["a b", "c d"], "doc": ["x", None]})


def test_a_scored_directory_is_read_from_its_summary_not_globbed(tmp_path):
    d = _scored_dir(tmp_path / "scored")
    want = read_scored(d, ["ppl", "n_scored"], ["chunk_id"])[0]
    # a stray copy, and the bins.parquet of `pplaw landscape D --out D`: ignored, with a warning
    shutil.copy(d / "scores-00000-of-00002.parquet", d / "scores-00000-of-00002 (copy).parquet")
    pq.write_table(pa.table({"bin": [0, 1], "ppl": [1.0, 2.0], "n_scored": [1, 1]}), d / "bins.parquet")
    with pytest.warns(UserWarning, match="ignoring 2 file"):
        table, files, _ = read_scored(d, ["ppl", "n_scored"], ["chunk_id"])
    assert [f.name for f in files] == ["scores-00000-of-00002.parquet", "scores-00001-of-00002.parquet"]
    assert table.equals(want)


def test_an_unfinished_or_damaged_scored_directory_is_named(tmp_path):
    d = _scored_dir(tmp_path / "scored")
    (d / "scores-00001-of-00002.parquet").unlink()
    with pytest.raises(InvalidInputError, match="scores-00001-of-00002.parquet.* is missing"):
        scored_files(d)
    (d / "summary.yaml").unlink()
    with pytest.raises(InvalidInputError, match="has not finished"):
        scored_files(d)


def test_a_ppl_column_below_one_is_refused(tmp_path):
    """Issue 14 item 10: PPL = exp(mean NLL) >= 1; values below 1 (a log-PPL or loss column) are refused with the
    column named; float round-off just under 1 passes."""
    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"ppl": [0.5, 2.0, 3.0], "n_scored": [3, 3, 3]}), p)
    with pytest.raises(InvalidInputError, match=r"column 'ppl' has 1 value\(s\) below 1 \(min 0.5\).*not a PPL"):
        read_scored(p, ["ppl", "n_scored"])
    pq.write_table(pa.table({"ppl": [1.0 - 1e-6, 2.0, 3.0], "n_scored": [3, 3, 3]}), p)
    table, _, _ = read_scored(p, ["ppl", "n_scored"])
    assert table.num_rows == 3


def test_results_honour_the_umask(tmp_path):
    """Issue 14 item 10: atomically written results get 0666 & ~umask, not mkstemp's 0600."""
    import os

    from pplaw._atomic import _FILE_MODE, atomic_write_json

    f = atomic_write_json(tmp_path / "summary.json", {"a": 1})
    assert f.stat().st_mode & 0o777 == _FILE_MODE
    mask = os.umask(0)
    os.umask(mask)
    assert _FILE_MODE == 0o666 & ~mask

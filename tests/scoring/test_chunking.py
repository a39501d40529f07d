"""chunk_texts: fixed-length chunks inside documents, stable ids, BOS per the tokenizer, counted drops."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

import pplaw
from pplaw.score.chunking import chunk_id
from pplaw.exceptions import InvalidInputError, MissingColumnError

from ._tiny import synthetic_corpus

# the one-time drop warning is asserted where it matters (pytest.warns); elsewhere it is expected noise
pytestmark = pytest.mark.filterwarnings("ignore:chunk_texts. dropped")


def _chunk(ds, chunker, **kw):
    return ds.map(chunker, batched=True, with_indices=True, remove_columns=ds.column_names, **kw)


@pytest.fixture(scope="module")
def corpus():
    return datasets.Dataset.from_dict({"text": synthetic_corpus(80, seed=1)})


@pytest.mark.parametrize("kind", ["bos", "plain"])
def test_chunks_cover_each_document_in_order(kind, tokenizers_, corpus):
    tok = tokenizers_[kind]
    chunker = pplaw.chunk_texts(tok, chunk_tokens=16, min_tail_tokens=2)
    chunks = _chunk(corpus, chunker)
    assert chunks.features["chunk_id"].dtype == "uint64"
    assert chunks.features["n_tokens"].dtype == "int32"
    bos = tok.bos_token_id
    for doc in range(len(corpus)):
        rows = chunks.filter(lambda r: r["doc_id"] == doc)
        ids = tok(corpus[doc]["text"], add_special_tokens=False)["input_ids"]
        pieces = rows["input_ids"]
        assert rows["chunk_index"] == list(range(len(pieces)))
        assert all(len(p) == n for p, n in zip(pieces, rows["n_tokens"]))
        assert all(len(p) == 16 for p in pieces[:-1]) and 2 <= len(pieces[-1]) <= 16
        if kind == "bos":  # every chunk starts with BOS; content is the document, never crossing it
            assert all(p[0] == bos for p in pieces)
            content = [t for p in pieces for t in p[1:]]
        else:
            assert not any(p[0] == bos for p in pieces)
            content = [t for p in pieces for t in p]
        tail = len(ids) - len(content)
        assert content == ids[: len(content)] and tail <= 1  # only a 1-token tail (< 2 tokens) is dropped
        if doc > 3:
            break


def test_short_tails_are_dropped_and_counted(tokenizers_, corpus):
    tok = tokenizers_["plain"]
    chunker = pplaw.chunk_texts(tok, chunk_tokens=16, min_tail_tokens=10)
    lengths = [len(x) for x in tok(list(corpus["text"]), add_special_tokens=False)["input_ids"]]
    with pytest.warns(UserWarning, match="later drops are counted"):
        chunks = chunker(corpus[:], list(range(len(corpus))))
    expect_chunks = sum(n // 16 + (n % 16 >= 10) for n in lengths)
    assert len(chunks["chunk_id"]) == expect_chunks == chunker.stats["chunks"]
    tails = [n % 16 for n in lengths if 0 < n % 16 < 10]
    short_docs = sum(1 for n in lengths if n < 10)
    assert chunker.stats["short_docs"] == short_docs
    assert chunker.stats["dropped_tails"] + short_docs == len(tails)
    assert chunker.stats["dropped_tail_tokens"] == sum(tails)
    assert chunker.stats["docs"] == len(corpus)


def test_chunk_ids_are_stable_and_unique(tokenizers_, corpus):
    tok = tokenizers_["bos"]
    a = _chunk(corpus, pplaw.chunk_texts(tok, 16), batch_size=7)
    b = _chunk(corpus, pplaw.chunk_texts(tok, 16), batch_size=1000)
    assert a["chunk_id"] == b["chunk_id"]
    assert len(set(a["chunk_id"])) == len(a)
    assert a[0]["chunk_id"] == chunk_id("pos=0", 0)
    # with an id column the ids survive a shuffle of the documents
    with_ids = corpus.add_column("doc", [f"pmid-{i}" for i in range(len(corpus))])
    chunker = pplaw.chunk_texts(tok, 16, id_column="doc")
    plain = {(r["doc_id"], r["chunk_index"]): r["chunk_id"] for r in _chunk(with_ids, chunker)}
    shuffled = {(r["doc_id"], r["chunk_index"]): r["chunk_id"]
                for r in _chunk(with_ids.shuffle(seed=0), pplaw.chunk_texts(tok, 16, id_column="doc"))}
    assert plain == shuffled


def test_bad_documents_are_dropped_and_counted(tokenizers_):
    tok = tokenizers_["bos"]
    chunker = pplaw.chunk_texts(tok, chunk_tokens=8, min_tail_tokens=2)
    texts = ["the patient was given aspirin", "", "   \n\t ", None, b"valid bytes: the fever",
             b"\xff\xfe broken bytes", "lone surrogate \udcff here", "a"]
    with pytest.warns(UserWarning, match="dropped 5 empty/whitespace/non-UTF-8"):
        out = chunker({"text": texts}, list(range(len(texts))))
    assert sorted(set(out["doc_id"].tolist())) == [0, 4, 7]  # "a" + BOS = 2 tokens: one predicted token
    assert chunker.stats["empty_docs"] == 3 and chunker.stats["non_utf8_docs"] == 2
    assert all(n >= 2 for n in out["n_tokens"])


def test_bad_arguments_and_columns(tokenizers_):
    tok = tokenizers_["bos"]
    with pytest.raises(MissingColumnError, match=r"text column 'text' not found; columns are \['body'\]"):
        pplaw.chunk_texts(tok)({"body": ["x"]}, [0])
    with pytest.raises(MissingColumnError, match="'doc'"):
        pplaw.chunk_texts(tok, id_column="doc")({"text": ["x"]}, [0])
    with pytest.raises(InvalidInputError, match="with_indices=True"):
        pplaw.chunk_texts(tok)({"text": ["the patient"]})
    with pytest.raises(InvalidInputError, match="must hold strings"):
        pplaw.chunk_texts(tok)({"text": [3]}, [0])
    with pytest.raises(InvalidInputError, match="chunk_tokens"):
        pplaw.chunk_texts(tok, chunk_tokens=1)
    with pytest.raises(InvalidInputError, match="min_tail_tokens"):
        pplaw.chunk_texts(tok, chunk_tokens=8, min_tail_tokens=9)


def test_fingerprint_ignores_counters(tokenizers_, corpus):
    from datasets.fingerprint import Hasher

    chunker = pplaw.chunk_texts(tokenizers_["bos"], 16)
    before = Hasher.hash(chunker)
    chunker(corpus[:10], list(range(10)))
    assert chunker.stats["docs"] == 10
    assert Hasher.hash(chunker) == before
    assert Hasher.hash(pplaw.chunk_texts(tokenizers_["bos"], 32)) != before


def test_chunks_score_end_to_end(tokenizers_, llama_path, corpus):
    chunks = _chunk(corpus.select(range(20)), pplaw.chunk_texts(tokenizers_["bos"], 32))
    scored = chunks.map(pplaw.score_perplexity(str(llama_path)), batched=True)
    assert scored.features["chunk_id"].dtype == "uint64" and scored["chunk_id"] == chunks["chunk_id"]
    assert np.all(np.isfinite(scored["ppl"])) and np.all(np.asarray(scored["ppl"]) > 1)
    np.testing.assert_array_equal(scored["n_scored"], np.asarray(scored["n_tokens"]) - 1)

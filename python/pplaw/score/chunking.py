"""Split a corpus into fixed-length token chunks: the unit that pplaw scores, bins and samples.

``chunk_texts(tokenizer, chunk_tokens=1024)`` returns a batched ``datasets`` map function::

    chunker = pplaw.chunk_texts(tokenizer, chunk_tokens=1024)
    chunks = ds.map(chunker, batched=True, with_indices=True, remove_columns=ds.column_names)

Each output row is one chunk with the columns

- ``chunk_id`` (uint64, < 2**63): a hash of (document id, chunk index), so it survives shuffles, re-runs and
  sharding. The document id is the value of ``id_column`` when given, else the document's position in
  the dataset (pass ``with_indices=True`` to ``ds.map`` so the chunker sees it).
- ``doc_id``: the ``id_column`` value (as given) or the position (int64).
- ``chunk_index`` (int32): 0, 1, ... within the document.
- ``input_ids`` (list of int32) and ``n_tokens`` (int32).

Chunks never cross a document boundary. A document is split into pieces of ``chunk_tokens`` tokens;
the last piece (the "tail") is kept when it has at least ``min_tail_tokens`` tokens, else it is dropped
and counted. Whether a BOS token starts a chunk follows the tokenizer: when the tokenizer prepends BOS
(Llama-style), *every* chunk starts with BOS (so ``chunk_tokens`` includes it and the first content
token of every chunk is predicted from BOS, as at a document start); GPT-2/Qwen-style tokenizers add
nothing. End-of-sequence tokens that a tokenizer may append are not added.

Bad input is dropped and counted, never scored: ``None``/empty/whitespace-only documents, documents
that give fewer than ``min_tail_tokens`` tokens (always at least 2: a chunk needs one predicted token),
and documents that are not valid UTF-8 (``bytes`` values that do not decode, or ``str`` values with
lone surrogates). The counts are in ``chunker.stats`` (per process) and the first drop warns once.
A missing text/id column raises :class:`~pplaw.exceptions.MissingColumnError`.
"""

from __future__ import annotations

import hashlib
import struct
import warnings
from collections import Counter
from typing import Any, Sequence

import numpy as np

from pplaw.exceptions import InvalidInputError, MissingColumnError

__all__ = ["chunk_texts", "TextChunker", "chunk_id"]


def chunk_id(doc_key: str, index: int) -> int:
    """The stable 64-bit id of chunk ``index`` of the document whose key is ``doc_key``.

    blake2b of a small canonical string: identical on every platform and Python version, so ids of
    one corpus agree across machines, shards and re-runs. The top bit is cleared: stored as uint64, but
    below 2**63 so that ``datasets`` (which round-trips batches through Python ints and infers int64)
    can re-write the column in later ``map`` calls.
    """
    digest = hashlib.blake2b(f"{doc_key}\x1f{index}".encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] & 0x7FFF_FFFF_FFFF_FFFF


def _bos_policy(tokenizer) -> int | None:
    """BOS id to start every chunk with, or None when the tokenizer adds no BOS of its own."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(with_special) > len(plain) and with_special[0] == bos and (not plain or plain[0] != bos):
        return int(bos)
    return None


class TextChunker:
    """The picklable batched map function returned by :func:`chunk_texts` (see the module docstring)."""

    def __init__(
        self,
        tokenizer,
        chunk_tokens: int = 1024,
        text_column: str = "text",
        *,
        id_column: str | None = None,
        min_tail_tokens: int | None = None,
        add_bos: bool | None = None,
        keep_columns: Sequence[str] = (),
    ):
        if tokenizer is None or not callable(tokenizer):
            raise InvalidInputError(f"chunk_texts: `tokenizer` must be a Hugging Face tokenizer, got {tokenizer!r}")
        if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 2:
            raise InvalidInputError(f"chunk_texts: `chunk_tokens` must be an int >= 2, got {chunk_tokens!r}")
        if min_tail_tokens is None:
            # a tail shorter than a quarter chunk has a noisy PPL that would skew the landscape's tails
            min_tail_tokens = max(2, chunk_tokens // 4)
        if isinstance(min_tail_tokens, bool) or not isinstance(min_tail_tokens, int):
            raise InvalidInputError(f"chunk_texts: `min_tail_tokens` must be an int, got {min_tail_tokens!r}")
        if not 2 <= min_tail_tokens <= chunk_tokens:
            raise InvalidInputError(
                f"chunk_texts: `min_tail_tokens` must be in [2, chunk_tokens={chunk_tokens}] (a chunk needs at "
                f"least one predicted token), got {min_tail_tokens}"
            )
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.text_column = text_column
        self.id_column = id_column
        self.min_tail_tokens = min_tail_tokens
        self.keep_columns = tuple(keep_columns)
        bos = _bos_policy(tokenizer) if add_bos is None else (tokenizer.bos_token_id if add_bos else None)
        if add_bos and bos is None:
            raise InvalidInputError("chunk_texts: add_bos=True but the tokenizer has no bos_token_id")
        self.bos_id: int | None = None if bos is None else int(bos)
        self.stats: Counter = Counter()
        self._warned = False
        from pplaw._fingerprint import register_datasets_hashing  # datasets must hash us without .stats

        register_datasets_hashing(type(self))

    # datasets' fingerprint hashes the function's pickle: keep the mutable counters out of it, else two
    # identical ds.map calls would get different fingerprints (see pplaw.score.scorer for the registration)
    def _fingerprint_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("stats", "_warned")}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["stats"] = Counter()
        state["_warned"] = False
        return state

    def _decode(self, value: Any, row: int) -> str | None:
        """The document text, or None when it must be dropped (counted)."""
        if value is None:
            self.stats["empty_docs"] += 1
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                self.stats["non_utf8_docs"] += 1
                return None
        elif isinstance(value, str):
            try:
                value.encode("utf-8")  # lone surrogates (e.g. from surrogateescape) are not UTF-8
            except UnicodeEncodeError:
                self.stats["non_utf8_docs"] += 1
                return None
        else:
            raise InvalidInputError(
                f"chunk_texts: column {self.text_column!r} must hold strings (or UTF-8 bytes), "
                f"row {row} of this batch holds {type(value).__name__}"
            )
        if not value.strip():
            self.stats["empty_docs"] += 1
            return None
        return value

    def __call__(self, batch: dict[str, list], indices: Sequence[int] | None = None) -> dict[str, Any]:
        if self.text_column not in batch:
            raise MissingColumnError(
                f"chunk_texts: text column {self.text_column!r} not found; columns are {sorted(batch)} "
                "(pass text_column=...)"
            )
        for col in ([self.id_column] if self.id_column else []) + list(self.keep_columns):
            if col not in batch:
                raise MissingColumnError(f"chunk_texts: column {col!r} not found; columns are {sorted(batch)}")
        texts = batch[self.text_column]
        n_docs = len(texts)
        if self.id_column:
            doc_ids = list(batch[self.id_column])
            if any(v is None for v in doc_ids):
                raise InvalidInputError(f"chunk_texts: column {self.id_column!r} has a null document id (row "
                                        f"{doc_ids.index(None)} of this batch); every document needs an id")
            doc_keys = [f"id={v}" for v in doc_ids]
        elif indices is not None:
            if len(indices) != n_docs:
                raise InvalidInputError(f"chunk_texts: got {len(indices)} indices for {n_docs} documents")
            doc_ids = [int(i) for i in indices]
            doc_keys = [f"pos={i}" for i in doc_ids]
        else:
            raise InvalidInputError(
                "chunk_texts: the stable chunk_id needs each document's id or position: pass "
                "`with_indices=True` to ds.map (position = id), or id_column='...'"
            )

        keep_rows, keep_texts = [], []
        for r, value in enumerate(texts):
            text = self._decode(value, r)
            if text is not None:
                keep_rows.append(r)
                keep_texts.append(text)
        self.stats["docs"] += n_docs

        # one fast-tokenizer call for the whole batch; BOS (if any) is added per chunk below
        encoded = (
            self.tokenizer(keep_texts, add_special_tokens=False, return_attention_mask=False, verbose=False)[
                "input_ids"
            ]
            if keep_texts
            else []
        )
        has_bos = self.bos_id is not None
        step = self.chunk_tokens - int(has_bos)  # content tokens per chunk
        out: dict[str, list] = {"chunk_id": [], "doc_id": [], "chunk_index": [], "input_ids": [], "n_tokens": []}
        kept: dict[str, list] = {c: [] for c in self.keep_columns}
        dropped_before = self.stats["short_docs"] + self.stats["dropped_tails"]
        for r, ids in zip(keep_rows, encoded):
            n_kept = 0
            for c, start in enumerate(range(0, len(ids), step)):
                piece = ids[start : start + step]
                n_tok = len(piece) + int(has_bos)
                if n_tok < self.min_tail_tokens:  # only the last piece can be short (min <= chunk_tokens)
                    self.stats["dropped_tail_tokens"] += len(piece)
                    self.stats["dropped_tails" if n_kept else "short_docs"] += 1
                    break
                arr = np.empty(n_tok, dtype=np.int32)
                if has_bos:
                    arr[0] = self.bos_id
                arr[int(has_bos) :] = piece
                out["chunk_id"].append(chunk_id(doc_keys[r], c))
                out["doc_id"].append(doc_ids[r])
                out["chunk_index"].append(c)
                out["input_ids"].append(arr)
                out["n_tokens"].append(n_tok)
                for col in self.keep_columns:
                    kept[col].append(batch[col][r])
                n_kept += 1
            if not ids:
                self.stats["empty_docs"] += 1
        self.stats["chunks"] += len(out["chunk_id"])
        self.stats["chunk_tokens"] += int(sum(out["n_tokens"]))
        self._maybe_warn(n_docs - len(keep_rows), self.stats["short_docs"] + self.stats["dropped_tails"] - dropped_before)

        result: dict[str, Any] = {
            "chunk_id": np.asarray(out["chunk_id"], dtype=np.uint64),
            "doc_id": out["doc_id"] if self.id_column else np.asarray(out["doc_id"], dtype=np.int64),
            "chunk_index": np.asarray(out["chunk_index"], dtype=np.int32),
            "input_ids": out["input_ids"],
            "n_tokens": np.asarray(out["n_tokens"], dtype=np.int32),
        }
        result.update(kept)
        return result

    def _maybe_warn(self, n_bad_docs: int, n_short: int) -> None:
        if self._warned or not (n_bad_docs or n_short):
            return
        self._warned = True
        warnings.warn(
            f"chunk_texts: dropped {n_bad_docs} empty/whitespace/non-UTF-8 document(s) and {n_short} piece(s) "
            f"shorter than min_tail_tokens={self.min_tail_tokens} in this batch; later drops are counted "
            "without warning in `chunker.stats`",
            stacklevel=3,
        )


def chunk_texts(
    tokenizer,
    chunk_tokens: int = 1024,
    text_column: str = "text",
    *,
    id_column: str | None = None,
    min_tail_tokens: int | None = None,
    add_bos: bool | None = None,
    keep_columns: Sequence[str] = (),
) -> TextChunker:
    """A batched ``datasets`` map function that tokenizes documents into chunks (see the module docstring).

    Args:
        tokenizer: a Hugging Face (fast) tokenizer; no pad token needed.
        chunk_tokens: tokens per chunk, BOS included when the tokenizer adds one.
        text_column: the column holding the documents (str, or UTF-8 bytes).
        id_column: a column with each document's id; default: its position (``with_indices=True``).
        min_tail_tokens: shortest tail kept (default ``max(2, chunk_tokens // 4)``); shorter ones are
            dropped and counted in ``.stats``.
        add_bos: start every chunk with BOS; default: follow the tokenizer.
        keep_columns: document-level columns copied onto each of its chunks (e.g. a source label).

    Use it with ``ds.map(chunker, batched=True, with_indices=True, remove_columns=ds.column_names)``.
    """
    return TextChunker(
        tokenizer,
        chunk_tokens,
        text_column,
        id_column=id_column,
        min_tail_tokens=min_tail_tokens,
        add_bos=add_bos,
        keep_columns=keep_columns,
    )

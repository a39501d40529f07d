"""Per-chunk perplexity of a corpus under the base model: ``nll_sum``, ``n_scored``, ``ppl``.

Definitions (docs/architecture.md): a chunk's ``nll_sum`` is the sum in nats of ``-log p(token | prefix)`` over its
predicted tokens (every token but the first of the chunk), ``n_scored`` counts them and
``ppl = exp(nll_sum / n_scored)``. Per-token NLL is computed with fp32 accumulation (the lm_head matmul
and log-sum-exp of :func:`pplaw_kernels.fused_linear_nll`), summed per chunk in float64 and stored as
float64. A chunk with fewer than 2 tokens has nothing to score and is an error (``chunk_texts`` drops
such documents and counts them); a non-finite NLL is an error too: no NaN ever flows on.

With ``datasets``::

    scorer = pplaw.score_perplexity("Qwen/Qwen3-0.6B-Base")          # nothing is loaded yet
    scored = chunks.map(scorer, batched=True, batch_size=256)        # adds nll_sum, n_scored, ppl
    # one process per GPU: each process loads its own copy on cuda:(rank % n_gpus)
    scored = chunks.map(scorer, batched=True, with_rank=True, num_proc=torch.cuda.device_count())

Inputs are an ``input_ids`` column (chunks from :func:`pplaw.chunk_texts`) or, when absent, a text
column tokenized on the fly (BOS as the tokenizer does it, truncated to ``max_length``).

**In memory, outside datasets** (held-out losses of a model just trained)::

    scorer = PerplexityScorer(model, tokenizer)     # a loaded PreTrainedModel; stays on its device
    out = scorer.score_token_ids([[1, 5, 9, 2], [1, 7, 7]])
    out["nll_sum"]   # np.float64[n]: sum of per-token NLL (nats) of each sequence
    out["n_scored"]  # np.int32[n]:   len(seq) - 1
    out["ppl"]       # np.float64[n]: exp(nll_sum / n_scored)
    # token-weighted loss of a held-out set: out["nll_sum"].sum() / out["n_scored"].sum()

``score_token_ids`` (and ``score_texts``) take any sequence of token-id sequences (lists, numpy
arrays) in any order, return results in that order, restore the model's train/eval mode, and raise
:class:`~pplaw.exceptions.InvalidInputError` for sequences shorter than 2 tokens or ids outside the
vocabulary.

How it works: inside each call, sequences are sorted by length and packed into micro-batches of at
most ``max_tokens_per_batch`` padded tokens (and ``batch_size`` rows), padded on the right (or left)
minimally, run through the model's backbone (``model.base_model``, final norm included) and the
last hidden states of the predicted positions only (``[M, H]``, no padding) go with the lm_head
weight into ``fused_linear_nll``: the ``[tokens, vocab]`` logits are never built. Logit scale
(Cohere ``logit_scale``, Granite ``logits_scaling``), tanh soft-capping (Gemma ``final_logit_softcapping``)
and an lm_head bias are honoured. On first use the split is checked against the full model's logits
on a short input; a model whose head cannot be split, or whose check fails, is scored from its full
logits (``nll_from_logits``) with a warning.

Determinism: a chunk's PPL does not depend on batch size, padding side, order or batch composition,
up to floating-point reduction order (matmul blocking differs with the padded shape; observed
relative differences ~1e-7 in fp32, larger in bf16).

Caching: ``datasets`` fingerprints a map function by pickling it; the scorer pickles, *for hashing
only*, to a fingerprint built from the model's name, revision, config and weight-file stats (or, for
an in-memory model, a strided sample of its weights), the tokenizer and the scoring settings, so
weights are never hashed and a retrained model at the same path gets a new cache entry. Batch size,
token budget and padding side are not part of it (they do not change results).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pplaw._fingerprint import register_datasets_hashing, sha, tokenizer_identity, weight_sample_hash
from pplaw._head import Head, split_head, text_config
from pplaw.exceptions import InvalidInputError, MissingColumnError, NotBuiltError, ScoringError

__all__ = ["PerplexityScorer", "score_perplexity"]

_DTYPES = ("auto", "float32", "bfloat16", "float16")

# True in a process made by os.fork (datasets' map(num_proc=...) workers on Linux). GNU OpenMP is not
# fork-safe: once the parent has run a multi-threaded torch op, a forked child that starts an OpenMP
# parallel region hangs or segfaults. Such a child scores with one torch thread on CPU (what torch's own
# DataLoader workers do); num_proc processes then use num_proc cores.
_FORKED_CHILD = False


def _mark_forked_child() -> None:
    global _FORKED_CHILD
    _FORKED_CHILD = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked_child)


def _kernels():
    try:
        from pplaw_kernels import fused_linear_nll, nll_from_logits
    except ImportError as err:  # the kernels distribution is installed with pplaw; say what is missing
        raise NotBuiltError(
            "pplaw_kernels.fused_linear_nll / nll_from_logits are not available "
            f"({err}); install the kernels distribution: pip install -e ./kernels"
        ) from err
    return fused_linear_nll, nll_from_logits


class PerplexityScorer:
    """Picklable per-chunk perplexity scorer: a ``datasets`` map function and an in-memory API.

    Args:
        model: local path or Hub id (loaded lazily, once per process), or a loaded ``PreTrainedModel``
            (kept on its device and dtype unless ``device``/``dtype`` are given: then moved in place).
        tokenizer: tokenizer or path; only needed for text input (default: loaded from ``model``).
            It needs no pad token (padding is internal).
        revision: Hub revision of ``model``/``tokenizer``.
        device: ``"cpu"``, ``"cuda:1"``...; default: ``cuda:(rank % n_gpus)`` under ``with_rank=True``,
            else ``cuda`` when available, else CPU.
        dtype: ``"auto"`` (float32 on CPU, the checkpoint's dtype on GPU), ``"float32"``, ``"bfloat16"``,
            ``"float16"``. Ignored for an in-memory model unless set explicitly.
        batch_size: most rows per micro-batch (default: no limit besides the token budget).
        max_tokens_per_batch: most padded tokens per micro-batch (default 16384).
        impl: ``fused_linear_nll`` implementation: ``"auto"``, ``"torch"``, ``"triton"``.
        input_column, text_column: column names read by ``__call__``.
        max_length: truncation length for text input (default: the model's maximum positions).
        padding_side: ``"right"`` or ``"left"`` (results do not depend on it).
        return_token_nll: also return ``token_nll``, the float32 per-token NLL of each chunk.
        check_head: verify the backbone/head split once against the full model's logits.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        impl: str = "auto",
        input_column: str = "input_ids",
        text_column: str = "text",
        max_length: int | None = None,
        padding_side: str = "right",
        return_token_nll: bool = False,
        trust_remote_code: bool = False,
        check_head: bool = True,
    ):
        if isinstance(model, (str, os.PathLike)):
            self.model_ref: str | None = str(model)
            self._given_model = None
        elif hasattr(model, "config") and callable(model):
            self.model_ref, self._given_model = None, model
        else:
            raise InvalidInputError(
                f"score_perplexity: `model` must be a path, a Hub id or a loaded PreTrainedModel, got {type(model).__name__}"
            )
        if dtype not in _DTYPES:
            raise InvalidInputError(f"score_perplexity: `dtype` must be one of {_DTYPES}, got {dtype!r}")
        for name, val in (("batch_size", batch_size), ("max_tokens_per_batch", max_tokens_per_batch),
                          ("max_length", max_length)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < (2 if name == "max_length" else 1)):
                raise InvalidInputError(f"score_perplexity: `{name}` must be a positive int (or None), got {val!r}")
        if padding_side not in ("right", "left"):
            raise InvalidInputError(f"score_perplexity: `padding_side` must be 'right' or 'left', got {padding_side!r}")
        if impl not in ("auto", "torch", "triton"):
            raise InvalidInputError(f"score_perplexity: `impl` must be 'auto', 'torch' or 'triton', got {impl!r}")
        self.tokenizer = tokenizer
        self.revision, self.device, self.dtype, self.impl = revision, device, dtype, impl
        self.batch_size, self.max_tokens_per_batch = batch_size, max_tokens_per_batch or 16384
        self.input_column, self.text_column, self.max_length = input_column, text_column, max_length
        self.padding_side, self.return_token_nll = padding_side, bool(return_token_nll)
        self.trust_remote_code, self.check_head = trust_remote_code, check_head
        self._reset_runtime()
        self._fingerprint: str | None = None
        register_datasets_hashing(type(self))

    def _reset_runtime(self) -> None:
        self._model = None  # the loaded model (this process)
        self._head: Head | None = None
        self._vocab = 0
        self._max_positions: int | None = None
        self._forward_kwargs: set[str] | None = None

    # ---- pickling: the loaded model never travels (each process loads its own); a given model does
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_model", "_head", "_vocab", "_max_positions", "_forward_kwargs"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_runtime()

    # ---- fingerprint (what datasets hashes instead of the weights)
    @property
    def fingerprint(self) -> str:
        # an in-memory model may be trained further between calls: its weight sample is re-read each time
        if self._fingerprint is None or self._given_model is not None:
            import pplaw

            try:
                import pplaw_kernels

                kver = getattr(pplaw_kernels, "__version__", "?")
            except ImportError:
                kver = None
            self._fingerprint = sha({
                "pplaw": pplaw.__version__, "kernels": kver, "model": self._model_identity(),
                "tokenizer": tokenizer_identity(self.tokenizer), "dtype": self.dtype, "impl": self.impl,
                "input_column": self.input_column, "text_column": self.text_column, "max_length": self.max_length,
                "return_token_nll": self.return_token_nll, "revision": self.revision,
            })
        return self._fingerprint

    def _model_identity(self) -> dict[str, Any]:
        if self._given_model is not None:
            model = self._given_model
            return {"name": getattr(model.config, "_name_or_path", ""), "config": sha(model.config.to_dict()),
                    "weights": weight_sample_hash(model)}
        path = Path(self.model_ref)
        if not path.is_dir():  # a Hub id: name + revision is what identifies it
            return {"name": self.model_ref, "revision": self.revision}
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".pt", ".pth"))
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        cfg = path / "config.json"
        return {"path": str(path.resolve()), "config": cfg.read_text() if cfg.is_file() else None, "files": stats}

    # ---- loading
    def _resolve_device(self, rank: int | None):
        import torch

        if self.device is not None:
            return torch.device(self.device)
        if torch.cuda.is_available():
            return torch.device("cuda", (rank or 0) % torch.cuda.device_count())
        return torch.device("cpu")

    def _load(self, rank: int | None = None) -> None:
        if self._model is not None:
            return
        import torch

        if _FORKED_CHILD and self._resolve_device(rank).type == "cpu":
            torch.set_num_threads(1)  # see _FORKED_CHILD: before any op of this process runs
        if self._given_model is not None:
            model = self._given_model
            if self.device is not None or (rank is not None and torch.cuda.is_available()):
                model = model.to(self._resolve_device(rank))
            if self.dtype != "auto":
                model = model.to(getattr(torch, self.dtype))
        else:
            from pplaw.config import load_causal_lm

            device = self._resolve_device(rank)
            dtype = getattr(torch, self.dtype) if self.dtype != "auto" else (torch.float32 if device.type == "cpu" else "auto")
            try:
                model = load_causal_lm(self.model_ref, "model", revision=self.revision, dtype=dtype,
                                       trust_remote_code=self.trust_remote_code)
            except (OSError, ValueError) as err:  # ConfigError is a ValueError: the file and reason in its text
                raise ScoringError(f"score_perplexity: cannot load model {self.model_ref!r}: {err}") from err
            model = model.to(device).eval()
        self._model = model
        try:
            self._inspect_model(model)
        except BaseException:
            self._reset_runtime()  # a failed check must fail again on the next call, not be skipped
            raise

    def _inspect_model(self, model) -> None:
        """Head split, vocabulary, positions and forward arguments of the loaded model; the checks."""
        self._head, why = split_head(model)
        if self._head is None:
            warnings.warn(f"score_perplexity: scoring {type(model).__name__} from full logits (slower): {why}", stacklevel=3)
        out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
        sizes = [m.weight.shape[0] for m in (out_emb, in_emb) if m is not None and hasattr(m, "weight")]
        self._vocab = min(sizes) if sizes else int(text_config(model.config).vocab_size)
        cfg = text_config(model.config)
        self._max_positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        tok = self._get_tokenizer(required=False)
        if tok is not None and len(tok) > self._vocab:
            raise ScoringError(
                f"score_perplexity: the tokenizer has {len(tok)} tokens but the model's vocabulary has "
                f"{self._vocab} rows: they do not belong together (pass the model's own tokenizer)"
            )
        import inspect

        target = self._head.backbone if self._head is not None else model
        params = inspect.signature(target.forward).parameters
        self._forward_kwargs = (
            None if any(p.kind is p.VAR_KEYWORD for p in params.values()) else set(params)
        )
        if self._head is not None and self.check_head:
            self._verify_head()

    def _get_tokenizer(self, required: bool = True):
        if self.tokenizer is None and self.model_ref is not None and required:
            self.tokenizer = self.model_ref
        if isinstance(self.tokenizer, (str, os.PathLike)):
            from transformers import AutoTokenizer

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer), revision=self.revision)
            except (OSError, ValueError) as err:
                raise ScoringError(f"score_perplexity: cannot load tokenizer {str(self.tokenizer)!r}: {err}") from err
        if self.tokenizer is None and required:
            raise InvalidInputError(
                "score_perplexity: text input needs a tokenizer; pass tokenizer=... (or give token ids)"
            )
        return self.tokenizer

    def _verify_head(self) -> None:
        """Compare the split path with the model's own logits on a short input; fall back if they differ."""
        import torch

        _, nll_from_logits = _kernels()
        n = min(16, self._max_positions or 16)
        ids = (torch.arange(1, n + 1, device=self._head.weight.device) * 7919) % self._vocab  # [n], arbitrary ids
        was_training = self._model.training
        self._model.eval()
        try:
            split = self._nll_batch([ids.cpu().numpy()])[0]
            with torch.inference_mode():
                logits = self._model(input_ids=ids[None]).logits[0, :-1]  # [n-1, V]
                full = nll_from_logits(logits, ids[1:], impl=self.impl).float().cpu().numpy()
        finally:
            self._model.train(was_training)
        tol = 1e-3 if self._head.weight.dtype == torch.float32 else 0.1
        diff = float(np.abs(split - full).mean())
        if not diff <= tol:
            warnings.warn(
                f"score_perplexity: the backbone + lm_head split of {type(self._model).__name__} does not "
                f"reproduce its logits (mean |dNLL| = {diff:.3g} nats); scoring from full logits instead (slower)",
                stacklevel=4,
            )
            self._head = None

    # ---- the core: one micro-batch of token-id rows -> per-row fp32 NLL arrays
    def _nll_batch(self, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        fused_linear_nll, nll_from_logits = _kernels()
        model = self._model
        device = self._head.weight.device if self._head is not None else next(model.parameters()).device
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        n_rows, width = len(rows), int(lengths.max())
        ids = np.zeros((n_rows, width), dtype=np.int64)  # [B, T]; pad id 0 is never read
        mask = np.zeros((n_rows, width), dtype=bool)  # [B, T] real tokens
        for i, r in enumerate(rows):
            sl = slice(0, len(r)) if self.padding_side == "right" else slice(width - len(r), width)
            ids[i, sl] = r
            mask[i, sl] = True
        ids_t = torch.from_numpy(ids).to(device)
        mask_t = torch.from_numpy(mask).to(device)
        kwargs: dict[str, Any] = {"input_ids": ids_t}
        if not mask.all():
            kwargs["attention_mask"] = mask_t.long()
            if self.padding_side == "left":  # positions count real tokens only, as without padding
                kwargs["position_ids"] = (mask_t.long().cumsum(1) - 1).clamp_min(0)
        if self._forward_kwargs is None or "use_cache" in self._forward_kwargs:
            kwargs["use_cache"] = False
        if self._forward_kwargs is not None and "position_ids" in kwargs and "position_ids" not in self._forward_kwargs:
            raise ScoringError("score_perplexity: padding_side='left' needs a model that takes position_ids")
        dense = bool(mask.all())  # equal lengths: no padding, no gather needed
        pred = mask_t[:, :-1] & mask_t[:, 1:]  # [B, T-1]: position t predicts token t+1
        targets = ids_t[:, 1:] if dense else ids_t[:, 1:][pred]  # [B, T-1] or [M]
        with torch.inference_mode():
            if self._head is not None:
                head = self._head
                out = head.backbone(**kwargs)
                hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # [B, T, H]
                h = hidden[:, :-1] if dense else hidden[:, :-1][pred]  # [B, T-1, H] view or [M, H] (no padding)
                kw = dict(bias=head.bias, logit_scale=head.logit_scale, softcap=head.softcap, impl=self.impl,
                          check_targets=False)
                # One call per micro-batch: on CPU the torch path blocks the head itself into cache-sized
                # [rows, vocab-slice] fp32 chunks (pplaw_kernels.reference), on GPU the Triton kernel tiles it.
                nll = fused_linear_nll(h, head.weight, targets, **kw)  # [B, T-1] or [M] fp32
            else:
                logits = model(**kwargs).logits  # [B, T, V]
                z = logits[:, :-1] if dense else logits[:, :-1][pred]  # [B, T-1, V] or [M, V]
                nll = nll_from_logits(z, targets, impl=self.impl, check_targets=False)
        flat = nll.float().reshape(-1).cpu().numpy()  # [M], row-major = row by row
        return np.split(flat, np.cumsum(lengths - 1)[:-1])

    def _micro_batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Indices grouped longest-first into micro-batches within the token and row budgets."""
        order = np.argsort(-lengths, kind="stable")
        groups, start = [], 0
        while start < len(order):
            width = int(lengths[order[start]])  # the longest row of the group sets the padded width
            rows = max(1, self.max_tokens_per_batch // max(width, 1))
            if self.batch_size:
                rows = min(rows, self.batch_size)
            groups.append(order[start : start + rows])
            start += rows
        return groups

    def _validate(self, rows: list[np.ndarray], chunk_ids: Sequence | None) -> None:
        def name(i: int) -> str:
            return f"row {i}" + (f" (chunk_id {chunk_ids[i]})" if chunk_ids is not None else "")

        for i, r in enumerate(rows):
            if len(r) < 2:
                raise InvalidInputError(
                    f"score_perplexity: {name(i)} has {len(r)} token(s); a chunk needs >= 2 (one predicted "
                    "token). Drop such rows first (pplaw.chunk_texts drops and counts them)"
                )
            if self._max_positions and len(r) > self._max_positions:
                raise InvalidInputError(
                    f"score_perplexity: {name(i)} has {len(r)} tokens, more than the model's "
                    f"{self._max_positions} positions; use shorter chunks (chunk_tokens)"
                )
            lo, hi = int(r.min()), int(r.max())
            if lo < 0 or hi >= self._vocab:
                raise InvalidInputError(
                    f"score_perplexity: {name(i)} holds token id {lo if lo < 0 else hi} outside the model's "
                    f"vocabulary [0, {self._vocab}): were the chunks made with another tokenizer?"
                )

    # ---- public API
    def score_token_ids(self, token_ids: Sequence[Sequence[int]], *, rank: int | None = None,
                        _chunk_ids: Sequence | None = None) -> dict[str, Any]:
        """Score token-id sequences; see the module docstring for the returned dict."""
        rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in token_ids]
        self._load(rank)
        self._validate(rows, _chunk_ids)
        n = len(rows)
        nll_sum = np.zeros(n, dtype=np.float64)
        n_scored = np.fromiter((len(r) - 1 for r in rows), dtype=np.int32, count=n)
        token_nll: list[Any] = [None] * n
        model = self._model
        was_training = model.training
        model.eval()
        try:
            for group in self._micro_batches(n_scored.astype(np.int64) + 1) if n else []:
                for i, tok in zip(group, self._nll_batch([rows[i] for i in group])):
                    nll_sum[i] = tok.astype(np.float64).sum()
                    if self.return_token_nll:
                        token_nll[i] = tok
        finally:
            model.train(was_training)
        bad = ~np.isfinite(nll_sum)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ScoringError(f"score_perplexity: non-finite NLL for {int(bad.sum())} sequence(s), e.g. row {i}; "
                               "the model produced NaN/inf (try dtype='float32')")
        out: dict[str, Any] = {"nll_sum": nll_sum, "n_scored": n_scored,
                               "ppl": np.exp(nll_sum / np.maximum(n_scored, 1))}
        if self.return_token_nll:
            out["token_nll"] = token_nll
        return out

    def score_texts(self, texts: Sequence[str], *, rank: int | None = None) -> dict[str, Any]:
        """Tokenize (BOS as the tokenizer does it, truncated to ``max_length``) and score ``texts``."""
        self._load(rank)
        tok = self._get_tokenizer()
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise InvalidInputError(f"score_perplexity: column {self.text_column!r} must hold strings")
        max_len = self.max_length or self._max_positions
        enc = tok(list(texts), add_special_tokens=True, truncation=max_len is not None, max_length=max_len,
                  return_attention_mask=False, verbose=False)
        return self.score_token_ids(enc["input_ids"], rank=rank)

    def __call__(self, batch: dict[str, Any], *extra: Any) -> dict[str, Any]:
        """``datasets`` batched map function; with ``with_rank=True`` the rank is the last argument."""
        rank = extra[-1] if extra and (extra[-1] is None or isinstance(extra[-1], int)) else None
        if self.input_column in batch:
            return self.score_token_ids(batch[self.input_column], rank=rank, _chunk_ids=batch.get("chunk_id"))
        if self.text_column in batch:
            return self.score_texts(batch[self.text_column], rank=rank)
        raise MissingColumnError(
            f"score_perplexity: neither the token column {self.input_column!r} nor the text column "
            f"{self.text_column!r} is in the data; columns are {sorted(batch)} (set input_column=/text_column=)"
        )

    def __repr__(self) -> str:
        what = self.model_ref or type(self._given_model).__name__
        return f"PerplexityScorer({what!r}, dtype={self.dtype!r}, impl={self.impl!r}, fingerprint={self.fingerprint})"


def score_perplexity(model: Any, tokenizer: Any = None, **kwargs: Any) -> PerplexityScorer:
    """A picklable ``datasets`` map function adding ``nll_sum``, ``n_scored``, ``ppl`` (see :class:`PerplexityScorer`)."""
    return PerplexityScorer(model, tokenizer, **kwargs)

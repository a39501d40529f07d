"""Fingerprints for ``datasets`` caching: the scorer and the chunker are hashed by what determines their
output (model name/revision/config, weight-file stats or a weight sample, tokenizer, settings), never by
pickling model weights (minutes for a 7B model, and a retrained model at the same path would silently
reuse a stale cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any


def sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weight_sample_hash(model) -> str:
    """A cheap signature of in-memory weights: ~1k strided values per tensor (training changes them all)."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 1024)
        h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
        h.update(flat[::step][:1024].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def tokenizer_identity(tok) -> Any:
    if tok is None or isinstance(tok, (str, os.PathLike)):
        return None if tok is None else str(tok)
    backend = getattr(tok, "backend_tokenizer", None)
    spec = backend.to_str() if backend is not None else str(sorted(tok.get_vocab().items()))
    return {"name": getattr(tok, "name_or_path", ""), "spec": hashlib.sha256(spec.encode()).hexdigest()[:16],
            "n": len(tok)}


_HASHED_TYPES: set[type] = set()


def _fingerprint_token(kind: str, state: Any) -> None:  # pragma: no cover - only ever pickled, never called
    raise RuntimeError("a pplaw fingerprint token is for hashing only")


def _save_for_hashing(pickler, obj) -> None:
    # the scorer exposes .fingerprint (a string), the chunker ._fingerprint_state() (its settings, no counters)
    state = obj._fingerprint_state() if hasattr(obj, "_fingerprint_state") else obj.fingerprint
    pickler.save_reduce(_fingerprint_token, (type(obj).__qualname__, state), obj=obj)


def register_datasets_hashing(cls: type) -> None:
    """Make ``datasets`` hash a scorer by its fingerprint (never the weights) and a chunker without its
    counters. Only datasets' hashing pickler is affected; multiprocessing still pickles normally. The
    pickler dispatches on the exact type, so each (sub)class registers itself when first instantiated."""
    if cls in _HASHED_TYPES:
        return
    try:
        import datasets  # noqa: F401
    except ImportError:  # no datasets, no datasets hashing to steer
        return
    try:
        from datasets.utils._dill import pklregister
    except ImportError:  # a datasets release that moved its pickler: say so rather than hash weights silently
        warnings.warn("pplaw: cannot register the scorer's fingerprint with this datasets version; ds.map() "
                      "may hash model weights (pass new_fingerprint=scorer.fingerprint to ds.map)", stacklevel=3)
        return
    pklregister(cls)(_save_for_hashing)
    _HASHED_TYPES.add(cls)

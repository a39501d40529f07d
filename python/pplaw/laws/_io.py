"""File helpers of the laws: the atomic writes and JSON conversion are :mod:`pplaw._io`'s (re-exported here);
:func:`floats` reads back the JSON lists they write."""

from __future__ import annotations

from typing import Any

import numpy as np

from pplaw._io import atomic_write_json, atomic_write_text, jsonable, save_figure  # noqa: F401  (re-exported)


def floats(values: Any) -> np.ndarray:
    """JSON list (None for non-finite) -> float array with NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)

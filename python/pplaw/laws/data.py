"""Turning a user's table into validated float arrays for a law (one place for every input check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from pplaw.exceptions import EmptyInputError, InvalidInputError, MissingColumnError

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.engine import Law


def to_frame(table: Any, *, what: str = "table") -> pd.DataFrame:
    """A pandas DataFrame from a DataFrame, pyarrow Table/RecordBatch, ``datasets.Dataset``, polars frame, or a
    mapping of column name -> values."""
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, Mapping):
        try:
            return pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in table.items()})
        except ValueError as err:
            raise InvalidInputError(f"{what}: the columns of the mapping must have equal lengths ({err})") from err
    to_pandas = getattr(table, "to_pandas", None)
    if callable(to_pandas):
        frame = to_pandas()
        if isinstance(frame, pd.DataFrame):
            return frame
    raise InvalidInputError(
        f"{what} must be a pandas DataFrame, pyarrow Table, datasets.Dataset, polars DataFrame or a dict of "
        f"columns; got {type(table).__name__}"
    )


def numeric_column(df: pd.DataFrame, column: str, *, role: str) -> np.ndarray:
    """A finite float64 column, or a specific error naming the column and the problem."""
    if not isinstance(column, str):
        raise InvalidInputError(f"{role} must be given as a column name (str), got {type(column).__name__}")
    if column not in df.columns:
        found = ", ".join(map(str, df.columns[:30])) + (" ..." if len(df.columns) > 30 else "")
        raise MissingColumnError(f"{role} column {column!r} is not in the table; columns found: {found}")
    s = df[column]
    if s.dtype == bool or not (pd.api.types.is_numeric_dtype(s) or s.dtype == object):
        raise InvalidInputError(f"{role} column {column!r} must be numeric, found dtype {s.dtype}")
    try:
        v = pd.to_numeric(s, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError) as err:
        raise InvalidInputError(f"{role} column {column!r} must be numeric: {err}") from err
    bad = ~np.isfinite(v)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InvalidInputError(
            f"{role} column {column!r} has {rows.size} NaN/inf value(s) (rows {rows[:5].tolist()}"
            f"{' ...' if rows.size > 5 else ''}); drop or fill them before fitting"
        )
    return v


@dataclass
class Data:
    """Validated inputs of one fit: variable arrays ``(n,)``, target ``(n,)``, optional run groups ``(n,)``."""

    X: dict[str, np.ndarray]
    y: np.ndarray
    target: str
    columns: dict[str, str]
    groups: np.ndarray | None = None
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def n_units(self) -> int:
        """Independent units the bootstrap resamples: runs when grouped, else rows."""
        return self.n if self.groups is None else int(np.unique(self.groups).size)

    def take(self, idx: np.ndarray) -> Data:
        return Data({k: v[idx] for k, v in self.X.items()}, self.y[idx], self.target, self.columns,
                    None if self.groups is None else self.groups[idx], self.group, self.meta)

    def frame(self) -> pd.DataFrame:
        out = pd.DataFrame({self.columns.get(k, k): v for k, v in self.X.items()})
        out[self.target] = self.y
        if self.groups is not None:
            out[self.group or "group"] = self.groups
        return out


def prepare(law: Law, table: Any, *, target: str, columns: Mapping[str, Any], group: str | None = None) -> Data:
    """Validate ``table`` for ``law``: columns present, numeric, finite, positive where logs are taken."""
    df = to_frame(table)
    if len(df) == 0:
        raise EmptyInputError("the table has no rows to fit")
    unknown = sorted(set(columns) - set(law.variables))
    if unknown:
        raise InvalidInputError(
            f"unknown variable(s) {unknown} for {type(law).__name__}; its variables are {list(law.variables)} "
            "(map each to a column with variable=column)"
        )
    mapping = {v: columns.get(v, v) for v in law.variables}
    X = {v: numeric_column(df, col, role=f"variable {v!r}") for v, col in mapping.items()}
    for v in law.positive:
        bad = np.flatnonzero(X[v] <= 0)
        if bad.size:
            raise InvalidInputError(
                f"column {mapping[v]!r} (variable {v!r}) must be > 0 because {type(law).__name__} takes its "
                f"logarithm; {bad.size} value(s) are <= 0 (e.g. {X[v][bad[0]]:.6g} at row {bad[0]})"
            )
    law.check_inputs(X, mapping)
    y = numeric_column(df, target, role="target")
    groups = None
    if group is not None:
        if group not in df.columns:
            raise MissingColumnError(
                f"group column {group!r} is not in the table; columns found: {', '.join(map(str, df.columns))}"
            )
        g = df[group]
        if g.isna().any():
            raise InvalidInputError(f"group column {group!r} has missing values; every row needs its run id")
        groups = g.astype(str).to_numpy()
    return Data(X, y, target, dict(mapping), groups, group)


def prediction_inputs(law: Law, data: Any, arrays: Mapping[str, Any],
                      columns: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """The inputs of ``law`` for a prediction, broadcast and checked: each variable from ``arrays`` (by name),
    else from the table ``data`` (its column as ``columns`` maps it, or its own name); an optional variable
    (``law.optional``) that is not given takes the law's default. Shared by ``Fit`` and ``LawAt``."""
    columns = columns or {}
    unknown = sorted(set(arrays) - set(law.variables))
    if unknown:
        raise InvalidInputError(f"unknown variable(s) {unknown}; {type(law).__name__} takes {list(law.variables)}")
    frame = None if data is None else to_frame(data, what="prediction input")
    cols: dict[str, np.ndarray] = {}
    for v in law.variables:
        if v in arrays:
            cols[v] = np.asarray(arrays[v], dtype=float)
        elif frame is not None:
            col = columns.get(v, v)
            col = col if col in frame.columns else v
            if col not in frame.columns and v in law.optional:
                continue
            cols[v] = numeric_column(frame, col, role=f"variable {v!r}")
        elif v in law.optional:
            continue  # the law's default (e.g. the spline's pool P = D)
        else:
            raise MissingColumnError(f"no value for variable {v!r} (column {columns.get(v, v)!r}); "
                                     f"pass a table with that column or {v}=...")
    try:
        out = dict(zip(cols, np.broadcast_arrays(*[np.atleast_1d(c) for c in cols.values()])))
    except ValueError as err:
        raise InvalidInputError(f"prediction inputs have incompatible lengths: {err}") from err
    for v, x in out.items():
        if not np.all(np.isfinite(x)):
            raise InvalidInputError(f"variable {v!r} has NaN/inf values")
        if v in law.positive and np.any(x <= 0):
            raise InvalidInputError(f"variable {v!r} must be > 0 (the law takes its logarithm)")
    return {k: np.array(x, dtype=float) for k, x in out.items()}

"""The pplaw exception hierarchy.

Every error pplaw raises on bad input is a :class:`PplawError`. Each class also derives from the builtin
exception a Python user would expect (``ValueError``, ``KeyError``-free on purpose, ...), so ``except
ValueError`` keeps working. The Rust core (``pplaw._core``) maps its typed error enum onto these classes
by name (see ``rust/src/py/errors.rs``), so errors look the same whichever layer detected them.
"""

from __future__ import annotations


class PplawError(Exception):
    """Base class of every pplaw error."""


class InvalidInputError(PplawError, ValueError):
    """A value is not what was expected (NaN, inf, non-positive PPL, zero-token chunk, wrong dtype...)."""


class MissingColumnError(InvalidInputError):
    """A required column is not in the table/dataset. The message names it and lists the columns found."""


class LengthMismatchError(InvalidInputError):
    """Columns/arrays that must have one value per chunk have different lengths."""


class EmptyInputError(InvalidInputError):
    """The input has no rows (or no rows left after filtering)."""


class BudgetError(InvalidInputError):
    """A token budget is not positive or exceeds what the corpus (or the allowed window) holds."""


class UnreachableTargetError(PplawError, ValueError):
    """The corpus cannot realise the requested target statistics.

    ``realisable`` holds what can be realised, e.g. ``{"mean": (lo, hi), "std": (lo, hi)}``.
    """

    def __init__(self, message: str, realisable: dict | None = None):
        super().__init__(message)
        self.realisable = realisable or {}


class SerializationError(PplawError, ValueError):
    """A saved artefact (landscape, fit, run record) cannot be read: corrupt, truncated or another version."""


class ConfigError(PplawError, ValueError):
    """A recipe/config is invalid: unknown key, wrong type, inconsistent settings."""


class RunDirError(PplawError, OSError):
    """pplaw would have to delete or replace a file or folder it did not write (or cannot write there)."""


class RunLockedError(PplawError, RuntimeError):
    """Another pplaw process holds the run directory's lock."""


class FitError(PplawError, RuntimeError):
    """A scaling-law fit cannot be done or did not converge (too few points, degenerate design...)."""


class ScoringError(PplawError, RuntimeError):
    """Perplexity scoring failed (model/tokenizer mismatch, unsupported architecture...)."""


class NotBuiltError(PplawError, NotImplementedError):
    """A stage of pplaw that is not implemented yet. Said loudly instead of faking a result."""


class HubError(PplawError, RuntimeError):
    """The Hugging Face Hub could not be reached or refused a push; the message says where the local copy is."""


class ClusterError(PplawError, RuntimeError):
    """The cluster a run depends on does not answer as it must (e.g. ``sacct`` fails): run again when it does."""


__all__ = [
    "ClusterError",
    "HubError",
    "PplawError",
    "InvalidInputError",
    "MissingColumnError",
    "LengthMismatchError",
    "EmptyInputError",
    "BudgetError",
    "UnreachableTargetError",
    "SerializationError",
    "ConfigError",
    "FitError",
    "RunDirError",
    "RunLockedError",
    "ScoringError",
    "NotBuiltError",
]


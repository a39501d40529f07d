"""pplaw.score and pplaw.train re-export their public names lazily: importing them imports no torch or TRL,
and each name resolves to the module that defines it."""

import subprocess
import sys

import pytest


def test_importing_the_packages_imports_no_training_library():
    code = ("import sys, pplaw.score, pplaw.train; "
            "print(sorted(m for m in ('torch', 'trl', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_public_names_resolve_and_an_unknown_one_is_an_attribute_error():
    import pplaw.score
    import pplaw.train
    from pplaw.score.job import ScoreConfig
    from pplaw.train.options import CPTConfig

    assert pplaw.score.ScoreConfig is ScoreConfig and pplaw.train.CPTConfig is CPTConfig
    assert "run_score" in pplaw.score.__all__ and "EvalConfig" in pplaw.train.__all__
    with pytest.raises(AttributeError, match="pplaw.train' has no attribute 'nope'"):
        pplaw.train.nope  # noqa: B018

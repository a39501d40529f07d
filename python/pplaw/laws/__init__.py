"""pplaw.laws: scaling-law fitting with a shared robust engine.

Every law is fitted the same way::

    from pplaw.laws import PerplexityLaw
    fit = PerplexityLaw().fit(runs, target="domain_loss", mu="mu", sigma="sigma", D="tokens",
                              bootstrap=200, seed=0, group="run_id")
    print(fit.summary())
    opt = fit.optimum()                 # best (mu, sigma) in the realisable region, with a bootstrap CI
    fit.validate("largest D")           # extrapolation error
    fit.to_json("fit.json"); fit.plot("fit.png")

``runs`` may be a pandas DataFrame, a pyarrow Table, a ``datasets.Dataset`` or a dict of columns. See
:mod:`pplaw.laws.engine` for the fitting recipe (log-space Huber, grid + L-BFGS-B, bootstrap over runs).
"""

from pplaw.laws.chinchilla import Chinchilla
from pplaw.laws.cmr import CMR, CMRFit, CMRLaw, DomainLossChange, GeneralLossChange, RatioLaw
from pplaw.laws.dcpt import DCPT
from pplaw.laws.dcpt_usage import UsageResult, compute_allocation, optimal_ratio_limited_domain, tradeoff_ratio
from pplaw.laws.downstream import (
    ComputeLossLaw,
    DownstreamLaw,
    LossToAccuracy,
    TwoStage,
    TwoStageFit,
    compare_direct_two_stage,
)
from pplaw.laws.engine import Law, LSELaw, Param
from pplaw.laws.registry import REGISTRY, get_law, get_law_spec, parse_law_spec
from pplaw.laws.given import LawAt
from pplaw.laws.holdout import HoldoutComparison, compare_holdout
from pplaw.laws.perplexity import Optimum, PerplexityLaw, Region, compare_variants
from pplaw.laws.perplexity_regime_d import PerplexityLawRegimeD
from pplaw.laws.perplexity_spline import PerplexityLawSpline
from pplaw.laws.result import Fit
from pplaw.laws.validation import Validation

__all__ = [
    "Law", "LSELaw", "Param", "Fit", "Validation", "REGISTRY", "get_law", "get_law_spec", "parse_law_spec",
    "PerplexityLaw", "PerplexityLawRegimeD", "PerplexityLawSpline", "Optimum", "Region", "compare_variants",
    "HoldoutComparison", "compare_holdout",
    "Chinchilla", "DCPT", "tradeoff_ratio", "optimal_ratio_limited_domain", "compute_allocation", "UsageResult",
    "LawAt",
    "CMR", "CMRFit", "RatioLaw", "DomainLossChange", "GeneralLossChange", "CMRLaw",
    "DownstreamLaw", "ComputeLossLaw", "LossToAccuracy", "TwoStage", "TwoStageFit", "compare_direct_two_stage",
]

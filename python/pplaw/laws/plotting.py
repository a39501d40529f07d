"""PNG plots of fits (matplotlib ``Figure`` objects with the Agg canvas: no pyplot or display state).

- :func:`plot_predicted_vs_observed`: every run, predicted vs observed, with prediction intervals when the fit
  has bootstrap draws;
- :func:`plot_contour` (PerplexityLaw): predicted loss over (mu, sigma) at a fixed D, the fitted points, the
  search region and the optimum with its CI;
- :func:`plot_vs_variable`: target vs one variable (e.g. loss vs D) per regime (the other variables' values),
  points and fitted curves;
- :func:`write_plots`: all that apply, as files in a directory (used by ``pplaw fit``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pplaw.exceptions import FitError
from pplaw._atomic import save_figure

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.result import Fit

_MAX_REGIMES = 10


def _figure(ncols: int = 1, size: tuple[float, float] = (6.0, 5.0)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1]))
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _ci_err(center: float, ci: Any) -> list[list[float]] | None:
    """Error-bar lengths ``[[below], [above]]`` of a CI around ``center``, never negative: a percentile CI of
    a small bootstrap (or of an optimum on a flat loss) need not contain the point estimate; the bar then
    reaches the nearer end of the CI from the point (None for a missing or non-finite CI)."""
    if ci is None or not all(np.isfinite([center, *ci])):
        return None
    lo, hi = float(ci[0]), float(ci[1])
    return [[max(0.0, center - lo)], [max(0.0, hi - center)]]


def plot_predicted_vs_observed(fit: Fit, ax: Any) -> None:
    y, p = fit.data.y, fit.fitted
    if fit.n_boot >= 2:
        pi = fit.predict(fit.data.frame(), interval="prediction")
        below, above = p - np.asarray(pi["lo"], float), np.asarray(pi["hi"], float) - p
        # a percentile interval of a few bootstrap draws need not contain the point estimate: matplotlib
        # refuses negative bar lengths, so such a bar is clipped to the interval's nearer end, and counted
        outside = int(np.sum((below < 0) | (above < 0)))
        note = f"; {outside} exclude the fitted value (clipped)" if outside else ""
        ax.errorbar(y, p, yerr=[np.clip(below, 0, None), np.clip(above, 0, None)], fmt="none", ecolor="0.7",
                    lw=1, zorder=1, label=f"{100 * fit.level:.0f}% prediction interval{note}")
    ax.scatter(y, p, s=18, c="C0", zorder=2, label="runs")
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    pad = 0.03 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    m = fit.metrics
    ax.set_title(f"{type(fit.law).__name__}: R$^2$={m['r2']:.4f}, RMSE={m['rmse']:.3g}, MAPE={m['mape']:.2f}%")
    ax.set_xlabel(f"observed {fit.target}")
    ax.set_ylabel(f"predicted {fit.target}")
    ax.legend(loc="best", fontsize=8)


def plot_contour(fit: Fit, ax: Any, optimum: Any = None, D: float | None = None) -> None:
    """Predicted loss over (mu, sigma) at ``D`` tokens (default: the median fitted D)."""
    X, cols = fit.data.X, fit.columns
    D = float(np.median(X["D"])) if D is None else float(D)
    mu, sg = X["mu"], X["sigma"]
    m0, m1 = mu.min(), mu.max()
    s0, s1 = sg.min(), sg.max()
    if optimum is not None:
        m0, m1 = min(m0, optimum.mu), max(m1, optimum.mu)
        s0, s1 = min(s0, optimum.sigma), max(s1, optimum.sigma)
    dm, ds = 0.08 * (m1 - m0 or m1), 0.08 * (s1 - s0 or s1)
    gm = np.linspace(max(m0 - dm, 1e-9), m1 + dm, 120)
    gs = np.linspace(max(s0 - ds, 1e-9), s1 + ds, 120)
    MM, SS = np.meshgrid(gm, gs)
    L = fit.predict(mu=MM.ravel(), sigma=SS.ravel(), D=np.full(MM.size, D)).reshape(MM.shape)
    finite = L[np.isfinite(L)]
    if finite.size == 0:
        raise FitError("the law predicts no finite loss over the plotted (mu, sigma) range")
    # levels over [min, 90th percentile]: the few extreme corners share the top colour instead of
    # squeezing the interesting low-loss basin into one band
    top = float(np.quantile(finite, 0.9))
    levels = np.linspace(finite.min(), top if top > finite.min() else finite.max() + 1e-12, 16)
    cs = ax.contourf(MM, SS, np.where(np.isfinite(L), L, finite.max()), levels=levels, cmap="viridis",
                     extend="max")
    ax.figure.colorbar(cs, ax=ax, label=f"predicted {fit.target} at D={D:.3g}")
    ax.scatter(mu, sg, facecolors="w", edgecolors="k", s=28, zorder=3, label="fitted runs")
    if optimum is not None:
        if optimum.outline is not None:
            ring = np.vstack([optimum.outline, optimum.outline[:1]])
            ax.plot(ring[:, 0], ring[:, 1], "--", color="orange", lw=1.2, label="search region")
        ci = optimum.ci
        xerr, yerr = _ci_err(optimum.mu, ci.get("mu")), _ci_err(optimum.sigma, ci.get("sigma"))
        ax.errorbar([optimum.mu], [optimum.sigma], xerr=xerr, yerr=yerr, fmt="*", color="red", ms=16, mec="k",
                    ecolor="red", capsize=4, zorder=4,
                    label=f"optimum ({optimum.mu:.3g}, {optimum.sigma:.3g})" + (" + CI" if ci else ""))
    ax.set_xlabel(f"mu ({cols.get('mu', 'mu')}, {fit.law.options().get('space', 'ppl')})")
    ax.set_ylabel(f"sigma ({cols.get('sigma', 'sigma')})")
    ax.set_title("loss landscape of the perplexity-aware law")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8)


def regimes(fit: Fit, x: str, threshold: float = 0.3) -> np.ndarray:
    """Regime label per row: rows whose other design variables are close (hierarchical clustering of their
    standardised logs, average linkage, distance ``threshold``) share a regime, so the realised (mu, sigma) of
    one target regime group together even though they differ slightly from run to run."""
    from scipy.cluster.hierarchy import fcluster, linkage

    X = fit.data.X
    others = [v for v in fit.law.design_variables() if v != x]
    if not others or fit.data.n < 2:
        return np.zeros(fit.data.n, dtype=int)
    cols = []
    for v in others:
        z = np.log(X[v]) if np.all(X[v] > 0) else X[v]
        sd = np.std(z)
        cols.append((z - z.mean()) / (sd if sd > 0 else 1.0))
    Z = np.column_stack(cols)
    if len(Z) > 2000:  # linkage needs O(n^2) memory: bin instead (cells of `threshold` standard deviations)
        return np.unique(np.floor(Z / threshold), axis=0, return_inverse=True)[1].ravel()
    return fcluster(linkage(Z, method="average"), t=threshold, criterion="distance")


def plot_vs_variable(fit: Fit, ax: Any, x: str | None = None, by: Any = None) -> None:
    """Target vs variable ``x`` (default ``D`` if the law has it, else the first variable), one colour per
    regime: ``by`` (labels, one per fitted row) or :func:`regimes` of the other variables. Each regime's
    curve holds the other variables at the regime's mean."""
    X = fit.data.X
    design = fit.law.design_variables()
    x = x if x is not None else ("D" if "D" in design else design[0])
    others = [v for v in design if v != x]
    labels = regimes(fit, x) if by is None else np.asarray(by)
    uniq, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:_MAX_REGIMES]  # the best-populated regimes...
    if others:  # ...listed in the order of the first other variable, so the legend reads as a ladder
        order = sorted(order, key=lambda k: float(np.mean(X[others[0]][labels == uniq[k]])))
    xs = X[x]
    grid = np.geomspace(xs.min(), xs.max() * 1.5, 80) if xs.min() > 0 else np.linspace(xs.min(), xs.max(), 80)
    for j, k in enumerate(order):
        rows = labels == uniq[k]
        color = f"C{j % 10}"
        label = ", ".join(f"{v}~{X[v][rows].mean():.3g}" for v in others) or "all"
        ax.scatter(xs[rows], fit.data.y[rows], color=color, s=18, label=label)
        inputs = {v: np.full(grid.size, X[v][rows].mean()) for v in X if v != x}
        inputs[x] = grid
        ax.plot(grid, fit.predict(**inputs), color=color, lw=1.2)
    if xs.min() > 0:
        ax.set_xscale("log")
    extra = f" ({len(uniq) - len(order)} more regimes not shown)" if len(uniq) > len(order) else ""
    ax.set_title(f"{fit.target} vs {x} per regime{extra}")
    ax.set_xlabel(f"{x} ({fit.columns.get(x, x)})")
    ax.set_ylabel(fit.target)
    ax.legend(loc="best", fontsize=7, ncol=2)


def plot_fit(fit: Fit, path: str | Path, optimum: Any = None) -> Path:
    """One PNG: predicted vs observed, and the law's own view (contour for PerplexityLaw, else target vs D or
    the first variable)."""
    fig, (a, b) = _figure(2)
    plot_predicted_vs_observed(fit, a)
    if fit.law.name == "perplexity":
        plot_contour(fit, b, optimum=optimum)
    else:
        plot_vs_variable(fit, b)
    return save_figure(fig, path)


def write_plots(fit: Fit, out_dir: str | Path, optimum: Any = None, by: Any = None) -> list[Path]:
    """The CLI's plots: ``predicted_vs_observed.png``, ``contour.png`` (PerplexityLaw) and
    ``loss_vs_<D or first variable>.png`` (regimes from ``by``, one label per fitted row, else clustered)."""
    out = Path(out_dir)
    paths = []
    fig, (ax,) = _figure()
    plot_predicted_vs_observed(fit, ax)
    paths.append(save_figure(fig, out / "predicted_vs_observed.png"))
    if fit.law.name == "perplexity":
        fig, (ax,) = _figure(size=(7.0, 5.5))
        plot_contour(fit, ax, optimum=optimum)
        paths.append(save_figure(fig, out / "contour.png"))
    design = fit.law.design_variables()
    x = "D" if "D" in design else design[0]
    fig, (ax,) = _figure(size=(7.0, 5.0))
    plot_vs_variable(fit, ax, x, by=by)
    paths.append(save_figure(fig, out / f"loss_vs_{x}.png"))
    return paths


def plot_cmr(res: Any, path: str | Path) -> Path:
    """CMR: general loss change vs tokens per ratio (with the tolerance), and the critical ratio vs budget."""
    fig, (a, b) = _figure(2)
    tol = res.tolerance_level - res.base_general
    for j, (r, f) in enumerate(sorted(res.general_fits.items())):
        t = f.data.X["T"]
        grid = np.geomspace(t.min(), t.max(), 100)
        a.scatter(t, f.data.y, s=12, color=f"C{j % 10}")
        a.plot(grid, f.predict(T=grid), color=f"C{j % 10}", label=f"R={r:.3g}")
    a.axhline(tol, color="k", ls="--", lw=1, label="tolerance")
    a.set_xscale("log")
    a.set_xlabel("tokens T")
    a.set_ylabel("general loss change")
    a.set_title("general loss change vs tokens per mixture ratio")
    a.legend(fontsize=7)
    tab = res.table
    b.plot(tab["T"], tab["cmr"], "o-", label="critical mixture ratio")
    if "lo" in tab:
        b.fill_between(tab["T"], tab["lo"], tab["hi"], alpha=0.3, label="bootstrap CI")
    if res.rcmr is not None:
        grid = np.geomspace(tab["T"].min(), tab["T"].max(), 100)
        b.plot(grid, res.rcmr.predict(T=grid), "k--", lw=1, label="R_CMR(T) fit")
    b.set_xscale("log")
    b.set_xlabel("token budget T")
    b.set_ylabel("critical mixture ratio")
    b.set_title("critical mixture ratio vs budget")
    b.legend(fontsize=8)
    return save_figure(fig, path)

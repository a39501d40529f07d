"""The shared engine: gradients, the summed Huber objective, the grid, convergence reporting, bootstrap over runs,
input checks, serialisation, prediction intervals, validation and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from laws_testdata import EPOCH, simulate
from scipy.special import huber

from pplaw.exceptions import (
    EmptyInputError,
    FitError,
    InvalidInputError,
    MissingColumnError,
    SerializationError,
)
from pplaw.laws import DCPT, Chinchilla, Fit, GeneralLossChange, Law, PerplexityLaw, get_law
from pplaw.laws.solver import FitOptions, Problem, resample_indices


def _fd_jacobian(law, theta, design, space, h=1e-6):
    cols = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        cols.append((law.values((theta + e)[None], design, space)[0]
                     - law.values((theta - e)[None], design, space)[0]) / (2 * h))
    return np.column_stack(cols)


@pytest.mark.parametrize(  # loss changes can be negative: GeneralLossChange is fitted in linear space only
    "case, space", [(c, s) for c in ("chinchilla", "perplexity", "dcpt_cross") for s in ("log", "linear")]
    + [("general_change", "linear")])
def test_gradients_match_finite_differences(case, space):
    rng = np.random.default_rng(0)
    n = 12
    if case == "chinchilla":
        law, X = Chinchilla(), {"N": np.geomspace(1e7, 1e9, n), "D": np.geomspace(1e9, 1e11, n)[::-1]}
    elif case == "perplexity":
        law, X = PerplexityLaw(), {"mu": rng.uniform(5, 40, n), "sigma": rng.uniform(2, 12, n),
                                    "D": np.geomspace(1e6, 1e7, n)}
    elif case == "dcpt_cross":
        law = DCPT(cross_domain=True)
        X = {"N": np.geomspace(1e8, 1e9, n), "D": np.geomspace(1e8, 1e9, n), "r": np.linspace(0, 1, n),
             "k1": rng.uniform(0.5, 2, n), "k2": rng.uniform(0.5, 2, n)}
    else:
        law = GeneralLossChange(t_unit=1e9)
        X = {"T": np.geomspace(1e8, 1e10, n)}
    lo = np.array([p.bounds[0] for p in law.params])
    hi = np.array([p.bounds[1] for p in law.params])
    theta = np.clip(np.array([np.mean(p.grid) if p.grid else 0.1 for p in law.params]), lo, hi)
    if case == "perplexity":
        theta[:2] = (0.3, 6.0)
    design = law.design(X)
    value, jac = law.jacobian(theta, design, space)
    np.testing.assert_allclose(value, law.values(theta[None], design, space)[0], rtol=1e-12)
    np.testing.assert_allclose(jac, _fd_jacobian(law, theta, design, space), rtol=1e-5, atol=1e-7)


def test_huber_is_summed_not_averaged(chin_synth):
    law = Chinchilla()
    X = {"N": chin_synth["N"].to_numpy(), "D": chin_synth["D"].to_numpy()}
    y = chin_synth["loss"].to_numpy()
    problem = Problem(law, X, y, FitOptions.make(law))
    theta = law.internal({**EPOCH, "E": 1.7})
    r = np.log(law.forward(theta[None], law.design(X))[0]) - np.log(y)
    assert problem.objective_batch(theta[None])[0] == pytest.approx(huber(1e-3, r).sum(), rel=1e-12)
    assert problem.fun_grad(theta)[0] == pytest.approx(huber(1e-3, r).sum(), rel=1e-12)
    mse = Problem(law, X, y, FitOptions.make(law, loss="mse"))
    assert mse.objective_batch(theta[None])[0] == pytest.approx(np.sum(r**2), rel=1e-12)


def test_vectorised_grid_matches_one_by_one(chin_synth):
    law = Chinchilla(grid="coarse")
    X = {"N": chin_synth["N"].to_numpy(), "D": chin_synth["D"].to_numpy()}
    problem = Problem(law, X, chin_synth["loss"].to_numpy(), FitOptions.make(law))
    from pplaw.laws.data import prepare

    starts = law.starts(prepare(law, chin_synth, target="loss", columns={}), "log")
    assert starts.shape == (243, 5)
    batch = problem.objective_batch(starts)
    one = np.array([problem.fun_grad(s)[0] for s in starts])
    ok = one < 1e99
    np.testing.assert_allclose(batch[ok], one[ok], rtol=1e-10)


def test_polish_subset_finds_same_optimum_as_all_starts(chin_synth):
    a = Chinchilla(grid="coarse").fit(chin_synth, target="loss", polish=8)
    b = Chinchilla(grid="coarse").fit(chin_synth, target="loss", polish=None)
    assert b.solution.n_polished == 243 and a.solution.n_polished == 8
    assert a.solution.fun == pytest.approx(b.solution.fun, rel=1e-6)
    for k in a.params:
        assert a.params[k] == pytest.approx(b.params[k], rel=1e-3)


def test_failed_convergence_is_reported_not_returned(chin_synth):
    with pytest.raises(FitError, match="did not converge"):
        Chinchilla().fit(chin_synth, target="loss", maxiter=2, polish=2)
    fit = Chinchilla().fit(chin_synth, target="loss", maxiter=2, polish=2, strict=False)
    assert not fit.solution.success
    assert any(w.startswith("NOT CONVERGED") for w in fit.warnings)
    assert "NOT CONVERGED" in fit.summary()


def test_bound_hit_and_wide_ci_are_flagged(chin_synth):
    fit = Chinchilla(bounds={"alpha": (0.5, 5.0)}).fit(chin_synth, target="loss")
    assert fit.params["alpha"] == pytest.approx(0.5)
    assert any("alpha is at its lower bound" in w for w in fit.warnings)
    assert "AT BOUND" in fit.summary()
    # 8 very noisy points: some CIs cannot be pinned down, and the summary says so
    small = chin_synth.sample(8, random_state=0).copy()
    small["loss"] = simulate(Chinchilla(), EPOCH, {"N": small["N"], "D": small["D"]}, 0.05, seed=5)
    noisy = Chinchilla(grid="coarse").fit(small, target="loss", bootstrap=30, progress=False)
    assert any("the data do not pin it down" in w for w in noisy.warnings)
    assert "WIDE CI" in noisy.summary()


def test_table_kinds_give_the_same_fit(chin_synth):
    import pyarrow as pa

    ref = Chinchilla(grid="coarse").fit(chin_synth, target="loss")
    kinds = [pa.Table.from_pandas(chin_synth), chin_synth.to_dict("list")]
    datasets = pytest.importorskip("datasets")
    kinds.append(datasets.Dataset.from_pandas(chin_synth))
    for table in kinds:
        f = Chinchilla(grid="coarse").fit(table, target="loss")
        for k, v in ref.params.items():
            assert f.params[k] == pytest.approx(v, rel=1e-9), type(table)


def test_column_mapping_by_keyword():
    df = pd.DataFrame({"params": np.repeat([1e8, 3e8, 1e9], 4), "tokens": np.tile([1e9, 3e9, 1e10, 3e10], 3)})
    df["L"] = simulate(Chinchilla(), EPOCH, {"N": df["params"], "D": df["tokens"]}, 0.001)
    fit = Chinchilla().fit(df, target="L", N="params", D="tokens")
    assert fit.columns == {"N": "params", "D": "tokens"}
    assert fit.predict(df).shape == (12,)
    np.testing.assert_allclose(fit.predict(N=df["params"], D=df["tokens"]), fit.fitted)


@pytest.mark.parametrize(
    "mutate, kwargs, exc, match",
    [
        (lambda d: d.drop(columns="N"), {}, MissingColumnError, "'N'.*columns found"),
        (lambda d: d, {"target": "nope"}, MissingColumnError, "target column 'nope'"),
        (lambda d: d.assign(N=d["N"].where(d.index != 3)), {}, InvalidInputError, "'N' has 1 NaN/inf"),
        (lambda d: d.assign(D=d["D"].replace(d["D"].iloc[0], np.inf)), {}, InvalidInputError, "NaN/inf"),
        (lambda d: d.assign(N=-d["N"]), {}, InvalidInputError, "must be > 0 because Chinchilla takes its log"),
        (lambda d: d.assign(loss=d["loss"] - 10), {}, InvalidInputError, "must be > 0 to be fitted in log"),
        (lambda d: d.head(5), {}, FitError, "needs at least 6 points"),
        (lambda d: d.assign(N=1e9), {}, FitError, "degenerate design.*'N'.*single value"),
        (lambda d: d.assign(N="big"), {}, InvalidInputError, "must be numeric"),
        (lambda d: d.iloc[:0], {}, EmptyInputError, "no rows"),
        (lambda d: d, {"M": "N"}, InvalidInputError, "unknown variable"),
        (lambda d: d, {"group": "run"}, MissingColumnError, "group column 'run'"),
        (lambda d: d, {"space": "loglog"}, InvalidInputError, "space must be"),
        (lambda d: d, {"delta": -1.0}, InvalidInputError, "delta"),
    ],
)
def test_bad_input_gets_a_specific_error(chin_synth, mutate, kwargs, exc, match):
    kwargs = {"target": "loss", **kwargs}
    with pytest.raises(exc, match=match):
        Chinchilla(grid="coarse").fit(mutate(chin_synth.copy()), **kwargs)


def test_law_declaration_errors():
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        Chinchilla(bounds={"gamma": (0, 1)})
    with pytest.raises(InvalidInputError, match="unknown law"):
        get_law("kaplan")
    assert isinstance(get_law("perplexity", sigma="var"), Law)


def test_group_bootstrap_moves_runs_together():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.array(["a", "b", "c", "d"]), [3, 2, 4, 1])
    for _ in range(20):
        idx = resample_indices(groups.size, groups, rng)
        picked = groups[idx]
        for g, size in zip("abcd", (3, 2, 4, 1)):
            assert np.sum(picked == g) % size == 0  # whole runs only
        assert np.unique(groups[idx]).size <= 4


def test_group_bootstrap_fit(ppl_df):
    fit = PerplexityLaw().fit(ppl_df, target="loss", group="regime", bootstrap=15, seed=1, progress=False)
    assert fit.data.n_units == 20
    assert "resamples of runs" in fit.summary()
    assert set(fit.ci) >= set(fit.params)


def test_json_round_trip(tmp_path, ppl_fit):
    path = tmp_path / "fit.json"
    ppl_fit.to_json(path)
    assert not [p for p in tmp_path.iterdir() if p.name != "fit.json"]  # atomic: no temp files left
    back = Fit.from_json(path)
    assert back.params == ppl_fit.params
    assert back.ci == ppl_fit.ci
    assert back.law.options() == ppl_fit.law.options()
    np.testing.assert_allclose(back.predict(mu=[15.0], sigma=[7.0], D=[2e6]),
                               ppl_fit.predict(mu=[15.0], sigma=[7.0], D=[2e6]))
    assert Fit.from_json(ppl_fit.to_json()).summary() == ppl_fit.summary()
    with pytest.raises(SerializationError):
        Fit.from_json('{"format": "something else"}')
    with pytest.raises(SerializationError):
        Fit.from_json(path.read_text()[:200])
    with pytest.raises(SerializationError, match="does not exist"):
        Fit.from_json(tmp_path / "missing.json")


def test_prediction_and_confidence_intervals(ppl_fit):
    q = {"mu": [12.0, 30.0], "sigma": [5.0, 11.0], "D": [5e6, 3e7]}
    conf = ppl_fit.predict(interval="confidence", **q)
    pred = ppl_fit.predict(interval="prediction", **q)
    point = ppl_fit.predict(**q)
    np.testing.assert_allclose(conf["prediction"], point)
    assert np.all(conf["lo"] <= point) and np.all(point <= conf["hi"])
    assert np.all(pred["hi"] - pred["lo"] > conf["hi"] - conf["lo"])  # residual noise widens it
    no_boot = PerplexityLaw().fit(ppl_fit.data.frame(), target="loss")
    with pytest.raises(FitError, match="bootstrap"):
        no_boot.predict(interval="confidence", **q)
    with pytest.raises(InvalidInputError, match="must be > 0"):
        ppl_fit.predict(mu=[-1.0], sigma=[5.0], D=[1e6])


def test_validation_holdouts(ppl_fit):
    big = ppl_fit.validate("largest D")
    assert big.n_test == 20 and big.n_train == 40
    assert big.metrics["mape"] < 1.0  # extrapolating to 3x the largest fitted D stays within 1%
    print(big)  # the extrapolation error, for the record
    mask = ppl_fit.data.X["mu"] > 35
    assert ppl_fit.validate(mask).n_test == int(mask.sum())
    assert ppl_fit.validate(lambda df: (df["sigma"] > 12).to_numpy()).n_test > 0
    with pytest.raises(InvalidInputError, match="largest <variable>"):
        ppl_fit.validate("biggest D")
    with pytest.raises(InvalidInputError, match="neither a variable"):
        ppl_fit.validate("largest N")
    with pytest.raises(InvalidInputError, match="boolean array"):
        ppl_fit.validate(np.ones(3, bool))


def test_leave_one_run_out(ppl_df):
    fit = PerplexityLaw().fit(ppl_df, target="loss", group="regime")
    v = fit.validate("loo")
    assert v.holdout == "leave-one-run-out"
    assert v.table["fold"].nunique() == 20 and len(v.table) == 60
    assert v.metrics["mape"] < 2.0


def test_plot_writes_png(tmp_path, ppl_fit):
    path = ppl_fit.plot(tmp_path / "fit.png", optimum=ppl_fit.optimum())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fit.png"]


def test_every_registered_law_rebuilds_from_its_config():
    from pplaw.laws import REGISTRY, GeneralLossChange

    assert {"perplexity", "chinchilla", "dcpt", "downstream", "cmr_ratio", "cmr_general_change",
            "loss_to_accuracy", "compute_loss"} <= set(REGISTRY)
    laws = [cls() for cls in REGISTRY.values()]
    laws += [Chinchilla(grid="coarse"), Chinchilla(grid={"alpha": [0.2, 0.4]}), DCPT("general", cross_domain=True),
             PerplexityLaw("var", "log_ppl", bounds={"aD": (0, 1)}), GeneralLossChange(t_unit=1e6),
             get_law("downstream", form="pass_at_k", chance="chance")]
    for law in laws:
        again = type(law)(**law.config())
        assert again.config() == law.config() and again.param_names == law.param_names, law

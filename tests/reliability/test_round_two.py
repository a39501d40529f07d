"""Issue 25 (reliability, round two): every bad input is named before any work, in one line."""

from __future__ import annotations

import pytest

from pplaw.cli.main import COMMANDS, main
from pplaw.exceptions import ConfigError


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    """Item 1: a bare % in a help text crashed `pplaw score --help` (or printed the action's dict instead)."""
    try:
        rc = main([command, "--help"])
    except SystemExit as stop:
        rc = stop.code
    out = capsys.readouterr()
    assert rc in (0, None), out.err
    assert "usage" in out.out.lower() or command == "run"
    assert "option_strings" not in out.out
    text = " ".join(out.out.split())
    if command == "score":
        assert "k % tasks == i" in text
    if command == "train":
        assert "~20% slower" in text


def test_a_key_given_twice_in_a_recipe_is_an_error_naming_it_and_both_lines(tmp_path):
    """Item 3: two `plan:` blocks, or a key twice in one section, were last-wins."""
    from pplaw.config import load_yaml
    from pplaw.pipeline.recipe import load_recipe

    r = tmp_path / "recipe.yaml"
    r.write_text("plan:\n  sizes: [0.1]\ntrain:\n  learning_rate: 1.0e-4\nplan:\n  sizes: [0.2]\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml.*key 'plan' is given twice \(line 1 and line 5\)"):
        load_recipe(r)
    r.write_text("train:\n  learning_rate: 1.0e-4\n  epochs: 1\n  learning_rate: 3.0e-4\n")
    with pytest.raises(ConfigError, match=r"key 'train.learning_rate' is given twice \(line 2 and line 4\)"):
        load_yaml(r)
    # a merge key is not a duplicate: explicit keys override the merged ones on purpose
    r.write_text("base: &b {learning_rate: 1.0}\ntrain:\n  <<: *b\n  learning_rate: 2.0\n")
    assert load_yaml(r)["train"] == {"learning_rate": 2.0}


def test_a_key_given_twice_in_a_command_config_or_an_override_is_an_error(tmp_path, capsys):
    from pplaw.pipeline.recipe import apply_overrides

    c = tmp_path / "fit.yaml"
    c.write_text("bootstrap: 3\nseed: 1\nbootstrap: 5\n")
    assert main(["fit", "runs.csv", "--config", str(c)]) == 1
    assert "key 'bootstrap' is given twice (line 1 and line 3)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"key 'a' is given twice"):
        apply_overrides({}, [("plan.x", "{a: 1, a: 2}")])


@pytest.mark.parametrize("value,match", [("!!python/object/apply:os.system [ls]", "could not determine a constructor"),
                                         ("[1", "expected ',' or ']'"), ("'open", "found unexpected end")])
def test_law_options_with_a_tag_or_malformed_yaml_is_one_line_naming_the_option(value, match, capsys):
    """Item 14: a YAML tag or malformed YAML in --law-options was a raw YAML traceback."""
    assert main(["fit", "runs.csv", "--law-options", f"floor={value}"]) == 1
    err = capsys.readouterr().err
    assert "--law-options floor" in err and match in err
    assert len(err.strip().splitlines()) == 1, err
    assert main(["fit", "runs.csv", "--law-options", "floor=0.1,floor=0.2"]) == 1
    assert "key 'floor' is given twice" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["score", "landscape"])
def test_out_an_existing_file_is_named_before_any_work(command, tmp_path, capsys):
    """Item 10: `--out` an existing file ended in mkdir's FileExistsError traceback (landscape: after reading)."""
    f = tmp_path / "taken.txt"
    f.write_text("x")
    data = tmp_path / "nothing.parquet"  # does not exist: the --out check must come first
    argv = {"score": ["score", "--model", "gpt2", "--data", str(data), "--out", str(f)],
            "landscape": ["landscape", str(data), "--out", str(f)]}[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"--out must be a folder" in err and str(f) in err, err
    assert main([*argv[:-1], str(f / "sub")]) == 1
    assert "is a file" in capsys.readouterr().err


def _scored(path, n=40, seed=0, ids=True):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    cols = {"ppl": rng.uniform(2, 9, n), "n_scored": np.full(n, 31, np.int32)}
    if ids:
        cols = {"chunk_id": pa.array(range(n), pa.uint64()), **cols}
    pq.write_table(pa.table(cols), path)
    return path


def test_dos_with_target_std_zero_names_the_weights_the_caller_can_give(tmp_path, capsys):
    """Item 11: `--target-std 0` asked for `w_s`, which neither the command line nor the API accepted."""
    from pplaw.exceptions import InvalidInputError
    from pplaw.sampling import select_dos

    p = _scored(tmp_path / "s.parquet")
    argv = ["sample", str(p), "--token-budget", "310", "--dos", "--target-mean", "4", "--target-std", "0",
            "--out", str(tmp_path / "o.parquet")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--dos-weights W_MU W_SIGMA" in err and "w_s " not in err, err
    assert main([*argv, "--dos-weights", "1", "1"]) == 0
    assert (tmp_path / "o.parquet").is_file()
    import pyarrow.parquet as pq

    with pytest.raises(InvalidInputError, match=r"weights=\(w_mu, w_sigma\)"):
        select_dos(pq.read_table(p), token_budget=310, target_mean=4.0, target_std=0.0)
    assert len(select_dos(pq.read_table(p), token_budget=310, target_mean=4.0, target_std=0.0,
                          weights={"mu": 1, "sigma": 1}, return_indices=True)) == 10


def test_a_prediction_interval_that_excludes_the_fit_is_drawn_clipped_not_a_crash():
    """Item 12: `pplaw fit --bootstrap 3` crashed in matplotlib ('yerr' must not contain negative values) when
    a percentile interval of a few draws did not contain the fitted value."""
    from types import SimpleNamespace

    import numpy as np
    from matplotlib.figure import Figure

    from pplaw.laws.plotting import plot_predicted_vs_observed

    y, p = np.array([1.0, 2.0, 3.0]), np.array([1.1, 2.1, 2.9])
    pi = {"lo": np.array([1.0, 2.2, 2.5]), "hi": np.array([1.2, 2.4, 3.0])}  # run 2: interval above the fit
    fit = SimpleNamespace(data=SimpleNamespace(y=y, frame=lambda: None), fitted=p, n_boot=3, level=0.9,
                          predict=lambda frame, interval: pi, metrics={"r2": 0.9, "rmse": 0.1, "mape": 3.0},
                          law=object(), target="loss")
    ax = Figure().add_subplot()
    plot_predicted_vs_observed(fit, ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("1 exclude the fitted value (clipped)" in t for t in labels), labels


@pytest.mark.parametrize("flag,value", [("--learning_rate", "nan"), ("--learning_rate", "-1"),
                                        ("--learning_rate", "inf"), ("--weight_decay", "-0.1"),
                                        ("--replay_ratio", "1.5")])
def test_train_refuses_a_bad_training_value_before_any_work(flag, value, tmp_path, capsys):
    """Item 13: `pplaw train --learning_rate nan|-1` was a torch traceback with run_record.json left at
    'training'; `inf` trained and then blamed the dtype. Checked as the recipe's train section checks it."""
    run = tmp_path / "run"
    rc = main(["train", "--model_name_or_path", str(tmp_path / "no_model"), "--domain_data", str(tmp_path / "d"),
               "--output_dir", str(run), flag, value])
    err = capsys.readouterr().err
    assert rc == 1 and f"pplaw train: {flag} must be" in err, err
    assert not (run / "run_record.json").exists()


def _api_calls():
    from pplaw.landscape import Landscape
    from pplaw.sampling import sample_subset, select_dos

    return {"from_dataset": lambda t: Landscape.from_dataset(t, n_bins=4),
            "from_arrow": lambda t: Landscape.from_arrow(t, n_bins=4),
            "sample_subset": lambda t: sample_subset(t, token_budget=100, seed=0),
            "select_dos": lambda t: select_dos(t, token_budget=100, target_mean=4.0, target_std=1.0)}


@pytest.mark.parametrize("call", ["from_dataset", "from_arrow", "sample_subset", "select_dos"])
def test_the_api_refuses_what_the_command_line_refuses(call):
    """Item 4: the API took a PPL column below 1 and repeated chunk ids, which `pplaw landscape/sample` refuse;
    now one check (pplaw._columns) serves both."""
    import datasets
    import numpy as np
    import pyarrow as pa

    from pplaw.exceptions import InvalidInputError

    fn = _api_calls()[call]
    n = 20
    ppl = np.linspace(2, 9, n)
    good = pa.table({"chunk_id": pa.array(range(n), pa.uint64()), "ppl": ppl, "n_scored": np.full(n, 31)})
    as_input = (lambda t: datasets.Dataset(t)) if call == "from_dataset" else (lambda t: t)
    fn(as_input(good))
    low = good.set_column(1, "ppl", pa.array(np.r_[0.5, ppl[1:]]))
    with pytest.raises(InvalidInputError, match=r"column 'ppl' has 1 value\(s\) below 1 \(min 0.5\)"):
        fn(as_input(low))
    dup = good.set_column(0, "chunk_id", pa.array([0, *range(n - 1)], pa.uint64()))
    with pytest.raises(InvalidInputError, match=r"column 'chunk_id' has 1 repeated value\(s\), e.g. 0 2 times"):
        fn(as_input(dup))


def test_merging_landscapes_of_different_n_bins_is_refused_not_first_wins():
    """Item 6: a.merge(b) kept a's n_bins, so a.merge(b) != b.merge(a)."""
    import numpy as np

    from pplaw.exceptions import InvalidInputError
    from pplaw.landscape import Landscape

    ppl, tokens = np.linspace(2, 9, 50), np.full(50, 31)
    a = Landscape.from_arrays(ppl[:25], tokens[:25], n_bins=5)
    b = Landscape.from_arrays(ppl[25:], tokens[25:], n_bins=10)
    for x, y in ((a, b), (b, a)):
        with pytest.raises(InvalidInputError, match=r"different n_bins \((5 and 10|10 and 5)\)"):
            x.merge(y)
    c = Landscape.from_arrays(ppl[25:], tokens[25:], n_bins=5)
    np.testing.assert_array_equal(a.merge(c).quantiles, c.merge(a).quantiles)


def test_landscape_refuses_a_copied_shard_as_sample_does(tmp_path, capsys):
    """Item 5: on a folder of shards without summary.yaml, `pplaw landscape` counted a copied shard twice
    (no warning) while `pplaw sample` refused the same folder."""
    import shutil

    d = tmp_path / "shards"
    d.mkdir()
    _scored(d / "a.parquet", n=20)
    shutil.copy(d / "a.parquet", d / "b.parquet")
    assert main(["landscape", str(d), "--out", str(tmp_path / "land"), "--no_plot", "true"]) == 1
    err_landscape = capsys.readouterr().err
    assert main(["sample", str(d), "--token-budget", "100", "--out", str(tmp_path / "s.parquet")]) == 1
    err_sample = capsys.readouterr().err
    for err in (err_landscape, err_sample):
        assert "column 'chunk_id' has 20 repeated value(s)" in err, err
    assert not (tmp_path / "land" / "landscape.json").exists()


def test_dos_taking_the_whole_landscape_is_said(tmp_path):
    """Item 7: when the budget reaches the whole corpus, DOS's subsets equal the random baseline's and nothing
    said so. The loop prints this note and the report shows it next to the comparison (summary.json: notes)."""
    import pyarrow.parquet as pq

    from pplaw.pipeline.recipe import load_recipe
    from pplaw.pipeline.select import select_subsets, whole_corpus_note

    table = pq.read_table(_scored(tmp_path / "s.parquet", n=30))
    recipe = load_recipe(overrides=[("baselines.methods", "[random, lowest_ppl]"), ("select.seeds", "[0]")])
    opt = {"mu": 4.0, "sigma": 1.0}
    items = select_subsets(table, recipe, opt, 30 * 31, tmp_path / "sel")
    note = whole_corpus_note(items, table.num_rows)
    assert note and "DOS selected the whole landscape (all 30 chunks, 930 tokens)" in note
    assert "equal those of lowest_ppl, random" in note
    assert whole_corpus_note(select_subsets(table, recipe, opt, 10 * 31, tmp_path / "sel2"), table.num_rows) is None


@pytest.mark.parametrize("override,match", [
    (("select.budget", "5.0"), r"select.budget = 5.0 is read as 5 tokens, less than one chunk"),
    (("select.budget", "1500.5"), r"select.budget = 1500.5: a size > 1 is a number of tokens and must be a whole"),
    (("plan.validation_sizes", "[0.15]"), r"plan.validation_sizes: 0.15 is less than 2x the largest of plan.sizes"),
    (("plan.windows", "2"), r"at most 4 fitting runs .* fewer than the 7 free parameters of fit.laws entry "
                            r"'perplexity'"),
])
def test_a_grid_the_recipe_alone_rules_out_is_refused_before_any_work(override, match, tmp_path):
    """Item 8: a budget read as a few tokens, held-out sizes below 2x the fitting sizes and a grid too small for
    the law are refused before anything runs (the run directory is not even made)."""
    from pplaw.pipeline.loop import run_pipeline
    from pplaw.pipeline.recipe import load_recipe

    extra = [("plan.mixtures", "0"), ("plan.budget_bands", "0"), ("plan.sizes", "[0.05, 0.1]"),
             ("fit.laws", "[perplexity]")] if override[0] == "plan.windows" else []
    recipe = load_recipe(overrides=[*extra, override])
    with pytest.raises(ConfigError, match=match):
        run_pipeline(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_sizes_are_checked_against_the_corpus_right_after_scoring():
    """Item 8: a budget above the corpus, or a share that is less than one chunk of it, is refused once the
    corpus's token count is known, before the landscape, the plan and the sweep."""
    from pplaw.pipeline.preflight import check_sizes
    from pplaw.pipeline.recipe import load_recipe

    check_sizes(load_recipe(), 1_000_000)
    with pytest.raises(ConfigError, match=r"select.budget = 2000000.0 asks for 2,000,000 tokens but the corpus holds"):
        check_sizes(load_recipe(overrides=[("select.budget", "2000000")]), 1_000_000)
    with pytest.raises(ConfigError, match=r"select.budget = 1e-05 is 10 tokens .* less than one chunk"):
        check_sizes(load_recipe(overrides=[("select.budget", "1.0e-5")]), 1_000_000)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_nothing_answers_at_fails_fast_before_any_work(tmp_path):
    """Items 2 and 9: `train.ray_address` with nothing listening hung in ray.init; now one error within a few
    seconds, naming the address and what was tried, before the run directory is made."""
    import socket
    import time

    from pplaw.pipeline.loop import run_pipeline
    from pplaw.pipeline.reach import check_ray_address
    from pplaw.pipeline.recipe import load_recipe

    port = _free_port()
    recipe = load_recipe(overrides=[("train.executor", "ray"), ("train.ray_address", f"127.0.0.1:{port}")])
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=rf"train.ray_address '127.0.0.1:{port}': nothing answers at "
                                          rf"127.0.0.1:{port} \(a TCP connection, tried for 5 s"):
        run_pipeline(recipe, tmp_path / "run")
    assert time.monotonic() - t0 < 30 and not (tmp_path / "run").exists()
    with socket.socket() as srv:  # something listening: passes
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        check_ray_address(f"127.0.0.1:{srv.getsockname()[1]}", timeout=2)
    check_ray_address(None), check_ray_address("auto")


def test_a_ray_client_address_without_ray_client_names_what_to_install(monkeypatch):
    import importlib.util

    from pplaw.pipeline import reach

    real = importlib.util.find_spec
    monkeypatch.setattr(reach.importlib.util, "find_spec", lambda m: None if m == "grpc" else real(m))
    with pytest.raises(ConfigError, match=r"'ray://head:10001' is a Ray Client address .* pip install 'ray\[client\]'"):
        reach.check_ray_address("ray://head:10001")


def test_an_unknown_slurm_partition_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    """Item 9: `slurm.partition=nosuchpartition` failed only when the sweep was submitted; `sinfo -p PART -h`
    must list it (a fake sinfo here: no cluster needed)."""
    from pplaw.pipeline.reach import check_slurm_partition

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sinfo = bin_dir / "sinfo"
    sinfo.write_text('#!/bin/sh\nfor a in "$@"; do [ "$prev" = "-p" ] && p="$a"; prev="$a"; done\n'
                     'if [ -z "$p" ]; then echo "gpu*"; echo cpu; elif [ "$p" = gpu ] || [ "$p" = cpu ]; then '
                     'echo "$p"; fi\n')
    sinfo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    check_slurm_partition("gpu")
    with pytest.raises(ConfigError, match=r"slurm.partition 'nosuchpartition': `sinfo -p nosuchpartition -h -o %P` "
                                          r"lists no such partition; the partitions here: cpu, gpu"):
        check_slurm_partition("nosuchpartition")
    assert main(["score", "--model", "m", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--slurm",
                 str(_slurm_yaml(tmp_path))]) == 1
    assert "slurm.partition 'nosuchpartition'" in capsys.readouterr().err


def _slurm_yaml(tmp_path):
    p = tmp_path / "slurm.yaml"
    p.write_text("slurm:\n  partition: nosuchpartition\n")
    return p


def test_the_grid_check_accepts_the_default_validation_sizes():
    """plan.validation_sizes unset (null: 2x the largest fitting size) passes the pre-work grid check."""
    from pplaw.pipeline.preflight import check_grid
    from pplaw.pipeline.recipe import load_recipe

    recipe = load_recipe(overrides=[("plan.validation_sizes", "null")])
    assert recipe.plan.validation_sizes is None
    check_grid(recipe)  # no TypeError over None


@pytest.mark.parametrize("key,value", [("plan.seeds", "[0, 0]"), ("select.seeds", "[1, 2, 1]"),
                                       ("plan.sizes", "[0.05, 0.05]"), ("plan.replay_ratios", "[0.25, 0.25]")])
def test_a_repeated_seed_or_size_is_refused(key, value):
    """A hostile pass found `plan.seeds=[0,0]` accepted: the same run twice, counted as two seeds."""
    from pplaw.pipeline.recipe import load_recipe

    with pytest.raises(ConfigError, match=rf"{key}.*distinct"):
        load_recipe(overrides=[(key, value)])

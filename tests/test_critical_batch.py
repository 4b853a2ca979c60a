"""The critical_batch study's --quick run: complete folder, exact one-step theory, verification.

One quick run (about 30 s of CPU: least squares, logistic regression on breast_cancer,
softmax regression on digits and a 64-8-10 tanh network on digits, the last two without
one-step curves in quick mode) is shared by
every test through a module fixture; only the verification reruns it.

Agreement checks are |estimate - truth| <= Z * SE with Z = 4, a two-sided false-failure
rate of 6.3e-5 per check for a normal estimate; the one-step table holds 55 such points
per problem (correlated: the same batches serve every learning rate), so a new seed
would fail by chance with probability well under 1%. Seeds are fixed.
"""

import contextlib
import io
import json
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from lossvar import stats, studies
from lossvar.results import read_table

sys.path.insert(0, str(Path(__file__).parent))
from bars import full_bars  # noqa: E402

matplotlib.use("Agg")
Z = 4.0
TABLES = ("one_step", "one_step_opt", "steps", "tuning", "critical_batch", "noise_path",
          "gradient_variance", "gradient_scaling")
PROBLEMS = ["least squares (synthetic)", "logistic (breast_cancer)", "softmax (digits)",
            "network 64-8-10 (digits)"]


PROGRESS = {}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("critical_batch") / "out"
    err = io.StringIO()  # with its progress bars, which must not change a bit (verify reruns)
    with contextlib.redirect_stderr(err):
        status = studies.run("critical_batch", ["--quick", "--seed", "1", "--dpi", "72", "--progress",
                                                "--out", str(out)])
    assert status == 0, err.getvalue()
    PROGRESS["text"] = err.getvalue()
    return out


def _csv(folder, name):
    return read_table(folder / f"{name}.csv")


def test_folder_is_complete(quick):
    manifest = json.loads((quick / "manifest.json").read_text())
    assert manifest["study"] == "critical_batch" and manifest["seed"] == 1
    assert manifest["parameters"]["quick"] is True
    assert set(TABLES) <= set(manifest["tables"])
    for entry in manifest["tables"].values():
        assert (quick / entry["file"]).is_file()
    for name in ("one_step", "steps_examples", "gradient_variance"):
        for ext in ("png", "svg"):
            assert (quick / f"{name}.{ext}").stat().st_size > 0
    summary = (quick / "summary.md").read_text()
    assert "lossvar run critical_batch" in summary and "--seed 1" in summary
    assert "max |z|" in summary and "B_crit" in summary


def test_one_step_monte_carlo_agrees_with_exact_theory_on_the_quadratic(quick):
    one = _csv(quick, "one_step")
    exact = one[one.theory_kind == "exact"]
    assert len(exact) and (exact.problem == "least squares (synthetic)").all()
    assert ((exact.improvement - exact.theory).abs() <= Z * exact.improvement_se).all(), exact
    opt = _csv(quick, "one_step_opt")
    q = opt[opt.theory_kind == "exact"]
    assert ((q.eps_opt_mc - q.eps_opt).abs() <= Z * q.eps_opt_mc_se).all(), q
    # eps_opt = eps_max / (1 + B_noise / B) for independent draws
    np.testing.assert_allclose(q.eps_opt, q.eps_max / (1 + q.b_noise / q.batch_size), rtol=1e-12)


def test_steps_and_critical_batch_are_sane(quick):
    steps = _csv(quick, "steps")
    assert (steps.reached == steps.replicates).all()
    for _, s in steps.groupby("problem"):
        s = s.sort_values("batch_size")
        # more examples and fewer steps as B grows, allowing for the noise of each estimate
        assert (np.diff(s.steps) <= Z * np.hypot(s.steps_se.to_numpy()[1:],
                                                  s.steps_se.to_numpy()[:-1])).all(), s
    c = _csv(quick, "critical_batch")
    assert list(c.problem) == PROBLEMS
    assert (c.s_min > 0).all() and (c.e_min > 0).all()
    assert ((c.b_crit_ci_low <= c.b_crit) & (c.b_crit <= c.b_crit_ci_high)).all()
    assert c.set_index("problem").target.to_dict() == {PROBLEMS[0]: 0.01, PROBLEMS[1]: 0.01,
                                                       PROBLEMS[2]: 0.1, PROBLEMS[3]: 0.2}


def test_best_learning_rate_is_interior_for_every_batch_size(quick):
    steps, tuning = _csv(quick, "steps"), _csv(quick, "tuning")
    assert steps.lr_interior.all() and not steps.lr_at_grid_top.any(), steps
    assert _csv(quick, "critical_batch").lr_interior_all.all()
    for row in steps.itertuples():  # a larger and a smaller rate were tried, and both did worse
        t = tuning[(tuning.problem == row.problem) & (tuning.batch_size == row.batch_size)]
        mean = t.steps_mean.fillna(np.inf)  # a failed rate (diverged or too slow) is worse
        best = mean[t.k == row.lr_k].min()
        assert (mean[t.k == row.lr_k - 1] > best).all() and (t.k == row.lr_k - 1).any()
        assert (mean[t.k == row.lr_k + 1] > best).all() and (t.k == row.lr_k + 1).any()
    # the logistic problem's best rate leaves 1.5/lambda_max of H(w0) behind at large B
    logistic = steps[steps.problem == PROBLEMS[1]]
    assert logistic.lr_over_base.max() > 1
    assert "interior for every B" in (quick / "summary.md").read_text()


def test_softmax_problem_and_its_quick_reductions(quick):
    steps = _csv(quick, "steps")
    soft = steps[steps.problem == PROBLEMS[2]]
    assert soft.batch_size.tolist() == [4, 16, 64, 256]
    assert PROBLEMS[2] not in set(_csv(quick, "one_step").problem)  # skipped in quick mode
    assert "no one-step curves in this run" in (quick / "summary.md").read_text()
    g = _csv(quick, "gradient_variance")
    soft_g = g[g.problem == PROBLEMS[2]]
    assert 1797 not in set(soft_g[soft_g.sampling == "with_replacement"].batch_size)
    assert 1797 in set(soft_g[soft_g.sampling == "without_replacement"].batch_size)


@pytest.mark.parametrize("argv", [["--softmax-data", "mnist"], ["--softmax-target", "1.5"],
                                  ["--softmax-onestep-replicates", "1"]])
def test_options_are_checked(argv, capsys):
    # refused by check (status 2) or by the option's type (argparse exits with 2)
    try:
        status = studies.run("critical_batch", ["--quick", *argv])
    except SystemExit as exc:
        status = exc.code
    assert status == 2 and argv[0] in capsys.readouterr().err


def test_one_labelled_bar_per_phase_ending_full(quick):
    # quick: no one-step curves for softmax (--softmax-onestep-replicates 0)
    expected = ([f"one-step gains, {p}" for p in PROBLEMS[:1]]
                + [f"SGD tuning and runs per batch size, {p}" for p in PROBLEMS[:1]]
                + [f"gradient noise, {p}" for p in PROBLEMS[:1]]
                + [f"one-step gains, {p}" for p in PROBLEMS[1:2]]
                + [f"SGD tuning and runs per batch size, {p}" for p in PROBLEMS[1:2]]
                + [f"gradient noise, {p}" for p in PROBLEMS[1:2]]
                + [f"SGD tuning and runs per batch size, {p}" for p in PROBLEMS[2:3]]
                + [f"gradient noise, {p}" for p in PROBLEMS[2:3]]
                + [f"SGD tuning and runs per batch size, {p}" for p in PROBLEMS[3:]]
                + [f"gradient noise, {p}" for p in PROBLEMS[3:]]
                + [f"noise scale at the end of training, {p}" for p in PROBLEMS[3:]])
    assert full_bars(PROGRESS["text"]) == expected


def test_exponent_tests_carry_holm(quick):
    fits = _csv(quick, "gradient_scaling")
    np.testing.assert_allclose(fits.holm_pvalue, stats.holm(fits.pvalue), rtol=1e-12)
    assert f"after Holm across the {len(fits)} fits" in (quick / "summary.md").read_text()


def test_gradient_noise_agrees_with_exact(quick):
    g = _csv(quick, "gradient_variance")
    assert ((g["mean"] - g.exact).abs() <= Z * g.mean_se).all()
    full = g[(g.sampling == "without_replacement") & (g.estimator == "full")]
    assert len(full) and (full["mean"] == 0).all()
    fits = _csv(quick, "gradient_scaling")
    assert ((fits.exponent + 1).abs() <= Z * fits.se).all(), fits


def test_the_network_noise_scale_grows_along_training_beside_b_crit(quick):
    # McCandlish et al. (2018): B_noise grows as the loss falls. At w0 it is exact (every run
    # starts there); at the end of training its interval across the runs lies above it.
    net = PROBLEMS[3]
    n = _csv(quick, "noise_in_training")
    assert set(n.problem) == {net} and n.exact.tolist() == [True, False]
    start, end = n.iloc[0], n.iloc[1]
    assert start.b_noise_ci_low == start.b_noise == start.b_noise_ci_high
    assert end.b_noise_ci_low < end.b_noise < end.b_noise_ci_high
    assert end.b_noise_ci_low > start.b_noise and end.loss_ci_high < start.loss
    path = _csv(quick, "noise_path")
    path = path[path.problem == net]
    assert path.excess_fraction.is_monotonic_decreasing and path.b_noise.is_monotonic_increasing
    c = _csv(quick, "critical_batch").set_index("problem").loc[net]
    assert c.b_crit_ci_low < c.b_crit < c.b_crit_ci_high
    assert c.b_noise_start == pytest.approx(start.b_noise, rel=1e-12)
    text = (quick / "summary.md").read_text()
    assert f"## The noise scale along the training of the {net}" in text
    assert "empirical, 95% Student t intervals across the runs" in text


@pytest.mark.reproducibility
def test_verify_reproduces_the_folder(quick):
    report = studies.verify(quick)
    assert report.ok, report


def test_best_step_table_flags_estimability(quick):
    opt = _csv(quick, "one_step_opt")
    assert opt.eps_opt_estimable.dtype == bool and opt.eps_opt_estimable.all()  # quick: all estimable
    assert ((opt.eps_opt_mc_ci_low < opt.eps_opt_mc) & (opt.eps_opt_mc < opt.eps_opt_mc_ci_high)).all()
    assert "where it is estimable" in (quick / "summary.md").read_text()


def test_figures_redraw_from_the_tables_alone(quick):
    # lossvar.plots draws the study's figures from its CSV tables: no rerun needed
    from lossvar import plots

    crit = _csv(quick, "critical_batch")
    fig = plots.steps_examples_figure(_csv(quick, "steps"), crit, confidence=0.95)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for c in crit.itertuples():
        assert any(f"= {plots.number(c.b_crit)}\n" in t for t in texts), (c.b_crit, texts)
    fig = plots.gradient_noise_figure(_csv(quick, "gradient_variance"), _csv(quick, "gradient_scaling"),
                                      confidence=0.95)
    assert len(fig.axes) == 2 * len(PROBLEMS) + 1  # the panels of each problem and the table

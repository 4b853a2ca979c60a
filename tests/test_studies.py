"""Every study's --quick run completes and its key claim holds, read from its CSV tables.

Agreement checks are |estimate - truth| <= Z * SE with Z = 3.29, a two-sided
false-failure rate of 1e-3 per check; this file makes about 60 such checks,
so a new seed would fail by chance with probability about 6%. The seeds are
fixed, so a given checkout passes or fails deterministically.
"""

import ast
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from scipy import stats as st

from lossvar import plots, stats, studies
from lossvar.results import read_table

sys.path.insert(0, str(Path(__file__).parent))
from bars import full_bars  # noqa: E402
from dispatch import alternate_environment  # noqa: E402

matplotlib.use("Agg")
Z = 3.29
#: The network case of the studies' --quick runs (--network 64-32-10 on digits).
NET = "mlp 64-32-10 tanh (digits)"


#: The progress bars each fixture's run wrote (its stderr), by study.
PROGRESS: dict = {}


def _run(tmp_path_factory, name, *extra):
    out = tmp_path_factory.mktemp(name) / "out"
    # Screen resolution: the figures' content is tested, not their print size. With
    # --progress: the bars must not change a bit (the verification reruns without them).
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = studies.run(name, ["--quick", "--seed", "1", "--dpi", "72", "--progress",
                                    "--out", str(out), *extra])
    assert status == 0, err.getvalue()
    PROGRESS[name] = err.getvalue()
    return out


def degenerate(summary):
    """Zero-width intervals and verdicts on p = nan printed in a summary."""
    zero = re.findall(r"\[([-+.\deE]+), \1\]", summary)
    return zero + re.findall(r"p = nan", summary)


def _csv(folder, name):
    return read_table(folder / f"{name}.csv")


@pytest.fixture(scope="module")
def variance_scaling(tmp_path_factory):
    return _run(tmp_path_factory, "variance_scaling")


@pytest.fixture(scope="module")
def sgd_vs_batch(tmp_path_factory):
    return _run(tmp_path_factory, "sgd_vs_batch")


@pytest.fixture(scope="module")
def erm_spread(tmp_path_factory):
    return _run(tmp_path_factory, "erm_spread")


@pytest.fixture(scope="module")
def robbins_monro(tmp_path_factory):
    return _run(tmp_path_factory, "robbins_monro")


@pytest.fixture(scope="module")
def trend_optimizers(tmp_path_factory):
    return _run(tmp_path_factory, "trend_optimizers")


@pytest.mark.reproducibility
@pytest.mark.parametrize("fixture", ["variance_scaling", "sgd_vs_batch", "erm_spread",
                                     "robbins_monro", "trend_optimizers"])
def test_folder_is_complete(fixture, request):
    folder = request.getfixturevalue(fixture)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["study"] == fixture
    assert manifest["parameters"]["quick"] is True and manifest["seed"] == 1
    for key in ("lossvar", "numpy", "scipy", "pandas", "python"):
        assert manifest["versions"][key]
    assert {"commit", "dirty"} <= set(manifest["git"])
    assert manifest["wall_time_seconds"] >= 0 and manifest["platform"]
    assert manifest["tables"]
    for entry in manifest["tables"].values():
        assert (folder / entry["file"]).is_file()
    for fig in manifest["figures"]:
        assert (folder / fig).stat().st_size > 0
    assert any(f.endswith(".svg") for f in manifest["figures"])
    summary = (folder / "summary.md").read_text()
    assert f"lossvar run {fixture}" in summary and "--seed 1" in summary


@pytest.mark.reproducibility
@pytest.mark.parametrize("fixture", ["variance_scaling", "sgd_vs_batch", "erm_spread",
                                     "robbins_monro", "trend_optimizers"])
def test_verified_under_another_cpu_dispatch(fixture, request):
    # Written under this machine's dispatch, rerun in a subprocess as another
    # CPU would (other numpy SIMD targets, another OpenBLAS kernel): identical
    # or reproduced to rounding, never DIFFERS.
    folder = request.getfixturevalue(fixture)
    env = {**os.environ, **alternate_environment(), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "lossvar.cli", "verify", str(folder)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DIFFERS" not in proc.stdout and "verified:" in proc.stdout


@pytest.mark.parametrize("fixture", ["erm_spread", "trend_optimizers"])
def test_same_tables_with_two_workers(fixture, request, tmp_path):
    # Both run on the engine (run_sgd, engine.simulate): two worker processes give the same bits.
    folder = request.getfixturevalue(fixture)
    out = tmp_path / "two"
    assert studies.run(fixture, ["--quick", "--seed", "1", "--dpi", "72", "--workers", "2",
                                 "--out", str(out)]) == 0
    tables = sorted(folder.glob("*.csv"))
    assert tables
    for csv in tables:
        assert csv.read_bytes() == (out / csv.name).read_bytes(), csv.name


def test_variance_scaling_exponent_is_minus_one(variance_scaling):
    fits = _csv(variance_scaling, "scaling_fit")
    # every source, the three regimes for the synthetic problem, two for the real sets
    assert set(fits.source) == {"synthetic", "breast_cancer", NET}
    assert set(fits.sampling[fits.source == NET]) == {"without_replacement", "with_replacement"}
    assert set(fits.sampling[fits.source == "synthetic"]) == {
        "fresh", "without_replacement", "with_replacement"}
    assert ((fits.exponent + 1).abs() <= Z * fits.se).all(), fits


def test_variance_scaling_matches_exact_and_full_batch(variance_scaling):
    t = _csv(variance_scaling, "variance")
    # Only the light-tailed synthetic losses: the real set's single-sample losses have
    # kurtosis near 100, and the fourth-moment SE needs far more than --quick's
    # replicates to be reliable there (tests/test_variance.py covers heavy tails).
    pos = t[(t.exact_variance > 0) & (t.source == "synthetic")]
    assert ((pos.variance - pos.exact_variance).abs() <= Z * pos.variance_se).all()
    full = t[t.estimator == "full"].set_index(["source", "sampling"])
    # fixed data set, whole set: no batch noise at all
    assert full.loc[("synthetic", "without_replacement"), "variance"] == 0.0
    # fresh data: Var(div) / N, the lecture's statement
    fresh = full.loc[("synthetic", "fresh")]
    assert fresh.exact_variance == pytest.approx(
        t[(t.sampling == "fresh") & (t.batch_size == 1)].exact_variance.iloc[0] / fresh.batch_size)


def test_sgd_beats_gd_at_equal_examples_on_redundant_set(sgd_vs_batch):
    curves = _csv(sgd_vs_batch, "curves")
    assert set(curves.problem) == {"least squares", NET}
    for _, t in curves.groupby("problem"):
        last = t[t.epoch == t.epoch.max()].set_index("method")
        gd = last.loc["GD (full batch)"]
        sgd = last.loc["SGD (B = 1)"]
        assert gd.excess_loss_se == 0  # deterministic
        assert sgd.excess_loss + Z * sgd.excess_loss_se < gd.excess_loss


@pytest.mark.parametrize("problem", ["least squares", NET])
def test_sgd_advantage_grows_with_redundancy_and_shrinks_with_diversity(sgd_vs_batch, problem):
    sweep = _csv(sgd_vs_batch, "sweep")
    sweep = sweep[sweep.problem == problem]
    red = sweep[sweep.sweep == "redundancy"].sort_values("copies")
    div = sweep[sweep.sweep == "diversity"].sort_values("diversity")
    lo = red.advantage - Z * red.advantage_se
    hi = red.advantage + Z * red.advantage_se
    assert (lo.to_numpy()[1:] > hi.to_numpy()[:-1]).all(), red  # strictly growing
    lo = div.advantage - Z * div.advantage_se
    hi = div.advantage + Z * div.advantage_se
    assert lo.iloc[0] > hi.iloc[-1], div  # shrinks with diversity ...
    assert (lo > 1).all(), div  # ... without vanishing
    assert div.var_div.is_monotonic_increasing
    verdict = f"- {problem}: the advantage decreases with diversity"
    assert verdict in (sgd_vs_batch / "summary.md").read_text()


def test_erm_spread_falls_like_one_over_n(erm_spread):
    fit = _csv(erm_spread, "fit")
    assert ((fit.exponent + 1).abs() <= Z * fit.se).all(), fit
    spread = _csv(erm_spread, "spread")
    assert ((spread.spread - spread.exact).abs() <= Z * spread.spread_se).all()
    # larger loss variance, larger spread, at every N
    for _, t in spread.groupby("n"):
        t = t.sort_values("var_div")
        assert (t.ci_low.to_numpy()[1:] > t.ci_high.to_numpy()[:-1]).all()


def test_robbins_monro_verdicts_match_theory(robbins_monro):
    s = _csv(robbins_monro, "schedules")
    assert s.verdict_matches.all()
    assert list(s.rm_satisfied) == list(s.theory_satisfied)
    by = s.set_index("schedule")
    assert bool(by.loc["0.9/k^0.75", "rm_satisfied"]) and not by.loc["0.9/k^0.3", "rm_satisfied"]
    # Monte Carlo agrees with the exact recursion at the last step
    assert ((s.mc_final - s.exact_final).abs() <= Z * s.mc_final_se).all(), s
    # the fitted decay exponent agrees with the exact curve's over the same steps
    assert ((s.fitted_exponent - s.exact_local_exponent).abs() <= Z * s.fitted_se).all(), s
    # sufficient, not necessary: p <= 1/2 fails the conditions but converges
    slow = s[(s.p <= 0.5) & (s.family == "polynomial")]
    assert (~slow.rm_satisfied & slow.theory_converges & (slow.fitted_ci_low > 0)).all()


def test_robbins_monro_polyak_ruppert(robbins_monro):
    s = _csv(robbins_monro, "schedules").set_index("schedule")
    for name in ("constant 0.1/mu", "0.9/k^0.75"):
        r = s.loc[name]
        assert abs(r.avg_scaled - r.avg_scaled_exact) <= Z * r.avg_scaled_se
    slow = s.loc["c/k, 2c mu = 0.5 < 1"]
    assert slow.avg_scaled - Z * slow.avg_scaled_se > 10 * slow.polyak_ruppert_limit


def test_trend_optimizers_smooth_the_steep_direction(trend_optimizers):
    u = _csv(trend_optimizers, "update_variance")
    sgd = u[u.optimizer == "SGD"]
    assert ((sgd.mean_sq_update - sgd.exact).abs() <= Z * sgd.se).all()
    steep = u[u.coordinate.str.startswith("steep")].set_index("optimizer")
    for name in ("momentum 0.9", "Nesterov 0.9", "RMSProp", "Adam"):
        assert (steep.loc[name, "mean_sq_update"] + Z * steep.loc[name, "se"]
                < steep.loc["SGD", "mean_sq_update"] - Z * steep.loc["SGD", "se"])
    curves = _csv(trend_optimizers, "curves")
    assert set(curves.problem) == {"quadratic", "wine"}
    assert np.isfinite(curves.excess_loss).all()
    paths = _csv(trend_optimizers, "paths")
    assert set(paths.optimizer) == set(u.optimizer)


def test_trend_optimizers_differ_on_the_network_and_say_so_run_by_run(trend_optimizers):
    # Paired comparisons with SGD on the same batches: each interval holds its difference, the
    # verdicts follow the Holm p-values, and the optimizers differ somewhere (empirical claims).
    c = _csv(trend_optimizers, "network_comparisons")
    assert set(c.baseline) == {"SGD"} and len(c) == 8
    assert ((c.ci_low <= c.difference) & (c.difference <= c.ci_high)).all()
    assert (c.holm_pvalue >= c.pvalue).all()
    significant = c.holm_pvalue < 0.05
    assert (c.verdict[~significant] == "no difference detected").all()
    assert c.verdict[significant].str.endswith("than SGD").all() and significant.any()
    u = _csv(trend_optimizers, "network_updates")
    assert set(u.optimizer) == {"SGD", "momentum 0.9", "Nesterov 0.9", "RMSProp", "Adam"}
    assert ((u.ci_low < u.mean_sq_update) & (u.mean_sq_update < u.ci_high)).all()
    assert "(empirical: no exact theory)" in (trend_optimizers / "summary.md").read_text()


def test_robbins_monro_network_schedules_that_stall_end_higher(robbins_monro):
    # sum eta_k < inf (0.5 (101/(k + 100))^2 and the exponential decay) freezes the network
    # early: both end above the constant step, run by run.
    c = _csv(robbins_monro, "network_comparisons").set_index(["metric", "method"])
    for method in ("p = 2", "exponential"):
        row = c.loc[("final loss", method)]
        assert row.verdict == "higher than constant" and row.ci_low > 0, row
    assert "(empirical: no exact theory)" in (robbins_monro / "summary.md").read_text()


VERDICT_STUDIES = ["variance_scaling", "erm_spread", "robbins_monro", "trend_optimizers"]


@pytest.mark.parametrize("fixture", VERDICT_STUDIES)
def test_summary_leads_with_calibrated_verdicts(fixture, request):
    folder = request.getfixturevalue(fixture)
    agreement = _csv(folder, "agreement")
    assert len(agreement) >= 1 and agreement.agrees.all(), agreement
    assert (agreement.holm_pvalue >= agreement.pvalue.fillna(1.0)).all()
    lines = (folder / "summary.md").read_text().splitlines()
    verdicts = [i for i, line in enumerate(lines) if line.startswith("- ") and "with theory (p = " in line]
    # one line per verdict, right after the title and the sentence saying what is tested
    assert verdicts == list(range(4, 4 + len(agreement))), lines[:10]
    assert all("agrees with theory" in lines[i] and "DISAGREES" not in lines[i] for i in verdicts)
    assert "after Holm over the study's tables" in lines[verdicts[0]]


def test_sgd_vs_batch_says_it_has_no_exact_theory(sgd_vs_batch):
    assert not (sgd_vs_batch / "agreement.csv").exists()
    lines = (sgd_vs_batch / "summary.md").read_text().splitlines()
    assert lines[2].startswith("No verdict against exact theory")


def test_confidence_sets_the_intervals(tmp_path):
    out = tmp_path / "erm"
    assert studies.run("erm_spread", ["--quick", "--seed", "1", "--replicates", "50", "--sizes", "10,20,40",
                                      "--noise-std", "1", "--confidence", "0.8", "--out", str(out)]) == 0
    t = _csv(out, "spread")
    z = st.norm.ppf(0.9)
    np.testing.assert_allclose(t.ci_high - t.spread, z * t.spread_se, rtol=1e-9)
    assert "80% interval" in (out / "summary.md").read_text()


# Calibration of lossvar.stats.estimate_agreement: under the theory P(p < 0.05) = 0.05
# (independent rows: chi-square of the normal scores) or <= 0.05 (Holm's test, valid
# under dependence). Each binomial check fails by chance with probability at most
# BINOM_LEVEL = 1e-3 (three checks: about 3e-3); the seeds are fixed.
CAL_SEEDS = 400
BINOM_LEVEL = 1e-3


def _mean_rows(rng, rows=5, replicates=1000, shift=None):
    """Means of i.i.d. exponential(1) replicates (skewed), their SE, and exact 1."""
    x = rng.exponential(size=(rows, replicates))
    exact = np.ones(rows) if shift is None else 1.0 + np.asarray(shift)
    return x.mean(axis=1), x.std(axis=1, ddof=1) / np.sqrt(replicates), exact


@pytest.mark.parametrize("independent", [True, False])
def test_estimate_agreement_is_calibrated(independent):
    hits = 0
    for seed in range(CAL_SEEDS):
        est, se, exact = _mean_rows(np.random.default_rng([11, seed]))
        if not independent:  # rows sharing replicates: the same draws, partly reused
            est = np.concatenate([est, est[:2]])
            se, exact = np.concatenate([se, se[:2]]), np.concatenate([exact, exact[:2]])
        hits += stats.estimate_agreement(est, se, exact, independent=independent).pvalue < 0.05
    if independent:
        assert st.binomtest(hits, CAL_SEEDS, 0.05).pvalue > BINOM_LEVEL, hits
    else:  # Holm is conservative: only too many rejections would be a failure
        assert st.binomtest(hits, CAL_SEEDS, 0.05, alternative="greater").pvalue > BINOM_LEVEL, hits


@pytest.mark.parametrize("independent", [True, False])
def test_estimate_agreement_rejects_a_wrong_exact_value(independent):
    # One row's exact value off by 5 standard errors (0.158 at R = 1000): per seed the
    # verdict rejects (chi-square power 0.985, Holm's 0.992) and names that row (0.992)
    # with probability at least 0.977, so fewer than 17 of 20 has probability < 1e-3.
    rejected = 0
    for seed in range(20):
        est, se, exact = _mean_rows(np.random.default_rng([12, seed]), shift=[0, 0, 5 / np.sqrt(1000), 0, 0])
        a = stats.estimate_agreement(est, se, exact, independent=independent, labels=list("abcde"))
        rejected += not a.agrees and "c" in a.drivers
    assert rejected >= 17


def test_study_verdicts_holm_across_tables():
    ok = stats.estimate_agreement([1.0, 2.0], [0.1, 0.1], [1.0, 2.05])
    bad = stats.estimate_agreement([1.0, 2.0], [0.1, 0.1], [1.0, 2.5], labels=["x", "y"])
    t = stats.study_verdicts([(dict(table="a"), ok), (dict(table="b"), bad)], 0.95, row_label="row")
    assert list(t.columns[:2]) == ["table", "pvalue"] and "verdict" in t
    np.testing.assert_allclose(t.holm_pvalue, stats.holm([ok.pvalue, bad.pvalue]))
    assert t.agrees.tolist() == [True, False]
    assert t.verdict[1].startswith("DISAGREES with theory") and "driven by row = y" in t.verdict[1]


def test_unknown_study_lists_valid_names():
    with pytest.raises(ValueError, match="the studies are: variance_scaling, sgd_vs_batch"):
        studies.get("nope")


def test_existing_folder_is_not_overwritten(erm_spread, capsys):
    before = (erm_spread / "manifest.json").read_bytes()
    assert studies.run("erm_spread", ["--quick", "--out", str(erm_spread)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (erm_spread / "manifest.json").read_bytes() == before


PHASES = {
    "variance_scaling": ["variance, synthetic, fresh data",
                         "variance, synthetic, fixed data, without replacement",
                         "variance, synthetic, fixed data, with replacement",
                         "variance, breast_cancer, without replacement",
                         "variance, breast_cancer, with replacement",
                         f"variance, {NET}, without replacement",
                         f"variance, {NET}, with replacement"],
    "sgd_vs_batch": [f"{phase}, {case}" for case in ("least squares", NET)
                     for phase in ("SGD, mini-batch and GD at equal computation",
                                   "redundancy and diversity sweeps")],
    "erm_spread": ["E||w_N - w*||^2, 18 (sigma, N) cells"],
    "robbins_monro": ["SGD runs, 10 schedules", f"SGD runs, 6 schedules on {NET}"],
    "trend_optimizers": ["5 optimizers on the noisy quadratic", "5 optimizers on wine",
                         f"5 optimizers on {NET}"],
}


@pytest.mark.parametrize("fixture", list(PHASES))
def test_one_labelled_bar_per_phase_ending_full(fixture, request):
    request.getfixturevalue(fixture)
    assert full_bars(PROGRESS[fixture]) == PHASES[fixture]


@pytest.mark.parametrize("fixture", list(PHASES))
def test_summary_prints_no_degenerate_interval_or_verdict(fixture, request):
    summary = (request.getfixturevalue(fixture) / "summary.md").read_text()
    assert not degenerate(summary), degenerate(summary)


def test_exponent_tests_carry_holm_like_the_verdicts_beside_them(variance_scaling, erm_spread):
    for folder, table in ((variance_scaling, "scaling_fit"), (erm_spread, "fit")):
        fits = _csv(folder, table)
        np.testing.assert_allclose(fits.holm_pvalue, stats.holm(fits.pvalue), rtol=1e-12)
        summary = (folder / "summary.md").read_text()
        assert f"Holm's correction across the {len(fits)}" in summary
        assert all(f"| {p:.3g} | {h:.3g} |" in summary
                   for p, h in zip(fits.pvalue, fits.holm_pvalue, strict=True))


def test_gd_and_the_whole_data_set_are_exact_not_zero_width(sgd_vs_batch, variance_scaling):
    assert "| GD (full batch) | " in (sgd_vs_batch / "summary.md").read_text()
    assert "exact (deterministic) |" in (sgd_vs_batch / "summary.md").read_text()
    lines = (variance_scaling / "summary.md").read_text().splitlines()
    whole = [line for line in lines if "without_replacement, B = N" in line]  # synthetic, real, network
    assert len(whole) == 3 and all("exactly 0" in line for line in whole), whole


@pytest.mark.parametrize(("name", "argv"), [
    ("robbins_monro", ["--steps", "15", "--replicates", "2"]),
    ("variance_scaling", ["--replicates", "21", "--n", "5", "--batch-sizes", "1,2,4,full",
                          "--data", "none"]),
])
def test_smallest_allowed_values_run_and_print_no_degenerate_result(name, argv, tmp_path):
    # The floors of the checks (MIN_STEPS, MIN_REPLICATES) are where a run still makes
    # sense: it completes, and its summary shows no zero-width interval or p = nan.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert studies.run(name, ["--quick", "--dpi", "40", "--out", str(tmp_path / "o"), *argv]) == 0
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert not degenerate(summary), summary


def test_figures_name_a_verdict_with_no_tested_row():
    # Standard errors of 0: no row can be tested, so the figures say "no verdict".
    none = stats.estimate_agreement([1.0, 2.0], [0.0, 0.0], [1.0, 2.0], labels=["a", "b"])
    some = stats.estimate_agreement([1.0, 2.0], [0.1, 0.1], [1.0, 2.05])
    bad = stats.estimate_agreement([1.0, 2.0], [0.1, 0.1], [1.0, 2.5])
    t = stats.study_verdicts([(dict(table=k), a)
                              for k, a in zip("xyz", (none, some, bad), strict=True)], 0.95)
    assert [plots.verdict_word(r) for r in t.itertuples()] == ["no verdict", "agrees", "DISAGREES"]


def _lossvar_uses(path):
    """The dotted lossvar names a module imports or reads (``lossvar.stats.holm``), through
    absolute imports and the attributes of the names they bind."""
    tree = ast.parse(path.read_text())
    bound, uses = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "lossvar":
                    bound[a.asname or "lossvar"] = a.name if a.asname else "lossvar"
                    uses.append(a.name)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module \
                and node.module.split(".")[0] == "lossvar":
            for a in node.names:
                bound[a.asname or a.name] = f"{node.module}.{a.name}"
                uses.append(f"{node.module}.{a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [], node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in bound:
                uses.append(".".join([bound[inner.id], *reversed(chain)]))
    return uses


@pytest.mark.parametrize("path", sorted((Path(studies.__file__).parent).rglob("*.py")),
                         ids=lambda p: p.name if p.parent.name == "studies" else f"{p.parent.name}/{p.name}")
def test_studies_compose_public_names_only(path):
    # A study composes the public API: no private module or name of lossvar, however reached.
    private = sorted({u for u in _lossvar_uses(path)
                      if any(part.startswith("_") and not part.endswith("__") for part in u.split("."))})
    assert not private, private

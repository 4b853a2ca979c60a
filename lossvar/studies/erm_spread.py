"""The spread of the empirical-risk minimizer around the expected-risk minimizer.

The lecture: "the larger the variance of Loss(W), the greater the likelihood
that the W that minimizes the empirical risk will differ significantly from
the W that minimizes the expected divergence".

Least squares on a Gaussian linear model x ~ N(0, I_d), y = x . w* + eps,
eps ~ N(0, sigma^2), for several noise levels sigma (the per-sample loss at w*
has Var(div) = sigma^4 / 2). For each N on a log grid, many fresh data sets
of N examples; w_N = argmin of the empirical risk (``problem.minimize``);
E||w_N - w*||^2 with its standard error, beside the exact value for ordinary
least squares with Gaussian design,

    E||w_N - w*||^2 = sigma^2 d / (N - d - 1)      (N > d + 1),

the mean of sigma^2 tr((X^T X)^-1), an inverse-Wishart mean (Anderson 2003,
An Introduction to Multivariate Statistical Analysis, 3rd ed., sec. 7.2).
It falls like 1/N: the exponent of E||w_N - w*||^2 against N - d - 1 is fitted
and must be -1; at fixed N the spread grows with Var(div) (as sqrt(2 Var(div))).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import lossvar
from lossvar import plots, studies
from lossvar.studies import checks

NAME = "erm_spread"
FULL = {"replicates": 4000, "sizes": [10, 20, 40, 80, 160, 320, 640, 1280]}
QUICK = {"replicates": 400, "sizes": [10, 20, 40, 80, 160, 320]}
#: What a least-squares solve of one data set costs beside drawing its numbers, in
#: drawn numbers (measured: about 40 us against 0.045 us a number); progress bar only.
SOLVE_COST = 1000
#: Fewest data sets per cell for a verdict. The spread of one data set is skewed (an
#: inverse-Wishart form), so the normal reference of its mean's z is reached slowly:
#: measured under the exact theory (quick sizes, 1000 simulated studies), the verdict
#: rejects at the 5% level 99% of the time at 2 data sets a cell, 13% at 100, 7% at 400.
MIN_VERDICT_REPLICATES = 400


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=checks.count(2), default=None, help="fresh data sets per "
                   f"(sigma, N), at least 2 for a standard error and {MIN_VERDICT_REPLICATES} for "
                   f"a verdict (default {FULL['replicates']}, quick {QUICK['replicates']})")
    p.add_argument("--sizes", type=checks.listing(checks.count(1), at_least=3), default=None,
                   metavar="LIST", help="data set sizes N, at least 3 for the fit of the exponent "
                   "(default 10,20,...,1280); each > --dim + 1")
    p.add_argument("--noise-std", type=checks.listing(checks.number(0, low_open=True)),
                   default=[0.5, 1.0, 2.0], metavar="LIST",
                   help="noise levels sigma > 0 (default 0.5,1,2)")
    p.add_argument("--dim", type=checks.count(1), default=3, help="features d (default 3)")
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default 0.95)")
    return p


class _Spread:
    """||w_N - w*||^2 for fresh data sets of n examples: the block simulator of one
    (sigma, N) cell on the Monte Carlo engine (picklable, so it runs on workers)."""

    def __init__(self, population, n):
        self.population, self.n = population, n

    def __call__(self, rng, size):
        pop, n = self.population, self.n
        data = pop.sample(size * n, rng)
        X, y = data.X.reshape(size, n, -1), data.y.reshape(size, n)
        out = np.empty(size)
        for r in range(size):
            out[r] = np.sum((pop.problem.minimize(X[r], y[r]) - pop.w_star) ** 2)
        return out


def check(args):
    bad = [n for n in args.sizes if n <= args.dim + 1]
    if bad:  # E||w_N - w*||^2 is finite only for N > d + 1
        raise ValueError(f"--sizes must all exceed --dim + 1 = {args.dim + 1} (the expected spread "
                         f"is finite only there); got {','.join(map(str, bad))}")
    # a block: at least 16 data sets of the largest N
    checks.held(16 * max(args.sizes) * (args.dim + 1),
                f"--sizes up to {max(args.sizes)} with --dim {args.dim}")


def compute(args, folder):
    d = args.dim
    w_star = np.linspace(1.0, -1.0, d)
    # One engine condition per (sigma, N), key (i, j): blocks of data sets drawn from
    # their own streams, so the table is the same bits for any --workers.
    cells, conditions = [], []
    for i, sigma in enumerate(args.noise_std):
        pop = lossvar.GaussianLinearPopulation(w_star, noise_std=sigma)
        var_div = float(pop.loss_moments(w_star)[1])
        for j, n in enumerate(args.sizes):
            cells.append((sigma, var_div, n))
            conditions.append(lossvar.engine.Condition(
                key=(i, j), replicates=args.replicates,
                block_size=lossvar.engine.block_size(n * (d + 1)), simulate=_Spread(pop, n),
                label=f"sigma={sigma:g}, N={n}", cost=n * (d + 1) + SOLVE_COST))
    with checks.phase(args, f"E||w_N - w*||^2, {len(conditions)} (sigma, N) cells"):
        outputs = lossvar.engine.run(conditions, lossvar.streams.as_seed_sequence(args.seed),
                                     **studies.execution(args))
    rows = []
    for (sigma, var_div, n), out in zip(cells, outputs, strict=True):
        m, se = out.moments.mean, out.moments.mean_se()
        low, high = lossvar.stats.mean_interval(m, se, args.confidence)
        rows.append(dict(noise_std=sigma, var_div=var_div, n=n, replicates=out.moments.count,
                         spread=m, spread_se=se, ci_low=low, ci_high=high,
                         exact=sigma**2 * d / (n - d - 1), effective_n=n - d - 1))
    spread = pd.DataFrame(rows)
    fits = []
    for sigma, t in spread.groupby("noise_std", sort=False):
        # scaling_fit fits log(variance) ~ a log(batch_size) with weights 1/SE(log)^2
        # and tests a = -1: exactly the question here, with N - d - 1 as the size.
        fit = lossvar.scaling_fit(pd.DataFrame({"batch_size": t.effective_n,
                                                "variance": t.spread,
                                                "variance_se": t.spread_se}),
                                  confidence=args.confidence)
        fits.append(dict(noise_std=sigma, var_div=t.var_div.iloc[0], exponent=fit.exponent,
                         se=fit.se, ci_low=fit.ci_low, ci_high=fit.ci_high, pvalue=fit.pvalue,
                         chi2=fit.chi2, chi2_pvalue=fit.chi2_pvalue, confidence=fit.confidence))
    fits = pd.DataFrame(fits)
    fits["holm_pvalue"] = lossvar.stats.holm(fits.pvalue.to_numpy(float))  # a family, as the verdicts
    verdicts = _verdicts(spread, args.confidence)
    folder.table("spread", spread)
    folder.table("fit", fits)
    folder.table("agreement", verdicts)
    _figure(folder, spread, args, fits=fits, verdicts=verdicts)
    return _summary(args, spread, fits, verdicts)


def _verdicts(spread, confidence):
    """The verdict on the spread table: every (sigma, N) cell is the mean of its own
    independent data sets (its own engine condition and streams), so the rows are independent; each gets
    a normal z with its Monte Carlo SE, combined by sum z^2 against chi-square. Below
    MIN_VERDICT_REPLICATES data sets a cell no row is tested: no verdict."""
    few = bool((spread.replicates < MIN_VERDICT_REPLICATES).any())
    a = lossvar.stats.estimate_agreement(
        spread.spread, spread.spread_se, spread.exact, independent=True, confidence=confidence,
        labels=[f"{s:g},{n}" for s, n in zip(spread.noise_std, spread.n, strict=True)],
        pvalues=np.full(len(spread), np.nan) if few else None)
    return lossvar.stats.study_verdicts(
        [(dict(table="spread"), a)], confidence, row_label="(sigma, N)",
        untested_reason=f"fewer than {MIN_VERDICT_REPLICATES} data sets, where the normal "
                        "reference is not calibrated")


def _figure(folder, spread, args, fits=None, verdicts=None):
    """E||w_N - w*||^2 against N (one colour per sigma) with Monte Carlo / exact below it,
    the same against Var(div) (an exact line per N), and a table of the fitted exponents
    and the verdict (``fits``, ``verdicts``: the study's fit and agreement tables)."""
    import matplotlib.pyplot as plt
    from matplotlib.transforms import ScaledTranslation

    d = args.dim
    sigmas = list(dict.fromkeys(spread.noise_std))
    names = [f"sigma={s:g}" for s in sigmas]
    colors = dict(zip(sigmas, plots.palette(names).values(), strict=True))
    marks = dict(zip(sigmas, plots.markers(names).values(), strict=True))
    level = f"{100 * args.confidence:.4g}%"
    spread = spread.sort_values(["noise_std", "n"])
    sizes = sorted(spread.n.unique())
    ylabel = r"$\mathbb{E}\,\|w_N - w^*\|^2$"
    dodge = dict(zip(sigmas, 10 ** ((np.arange(len(sigmas)) - (len(sigmas) - 1) / 2) * 0.03),
                     strict=True))
    rows = [] if fits is None else list(fits.itertuples())
    with plots.style():
        table_h = (len(rows) + 2.4) * 1.3 * 7 / 72 + (0.45 if verdicts is not None else 0)
        fig = plt.figure(figsize=(plots.FULL_WIDTH, 3.7 + table_h), layout="constrained")
        grid = fig.add_gridspec(3, 2, height_ratios=[2.5, 1.2, table_h])
        ax = fig.add_subplot(grid[0, 0])
        rax = fig.add_subplot(grid[1, 0], sharex=ax)
        vax = fig.add_subplot(grid[0:2, 1])
        n_dense = np.geomspace(min(sizes), max(sizes), 200)
        for s in sigmas:
            t = spread[spread.noise_std == s]
            ax.plot(n_dense, s**2 * d / (n_dense - d - 1), **plots.EXACT)
            plots.mc_points(ax, t.n * dodge[s], t.spread, t.ci_low, t.ci_high, color=colors[s],
                            marker=marks[s], label=rf"$\sigma = {s:g}$")
            plots.mc_points(rax, t.n * dodge[s], t.spread / t.exact, t.ci_low / t.exact,
                            t.ci_high / t.exact, color=colors[s], marker=marks[s])
        rax.axhline(1.0, **plots.EXACT)
        for a in (ax, rax):
            a.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.tick_params(labelbottom=False)
        ax.set_title(r"The spread falls like $1/N$: exact $\sigma^2 d\,/\,(N - d - 1)$")
        lo, hi = rax.get_ylim()
        half = max(1 - lo, hi - 1)
        rax.set_ylim(1 - half, 1 + half)
        rax.set_ylabel("Monte Carlo / exact")
        rax.set_xlabel(r"data set size $N$")
        # against Var(div): the markers of each sigma, an exact line per N, labelled at its end
        v = spread.var_div.to_numpy(float)
        v_dense = np.geomspace(v.min(), v.max(), 200)
        for n in sizes:
            vax.plot(v_dense, np.sqrt(2 * v_dense) * d / (n - d - 1), **plots.EXACT)
            vax.text(v.max() * 1.45, np.sqrt(2 * v.max()) * d / (n - d - 1), f"$N = {n}$",
                     fontsize=6.5, va="center", ha="left", color="0.15")
        for s in sigmas:
            t = spread[spread.noise_std == s]
            plots.mc_points(vax, t.var_div, t.spread, t.ci_low, t.ci_high, color=colors[s],
                            marker=marks[s])
        vax.set_xscale("log")
        vax.set_yscale("log")
        vax.set_xlim(v.min() / 1.6, v.max() * 4.5)
        vax.set_xlabel(r"$\mathrm{Var}(\mathrm{div})$, variance of the per-sample loss at $w^*$")
        vax.set_ylabel(ylabel)
        vax.set_title(r"Larger loss variance, larger spread: $\sigma^2 = \sqrt{2\,\mathrm{Var}"
                      r"(\mathrm{div})}$")
        handles = {}
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles[lab] = h
        handles["exact theory"] = plt.Line2D([], [], **plots.EXACT)
        fig.legend(handles.values(), handles.keys(), loc="outside upper center",
                   ncol=len(handles), columnspacing=1.6,
                   title=f"Monte Carlo means of {args.replicates} fresh data sets per cell "
                         f"(markers) with {level} confidence intervals (bars)")
        tab = fig.add_subplot(grid[2, :])
        cells = [[rf"$\sigma = {f.noise_std:g}$", f"{f.var_div:.4g}",
                  f"{f.exponent:.4f}  [{f.ci_low:.4f}, {f.ci_high:.4f}]".replace("-", "\u2212"),
                  f"{f.pvalue:#.2g}, Holm {f.holm_pvalue:#.2g}"] for f in rows]
        header = ["noise", r"$\mathrm{Var}(\mathrm{div})$",
                  f"exponent $a$ of $\\mathbb{{E}}\\,\\|w_N - w^*\\|^2 \\propto (N - d - 1)^a$\n"
                  f"({level} CI)", "p-value of $a = -1$\n(raw, Holm)"]
        if rows:
            plots.table_panel(tab, header, cells, colors=[colors[f.noise_std] for f in rows],
                              marks=[marks[f.noise_std] for f in rows], color_col=0, x0=0.1)
            for text in tab.texts:
                text.set_fontweight("normal")
        else:
            tab.set_axis_off()
        if verdicts is not None:
            v0 = verdicts.iloc[0]
            below = (len(rows) + 2 + 0.9) * 1.3 * 7 / 72
            verdict = checks.verdict_phrase(v0, f"p = {v0.pvalue:#.2g}; {v0.misses} of "
                                            f"{v0.intervals} intervals miss the exact value, "
                                            f"{v0.expected_misses:.2g} expected",
                                            f"fewer than {MIN_VERDICT_REPLICATES} data sets a cell")
            tab.text(0, 1, f"Monte Carlo against exact theory, every ($\\sigma$, $N$): {verdict}",
                     fontsize=7, va="top", ha="left", color="0.05",
                     transform=tab.transAxes + ScaledTranslation(0.1, -below, fig.dpi_scale_trans))
    plots.caption(fig, (
        f"Least squares on a Gaussian linear model, $d = {d}$ features, noise $\\sigma$; per "
        f"($\\sigma$, $N$) {args.replicates} fresh data sets of $N$ examples. Markers: Monte Carlo "
        f"means of $\\|w_N - w^*\\|^2$ (left offset slightly in $N$ so the noise levels do not "
        f"hide one another); bars: {plots.interval_words(args.confidence)} (normal approximation, "
        "Monte Carlo standard error), on the log scale shorter than the markers, the lower left "
        "panel shows them. Dark lines: exact theory $\\sigma^2 d/(N - d - 1)$ (an inverse-Wishart "
        "mean), drawn over the markers; right, one per $N$, against $\\mathrm{Var}(\\mathrm{div}) = "
        "\\sigma^4/2$. Table: exponent fitted by weighted least squares on log-log, its interval "
        f"and the p-value of $a = -1$, raw and after Holm's correction across the {len(rows)} "
        "noise levels; verdict: sum of squared z against chi-square, at level "
        f"{1 - args.confidence:.2g} for the study."))
    folder.figure("spread", fig)


def _summary(args, spread, fits, verdicts):
    level = f"{args.confidence:.0%}"
    lines = [f"# erm_spread (seed {args.seed}, {args.replicates} data sets per cell, "
             f"d = {args.dim})", "",
             "Does the Monte Carlo agree with the theory? Each (sigma, N) cell's mean of "
             "||w_N - w*||^2 against the exact sigma^2 d / (N - d - 1) (docs/theory.md, "
             "section 8): normal z with the Monte Carlo standard error; the cells use independent "
             "data sets, so the rows combine as sum z^2 against chi-square, at level "
             f"{1 - args.confidence:.2g} for the study (Holm across its tables):", ""]
    lines += [f"- {v.table}: {v.verdict}" for v in verdicts.itertuples()]
    lines += ["",
             "Exponent a of E||w_N - w*||^2 ~ (N - d - 1)^a (weighted log-log fit; the claim is "
             f"a = -1), {args.confidence:.0%} intervals; p-values raw and after Holm's correction "
             f"across the {len(fits)} noise levels:", "",
             "| sigma | Var(div) | exponent | interval | p (a = -1) | Holm |",
             "|---|---|---|---|---|---|"]
    for f in fits.itertuples():
        lines.append(f"| {f.noise_std:g} | {f.var_div:.4g} | {f.exponent:.4f} | "
                     f"[{f.ci_low:.4f}, {f.ci_high:.4f}] | {f.pvalue:.3g} | {f.holm_pvalue:.3g} |")
    big = spread[spread.n == spread.n.max()]
    lines += ["", f"At N = {int(big.n.iloc[0])}, against the exact sigma^2 d / (N - d - 1):", "",
              f"| sigma | Var(div) | E||w_N - w*||^2 | {level} interval | exact |",
              "|---|---|---|---|---|"]
    for r in big.itertuples():
        lines.append(f"| {r.noise_std:g} | {r.var_div:.4g} | {r.spread:.4g} | "
                     f"[{r.ci_low:.4g}, {r.ci_high:.4g}] | {r.exact:.4g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run erm_spread --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

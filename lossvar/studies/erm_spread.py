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
        outputs = lossvar.engine.simulate(conditions, lossvar.streams.as_seed_sequence(args.seed),
                                     **studies.execution(args))
    rows = []
    for (sigma, var_div, n), out in zip(cells, outputs, strict=True):
        m, se = out.moments.mean, out.moments.mean_se()
        low, high = lossvar.stats.mean_interval(m, se, args.confidence)
        rows.append(dict(noise_std=sigma, var_div=var_div, n=n, replicates=out.moments.count,
                         spread=m, spread_se=se, ci_low=low, ci_high=high,
                         exact=lossvar.theory.erm_spread(sigma**2, d, n),
                         effective_n=n - d - 1))
    spread = pd.DataFrame(rows)
    fits = []
    for sigma, t in spread.groupby("noise_std", sort=False):
        fit = lossvar.stats.power_law_fit(t.effective_n, t.spread, t.spread_se,
                                          confidence=args.confidence)  # tests a = -1
        fits.append(dict(noise_std=sigma, var_div=t.var_div.iloc[0], exponent=fit.exponent,
                         se=fit.se, ci_low=fit.exponent_ci.low, ci_high=fit.exponent_ci.high,
                         pvalue=fit.pvalue, chi2=fit.chi2, chi2_pvalue=fit.chi2_pvalue,
                         confidence=fit.confidence))
    fits = pd.DataFrame(fits)
    fits["holm_pvalue"] = lossvar.stats.holm(fits.pvalue.to_numpy(float))  # a family, as the verdicts
    verdicts = _verdicts(spread, args.confidence)
    folder.table("spread", spread)
    folder.table("fit", fits)
    folder.table("agreement", verdicts)
    folder.figure("spread", plots.erm_spread_figure(
        spread, fits, verdicts, dim=d, replicates=args.replicates, confidence=args.confidence,
        verdict_replicates=MIN_VERDICT_REPLICATES))
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

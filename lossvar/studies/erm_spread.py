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
from scipy import stats as st

import lossvar
from lossvar import plots, studies

NAME = "erm_spread"
FULL = {"replicates": 4000, "sizes": [10, 20, 40, 80, 160, 320, 640, 1280]}
QUICK = {"replicates": 400, "sizes": [10, 20, 40, 80, 160, 320]}


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=int, default=None, help="fresh data sets per (sigma, N) "
                   f"(default {FULL['replicates']}, quick {QUICK['replicates']})")
    p.add_argument("--sizes", type=studies.comma_list(int), default=None, metavar="LIST",
                   help="data set sizes N (default 10,20,...,1280); each > dim + 1")
    p.add_argument("--noise-std", type=studies.comma_list(float), default=[0.5, 1.0, 2.0],
                   metavar="LIST", help="noise levels sigma (default 0.5,1,2)")
    p.add_argument("--dim", type=int, default=3, help="features d (default 3)")
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default 0.95)")
    return p


def _spread(pop, n, replicates, seed):
    """||w_N - w*||^2 for ``replicates`` fresh data sets of n examples."""
    rng = np.random.default_rng(seed)
    out = np.empty(replicates)
    for r in range(replicates):
        data = pop.sample(n, rng)
        out[r] = np.sum((pop.problem.minimize(data.X, data.y) - pop.w_star) ** 2)
    return out


def check(args):
    bad = [n for n in args.sizes if n <= args.dim + 1]
    if bad:
        raise ValueError(f"--sizes must all exceed dim + 1 = {args.dim + 1}; got {bad}")


def compute(args, folder):
    d = args.dim
    w_star = np.linspace(1.0, -1.0, d)
    root = np.random.SeedSequence(args.seed)
    z = float(st.norm.ppf(0.5 + args.confidence / 2.0))
    rows = []
    for i, sigma in enumerate(args.noise_std):
        pop = lossvar.GaussianLinearPopulation(w_star, noise_std=sigma)
        var_div = float(pop.loss_moments(w_star)[1])
        for j, n in enumerate(args.sizes):
            seed = np.random.SeedSequence(root.entropy, spawn_key=(i, j))
            v = _spread(pop, n, args.replicates, seed)
            m, se = float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))
            rows.append(dict(noise_std=sigma, var_div=var_div, n=n, replicates=v.size,
                             spread=m, spread_se=se, ci_low=m - z * se, ci_high=m + z * se,
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
    verdicts = _verdicts(spread, args.confidence)
    folder.table("spread", spread)
    folder.table("fit", fits)
    folder.table("agreement", verdicts)
    _figure(folder, spread, args)
    return _summary(args, spread, fits, verdicts)


def _verdicts(spread, confidence):
    """The verdict on the spread table: every (sigma, N) cell is the mean of its own
    independent data sets (a seed per cell), so the rows are independent; each gets
    a normal z with its Monte Carlo SE, combined by sum z^2 against chi-square."""
    a = lossvar.stats.estimate_agreement(
        spread.spread, spread.spread_se, spread.exact, independent=True, confidence=confidence,
        labels=[f"{s:g},{n}" for s, n in zip(spread.noise_std, spread.n, strict=True)])
    return lossvar.stats.study_verdicts([(dict(table="spread"), a)], confidence,
                                        row_label="(sigma, N)")


def _figure(folder, spread, args):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6))
    plots.spread_plot(spread, x="n", hue="noise_std", ax=axes[0], xlabel="data set size N",
                      title=f"ERM spread falls like 1/N\npoints: Monte Carlo ({args.confidence:.0%} "
                            "bars); lines: sigma^2 d / (N - d - 1)")
    plots.spread_plot(spread, x="var_div", hue="n", ax=axes[1],
                      xlabel="Var(div): variance of the per-sample loss at w*",
                      title="Larger loss variance, larger spread\n(one colour per N)")
    fig.tight_layout()
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
             f"a = -1), {args.confidence:.0%} intervals:", "",
             "| sigma | Var(div) | exponent | interval | p (a = -1) |", "|---|---|---|---|---|"]
    for f in fits.itertuples():
        lines.append(f"| {f.noise_std:g} | {f.var_div:.4g} | {f.exponent:.4f} | "
                     f"[{f.ci_low:.4f}, {f.ci_high:.4f}] | {f.pvalue:.3g} |")
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

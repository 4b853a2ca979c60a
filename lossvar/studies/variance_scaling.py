"""Var(Loss) of the single-sample, mini-batch and full-batch estimators against B.

The lecture: Var(Loss) = Var(div) for the single sample, Var(div)/B for a
mini-batch and Var(div)/N for the full batch. Measured here in both regimes:

- fixed data set of N examples (the optimization noise of SGD): without
  replacement the variance is s^2/B (N - B)/(N - 1) and the full batch has
  none; with replacement it is s^2/B;
- fresh data every batch (a population): Var(div)/B, the full batch of N
  examples Var(div)/N, the lecture's statement.

On a synthetic problem with exact moments (Gaussian linear regression at
w = 0), on a real data set at its reference fit, and on a tanh network
trained on digits (--network, at a local minimum): the law concerns batch
means of fixed numbers, so it is exact for a network's losses at a fixed w as
for any others. The exponent of Var(B) ~ B^a is fitted after dividing by the
finite-population factor, and must be -1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import lossvar
from lossvar import plots, studies
from lossvar.studies import checks, network

NAME = "variance_scaling"
FULL = {"replicates": "auto", "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256, "full"],
        "network": "64-32-10"}
QUICK = {"replicates": 3_000, "batch_sizes": [1, 4, 16, 64, "full"], "network": "64-32-10"}
W_TRUE = (1.0, -2.0, 0.5)
#: Fewest replicates: with Gaussian batch means the sample variance's chi-square
#: reference has R - 1 degrees of freedom, and a row below stats.MIN_DOF of them
#: gets no p-value, so with fewer every row of every verdict would go untested.
MIN_REPLICATES = int(lossvar.stats.MIN_DOF) + 1


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=checks.count(MIN_REPLICATES, "auto"), default=None,
                   help=f"batches per batch size, at least {MIN_REPLICATES} (fewer leave every row "
                        "untested), or 'auto': planned per batch size from the "
                        "exact kurtosis for a relative standard error of 0.02 (fresh data: "
                        f"sequential) (default {FULL['replicates']}, quick {QUICK['replicates']})")
    p.add_argument("--batch-sizes", type=studies.batch_size_list, default=None, metavar="LIST",
                   help="batch sizes, 'full' for N (default: a log grid 1..256 and full); sizes "
                        "above a data set's N are skipped for it, and at least 3 must be below it")
    p.add_argument("--n", type=checks.count(2), default=1000,
                   help="size N of the synthetic data set (default: 1000)")
    p.add_argument("--noise-std", type=checks.number(0), default=1.0,
                   help="noise of the synthetic Gaussian linear model, >= 0 (default: 1)")
    p.add_argument("--data", default="breast_cancer",
                   help=f"real data set, one of {', '.join(lossvar.datasets.NAMES)}, or 'none'")
    network.add_flag(p, FULL["network"], QUICK["network"])
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default 0.95)")
    return p


def check(args):
    studies.check_data(args.data, none=True)
    sizes = args.batch_sizes
    twice = sorted({b for b in sizes if sizes.count(b) > 1}, key=str)
    if twice:
        raise ValueError(f"--batch-sizes must be distinct; got {twice[0]} twice in {sizes}")
    checks.ladder(sizes, args.n, "--batch-sizes", "the synthetic set of --n")
    if args.data != "none":
        n = lossvar.datasets.load(args.data).n
        checks.ladder(sizes, n, "--batch-sizes", f"--data {args.data}")
    if args.network != "none":
        checks.ladder(sizes, lossvar.datasets.load(network.DATA).n, "--batch-sizes",
                      f"--network {args.network} on {network.DATA}")
    # a block of fresh full batches: at least 16 batches of N examples of 3 features and a loss
    checks.held(16 * args.n * (len(W_TRUE) + 1), f"--n {args.n}")


def compute(args, folder):
    seeds = lossvar.streams.children(args.seed, 8)
    common = dict(replicates=args.replicates, confidence=args.confidence)
    common.update(studies.execution(args))
    pop = lossvar.GaussianLinearPopulation(np.array(W_TRUE), noise_std=args.noise_std)
    w = np.zeros(len(W_TRUE))
    fixed = pop.sample(args.n, seeds[0])
    sizes = checks.ladder(args.batch_sizes, args.n, "--batch-sizes", "the synthetic set")
    with checks.phase(args, "variance, synthetic, fresh data"):
        runs = [("synthetic", lossvar.variance_study(pop.problem, pop, w, sizes, full_size=args.n,
                                                     rng=seeds[1], **common))]
    for i, sampling in enumerate(("without_replacement", "with_replacement")):
        how = plots.sampling_label(sampling, short=True)
        with checks.phase(args, f"variance, synthetic, fixed data, {how}"):
            runs.append(("synthetic", lossvar.variance_study(pop.problem, fixed, w, sizes,
                                                             sampling=sampling, rng=seeds[2 + i],
                                                             **common)))
    real = None
    if args.data != "none":
        real = lossvar.datasets.load(args.data)
        problem = lossvar.datasets.problem_for(real)
        w_ref = lossvar.datasets.reference_params(real, problem)
        for i, sampling in enumerate(("without_replacement", "with_replacement")):
            with checks.phase(args, f"variance, {args.data}, {plots.sampling_label(sampling, short=True)}"):
                runs.append((args.data, lossvar.variance_study(
                    problem, real, w_ref, checks.ladder(args.batch_sizes, real.n, "--batch-sizes",
                                                        args.data),
                    sampling=sampling, rng=seeds[4 + i], **common)))
    net = network.load(args.network)
    if net is not None:
        with network.one_thread():
            w_net = net.reference()
        sizes = checks.ladder(args.batch_sizes, net.data.n, "--batch-sizes", net.label)
        for i, sampling in enumerate(("without_replacement", "with_replacement")):
            with checks.phase(args, f"variance, {net.label}, {plots.sampling_label(sampling, short=True)}"):
                runs.append((net.label, lossvar.variance_study(
                    net.problem, net.data, w_net, sizes, sampling=sampling, rng=seeds[6 + i],
                    **common)))
    variance = pd.concat([r.table.assign(source=src) for src, r in runs], ignore_index=True)
    variance = variance[["source", *[c for c in variance.columns if c != "source"]]]
    fits = []
    for src, r in runs:
        fit = lossvar.scaling_fit(r, confidence=args.confidence)
        fits.append(dict(source=src, sampling=r.table.sampling.iloc[0], exponent=fit.exponent,
                         se=fit.se, ci_low=fit.exponent_ci.low, ci_high=fit.exponent_ci.high,
                         pvalue=fit.pvalue, chi2=fit.chi2, chi2_pvalue=fit.chi2_pvalue,
                         batch_sizes=" ".join(str(b) for b in fit.batch_sizes),
                         confidence=fit.confidence))
    fit_table = _holm(pd.DataFrame(fits))
    verdicts = _verdicts(runs, args.confidence)
    folder.table("variance", variance)
    folder.table("scaling_fit", fit_table)
    folder.table("agreement", verdicts)
    titles = {"synthetic": f"synthetic, $N = {args.n}$:\nGaussian linear model at $w = 0$"}
    if real is not None:
        titles[args.data] = (f"{args.data}, $N = {real.n}$:\n"
                             f"{lossvar.datasets.problem_for(real).name} model at its fit")
    if net is not None:
        titles[net.label] = (f"{net.data.name}, $N = {net.data.n}$: network\n"
                             f"{'-'.join(map(str, net.problem.sizes))} tanh at a local minimum")
    folder.figure("variance", plots.variance_scaling_figure(
        variance, fit_table, verdicts, confidence=args.confidence, titles=titles))
    return _summary(args, variance, fit_table, verdicts, net)


def _verdicts(runs, confidence):
    """One verdict per table; a study shows several, so "agrees" is judged on the
    Holm-adjusted p-value across them (family-wise error 1 - confidence per study)."""
    return lossvar.stats.study_verdicts(
        [(dict(source=source, sampling=result.table.sampling.iloc[0]),
          lossvar.agreement(result, confidence=confidence)) for source, result in runs],
        confidence)


def _holm(fits):
    """The fits with ``holm_pvalue``: the exponent tests of a = -1 are a family, judged like
    the verdicts beside them, after Holm's adjustment across the study's fits."""
    return fits.assign(holm_pvalue=lossvar.stats.holm(fits.pvalue.to_numpy(float)))


def _summary(args, variance, fits, verdicts, net):
    reps = ("replicates planned per batch size from the exact kurtosis (relative standard "
            "error 0.02)" if args.replicates == "auto" else f"{args.replicates} batches per batch size")
    lines = [f"# variance_scaling (seed {args.seed}, {reps})", "",
             "Does the Monte Carlo agree with the theory? One calibrated test per table (every "
             "row against its exact sampling distribution, docs/theory.md, section 3), at level "
             f"{1 - args.confidence:.2g} for the study as a whole (Holm across its tables):", ""]
    lines += [f"- {v.source}, {v.sampling}: {v.verdict}" for v in verdicts.itertuples()]
    flagged = variance[~variance.interval_reliable.astype(bool)]
    if len(flagged):
        lines += ["", "Intervals that may under-cover (too few replicates for the tails; "
                  "column interval_reliable): " + ", ".join(
                      f"{r.source} {r.sampling} B = {r.batch_size}" for r in flagged.itertuples())]
    lines += ["",
             "Exponent a of Var(B) ~ B^a, fitted on log-log by weighted least squares after "
             "dividing by the finite-population factor (N - B)/(N - 1); the lecture's claim is "
             f"a = -1. {args.confidence:.0%} intervals.", "",
             f"The p-values of a = -1 are also given after Holm's correction across the {len(fits)} "
             "fits, as the verdicts above are across the tables.", "",
             "| source | sampling | exponent | interval | p (a = -1) | Holm |",
             "|---|---|---|---|---|---|"]
    for f in fits.itertuples():
        lines.append(f"| {f.source} | {f.sampling} | {f.exponent:.4f} | "
                     f"[{f.ci_low:.4f}, {f.ci_high:.4f}] | {f.pvalue:.3g} | {f.holm_pvalue:.3g} |")
    single = variance[(variance.batch_size == 1)]
    lines += ["", "Single-sample variance against the exact s^2 (or Var(div)):", "",
              "| source | sampling | R | Var(B = 1) | interval | exact | z |",
              "|---|---|---|---|---|---|---|"]
    for r in single.itertuples():
        lines.append(f"| {r.source} | {r.sampling} | {r.replicates} | {r.variance:.5g} | "
                     f"[{r.ci_low:.5g}, {r.ci_high:.5g}] | {r.exact_variance:.5g} | {r.z:.2f} |")
    full = variance[(variance.estimator == "full")]
    lines += ["", "Full batch: with a fixed data set it has no batch noise (variance exactly 0); "
              "with fresh data it is Var(div)/N:", ""]
    for r in full.itertuples():
        measured = ("exactly 0 (the whole data set: nothing drawn)" if r.exact_variance == 0
                    else f"{r.variance:.4g} {plots.interval_text(r.ci_low, r.ci_high, r.replicates)}")
        lines.append(f"- {r.source}, {r.sampling}, B = N = {r.batch_size}: variance {measured}, "
                     f"exact {r.exact_variance:.4g}")
    if net is not None:
        lines += ["", f"Network: {net.label}, p = {net.p}, at a local minimum of its mean loss "
                  "(lossvar.datasets.reference_params: full-batch L-BFGS from a fixed start, then "
                  "Newton steps, to gradient norm 1e-10). Every number of its rows has exact "
                  "theory: at a fixed w the per-example losses are fixed numbers, and the "
                  "variance of their batch means is exact for any numbers (docs/theory.md, "
                  "section 1), however the network got there."]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run variance_scaling --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

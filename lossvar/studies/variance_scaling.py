"""Var(Loss) of the single-sample, mini-batch and full-batch estimators against B.

The lecture: Var(Loss) = Var(div) for the single sample, Var(div)/B for a
mini-batch and Var(div)/N for the full batch. Measured here in both regimes:

- fixed data set of N examples (the optimization noise of SGD): without
  replacement the variance is s^2/B (N - B)/(N - 1) and the full batch has
  none; with replacement it is s^2/B;
- fresh data every batch (a population): Var(div)/B, the full batch of N
  examples Var(div)/N, the lecture's statement.

On a synthetic problem with exact moments (Gaussian linear regression at
w = 0) and on a real data set at its reference fit. The exponent of
Var(B) ~ B^a is fitted after dividing by the finite-population factor, and
must be -1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import lossvar
from lossvar import plots, studies
from lossvar.studies import checks

NAME = "variance_scaling"
FULL = {"replicates": "auto", "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256, "full"]}
QUICK = {"replicates": 3_000, "batch_sizes": [1, 4, 16, 64, "full"]}
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
    # a block of fresh full batches: at least 16 batches of N examples of 3 features and a loss
    checks.held(16 * args.n * (len(W_TRUE) + 1), f"--n {args.n}")


def compute(args, folder):
    seeds = lossvar.streams.children(args.seed, 6)
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
        with checks.phase(args, f"variance, synthetic, fixed data, {_NAMES[sampling]}"):
            runs.append(("synthetic", lossvar.variance_study(pop.problem, fixed, w, sizes,
                                                             sampling=sampling, rng=seeds[2 + i],
                                                             **common)))
    real = None
    if args.data != "none":
        real = lossvar.datasets.load(args.data)
        problem = lossvar.datasets.problem_for(real)
        w_ref = lossvar.datasets.reference_params(real, problem)
        for i, sampling in enumerate(("without_replacement", "with_replacement")):
            with checks.phase(args, f"variance, {args.data}, {_NAMES[sampling]}"):
                runs.append((args.data, lossvar.variance_study(
                    problem, real, w_ref, checks.ladder(args.batch_sizes, real.n, "--batch-sizes",
                                                        args.data),
                    sampling=sampling, rng=seeds[4 + i], **common)))
    variance = pd.concat([r.table.assign(source=src) for src, r in runs], ignore_index=True)
    variance = variance[["source", *[c for c in variance.columns if c != "source"]]]
    fits = []
    for src, r in runs:
        fit = lossvar.scaling_fit(r, confidence=args.confidence)
        fits.append(dict(source=src, sampling=r.table.sampling.iloc[0], exponent=fit.exponent,
                         se=fit.se, ci_low=fit.ci_low, ci_high=fit.ci_high, pvalue=fit.pvalue,
                         chi2=fit.chi2, chi2_pvalue=fit.chi2_pvalue,
                         batch_sizes=" ".join(str(b) for b in fit.batch_sizes),
                         confidence=fit.confidence))
    fit_table = _holm(pd.DataFrame(fits))
    verdicts = _verdicts(runs, args.confidence)
    folder.table("variance", variance)
    folder.table("scaling_fit", fit_table)
    folder.table("agreement", verdicts)
    _figure(folder, variance, args, real)
    return _summary(args, variance, fit_table, verdicts)


_NAMES = {"without_replacement": "without replacement", "with_replacement": "with replacement",
          "fresh": "fresh data"}


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


def _figure(folder, variance, args, real, fits=None, verdicts=None):
    """Per source a log-log panel of Var(B) and a panel of Monte Carlo / exact, and below
    them the fitted exponents and the verdicts of the summary: ``fits`` and ``verdicts``
    as computed by :func:`compute`, or (if not given) the same computed again from the
    table, one run per (source, sampling), by ``lossvar.scaling_fit`` and :func:`_verdicts`."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    runs = [(src, SimpleNamespace(table=t.drop(columns="source"), confidence=args.confidence))
            for (src, _), t in variance.groupby(["source", "sampling"], sort=False)]
    if fits is None:
        fits = _holm(pd.DataFrame([dict(source=src, sampling=r.table.sampling.iloc[0],
                                        exponent=f.exponent, ci_low=f.ci_low, ci_high=f.ci_high,
                                        pvalue=f.pvalue) for src, r in runs
                                   for f in [lossvar.scaling_fit(r.table, confidence=args.confidence)]]))
    if verdicts is None:
        verdicts = _verdicts(runs, args.confidence)
    sources = list(dict.fromkeys(variance.source))
    schemes = list(dict.fromkeys(variance.sampling))
    colors, marks = plots.palette(schemes), plots.markers(schemes)
    names = _NAMES
    level = f"{100 * args.confidence:.4g}%"
    rows, row_colors, row_marks, seen = [], [], [], set()
    ver_by = {} if verdicts is None else {(v.source, v.sampling): v for v in verdicts.itertuples()}
    for f in ([] if fits is None else fits.itertuples()):
        v = ver_by.get((f.source, f.sampling))
        verdict, missed = "", ""
        if v is not None:
            holm = getattr(v, "holm_pvalue", float("nan"))
            verdict = checks.verdict_word(v)
            if verdict != "no verdict":
                verdict += f" (p = {v.pvalue:#.2g}, Holm {holm:#.2g})"
            missed = f"{v.misses} of {v.intervals} ({v.expected_misses:.2g})"
        rows.append(["" if f.source in seen else f.source, names.get(f.sampling, f.sampling),
                     f"{f.exponent:.4f}  [{f.ci_low:.4f}, {f.ci_high:.4f}]".replace("-", "\u2212"),
                     f"{f.pvalue:#.2g}, Holm {f.holm_pvalue:#.2g}", verdict, missed])
        row_colors.append(colors.get(f.sampling, "0.1"))
        row_marks.append(marks.get(f.sampling, "o"))
        seen.add(f.source)
    with plots.style():
        table_height = (len(rows) + 2.6) * 1.3 * 7 / 72
        fig = plt.figure(figsize=(plots.FULL_WIDTH, 3.9 + table_height), layout="constrained")
        grid = fig.add_gridspec(3, len(sources), height_ratios=[2.5, 1.3, table_height])
        ratio_axes = []
        for j, src in enumerate(sources):
            t = variance[variance.source == src]
            ax = fig.add_subplot(grid[0, j])
            rax = fig.add_subplot(grid[1, j], sharex=ax)
            if src == "synthetic":
                what = f"synthetic: Gaussian linear model at $w = 0$, $N = {args.n}$"
            else:
                what = (f"{src}: {lossvar.datasets.problem_for(real).name} model at its fit, "
                        f"$N = {real.n}$")
            plots.variance_plot(t, ax=ax, palette=colors, confidence=args.confidence, legend=False,
                                note=False, title=what, dodge=0.06)
            ax.set_ylabel(r"$\mathrm{Var}(\bar\ell_B)$")
            ax.tick_params(labelbottom=False)
            ax.set_xlabel("")
            plots.ratio_plot(t, ax=rax, palette=colors, confidence=args.confidence, legend=False,
                             dodge=0.06)
            rax.set_ylabel("Monte Carlo / exact")
            ratio_axes.append(rax)
        half = max(max(abs(a.get_ylim()[0] - 1), abs(a.get_ylim()[1] - 1)) for a in ratio_axes)
        for a in ratio_axes:
            a.set_ylim(1 - half, 1 + half)
        found = {}
        for a in fig.axes:
            for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
                found.setdefault(lab, h)
        order = [plots.sampling_label(s) for s in schemes]
        handles = {lab: found[lab] for lab in order + [lab for lab in found if lab not in order]}
        ncol = max(len(schemes), len(handles) - len(schemes))
        handles = plots.legend_order(handles, ncol)
        fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncol=ncol,
                   title=f"Monte Carlo estimates (markers) with {level} confidence intervals (bars)",
                   columnspacing=1.6)
        tab = fig.add_subplot(grid[2, :])
        header = ["source", "sampling", f"exponent $a$ of $\\mathrm{{Var}} \\propto B^a$\n({level} CI)",
                  "p-value of $a = -1$\n(raw, Holm)", "Monte Carlo against\nexact theory, every $B$",
                  "intervals missing\nexact (expected)"]
        plots.table_panel(tab, header,
                          rows, colors=row_colors, marks=row_marks, color_col=1, x0=-0.45, pad=0.12)
    bars = plots.interval_words(args.confidence, variance["interval"].iloc[0] if "interval" in variance
                                else None)
    reliable = variance.interval_reliable.astype(bool).all() if "interval_reliable" in variance else True
    zero = variance[(variance.exact_variance == 0)]
    plots.caption(fig, (
        "Markers: Monte Carlo estimates of the variance of the batch-mean loss, offset slightly "
        f"in B so the sampling schemes do not hide one another; bars: {bars}"
        + ("; open markers: intervals that may under-cover (too few replicates for the tails)"
           if not reliable else "")
        + "; on the log scale most bars are shorter than the markers, the middle row shows them. "
        "Dark line: exact theory (docs/theory.md, section 1), drawn over the markers; wide "
        "grey line: $s^2/B$, the 1/B law. Without replacement the exact variance falls below 1/B by "
        "the factor $(N - B)/(N - 1)$"
        + ("; the full batch B = N of a fixed data set has variance exactly 0 and is not drawn"
           if len(zero) else "")
        + ". Middle: Monte Carlo divided by exact, with its interval; the theory holds where the "
        "bars cross 1. Table: exponent $a$ fitted by weighted least squares after dividing by the "
        f"finite-population factor, its {level} interval and the p-value of $a = -1$, raw and "
        f"after Holm's correction across the study's {len(rows)} fits; verdict of "
        "the calibrated test of every batch size against its exact sampling distribution, at level "
        f"{1 - args.confidence:.2g} after Holm's correction across the study's {len(rows)} tables."))
    folder.figure("variance", fig)


def _summary(args, variance, fits, verdicts):
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
                    else f"{r.variance:.4g} {checks.interval_text(r.ci_low, r.ci_high, r.replicates)}")
        lines.append(f"- {r.source}, {r.sampling}, B = N = {r.batch_size}: variance {measured}, "
                     f"exact {r.exact_variance:.4g}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run variance_scaling --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

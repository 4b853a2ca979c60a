"""Step-size schedules: the Robbins-Monro conditions against exact convergence.

The lecture: shrink the step size so that sum eta_k = inf and sum eta_k^2 < inf
(sufficient conditions), eta_k ~ 1/k being optimal for convex problems.

On the 1-D quadratic f(w) = mu/2 (w - w*)^2 with additive gradient noise of
variance sigma^2 (lossvar.NoisyQuadratic), where E(w_k - w*)^2 is known
exactly (docs/theory.md, section 6), for each schedule:

- the verdict of lossvar.robbins_monro beside the rule of docs/theory.md, section 5;
- Monte Carlo E(w_k - w*)^2 across replicates (lossvar.sgd.run_sgd) with the
  exact recursion overlaid;
- the fitted decay exponent (lossvar.rates.convergence_rate, bootstrap over
  whole replicates) against the exact curve's local exponent over the same
  steps and the asymptotic exponent;
- Polyak-Ruppert averaging: k E(w_bar_k - w*)^2 -> sigma^2 / mu^2 for a
  constant step and for c/k^p with 1/2 < p < 1, not for c/k with 2 c mu < 1;
- one verdict per metric (iterate, average): with Gaussian noise and a fixed
  start every iterate and average is exactly normal, N(w* + m_k, v_k), so the
  sum over R runs of (w_k - w*)^2 is exactly v_k times a noncentral chi-square
  on R degrees of freedom with noncentrality R m_k^2 / v_k: each recorded step
  gets an exact two-sided p-value. The steps of one schedule share its runs, so
  the rows are combined by Holm's test (valid under any dependence), not as if
  independent.

On a tanh network trained on digits (--network; batches of 16 drawn with
replacement, every run from one start), where no exact theory exists, the same
families starting from one step 0.5 and decaying after 100 steps: the training
loss against the step with bands, for the iterate and its Polyak-Ruppert
average, and each decaying schedule against the constant step run by run (the
same batches: a paired t test per comparison, Holm across them). These numbers
are empirical; the Robbins-Monro verdicts beside them are exact properties of
the schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

import lossvar
from lossvar import optim, plots, schedules, studies, theory
from lossvar.rates import convergence_rate
from lossvar.sgd import run_sgd
from lossvar.studies import checks, network

NAME = "robbins_monro"
FULL = {"replicates": 2000, "steps": 20_000, "network": "64-32-10", "network_replicates": 64,
        "network_steps": 4000}
QUICK = {"replicates": 256, "steps": 1000, "network": "64-32-10", "network_replicates": 16,
         "network_steps": 1000}
#: The network's batch size, first step, and the steps before its schedules decay.
NET_BATCH, NET_ETA, NET_K0 = 16, 0.5, 100
POWERS = (0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
#: Fewest steps: the decay exponent is fitted on the recorded steps from
#: max(10, steps // 10) on, at least 3 of them, and run_sgd records 10 steps a
#: decade (..., 10, 13, 16, ...): 15 is the first --steps with three (10, 13, 15).
MIN_STEPS = 15
#: Above this noncentrality scipy's noncentral chi-square series takes time growing like
#: its square root (seconds at 1e16, and NaN from about 1e12); the law is then normal to
#: within its skewness, about nc^(-1/2) = 1e-5.
NCX2_LIMIT = 1e10


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=checks.count(2), default=None, help="SGD runs per schedule, "
                   f"at least 2 for a standard error (default {FULL['replicates']}, quick "
                   f"{QUICK['replicates']})")
    p.add_argument("--steps", type=checks.count(MIN_STEPS), default=None,
                   help=f"updates per run, at least {MIN_STEPS} for the fit of the decay exponent "
                        f"(default {FULL['steps']}, quick {QUICK['steps']})")
    p.add_argument("--mu", type=checks.number(0, low_open=True), default=1.0,
                   help="curvature mu > 0 (default 1)")
    p.add_argument("--noise-std", type=checks.number(0, low_open=True), default=1.0,
                   help="gradient noise sigma > 0 (default 1)")
    p.add_argument("--w0", type=checks.number(), default=3.0, help="start, w* = 0 (default 3)")
    p.add_argument("--c", type=checks.number(0, low_open=True), default=0.9,
                   help="scale c > 0 of c/k^p (default 0.9)")
    network.add_flag(p, FULL["network"], QUICK["network"])
    p.add_argument("--network-replicates", type=checks.count(2), default=None, help="SGD runs per "
                   f"schedule on the network, at least 2 (default {FULL['network_replicates']}, "
                   f"quick {QUICK['network_replicates']})")
    p.add_argument("--network-steps", type=checks.count(MIN_STEPS), default=None, help="updates per "
                   f"run on the network, at least {MIN_STEPS} (default {FULL['network_steps']}, "
                   f"quick {QUICK['network_steps']})")
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default 0.95)")
    return p


@dataclass(frozen=True)
class _Schedule:
    """One row of the study: its label (the tables' key), the schedule, c and p (0 for a
    constant step, NaN for the exponential one), its mathtext name for figures, and its
    role: ``decaying`` (0 < p <= 1: the first panel) and ``shown_averaged`` (the
    Polyak-Ruppert panel)."""

    label: str
    schedule: object
    c: float
    p: float
    short: str
    shown_averaged: bool = False

    @property
    def decaying(self) -> bool:
        return 0.0 < self.p <= 1.0


def _schedules(args):
    """The rows, in order; p = 0 for a constant step, NaN for exponential."""
    mu = args.mu
    c_fast, c_slow = 0.75 / mu, 0.25 / mu
    rows = [_Schedule("constant 0.1/mu", schedules.constant(0.1 / mu), 0.1 / mu, 0.0,
                      r"$0.1/\mu$ (constant)", shown_averaged=True),
            _Schedule(f"c/k, 2c mu = {2 * c_fast * mu:g} > 1", schedules.polynomial(c_fast, 1.0),
                      c_fast, 1.0, rf"$c/k$, $2c\mu = {2 * c_fast * mu:g} > 1$"),
            _Schedule(f"c/k, 2c mu = {2 * c_slow * mu:g} < 1", schedules.polynomial(c_slow, 1.0),
                      c_slow, 1.0, rf"$c/k$, $2c\mu = {2 * c_slow * mu:g} < 1$",
                      shown_averaged=True)]
    rows += [_Schedule(f"{args.c:g}/k^{p:g}", schedules.polynomial(args.c, p), args.c, p,
                       rf"${args.c:g}/k^{{{p:g}}}$", shown_averaged=p == 0.75) for p in POWERS]
    rows.append(_Schedule("exponential 0.5 * 0.95^(k-1)", schedules.exponential(0.5, 0.95), 0.5,
                          math.nan, r"$0.5 \cdot 0.95^{k-1}$"))
    return rows


def check(args):
    # the exact curves: 4 columns per step and schedule, kept for the table
    checks.held(6 * len(POWERS + (0, 0, 0, 0)) * (args.steps + 1), f"--steps {args.steps}")
    largest = np.log10(np.finfo(float).max) / 2  # the standard errors square (w - w*)^2
    for row in _schedules(args):
        bound = _log10_bound(row.schedule, args)
        if not bound <= largest:
            raise ValueError(
                f"--mu {args.mu:g} with --c {args.c:g}: the schedule {row.label} takes steps with "
                f"eta mu > 2, which can take (w - w*)^2 up to about 10^{bound:.0f} within --steps "
                f"{args.steps}, past what float64 can square; give a smaller --mu or --c")


def _log10_bound(schedule, args, chunk=2**20):
    """log10 of a bound on E(w_k - w*)^2 over the run: (w0^2 + sigma^2 sum eta_k^2) times
    the product of the factors (1 - eta_k mu)^2 above 1 (docs/theory.md, section 6)."""
    log_growth, noise = 0.0, 0.0
    with np.errstate(over="ignore", divide="ignore"):
        for start in range(1, args.steps + 1, chunk):
            eta = np.asarray(schedule(np.arange(start, min(start + chunk, args.steps + 1))), float)
            log_growth += float(np.sum(np.maximum(0.0, 2 * np.log10(np.abs(1 - eta * args.mu)))))
            noise += float(np.sum(eta**2)) * args.noise_std**2
        return log_growth + float(np.log10(args.w0**2 + noise))


def _theory_rule(schedule, p):
    """docs/theory.md, section 6, written out: (RM satisfied, E -> 0, asymptotic exponent, regime)."""
    if isinstance(schedule, schedules.Exponential):
        return False, False, 0.0, "sum eta_k < inf (geometric): stalls"
    if p == 0:
        return False, False, 0.0, "constant: plateau at eta sigma^2 / (mu (2 - eta mu))"
    return (0.5 < p <= 1, p <= 1, None, None)


def compute(args, folder):
    mu, sigma2 = args.mu, args.noise_std**2
    q = lossvar.NoisyQuadratic(mu, noise_std=args.noise_std)
    pop = lossvar.GaussianNoisePopulation(q)
    rows, curves, exact_curves = [], [], []
    seeds = lossvar.streams.children(args.seed, len(_schedules(args)))
    tail = (max(10, args.steps // 10), args.steps)
    kw = studies.execution(args)
    with checks.phase(args, f"SGD runs, {len(seeds)} schedules", len(seeds)):
        runs = [run_sgd(q, pop, optim.sgd(row.schedule), steps=args.steps, batch_size=1,
                        replicates=args.replicates, w0=[args.w0], rng=seed, average=True, **kw)
                for row, seed in zip(_schedules(args), seeds, strict=True)]
    for row, seed, tr in zip(_schedules(args), seeds, runs, strict=True):
        label, sched, c, p = row.label, row.schedule, row.c, row.p
        report = lossvar.robbins_monro(sched)
        rm_rule, converges, exponent, regime = _theory_rule(sched, p)
        if exponent is None:
            a = theory.sgd_asymptote(c, p, mu, sigma2)
            exponent, regime = a.exponent, a.regime
        ex = theory.quadratic_moments(sched, mu, sigma2, args.w0, steps=args.steps)
        s = tr.by_step
        steps = s.step.to_numpy()
        exact = ex.mse[steps]
        exact_avg = ex.avg_mse[steps]
        for metric, ex_values, mean, var in (
                ("iterate", exact, ex.mean[steps, 0], ex.var[steps, 0]),
                ("average", exact_avg, ex.avg_mean[steps, 0], ex.avg_var[steps, 0])):
            col = "dist2" if metric == "iterate" else "avg_dist2"
            m, se = s[f"{col}_mean"], s[f"{col}_se"]
            low, high = lossvar.stats.mean_interval(m, se, args.confidence)
            curves.append(pd.DataFrame({"schedule": label, "iterate": metric, "step": steps,
                                        "mean": m, "se": se, "ci_low": low,
                                        "ci_high": high, "exact": ex_values,
                                        "replicates": s.n,
                                        "pvalue": theory.mean_square_pvalues(m, s.n, mean, var)}))
        exact_curves.append(pd.DataFrame({"schedule": label, "step": ex.step[1:],
                                          "exact": ex.mse[1:], "exact_avg": ex.avg_mse[1:]}))
        fit = convergence_rate(tr, "dist2", tail=tail, confidence=args.confidence,
                               rng=lossvar.streams.children(seed, 1)[0])
        sel = (steps >= fit.steps[0]) & (steps <= fit.steps[-1])
        local = -np.polyfit(np.log(steps[sel]), np.log(exact[sel]), 1)[0]
        final, final_se = float(s.dist2_mean.iloc[-1]), float(s.dist2_se.iloc[-1])
        avg_final, avg_se = float(s.avg_dist2_mean.iloc[-1]), float(s.avg_dist2_se.iloc[-1])
        n_avg = args.steps + 1
        rows.append(dict(
            schedule=label, family=type(sched).__name__.lower(), c=c, p=p,
            rm_sum_diverges=report.sum_diverges,
            rm_sum_squares_converges=report.sum_squares_converges,
            rm_satisfied=report.satisfied, theory_satisfied=rm_rule,
            verdict_matches=report.satisfied == rm_rule, theory_converges=converges,
            regime=regime, theory_exponent=exponent, exact_local_exponent=local,
            fitted_exponent=fit.exponent, fitted_se=fit.se, fitted_ci_low=fit.exponent_ci.low,
            fitted_ci_high=fit.exponent_ci.high, plateau=fit.plateau, steps=args.steps,
            mc_final=final, mc_final_se=final_se, exact_final=float(ex.mse[-1]),
            avg_scaled=n_avg * avg_final, avg_scaled_se=n_avg * avg_se,
            avg_scaled_exact=n_avg * float(ex.avg_mse[-1]),
            polyak_ruppert_limit=theory.polyak_ruppert_limit(mu, sigma2)))
    folder.table("schedules", pd.DataFrame(rows))
    curves = pd.concat(curves, ignore_index=True)
    verdicts = _verdicts(curves, args.confidence)
    folder.table("curves", curves)
    folder.table("agreement", verdicts)
    kinds = _schedules(args)
    folder.figure("convergence", plots.schedules_figure(
        curves, pd.concat(exact_curves, ignore_index=True), pd.DataFrame(rows), verdicts,
        short={k.label: k.short for k in kinds}, averaged=[k.label for k in kinds if k.shown_averaged],
        mu=mu, noise_std=args.noise_std, w0=args.w0, c_scale=args.c, replicates=args.replicates,
        steps=args.steps, confidence=args.confidence))
    summary = _summary(args, pd.DataFrame(rows), verdicts)
    net = network.load(args.network)
    if net is None:
        return summary
    # the child after the schedules' own: the convex part keeps its bits
    curves, comparisons = _network(args, net, lossvar.streams.children(args.seed, len(seeds) + 1)[-1])
    folder.table("network_curves", curves)
    folder.table("network_comparisons", comparisons)
    folder.figure("network", plots.network_schedules_figure(
        curves, comparisons, label=net.label, described=_NET_DESCRIBED, batch_size=NET_BATCH,
        replicates=args.network_replicates, confidence=args.confidence))
    return "\n".join([summary, "", f"## Network: {net.label}, p = {net.p} (empirical: no exact "
                      "theory)", "", f"{args.network_replicates} runs per schedule of "
                      f"{args.network_steps} steps, batches of {NET_BATCH} drawn with replacement, "
                      "every run from one start and the runs of every schedule on the same batches. "
                      f"{_NET_DESCRIBED} "
                      "The loss is not convex: the curves and comparisons are Monte Carlo estimates "
                      "with intervals, no exact value exists; the Robbins-Monro column is the exact "
                      "verdict on the schedule itself. Each decaying schedule is compared with the "
                      "constant step, and each schedule's Polyak-Ruppert average with its last "
                      "iterate, run by run (paired t tests, Holm's correction across the "
                      f"{len(comparisons)} comparisons).", "",
                      *network.comparison_lines(comparisons)])


_NET_DESCRIBED = (f"Schedules from the step {NET_ETA:g}: constant; p = P: {NET_ETA:g} "
                  f"({NET_K0 + 1}/(k + {NET_K0}))^P; exponential: {NET_ETA:g} * 0.99^(k-1).")


def _network_schedules():
    """Every family from the first step NET_ETA: "p = P" is NET_ETA ((NET_K0 + 1)/(k + NET_K0))^P."""
    rows = {"constant": schedules.constant(NET_ETA)}
    for p in (0.5, 0.75, 1.0, 2.0):
        rows[f"p = {p:g}"] = schedules.polynomial(NET_ETA * (NET_K0 + 1) ** p, p, NET_K0)
    rows["exponential"] = schedules.exponential(NET_ETA, 0.99)
    return rows


def _network(args, net, seed):
    """The schedules on the network: loss curves, and paired comparisons of the last step."""
    scheds = _network_schedules()
    runs = network.ensembles(net, {k: optim.sgd(v) for k, v in scheds.items()}, args,
                             f"SGD runs, {len(scheds)} schedules on {net.label}",
                             steps=args.network_steps, batch_size=NET_BATCH, rng=seed,
                             replicates=args.network_replicates, sampling="with_replacement",
                             average=True)
    last = {k: tr.values("loss", used_only=False)[:, -1] for k, tr in runs.items()}
    constant = next(iter(scheds))
    rows = network.paired_comparisons(last, constant, "final loss", args.confidence)
    for k, tr in runs.items():
        avg = {f"{k}, averaged": tr.values("avg_loss", used_only=False)[:, -1], k: last[k]}
        rows += network.paired_comparisons(avg, k, "Polyak-Ruppert", args.confidence)
    curves = network.curves(runs, "schedule", args.confidence)
    curves["robbins_monro"] = curves.schedule.map(
        {k: lossvar.robbins_monro(v).satisfied for k, v in scheds.items()})
    return curves, network.verdicts(pd.DataFrame(rows), args.confidence)


def _verdicts(curves, confidence):
    """One verdict per metric of the curves table: exact p-values per recorded step,
    combined by Holm's test over all of a metric's rows (the steps of one schedule
    share its runs, so the rows are not independent)."""
    rows = []
    for metric, what in (("iterate", "E(w_k - w*)^2"), ("average", "E(w_bar_k - w*)^2")):
        t = curves[(curves.iterate == metric) & (curves.step > 0)]  # step 0: the fixed start
        a = lossvar.stats.estimate_agreement(
            t["mean"], t.se, t.exact, pvalues=t.pvalue, independent=False, confidence=confidence,
            labels=[f"{lab} @ {k}" for lab, k in zip(t.schedule, t.step, strict=True)])
        rows.append((dict(table="curves", metric=what), a))
    return lossvar.stats.study_verdicts(rows, confidence, row_label="schedule @ step",
                                        untested_reason="zero variance")


def _summary(args, rows, verdicts):
    lines = [f"# robbins_monro (seed {args.seed}, {args.replicates} runs of {args.steps} steps "
             "per schedule)", "",
             "Does the Monte Carlo agree with the theory? Every recorded step of every schedule "
             "against the exact recursion (docs/theory.md, section 6), with an exact p-value "
             "(the iterates are exactly normal, so the sum of squares over the runs is a scaled "
             "noncentral chi-square); the steps of one schedule share its runs, so each metric's "
             "rows are combined by Holm's test (valid under dependence), at level "
             f"{1 - args.confidence:.2g} for the study (Holm across its verdicts). The "
             "Robbins-Monro verdicts themselves are deterministic (below).", ""]
    lines += [f"- {v.table}, {v.metric}: {v.verdict}" for v in verdicts.itertuples()]
    lines += ["",
             f"1-D quadratic, mu = {args.mu:g}, sigma = {args.noise_std:g}, w_1 - w* = {args.w0:g}. "
             "Exponent a of E(w_k - w*)^2 ~ k^-a fitted over the last decade of steps; "
             f"{args.confidence:.0%} intervals from a bootstrap over whole runs.", "",
             "| schedule | RM (lossvar) | RM (theory) | regime | a (theory) | a (exact, same steps) "
             "| a fitted | interval | E final (MC) | exact |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.itertuples():
        lines.append(f"| {r.schedule} | {r.rm_satisfied} | {r.theory_satisfied} | {r.regime} | "
                     f"{r.theory_exponent:.3g} | {r.exact_local_exponent:.3f} | "
                     f"{r.fitted_exponent:.3f} | "
                     f"{plots.interval_text(r.fitted_ci_low, r.fitted_ci_high, args.replicates, '.3f')} | "
                     f"{r.mc_final:.4g} +- {r.mc_final_se:.2g} | {r.exact_final:.4g} |")
    lines += ["", "All verdicts match the theory (docs/theory.md, section 5): "
              f"{bool(rows.verdict_matches.all())}. The "
              "conditions are sufficient, not necessary: c/k^p with p <= 1/2 fails them yet "
              "converges (slowly).", "",
              "Polyak-Ruppert: k E(w_bar_k - w*)^2 at the last step (limit sigma^2/mu^2 = "
              f"{rows.polyak_ruppert_limit.iloc[0]:g}):", ""]
    for r in rows.itertuples():
        lines.append(f"- {r.schedule}: {r.avg_scaled:.4g} +- {r.avg_scaled_se:.2g} "
                     f"(exact {r.avg_scaled_exact:.4g})")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run robbins_monro --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

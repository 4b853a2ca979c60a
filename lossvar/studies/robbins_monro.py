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
  constant step and for c/k^p with 1/2 < p < 1, not for c/k with 2 c mu < 1.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

import lossvar
from lossvar import optim, plots, schedules, studies, theory
from lossvar.rates import convergence_rate
from lossvar.sgd import run_sgd

NAME = "robbins_monro"
FULL = {"replicates": 2000, "steps": 20_000}
QUICK = {"replicates": 256, "steps": 1000}
Z95 = 1.959963984540054
POWERS = (0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=int, default=None, help="SGD runs per schedule "
                   f"(default {FULL['replicates']}, quick {QUICK['replicates']})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"updates per run (default {FULL['steps']}, quick {QUICK['steps']})")
    p.add_argument("--mu", type=float, default=1.0, help="curvature mu (default 1)")
    p.add_argument("--noise-std", type=float, default=1.0, help="gradient noise sigma (default 1)")
    p.add_argument("--w0", type=float, default=3.0, help="start, w* = 0 (default 3)")
    p.add_argument("--c", type=float, default=0.9, help="scale c of c/k^p (default 0.9)")
    return p


def _schedules(args):
    """(label, schedule, c, p) per row; p = 0 for a constant step, NaN for exponential."""
    mu = args.mu
    c_fast, c_slow = 0.75 / mu, 0.25 / mu
    rows = [("constant 0.1/mu", schedules.constant(0.1 / mu), 0.1 / mu, 0.0),
            (f"c/k, 2c mu = {2 * c_fast * mu:g} > 1", schedules.polynomial(c_fast, 1.0), c_fast, 1.0),
            (f"c/k, 2c mu = {2 * c_slow * mu:g} < 1", schedules.polynomial(c_slow, 1.0), c_slow, 1.0)]
    rows += [(f"{args.c:g}/k^{p:g}", schedules.polynomial(args.c, p), args.c, p) for p in POWERS]
    rows.append(("exponential 0.5 * 0.95^(k-1)", schedules.exponential(0.5, 0.95), 0.5, math.nan))
    return rows


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
    pop = q.population()
    rows, curves, exact_curves = [], [], []
    seeds = np.random.SeedSequence(args.seed).spawn(len(_schedules(args)))
    tail = (max(10, args.steps // 10), args.steps)
    kw = studies.parallel(run_sgd, args)
    for (label, sched, c, p), seed in zip(_schedules(args), seeds, strict=True):
        report = lossvar.robbins_monro(sched)
        rm_rule, converges, exponent, regime = _theory_rule(sched, p)
        if exponent is None:
            a = theory.sgd_asymptote(c, p, mu, sigma2)
            exponent, regime = a.exponent, a.regime
        tr = run_sgd(q, pop, optim.sgd(sched), steps=args.steps, batch_size=1,
                     replicates=args.replicates, w0=[args.w0], rng=seed, average=True, **kw)
        ex = theory.quadratic_moments(sched, mu, sigma2, args.w0, steps=args.steps)
        s = tr.summary
        steps = s.step.to_numpy()
        exact = ex.mse[steps]
        exact_avg = ex.avg_mse[steps]
        for metric, ex_values in (("iterate", exact), ("average", exact_avg)):
            col = "dist2" if metric == "iterate" else "avg_dist2"
            m, se = s[f"{col}_mean"], s[f"{col}_se"]
            curves.append(pd.DataFrame({"schedule": label, "iterate": metric, "step": steps,
                                        "mean": m, "se": se, "ci_low": m - Z95 * se,
                                        "ci_high": m + Z95 * se, "exact": ex_values}))
        exact_curves.append(pd.DataFrame({"schedule": label, "step": ex.step[1:],
                                          "exact": ex.mse[1:], "exact_avg": ex.avg_mse[1:]}))
        fit = convergence_rate(tr, "dist2", tail=tail, rng=seed.spawn(1)[0])
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
            fitted_exponent=fit.exponent, fitted_se=fit.se, fitted_ci_low=fit.ci_low,
            fitted_ci_high=fit.ci_high, plateau=fit.plateau, steps=args.steps,
            mc_final=final, mc_final_se=final_se, exact_final=float(ex.mse[-1]),
            avg_scaled=n_avg * avg_final, avg_scaled_se=n_avg * avg_se,
            avg_scaled_exact=n_avg * float(ex.avg_mse[-1]),
            polyak_ruppert_limit=theory.polyak_ruppert_limit(mu, sigma2)))
    folder.table("schedules", pd.DataFrame(rows))
    curves = pd.concat(curves, ignore_index=True)
    folder.table("curves", curves)
    _figures(folder, curves, pd.concat(exact_curves, ignore_index=True), args, mu, sigma2)
    return _summary(args, pd.DataFrame(rows))


def _figures(folder, curves, exact, args, mu, sigma2):
    import matplotlib.pyplot as plt

    table = curves[(curves.iterate == "iterate") & (curves.step > 0)]
    labels = list(dict.fromkeys(table.schedule))
    decaying = [lab for lab in labels if "/k" in lab and not lab.endswith(("1.5", "2"))]
    others = [lab for lab in labels if lab not in decaying]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for ax, group, title in ((axes[0], decaying, "Decaying steps with sum eta_k = inf: E -> 0"),
                             (axes[1], others, "Constant step plateaus; sum eta_k < inf stalls")):
        plots.convergence_plot(table[table.schedule.isin(group)], exact=exact[exact.schedule.isin(
            group)], ax=ax, title=f"{title}\nbands: 95% over {args.replicates} runs; "
                                  "dashed: exact recursion")
    avg = curves[(curves.iterate == "average") & (curves.step > 0)]
    pick = [labels[0], f"{args.c:g}/k^0.75", labels[2]]
    ex = exact[exact.schedule.isin(pick)].rename(columns={"exact": "_", "exact_avg": "exact"})
    plots.convergence_plot(avg[avg.schedule.isin(pick)], exact=ex, ax=axes[2],
                           reference=theory.polyak_ruppert_limit(mu, sigma2),
                           ylabel="E (w_bar_k - w*)^2",
                           title="Polyak-Ruppert averaging reaches sigma^2/(mu^2 k)\n"
                                 "(except c/k with 2c mu < 1)")
    fig.tight_layout()
    folder.figure("convergence", fig)


def _summary(args, rows):
    lines = [f"# robbins_monro (seed {args.seed}, {args.replicates} runs of {args.steps} steps "
             "per schedule)", "",
             f"1-D quadratic, mu = {args.mu:g}, sigma = {args.noise_std:g}, w_1 - w* = {args.w0:g}. "
             "Exponent a of E(w_k - w*)^2 ~ k^-a fitted over the last decade of steps; "
             "95% intervals from a bootstrap over whole runs.", "",
             "| schedule | RM (lossvar) | RM (theory) | regime | a (theory) | a (exact, same steps) "
             "| a fitted | interval | E final (MC) | exact |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.itertuples():
        lines.append(f"| {r.schedule} | {r.rm_satisfied} | {r.theory_satisfied} | {r.regime} | "
                     f"{r.theory_exponent:.3g} | {r.exact_local_exponent:.3f} | "
                     f"{r.fitted_exponent:.3f} | [{r.fitted_ci_low:.3f}, {r.fitted_ci_high:.3f}] | "
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
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK)


if __name__ == "__main__":
    raise SystemExit(main())

""""Trend" algorithms: momentum, Nesterov, RMSProp and Adam against plain SGD.

The lecture: momentum and Nesterov's method average the derivatives; RMSProp
and Adam also consider their variance (the mean squared derivative), scaling
down the updates along volatile directions: "smoothing the trajectory".

On an ill-conditioned 2-D quadratic with additive Gaussian gradient noise
(lossvar.NoisyQuadratic, curvatures 1 and --condition):

- one trajectory per optimizer over the loss contours, all driven by the same
  noise sequence;
- the mean squared update E(w_t - w_{t-1})^2 per coordinate in the steady
  state (the last half of the steps), across replicates with its standard
  error; for SGD the exact value eta^2 (h^2 v* + sigma^2), with v* the
  constant-step floor, is given beside it, and the two SGD rows get one
  verdict: a Student t test per row (the mean of R independent runs, R - 1
  degrees of freedom, Monte Carlo SE), the two coordinates combined by Holm's
  test because they come from the same runs (the transient left in the
  steady-state window changes the exact values by less than 1e-6 relatively);
- the expected excess risk against the step, bands across replicates
  (lossvar.sgd.run_sgd);

and on a real data set (mini-batches of --batch-size, reshuffled each epoch),
the excess training loss against epochs with bands. RMSProp and Adam use the
lecture's form, eps inside the square root.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

import lossvar
from lossvar import optim, plots, studies, theory
from lossvar.sgd import run_sgd

NAME = "trend_optimizers"
FULL = {"replicates": 400, "steps": 400, "real_replicates": 40, "epochs": 20}
QUICK = {"replicates": 64, "steps": 200, "real_replicates": 8, "epochs": 4}
W0 = (-4.0, 1.5)


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=int, default=None, help="runs per optimizer on the "
                   f"quadratic (default {FULL['replicates']}, quick {QUICK['replicates']})")
    p.add_argument("--steps", type=int, default=None, help="updates on the quadratic "
                   f"(default {FULL['steps']}, quick {QUICK['steps']})")
    p.add_argument("--condition", type=float, default=25.0,
                   help="curvature of the steep direction; the flat one has 1 (default 25)")
    p.add_argument("--noise-std", type=float, default=1.0, help="gradient noise (default 1)")
    p.add_argument("--data", default="wine",
                   help=f"real data set, one of {', '.join(lossvar.datasets.NAMES)}, or 'none'")
    p.add_argument("--batch-size", type=int, default=8, help="mini-batch on the real data (8)")
    p.add_argument("--real-replicates", type=int, default=None, help="runs per optimizer on "
                   f"the real data (default {FULL['real_replicates']})")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs on the real data (default {FULL['epochs']})")
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default 0.95)")
    return p


def _optimizers(h_max):
    """The five optimizers; SGD's step is 1.75/h_max (oscillating along the steep direction)."""
    lr = 1.75 / h_max
    return {"SGD": optim.sgd(lr),
            "momentum 0.9": optim.momentum(lr / 4, 0.9),
            "Nesterov 0.9": optim.nesterov(lr / 4, 0.9),
            "RMSProp": optim.rmsprop(0.03, decay=0.9, eps=1e-8, eps_in_sqrt=True),
            "Adam": optim.adam(0.05, eps=1e-8, eps_in_sqrt=True)}


def _paths(problem, pop, opt, steps, replicates, seed):
    """Parameters after 0..steps updates, shape (steps + 1, replicates, d); noise from ``seed``."""
    d = pop.n_features
    noise = pop.sample(steps * replicates, seed).X.reshape(steps, replicates, 1, d)
    w = np.tile(np.array(W0), (replicates, 1))
    state = opt.init(w)
    out = np.empty((steps + 1, replicates, d))
    out[0] = w
    for t in range(steps):
        w, state = opt.step(w, problem.mean_grad(w, noise[t]), state)
        out[t + 1] = w
    return out


def check(args):
    if args.data != "none" and args.data not in lossvar.datasets.NAMES:
        raise ValueError(f"--data must be one of {', '.join(lossvar.datasets.NAMES)} or 'none'; "
                         f"got {args.data!r}")


def compute(args, folder):
    h = np.array([1.0, args.condition])
    q = lossvar.NoisyQuadratic(h, noise_std=args.noise_std)
    pop = lossvar.GaussianNoisePopulation(q)
    opts = _optimizers(h.max())
    seeds = np.random.SeedSequence(args.seed).spawn(4)
    kw = studies.parallel(run_sgd, args)
    z = float(st.norm.ppf(0.5 + args.confidence / 2.0))
    paths, updates, curves = [], [], []
    for name, opt in opts.items():
        # Common random numbers: every optimizer sees the same noise sequence.
        w = _paths(q, pop, opt, args.steps, args.replicates, seeds[0])
        paths.append(pd.DataFrame({"optimizer": name, "step": np.arange(args.steps + 1),
                                   "w0": w[:, 0, 0], "w1": w[:, 0, 1]}))
        steady = np.diff(w, axis=0)[args.steps // 2:]  # (T, R, d)
        per_replicate = np.mean(steady**2, axis=0)  # (R, d): independent across replicates
        for i, coord in enumerate(("flat (h = 1)", f"steep (h = {h[1]:g})")):
            v = per_replicate[:, i]
            m, se = float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))
            exact = np.nan
            if name == "SGD":
                eta = opt.hyperparams["lr"]
                vstar = theory.constant_step_floor(eta, h[i], args.noise_std**2)
                exact = eta**2 * (h[i] ** 2 * vstar + args.noise_std**2)
            updates.append(dict(optimizer=name, coordinate=coord, mean_sq_update=m,
                                se=se, ci_low=m - z * se, ci_high=m + z * se, exact=exact,
                                steps_averaged=steady.shape[0], replicates=v.size))
        tr = run_sgd(q, pop, opt, steps=args.steps, batch_size=1, replicates=args.replicates,
                     w0=list(W0), rng=seeds[1], record=np.arange(args.steps + 1), **kw)
        s = tr.summary
        curves.append(pd.DataFrame({"problem": "quadratic", "optimizer": name, "step": s.step,
                                    "epoch": np.nan, "excess_loss": s.loss_mean - tr.loss_star,
                                    "se": s.loss_se}))
    if args.data != "none":
        curves += _real(args, seeds[2], kw)
    curves = pd.concat(curves, ignore_index=True)
    curves["ci_low"] = curves.excess_loss - z * curves.se
    curves["ci_high"] = curves.excess_loss + z * curves.se
    paths, updates = pd.concat(paths, ignore_index=True), pd.DataFrame(updates)
    verdicts = _verdicts(updates, args.confidence)
    folder.table("paths", paths)
    folder.table("update_variance", updates)
    folder.table("curves", curves)
    folder.table("agreement", verdicts)
    _figures(folder, q, paths, updates, curves, args)
    return _summary(args, updates, curves, verdicts)


def _verdicts(updates, confidence):
    """The verdict on the rows with an exact value (SGD's two coordinates): t test per
    row on R - 1 degrees of freedom, combined by Holm (the rows share their runs)."""
    t = updates[np.isfinite(updates.exact)]
    a = lossvar.stats.estimate_agreement(t.mean_sq_update, t.se, t.exact, dof=t.replicates - 1,
                                         independent=False, confidence=confidence,
                                         labels=[f"{o} {c}" for o, c in zip(t.optimizer, t.coordinate,
                                                                            strict=True)])
    return lossvar.stats.study_verdicts([(dict(table="update_variance"), a)], confidence,
                                        row_label="row")


def _real(args, seed, kw):
    data = lossvar.datasets.load(args.data)
    problem = lossvar.datasets.problem_for(data)
    per_epoch = data.n // args.batch_size
    steps = args.epochs * per_epoch
    record = np.arange(0, steps + 1, max(1, per_epoch // 4))
    out = []
    opts = {"SGD": optim.sgd(0.2), "momentum 0.9": optim.momentum(0.02, 0.9),
            "Nesterov 0.9": optim.nesterov(0.02, 0.9),
            "RMSProp": optim.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=True),
            "Adam": optim.adam(0.01, eps=1e-8, eps_in_sqrt=True)}
    for name, opt in opts.items():
        tr = run_sgd(problem, data, opt, steps=steps, batch_size=args.batch_size,
                     replicates=args.real_replicates, rng=seed, record=record, **kw)
        s = tr.summary
        out.append(pd.DataFrame({"problem": args.data, "optimizer": name, "step": s.step,
                                 "epoch": s.step / per_epoch,
                                 "excess_loss": s.loss_mean - tr.loss_star, "se": s.loss_se}))
    return out


def _figures(folder, q, paths, updates, curves, args):
    import matplotlib.pyplot as plt

    h = q.curvature

    def loss(W0, W1):
        return 0.5 * (h[0] * W0**2 + h[1] * W1**2)

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    plots.trajectories_plot(paths, loss, ax=ax,
                            title=f"Smoothing the trajectory: one run per optimizer, same noise\n"
                                  f"f = (w0^2 + {h[1]:g} w1^2)/2, gradient noise sd "
                                  f"{args.noise_std:g}")
    folder.figure("trajectories", fig)
    fig, axes = plt.subplots(1, 2 if args.data != "none" else 1, figsize=(12, 4.6), squeeze=False)
    quad = curves[(curves.problem == "quadratic") & (curves.step > 0)]
    plots.loss_curves(quad, x="step", y="excess_loss", hue="optimizer", lo="ci_low", hi="ci_high",
                      ax=axes[0, 0], logx=True, xlabel="step",
                      ylabel="expected excess risk f(w) - f(w*)",
                      title=f"Noisy quadratic, condition number {h[1]:g}\nbands: "
                            f"{args.confidence:.0%} across {args.replicates} runs")
    if args.data != "none":
        real = curves[curves.problem == args.data]
        plots.loss_curves(real, x="epoch", y="excess_loss", hue="optimizer", lo="ci_low",
                          hi="ci_high", ax=axes[0, 1], xlabel="epoch",
                          ylabel="excess training loss",
                          title=f"{args.data}, mini-batch {args.batch_size}, reshuffled\n"
                                f"bands: {args.confidence:.0%} across {args.real_replicates} runs")
    fig.tight_layout()
    folder.figure("convergence", fig)
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    plots.interval_plot(updates, x="optimizer", y="mean_sq_update", hue="coordinate", ax=ax,
                        logy=True, ylabel="E (w_t - w_{t-1})^2, steady state",
                        title=f"Volatility of the updates per optimizer ({args.confidence:.0%} intervals)")
    folder.figure("update_variance", fig)


def _summary(args, updates, curves, verdicts):
    level = f"{args.confidence:.0%}"
    lines = [f"# trend_optimizers (seed {args.seed}, {args.replicates} runs of {args.steps} "
             f"steps on the quadratic)", "",
             "Does the Monte Carlo agree with the theory? Only SGD's mean squared update has an "
             "exact value, eta^2 (h^2 v* + sigma^2) per coordinate (docs/theory.md, section 6): "
             f"a Student t test per coordinate (mean of {args.replicates} independent runs, Monte "
             "Carlo SE), the two coordinates combined by Holm's test because they come from the "
             f"same runs, at level {1 - args.confidence:.2g} for the study (Holm across its "
             "tables). The other optimizers and the convergence curves have no exact theory here "
             "and get no verdict.", ""]
    lines += [f"- {v.table}: {v.verdict}" for v in verdicts.itertuples()]
    lines += ["",
             f"Mean squared update in the steady state (last {args.steps - args.steps // 2} "
             f"steps), {level} intervals across runs; for SGD the exact value:", "",
             "| optimizer | coordinate | E (dw)^2 | interval | exact |", "|---|---|---|---|---|"]
    for r in updates.itertuples():
        exact = "" if np.isnan(r.exact) else f"{r.exact:.4g}"
        lines.append(f"| {r.optimizer} | {r.coordinate} | {r.mean_sq_update:.4g} | "
                     f"[{r.ci_low:.4g}, {r.ci_high:.4g}] | {exact} |")
    lines += ["", f"Final excess loss (mean across runs, {level} interval):", "",
              "| problem | optimizer | excess loss | interval |", "|---|---|---|---|"]
    for (prob, name), t in curves.groupby(["problem", "optimizer"], sort=False):
        r = t.iloc[-1]
        lines.append(f"| {prob} | {name} | {r.excess_loss:.4g} | [{r.ci_low:.4g}, "
                     f"{r.ci_high:.4g}] |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run trend_optimizers --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

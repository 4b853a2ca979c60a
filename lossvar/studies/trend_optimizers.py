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

On a tanh network trained on digits (--network; the same batch size, runs and
epochs as the real data set), where the loss is not convex and no exact theory
exists: the training loss against epochs with bands, the mean squared update
per parameter over the last 16 updates, and each optimizer against SGD on both,
a verdict per comparison (every run of every optimizer starts from the same
point and sees the same batches, so the runs are compared pairwise: a paired t
test per comparison, Holm's correction across them). Momentum and Nesterov take
SGD's effective step (0.01 / (1 - 0.9) = 0.1), RMSProp and Adam 3e-3.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import lossvar
from lossvar import optim, plots, studies, theory
from lossvar.sgd import run_sgd
from lossvar.studies import checks, network

NAME = "trend_optimizers"
FULL = {"replicates": 400, "steps": 400, "real_replicates": 40, "epochs": 20, "network": "64-32-10"}
QUICK = {"replicates": 64, "steps": 200, "real_replicates": 8, "epochs": 4, "network": "64-32-10"}
W0 = (-4.0, 1.5)
#: The most by which the start's transient, left in the steady-state window, may move
#: SGD's exact mean squared update (relatively): far below any Monte Carlo SE here.
TRANSIENT = 1e-6


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=checks.count(2), default=None, help="runs per optimizer on "
                   f"the quadratic, at least 2 for the t test (default {FULL['replicates']}, quick "
                   f"{QUICK['replicates']})")
    p.add_argument("--steps", type=checks.count(2), default=None, help="updates on the quadratic, "
                   f"enough for a steady state in the last half (default {FULL['steps']}, quick "
                   f"{QUICK['steps']})")
    p.add_argument("--condition", type=checks.number(1), default=25.0,
                   help="curvature >= 1 of the steep direction; the flat one has 1 (default 25)")
    p.add_argument("--noise-std", type=checks.number(0, low_open=True), default=1.0,
                   help="gradient noise > 0 (default 1)")
    p.add_argument("--data", default="wine",
                   help=f"real data set, one of {', '.join(lossvar.datasets.NAMES)}, or 'none'")
    p.add_argument("--batch-size", type=checks.count(1), default=8,
                   help="mini-batch on the real data and the network, at most their N (8)")
    p.add_argument("--real-replicates", type=checks.count(2), default=None, help="runs per "
                   "optimizer on the real data and the network, at least 2 (default "
                   f"{FULL['real_replicates']})")
    p.add_argument("--epochs", type=checks.count(1), default=None,
                   help=f"epochs on the real data and the network (default {FULL['epochs']})")
    network.add_flag(p, FULL["network"], QUICK["network"])
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


def check(args):
    studies.check_data(args.data, none=True)
    # every replicate's parameters (2) and records (2) at every step, for the 5 optimizers
    checks.held(20 * args.replicates * (args.steps + 1),
                f"--replicates {args.replicates} with --steps {args.steps}")
    left = _transient(args, args.steps)
    if left > TRANSIENT:
        low, need = args.steps, 2 * args.steps  # the fewest steps enough: double, then bisect
        while _transient(args, need) > TRANSIENT and need <= checks.MAX_COUNT:
            low, need = need, 2 * need
        while need - low > 1 and need <= checks.MAX_COUNT:
            mid = (low + need) // 2
            low, need = (mid, need) if _transient(args, mid) > TRANSIENT else (low, mid)
        advice = (f"give --steps >= {need}" if need <= checks.MAX_COUNT else
                  "no --steps up to 10^9 is enough; give a smaller --condition")
        raise ValueError(f"--steps {args.steps} is too few for --condition {args.condition:g} and "
                         f"--noise-std {args.noise_std:g}: the steady-state window (the last half) "
                         f"still holds the start's transient, {left:.2g} of SGD's exact value "
                         f"(at most {TRANSIENT:g}); {advice}")
    sets = [(args.data, f"--data {args.data}")] if args.data != "none" else []
    if args.network != "none":
        sets.append((network.DATA, f"--network {args.network} on {network.DATA}"))
    for name, where in sets:
        n = lossvar.datasets.load(name).n
        if args.batch_size > n:
            raise ValueError(f"--batch-size must be at most N = {n} of {where}; got {args.batch_size}")
        checks.held(4 * args.real_replicates * (4 * args.epochs + 1),
                    f"--real-replicates {args.real_replicates} with --epochs {args.epochs}")
    if args.network != "none":  # every run's parameters at the records of the network
        p = network.load(args.network).p
        checks.held(args.real_replicates * (2 * args.epochs + NET_TAIL + 2) * p,
                    f"--real-replicates {args.real_replicates} with --epochs {args.epochs} and "
                    f"--network {args.network}")


def _transient(args, steps):
    """The start's share of SGD's mean squared update over the window, relative to the
    steady-state value, largest over the coordinates. With rho = 1 - eta h and
    v* the floor, E(dw_k)^2 = eta^2 (h^2 (rho^(2k-2) (m0^2 - v*) + v*) + sigma^2)
    (docs/theory.md, section 6), averaged over the updates k of the window."""
    h = np.array([1.0, args.condition])
    eta, sigma2 = 1.75 / h.max(), args.noise_std**2  # SGD's step, as in _optimizers
    rho2 = (1 - eta * h) ** 2
    vstar = np.array([theory.constant_step_floor(eta, hi, sigma2) for hi in h])
    first, n = steps // 2, steps - steps // 2
    with np.errstate(under="ignore"):
        mean = rho2**first * -np.expm1(n * np.log(rho2)) / (1 - rho2) / n
    share = h**2 * np.abs(np.array(W0) ** 2 - vstar) * mean / (h**2 * vstar + sigma2)
    return float(share.max())


def compute(args, folder):
    h = np.array([1.0, args.condition])
    q = lossvar.NoisyQuadratic(h, noise_std=args.noise_std)
    pop = lossvar.GaussianNoisePopulation(q)
    opts = _optimizers(h.max())
    seeds = lossvar.streams.children(args.seed, 3)
    net = network.load(args.network)
    kw = studies.execution(args)
    paths, updates, curves = [], [], []
    # Common random numbers: every optimizer gets the same seed, so the same noise
    # sequence (the fresh draws do not depend on the optimizer). Every step is
    # recorded, with every replicate's parameters, for the updates' statistics.
    with checks.phase(args, "5 optimizers on the noisy quadratic", len(opts)):
        runs = [run_sgd(q, pop, opt, steps=args.steps, batch_size=1, replicates=args.replicates,
                        w0=list(W0), rng=seeds[0], record=np.arange(args.steps + 1),
                        record_params="all", **kw) for opt in opts.values()]
    for (name, opt), tr in zip(opts.items(), runs, strict=True):
        w = tr.params  # (R, steps + 1, d)
        paths.append(pd.DataFrame({"optimizer": name, "step": tr.steps,
                                   "w0": w[0, :, 0], "w1": w[0, :, 1]}))
        steady = np.diff(w, axis=1)[:, args.steps // 2:]  # (R, T, d)
        per_replicate = np.mean(steady**2, axis=1)  # (R, d): independent across replicates
        for i, coord in enumerate(("flat (h = 1)", f"steep (h = {h[1]:g})")):
            v = per_replicate[:, i]
            m, se = (float(x) for x in lossvar.stats.mean_se(v))
            low, high = lossvar.stats.mean_interval(m, se, args.confidence)
            exact = np.nan
            if name == "SGD":
                eta = opt.hyperparams["lr"]
                exact = theory.sgd_update_floor(eta, h[i], args.noise_std**2)
            updates.append(dict(optimizer=name, coordinate=coord, mean_sq_update=m,
                                se=se, ci_low=low, ci_high=high, exact=exact,
                                steps_averaged=steady.shape[1], replicates=v.size))
        s = tr.by_step
        curves.append(pd.DataFrame({"problem": "quadratic", "optimizer": name, "step": s.step,
                                    "epoch": np.nan, "excess_loss": s.loss_mean - tr.loss_star,
                                    "se": s.loss_se}))
    if args.data != "none":
        curves += _real(args, seeds[1], kw)
    curves = pd.concat(curves, ignore_index=True)
    curves["ci_low"], curves["ci_high"] = lossvar.stats.mean_interval(
        curves.excess_loss, curves.se, args.confidence)
    paths, updates = pd.concat(paths, ignore_index=True), pd.DataFrame(updates)
    verdicts = _verdicts(updates, args.confidence)
    folder.table("paths", paths)
    folder.table("update_variance", updates)
    folder.table("curves", curves)
    folder.table("agreement", verdicts)
    folder.figure("trajectories", plots.trajectories_figure(
        paths, curvature=h, start=W0, steps=args.steps, noise_std=args.noise_std))
    real = {} if args.data == "none" else dict(data=args.data, batch_size=args.batch_size,
                                                real_replicates=args.real_replicates)
    folder.figure("convergence", plots.optimizer_convergence_figure(
        curves, curvature=h, replicates=args.replicates, confidence=args.confidence, **real))
    folder.figure("update_variance", plots.update_variance_figure(
        updates, verdicts, steps=args.steps, replicates=args.replicates, confidence=args.confidence))
    if net is not None:
        nc, nu, comparisons = _network(args, net, seeds[2])
        folder.table("network_curves", nc)
        folder.table("network_updates", nu)
        folder.table("network_comparisons", comparisons)
        folder.figure("network", plots.network_optimizers_figure(
            nc, nu, comparisons, label=net.label, batch_size=args.batch_size,
            replicates=args.real_replicates, tail=NET_TAIL, confidence=args.confidence))
    summary = _summary(args, updates, curves, verdicts)
    return summary if net is None else summary + "\n\n" + _network_summary(args, net, nu, comparisons)


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
    with checks.phase(args, f"5 optimizers on {args.data}", len(opts)):
        runs = [run_sgd(problem, data, opt, steps=steps, batch_size=args.batch_size,
                        replicates=args.real_replicates, rng=seed, record=record, **kw)
                for opt in opts.values()]
    for name, tr in zip(opts, runs, strict=True):
        s = tr.by_step
        out.append(pd.DataFrame({"problem": args.data, "optimizer": name, "step": s.step,
                                 "epoch": s.step / per_epoch,
                                 "excess_loss": s.loss_mean - tr.loss_star, "se": s.loss_se}))
    return out


#: Updates at the end of the network's runs over which the mean squared update is averaged.
NET_TAIL = 16


def _network_optimizers():
    """SGD at 0.1, momentum and Nesterov at the same effective step, RMSProp and Adam at 3e-3."""
    return {"SGD": optim.sgd(0.1), "momentum 0.9": optim.momentum(0.01, 0.9),
            "Nesterov 0.9": optim.nesterov(0.01, 0.9),
            "RMSProp": optim.rmsprop(3e-3, decay=0.9, eps=1e-8, eps_in_sqrt=True),
            "Adam": optim.adam(3e-3, eps=1e-8, eps_in_sqrt=True)}


def _network(args, net, seed):
    """The five optimizers on the network: curves, mean squared updates, paired comparisons."""
    per_epoch = net.data.n // args.batch_size
    steps = args.epochs * per_epoch
    tail = min(NET_TAIL, steps)
    record = np.unique(np.concatenate([np.arange(0, steps + 1, max(1, per_epoch // 2)),
                                       np.arange(steps - tail, steps + 1)]))
    runs = network.ensembles(net, _network_optimizers(), args, f"5 optimizers on {net.label}",
                             steps=steps, batch_size=args.batch_size, rng=seed, record=record,
                             replicates=args.real_replicates, record_params="all")
    updates, final, moves = [], {}, {}
    for name, tr in runs.items():
        w = tr.params[:, -(tail + 1):]  # (R, tail + 1, p): steps - tail, ..., steps
        moves[name] = np.mean(np.sum(np.diff(w, axis=1) ** 2, axis=2), axis=1) / net.p
        final[name] = tr.values("loss", used_only=False)[:, -1]
        m, se = (float(x) for x in lossvar.stats.mean_se(moves[name]))
        low, high = lossvar.stats.mean_interval(m, se, args.confidence)
        updates.append(dict(optimizer=name, mean_sq_update=m, se=se, ci_low=low, ci_high=high,
                            steps_averaged=tail, replicates=moves[name].size))
    rows = (network.paired_comparisons(final, "SGD", "final training loss", args.confidence)
            + network.paired_comparisons(moves, "SGD", "mean squared update", args.confidence))
    return (network.curves(runs, "optimizer", args.confidence, per_epoch), pd.DataFrame(updates),
            network.verdicts(pd.DataFrame(rows), args.confidence))


def _network_summary(args, net, updates, comparisons):
    lines = [f"## Network: {net.label}, p = {net.p} (empirical: no exact theory)", "",
             f"{args.real_replicates} runs per optimizer of {args.epochs} epochs, mini-batches of "
             f"{args.batch_size} reshuffled each epoch, all from one start and on the same batches. "
             "The loss is not convex and none of these numbers has an exact value: they are Monte "
             "Carlo estimates with intervals across runs, and each optimizer is compared with SGD "
             "run by run (paired t test, Holm's correction across the "
             f"{len(comparisons)} comparisons, level {1 - args.confidence:.2g}).", "",
             f"| optimizer | mean squared update per parameter, last {NET_TAIL} updates | interval |",
             "|---|---|---|"]
    for r in updates.itertuples():
        lines.append(f"| {r.optimizer} | {r.mean_sq_update:.4g} | "
                     f"{plots.interval_text(r.ci_low, r.ci_high, r.replicates)} |")
    return "\n".join([*lines, "", *network.comparison_lines(comparisons)])


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
                     f"{plots.interval_text(r.ci_low, r.ci_high, r.replicates)} | {exact} |")
    lines += ["", f"Final excess loss (mean across runs, {level} interval):", "",
              "| problem | optimizer | excess loss | interval |", "|---|---|---|---|"]
    for (prob, name), t in curves.groupby(["problem", "optimizer"], sort=False):
        r = t.iloc[-1]
        lines.append(f"| {prob} | {name} | {r.excess_loss:.4g} | "
                     f"{plots.interval_text(r.ci_low, r.ci_high, None)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run trend_optimizers --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

"""Incremental SGD against full-batch gradient descent at equal computation.

The lecture: gradient descent must process all N examples before one update;
SGD (a new random permutation each epoch, one example per update) makes N
updates for the same computation, and "as data get increasingly diverse, the
benefits of incremental updates decrease, but do not entirely vanish".

Least squares on a data set built from a base set of m examples drawn from a
Gaussian linear model:

- comparison: SGD (B = 1), mini-batch (B = --minibatch) and GD on r copies of
  the base set, excess loss f(w) - f(w_N) against epochs (examples processed
  / N), bands across replicates;
- redundancy sweep: r = 1, 2, 4, ... exact copies; the full gradient is the
  same for every r, so GD's progress per epoch is too, while SGD makes r
  times more updates;
- diversity sweep: r copies whose targets get independent noise of standard
  deviation s, so the copies disagree and the per-example gradients at the
  optimum scatter more (larger Var(div)).

Step sizes (the comparison depends on them): GD uses the constant 1/L, L the
largest eigenvalue of X^T X / N (the best constant step with a monotone
guarantee); SGD uses eta_k = c/(k + k0) with c = 1/mu (mu the smallest
eigenvalue: the lecture's optimal 1/k decay) and k0 = c max_i ||x_i||^2, so
that the first step is 1/max ||x_i||^2 (stable for every example); a
mini-batch of B uses c/(k + max(k0/B, 2 c L)) (the same per-example decay,
capped at 1/(2L)). On this strongly convex problem GD converges linearly and
overtakes the 1/k-step SGD after enough epochs: the advantage is at a fixed,
small budget of epochs, the regime the lecture speaks of.

No verdict against exact theory: nothing measured here has an exact value.
GD is deterministic (computed, not sampled), and the expected excess loss of
SGD under random reshuffling (batches of one epoch are dependent) has no
closed form (docs/theory.md, section 6: the exact recursions hold for
independently drawn batches only). The claims are comparisons between
measured curves, with intervals across replicates.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

import lossvar
from lossvar import optim, plots, schedules, studies
from lossvar.sgd import run_sgd
from lossvar.studies import checks, network

NAME = "sgd_vs_batch"
FULL = {"replicates": 200, "epochs": 5, "copies": [1, 2, 4, 8, 16],
        "diversity": [0.0, 0.25, 0.5, 1.0, 2.0], "network": "64-32-10"}
QUICK = {"replicates": 40, "epochs": 4, "copies": [1, 4, 8], "diversity": [0.0, 0.5, 2.0],
         "network": "64-32-10"}
#: Examples in the network's base set: the first 100 of digits (8 to 12 of each class).
NET_BASE = 100


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=checks.count(2), default=None, help="SGD runs per setting, "
                   f"at least 2 for a standard error (default {FULL['replicates']}, quick "
                   f"{QUICK['replicates']})")
    p.add_argument("--epochs", type=checks.count(1), default=None, help="passes over the data "
                   f"(default {FULL['epochs']}, quick {QUICK['epochs']})")
    p.add_argument("--base-size", type=checks.count(1), default=50, help="m, examples in the base "
                   "set, at least --dim (default 50)")
    p.add_argument("--dim", type=checks.count(2), default=5, help="features, at least 2: with "
                   "one, GD's step 1/L lands on the minimum at once (default 5)")
    p.add_argument("--noise-std", type=checks.number(0), default=0.5,
                   help="noise of the base set's targets, >= 0 (default 0.5)")
    p.add_argument("--copies", type=checks.listing(checks.count(1)), default=None, metavar="LIST",
                   help="redundancy sweep r (default 1,2,4,8,16)")
    p.add_argument("--diversity", type=checks.listing(checks.number(0)), default=None,
                   metavar="LIST", help="noise s >= 0 added to each copy: to its targets (least "
                   "squares) and to its pixels (the network) (default 0,0.25,0.5,1,2)")
    p.add_argument("--minibatch", type=checks.count(1), default=10, help="mini-batch size, at most "
                   "the N of the largest --copies (default 10)")
    network.add_flag(p, FULL["network"], QUICK["network"])
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default 0.95)")
    return p


def check(args):
    if args.base_size < args.dim:
        raise ValueError(f"--base-size must be at least --dim = {args.dim} (least squares on the "
                         f"copies of the base set needs {args.dim} independent examples); got "
                         f"{args.base_size}")
    n = max(args.copies) * args.base_size
    if args.minibatch > n:
        raise ValueError(f"--minibatch must be at most N = {n} (the largest --copies "
                         f"{max(args.copies)} times --base-size {args.base_size}); got "
                         f"{args.minibatch}")
    # the set, its gradients and a block of 256 shuffles; the runs' records
    checks.held(max(3 * n * (args.dim + 1), 256 * n),
                f"--copies {max(args.copies)} with --base-size {args.base_size}, --dim {args.dim}")
    checks.held(4 * args.replicates * (4 * args.epochs + 1),
                f"--replicates {args.replicates} with --epochs {args.epochs}")
    if args.network != "none":  # the network's copies, their gradients and the runs' parameters
        p = network.load(args.network).p
        checks.held(max(args.copies) * NET_BASE * (network.D + 3 * p) + 4 * args.replicates * p,
                    f"--network {args.network} with --copies {max(args.copies)} and --replicates "
                    f"{args.replicates}")


def _steps(data, batch, epochs):
    """(steps per epoch, steps) of a method: one update per batch, GD one per epoch."""
    per_epoch = 1 if batch == "full" else data.n // batch
    return per_epoch, epochs * per_epoch


def _dataset(base, r, s, rng):
    """r copies of the base set; each copy's targets get independent N(0, s^2) noise."""
    X = np.tile(base.X, (r, 1))
    y = np.tile(base.y, r)
    if s > 0:
        y = y + s * rng.standard_normal(y.size)
    return lossvar.Dataset(X, y, name=f"{r} copies, s={s:g}", task="regression")


def _step_sizes(data):
    X = data.X
    eig = np.linalg.eigvalsh(X.T @ X / data.n)
    mu, L = eig[0], eig[-1]
    c = 1.0 / mu
    k0 = c * float(np.max(np.sum(X * X, axis=1)))
    return mu, L, c, k0


def _optimizer(batch, data):
    mu, L, c, k0 = _step_sizes(data)
    if batch == "full":
        return optim.sgd(1.0 / L)
    return optim.sgd(schedules.polynomial(c, 1.0, k0 if batch == 1 else max(k0 / batch,
                                                                             2 * c * L)))


def _network_optimizer(net, w0):
    """GD: 1/lambda_max of the Hessian at the start; SGD: the constant 2/mean ||x_i||^2 (the
    per-example curvature grows like ||x||^2), a mini-batch of B B times that, at most GD's."""
    def make(batch, data):
        gd = 1.0 / network.largest_eigenvalue(net.problem, w0, data)
        if batch == "full":
            return optim.sgd(gd)
        return optim.sgd(min(gd, 2.0 * batch / float(np.mean(np.sum(data.X**2, axis=1)))))
    return make


def _run(case, data, batch, epochs, replicates, seed, args, per_epoch_records=1):
    per_epoch, steps = _steps(data, batch, epochs)
    record = np.unique(np.linspace(0, steps, epochs * per_epoch_records + 1).round().astype(int))
    tr = run_sgd(case.problem, data, case.optimizer(batch, data), steps=steps,
                 batch_size=None if batch == "full" else batch,
                 sampling="full" if batch == "full" else "reshuffle",
                 replicates=1 if batch == "full" else replicates, record=record, rng=seed,
                 w0=case.w0, **studies.execution(args))
    s = tr.by_step
    out = pd.DataFrame({"epoch": s.step / per_epoch, "step": s.step,
                        "excess_loss": s.loss_mean - tr.loss_star,
                        "excess_loss_se": s.loss_se.fillna(0.0) if batch != "full" else 0.0,
                        "replicates": s.n})
    out["ci_low"], out["ci_high"] = lossvar.stats.mean_interval(
        out.excess_loss, out.excess_loss_se, args.confidence)
    return out, tr


def _noise_at_minimum(problem, d, w_hat):
    """Var(div) and the mean squared per-example gradient at the data set's minimizer."""
    return dict(var_div=float(np.var(problem.loss(w_hat, d.X, d.y))),
                grad_noise_trace=float(np.mean(np.sum((problem.grad(w_hat, d.X, d.y)) ** 2,
                                                      axis=1))))


def _advantage(gd, sgd, confidence):
    """GD's excess loss over SGD's at the last epoch, with the interval that SGD's gives (GD
    is exact) and the delta-method standard error."""
    g, m, se = gd.excess_loss.iloc[-1], sgd.excess_loss.iloc[-1], sgd.excess_loss_se.iloc[-1]
    low, high = lossvar.stats.mean_interval(m, se, confidence)
    return dict(gd_excess=g, sgd_excess=m, sgd_excess_se=se, advantage=g / m,
                advantage_se=g * se / m**2, ci_low=g / high, ci_high=g / low if low > 0 else np.inf)


@dataclass(frozen=True)
class _Case:
    """One problem of the study: its base set, how its copies are made, its steps and start."""

    label: str
    problem: object
    base: object
    dataset: object  # (base, r, s, rng) -> Dataset
    optimizer: object  # (batch, data) -> GradientTransformation
    w0: object = None


def _cases(args, base):
    cases = [_Case("least squares", lossvar.LinearRegression(), base, _dataset, _optimizer)]
    net = network.load(args.network)
    if net is not None:
        b = lossvar.Dataset(net.data.X[:NET_BASE], net.data.y[:NET_BASE], task="classification")
        cases.append(_Case(net.label, net.problem, b, lambda base, r, s, rng: network.copies(
            base.X, base.y, r, s, rng, name=f"{r} copies, s={s:g}", task="classification"),
            _network_optimizer(net, net.start()), net.start()))
    return cases


def compute(args, folder):
    seeds = lossvar.streams.children(args.seed, 4)
    pop = lossvar.GaussianLinearPopulation(np.linspace(1.0, -1.0, args.dim),
                                           noise_std=args.noise_std)
    cases = _cases(args, pop.sample(args.base_size, seeds[0]))
    r_main = max(args.copies)
    methods = [(1, "SGD (B = 1)"), (args.minibatch, f"mini-batch (B = {args.minibatch})"),
               ("full", "GD (full batch)")]
    curves, sweep = [], []
    for i, case in enumerate(cases):
        # case 0 keeps the seeds of a run without a network
        root = seeds if i == 0 else lossvar.streams.children(seeds[3], 3)
        with network.one_thread() if i else contextlib.nullcontext():
            curves.append(_comparison(args, case, methods, r_main, root[1]))
            sweep.append(_sweeps(args, case, r_main, root[2]))
    curves, sweep = pd.concat(curves, ignore_index=True), pd.concat(sweep, ignore_index=True)
    folder.table("curves", curves)
    folder.table("sweep", sweep)
    sizes = dict(epochs=args.epochs, replicates=args.replicates, confidence=args.confidence)
    titles = {c.label: f"{c.label}: {r_main} copies of {c.base.n} examples ($N = {r_main * c.base.n}$)"
              for c in cases}
    folder.figure("curves", plots.equal_computation_figure(curves, titles=titles, **sizes))
    folder.figure("sweep", plots.advantage_sweep_figure(
        sweep, method=methods[0][1], copies=r_main, noise={c.label: NOISE[i > 0]
                                                           for i, c in enumerate(cases)}, **sizes))
    return _summary(args, curves, sweep, r_main, cases)


#: What the diversity s perturbs, by case (least squares, network).
NOISE = ("target noise", "pixel noise")


def _comparison(args, case, methods, r_main, seed):
    """SGD, mini-batch and GD on the most redundant set, at equal computation."""
    data = case.dataset(case.base, r_main, 0.0, None)
    comp_seeds = lossvar.streams.children(seed, len(methods))
    cost = [_steps(data, batch, args.epochs)[1] for batch, _ in methods]
    out = []
    with checks.phase(args, f"SGD, mini-batch and GD at equal computation, {case.label}",
                      sum(cost)) as ph:
        for (batch, label), sd, c in zip(methods, comp_seeds, cost, strict=True):
            with ph.part(c):
                t, _ = _run(case, data, batch, args.epochs, args.replicates, sd, args,
                            per_epoch_records=4)
            out.append(t.assign(problem=case.label, method=label, copies=r_main,
                                full_batch=batch == "full"))
    out = pd.concat(out, ignore_index=True)
    return out[["problem", "method", "copies",
                *[c for c in out.columns if c not in ("problem", "method", "copies")]]]


def _sweeps(args, case, r_main, seed):
    """The redundancy and diversity sweeps of one case: SGD's advantage over GD."""
    settings = [("redundancy", r, 0.0) for r in args.copies]
    settings += [("diversity", r_main, s) for s in args.diversity]
    seeds = lossvar.streams.children(seed, len(settings))
    total = sum(args.epochs * (1 + r * case.base.n) for _, r, _ in settings)
    rows = []
    with checks.phase(args, f"redundancy and diversity sweeps, {case.label}", total) as ph:
        for (kind, r, s), sd in zip(settings, seeds, strict=True):
            data_seed, sgd_seed = lossvar.streams.children(sd, 2)
            d = case.dataset(case.base, r, s, lossvar.streams.stream(data_seed))
            with ph.part(args.epochs):
                gd, tr = _run(case, d, "full", args.epochs, 1, 0, args)
            with ph.part(args.epochs * d.n):
                sgd, _ = _run(case, d, 1, args.epochs, args.replicates, sgd_seed, args)
            rows.append(dict(problem=case.label, sweep=kind, copies=r, diversity=s, n=d.n,
                             epochs=args.epochs, **_noise_at_minimum(case.problem, d, tr.w_star),
                             **_advantage(gd, sgd, args.confidence), replicates=args.replicates))
    return pd.DataFrame(rows)


def _summary(args, curves, sweep, r_main, cases):
    mu, L, c, k0 = _step_sizes(cases[0].dataset(cases[0].base, r_main, 0.0, None))
    last = curves[curves.epoch == curves.epoch.max()]
    level = f"{args.confidence:.0%}"
    lines = [f"# sgd_vs_batch (seed {args.seed}, {args.replicates} replicates, "
             f"{args.epochs} epochs)", "",
             "No verdict against exact theory: nothing measured here has an exact value. GD is "
             "deterministic, and SGD's expected excess loss under random reshuffling has no closed "
             "form (the exact recursions of docs/theory.md, section 6 need independently drawn "
             "batches; on a network there is none at all). The claims below compare measured "
             "curves, with intervals across replicates: they are empirical.", "",
             f"Least squares, base set of m = {args.base_size} examples (d = {args.dim}, noise "
             f"{args.noise_std}); excess loss f(w) - f(w_N) over the data set's minimizer; {level} "
             "intervals across replicates (GD is deterministic).", "",
             f"Step sizes: GD constant 1/L = {1 / L:.4g}; SGD c/(k + k0), c = 1/mu = {c:.4g}, "
             f"k0 = c max||x_i||^2 = {k0:.4g} (for the set of {r_main} copies); mini-batch "
             "c/(k + max(k0/B, 2cL)). GD converges linearly here and overtakes SGD after enough "
             "epochs: the advantage is at a fixed, small budget of epochs."]
    if len(cases) > 1:
        lines += ["", f"Network {cases[1].label}: the first {NET_BASE} digits as the base set, its "
                  "copies' pixels perturbed by independent N(0, s^2) noise for the diversity sweep; "
                  "every run starts from one Glorot draw; excess loss over a local minimum of each "
                  "data set's mean loss (full-batch L-BFGS and Newton steps from a fixed start). "
                  "Step sizes: GD 1/lambda_max of the Hessian at the start (Lanczos on exact "
                  "Hessian-vector products); SGD the constant 2/mean ||x_i||^2, a mini-batch of B "
                  "B times that, at most GD's."]
    for label, t in last.groupby("problem", sort=False):
        lines += ["", f"## Equal computation, {label}, {r_main} copies, after {args.epochs} epochs",
                  "", f"| method | excess loss | {level} interval |", "|---|---|---|"]
        for r in t.itertuples():
            interval = ("exact (deterministic)" if r.full_batch else
                        plots.interval_text(r.ci_low, r.ci_high, r.replicates))
            lines.append(f"| {r.method} | {r.excess_loss:.4g} | {interval} |")
    lines += ["", "## Sweeps: advantage = GD excess loss / SGD excess loss", "",
              f"| problem | sweep | copies r | diversity s | Var(div) at w_N | advantage | {level} "
              "interval |", "|---|---|---|---|---|---|---|"]
    for r in sweep.itertuples():
        lines.append(f"| {r.problem} | {r.sweep} | {r.copies} | {r.diversity:g} | {r.var_div:.4g} | "
                     f"{r.advantage:.4g} | {plots.interval_text(r.ci_low, r.ci_high, r.replicates)} |")
    lines += ["", "Verdicts (empirical, from the intervals of the diversity sweep):", ""]
    for label, t in sweep[sweep.sweep == "diversity"].groupby("problem", sort=False):
        lo, hi = t.iloc[0], t.iloc[-1]
        falls = "decreases" if hi.ci_high < lo.ci_low else "does not clearly decrease"
        stays = "does not vanish (its interval is above 1)" if hi.ci_low > 1 else "may vanish"
        lines.append(f"- {label}: the advantage {falls} with diversity, {lo.advantage:.3g} at s = "
                     f"{lo.diversity:g} to {hi.advantage:.3g} at s = {hi.diversity:g}, and {stays}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run sgd_vs_batch --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

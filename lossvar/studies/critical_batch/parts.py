"""The critical_batch study's problems and its three parts, composed of lossvar.critical,
lossvar.theory and the gradient-noise functions: one-step gains, steps against examples
with the hyperbola, and the gradient noise."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.stats

import lossvar
from lossvar import critical, optim, studies, theory
from lossvar.studies import checks, network

#: One-step learning rates, as multiples of eps_max = ||G||^2 / G^T H G.
EPS_MULTIPLES = np.geomspace(0.03, 2.0, 11)
#: Fractions of the initial excess loss at which the noise scales are reported along the path.
PATH_FRACTIONS = (1.0, 0.5, 0.1)
#: How the batches of parts 1 and 2 are drawn (c_B = 1/B, as in the paper).
DRAWS = "with_replacement"
#: The network's levels: more of them, to follow its noise scale as the loss falls.
NET_PATH_FRACTIONS = (1.0, 0.7, 0.5, 0.3, 0.2, 0.1)
#: Runs whose noise scale is measured at the end of training on the network.
NET_END_RUNS = 8


# -- the problems ---------------------------------------------------------------------


@dataclass
class Spec:
    """One problem of the run, and how heavily each part measures it."""

    label: str
    problem: object
    data: lossvar.Dataset
    exact: bool  # the one-step theory is exact (a quadratic loss)
    target: float  # fraction of the initial excess loss
    sizes: list  # the ladder of batch sizes
    onestep_replicates: int  # 0: no one-step curves
    onestep_sizes: list
    first_cap: int  # steps allowed to the first learning rate tried
    record: dict  # keyword arguments of record
    full_with_replacement: bool  # the gradient-noise ladder adds B = N with replacement
    net: network.Network | None = None  # the network case: its start, curvature by Lanczos


def problems(args, seed):
    """The problems of the run, as Spec."""
    rng = lossvar.streams.stream(seed)
    scales = np.geomspace(1.0, 0.3, args.dim)  # condition number about 11: a real S_min
    X = rng.standard_normal((args.n, args.dim)) * scales
    y = X @ np.full(args.dim, 2.0) + rng.standard_normal(args.n)
    sizes = args.batch_sizes
    dense = dict(dense=50, points=120)
    out = [Spec("least squares (synthetic)", lossvar.LinearRegression(),
                lossvar.Dataset(X, y, name="synthetic", task="regression"), True, args.target,
                sizes, args.onestep_replicates, sizes, 4000, dense, True)]
    if args.data != "none":
        data = lossvar.datasets.load(args.data)
        out.append(Spec(f"logistic ({args.data})", lossvar.datasets.problem_for(data), data, False,
                        args.target, sizes, args.onestep_replicates, sizes, 4000, dense, True))
    if args.softmax_data != "none":
        data = lossvar.datasets.load(args.softmax_data)
        out.append(Spec(f"softmax ({args.softmax_data})", lossvar.datasets.problem_for(data), data,
                        False, args.softmax_target, args.softmax_batch_sizes,
                        args.softmax_onestep_replicates, args.softmax_batch_sizes[::2], 4000,
                        dict(dense=20, points=50), False))
    net = network.load(args.network)
    if net is not None:
        out.append(Spec(f"network {'-'.join(map(str, net.problem.sizes))} (digits)", net.problem,
                        net.data, False, args.network_target, args.network_batch_sizes, 0, [], 4000,
                        dict(dense=20, points=50), False, net))
    return out


class Reference:
    """What every part needs of one problem: w0, w*, losses, target, curvature, noise at w0
    (the last three when first asked). A network starts from its Glorot draw (w = 0 is a
    saddle) and its lambda_max comes from Hessian-vector products (Lanczos)."""

    def __init__(self, problem, data, target, net=None):
        self.problem, self.data, self.net = problem, data, net
        self.X, self.y = data.X, np.asarray(data.y, dtype=np.float64)
        self.w0 = np.zeros(problem.n_params(data.d)) if net is None else net.start()
        self.w_star = lossvar.datasets.reference_params(data, problem)
        self.loss0 = float(problem.mean_loss(self.w0, self.X, self.y))
        self.loss_star = float(problem.mean_loss(self.w_star, self.X, self.y))
        self.target = self.loss_star + target * (self.loss0 - self.loss_star)

    @cached_property
    def hessian(self):
        return self.problem.hessian(self.w0, self.X, self.y)

    @cached_property
    def lambda_max(self) -> float:
        if self.net is not None:
            return network.largest_eigenvalue(self.problem, self.w0, self.data)
        return float(np.linalg.eigvalsh(self.hessian)[-1])

    @cached_property
    def noise(self):
        return lossvar.gradient_noise(self.problem, self.data, self.w0)

    @cached_property
    def cov(self):
        # Sigma itself, which the one-step theory takes: gradient_noise reports its trace and
        # tr(H Sigma), not the matrix
        grads = self.problem.grad(self.w0, self.X, self.y)
        return np.atleast_2d(np.cov(grads, rowvar=False, bias=True))

    def best_rate(self, batch_size) -> float:
        """eps_opt(B) = eps_max / (1 + B_noise/B) at w0 (independent draws; McCandlish et al.,
        eq. 2.6): from the dense covariance, or for a network from its noise scale alone."""
        if self.net is None:
            return self.one_step(batch_size).learning_rate
        n = self.noise
        return n.grad_norm2 / n.grad_hess_grad / (1 + n.b_noise / batch_size)

    def one_step(self, batch_size, eps=None):
        """The one-step theory at w0 (independent draws): the expected loss after a step of
        each ``eps``, or (``eps`` None) the best step."""
        g, h = self.noise.grad, self.hessian
        if eps is None:
            return theory.optimal_learning_rate(g, h, self.cov, batch_size, sampling=DRAWS)
        return theory.one_step_expected_loss(self.loss0, g, h, self.cov, batch_size, eps,
                                             sampling=DRAWS)


def engine(args):
    """How the Monte Carlo runs: --workers (the phases draw the progress bars)."""
    return lossvar.Execution(workers=args.workers)


# -- the three parts -------------------------------------------------------------------------


def one_step(spec, ref, args, root):
    """Part 1: Monte Carlo one-step gains beside the theory, and the best step per B."""
    label, sizes = spec.label, [b for b in spec.onestep_sizes if b <= spec.data.n]
    if not spec.onestep_replicates:
        return pd.DataFrame(), pd.DataFrame()
    eps = ref.noise.grad_norm2 / ref.noise.grad_hess_grad * EPS_MULTIPLES
    with checks.phase(args, f"one-step gains, {label}"):
        gains = critical.one_step_gains(ref.problem, ref.data, ref.w0, sizes, eps,
                                        replicates=spec.onestep_replicates, sampling=DRAWS,
                                        rng=root, execution=engine(args))
    rows, opt_rows = [], []
    kind = "exact" if spec.exact else "second-order"
    for b in sizes:
        mean, se = lossvar.stats.mean_se(gains[b], axis=0)
        model = ref.loss0 - ref.one_step(b, eps)
        for k in range(eps.size):
            rows.append(dict(problem=label, batch_size=b, lr=eps[k], lr_over_eps_max=EPS_MULTIPLES[k],
                             replicates=gains[b].shape[0], improvement=mean[k], improvement_se=se[k],
                             theory=model[k], theory_kind=kind, z=(mean[k] - model[k]) / se[k]))
        best, fit = ref.one_step(b), critical.best_step_fit(gains[b], eps, confidence=args.confidence)
        opt_rows.append(dict(problem=label, batch_size=b, eps_opt=best.learning_rate,
                             eps_opt_mc=fit.learning_rate, eps_opt_mc_se=fit.se,
                             eps_opt_mc_ci_low=fit.learning_rate_ci.low,
                             eps_opt_mc_ci_high=fit.learning_rate_ci.high,
                             eps_opt_estimable=fit.estimable, eps_max=best.eps_max,
                             b_noise=best.b_noise, improvement_opt=best.improvement, theory_kind=kind))
    return pd.DataFrame(rows), pd.DataFrame(opt_rows)


def record(max_steps, dense=50, points=120):
    """Every step up to ``dense``, then ``points`` steps geometrically apart (the crossing is
    interpolated between records; 120 points to 4000 steps are about 3% apart)."""
    geo = np.round(np.geomspace(dense, max(max_steps, dense + 1), points)).astype(np.int64)
    grid = np.unique(np.concatenate([np.arange(0, dense + 1), geo, [max_steps]]))
    return grid[grid <= max_steps]


def ensemble(spec, ref, b, lr, replicates, max_steps, seed, args):
    """SGD runs at batch size b and rate lr: their steps to the target, and how many diverged."""
    with warnings.catch_warnings():  # a diverging learning rate is a tuning outcome, not an error
        warnings.simplefilter("ignore", lossvar.DivergenceWarning)
        tr = lossvar.run_sgd(ref.problem, ref.data, optim.sgd(lr), steps=int(max_steps), batch_size=b,
                             replicates=replicates, sampling="with_replacement", w0=ref.w0,
                             record=record(max_steps, **spec.record), rng=seed,
                             **studies.execution(args))
    return critical.steps_to_target(tr, ref.target, loss_star=ref.loss_star), len(tr.diverged)


def steps_to_target(spec, ref, sizes, args, root, bar):
    """Part 2: per B, the best rate of the grid 1.5/lambda_max * f^-k on tuning runs, then
    new runs at it; the smallest B starts from the grid point nearest eps_opt(B), each
    larger one from the best k of the one before (the best rate grows with B)."""
    rows, tuning, runs = [], [], {}
    base = 1.5 / ref.lambda_max  # stable for full-batch descent at w0
    start = int(np.round(np.log(base / ref.best_rate(sizes[0])) / np.log(args.lr_factor)))
    cap = spec.first_cap
    for b, seed in zip(sizes, lossvar.streams.children(root, len(sizes)), strict=True):
        with bar.part(1, calls=None):  # rates tried: not known beforehand
            m = critical.steps_at_best_rate(
                lambda lr, r, steps, rng, b=b: ensemble(spec, ref, b, lr, r, steps, rng, args), b,
                base=base, factor=args.lr_factor, start=start, cap=cap, first_cap=spec.first_cap,
                rng=seed, replicates=args.replicates, tune_replicates=args.tune_replicates)
        tuning += [dict(problem=spec.label, batch_size=b, **r) for r in m.tuning]
        rows.append(dict(problem=spec.label, batch_size=b, **m.to_frame().to_dict("records")[0]))
        start, cap = start if m.search.index is None else m.search.index, m.search.cap
        if m.reached.size >= 2:
            runs[b] = m.reached
    return pd.DataFrame(rows), pd.DataFrame(tuning), runs


def critical_batch(spec, runs, args, seed, path, measured):
    """The hyperbola's fit, with the noise scales at the start and at the target."""
    if len(runs) < 3:
        raise ValueError(f"{spec.label}: only {len(runs)} batch sizes ({', '.join(map(str, sorted(runs)))}) "
                         "had 2 or more runs reach the target at their tuned rate, and the "
                         "hyperbola needs 3; use more --replicates or --tune-replicates, or a larger "
                         "target")
    f = critical.critical_batch_fit(runs, confidence=args.confidence, n_resamples=args.bootstrap,
                                    rng=seed)
    start = path.iloc[0]
    end = path[path.point == f"excess {spec.target:g} of initial"].iloc[0]
    return dict(problem=spec.label, **f.to_frame().to_dict("records")[0], b_noise_start=start.b_noise,
                b_simple_start=start.b_simple, b_noise_target=end.b_noise,
                b_simple_target=end.b_simple, target=spec.target,
                lr_interior_all=bool(measured.lr_interior.fillna(False).astype(bool).all()))


def noise_path(spec, ref):
    """B_simple and B_noise along full-batch gradient descent (step 1/lambda_max) to the target."""
    levels = PATH_FRACTIONS if spec.net is None else NET_PATH_FRACTIONS
    points = critical.gradient_descent_path(ref.problem, ref.data, ref.w0, learning_rate=1 / ref.lambda_max,
                                            fractions={*levels, spec.target},
                                            loss_star=ref.loss_star)
    rows = []
    for p in points:
        n = lossvar.gradient_noise(ref.problem, ref.data, p.params)
        rows.append(dict(problem=spec.label, point=f"excess {p.fraction:g} of initial", gd_step=p.step,
                         excess_fraction=p.excess_fraction, b_simple=n.b_simple, b_noise=n.b_noise,
                         grad_norm2=n.grad_norm2, trace_cov=n.trace_cov))
    return pd.DataFrame(rows)


def gradient_noise_table(spec, ref, sizes, args, root):
    label, tables, fits = spec.label, [], []
    seeds = lossvar.streams.children(root, 2)
    for sampling, seed in zip(("with_replacement", "without_replacement"), seeds, strict=True):
        full = sampling == "without_replacement" or spec.full_with_replacement
        ladder = sorted({b for b in sizes if b <= ref.data.n} | ({ref.data.n} if full else set()))
        res = lossvar.gradient_variance(ref.problem, ref.data, ref.w0, ladder,
                                        replicates=args.noise_replicates, sampling=sampling, rng=seed,
                                        confidence=args.confidence, execution=engine(args))
        tables.append(res.table.assign(problem=label))
        # E||g_B - G||^2 is the total variance tr Cov(g_B): its 1/B law is fitted as a variance's.
        as_variance = res.table.rename(columns={"mean": "variance", "mean_se": "variance_se",
                                                "exact": "exact_variance"})
        fit = lossvar.scaling_fit(as_variance, confidence=args.confidence)
        fits.append(dict(problem=label, sampling=sampling, exponent=fit.exponent, se=fit.se,
                         ci_low=fit.exponent_ci.low, ci_high=fit.exponent_ci.high, pvalue=fit.pvalue))
    table = pd.concat(tables, ignore_index=True)
    table = table[["problem", *[c for c in table.columns if c != "problem"]]]
    return table, pd.DataFrame(fits)


def noise_in_training(spec, ref, steps, fit, args, seed):
    """The network's noise scales at the start of training (exact: every run starts at w0)
    and at its end: NET_END_RUNS new SGD runs at the ladder's batch size nearest B_crit, at
    its tuned rate, for its mean steps to the target; B_noise and B_simple at each run's
    last point, with intervals across the runs (Student t)."""
    measured = steps[(steps.problem == spec.label) & (steps.reached >= 2)]
    if measured.empty:
        raise ValueError(f"no batch size of the network's ladder reached the target in 2 runs or "
                         f"more; raise --network-target (got {args.network_target}) or --replicates")
    # Without a finite B_crit (a failed hyperbola fit), the middle of the ladder, geometrically.
    b_crit = fit["b_crit"] if np.isfinite(fit["b_crit"]) and fit["b_crit"] > 0 else \
        float(np.exp(np.log(measured.batch_size).mean()))
    row = measured.iloc[int(np.argmin(np.abs(np.log(measured.batch_size / b_crit))))]
    b, lr, n_steps = int(row.batch_size), float(row.lr), int(np.ceil(row.steps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lossvar.DivergenceWarning)
        tr = lossvar.run_sgd(ref.problem, ref.data, optim.sgd(lr), steps=n_steps, batch_size=b,
                             replicates=NET_END_RUNS, sampling=DRAWS, w0=ref.w0, rng=seed,
                             record=[0, n_steps], **studies.execution(args))
    ends = [lossvar.gradient_noise(ref.problem, ref.data, w) for w in tr.final_params
            if np.isfinite(w).all()]
    start = ref.noise
    rows = [dict(problem=spec.label, point="start (w0, every run)", runs=NET_END_RUNS, batch_size=b,
                 lr=lr, steps=0, loss=ref.loss0, loss_ci_low=ref.loss0, loss_ci_high=ref.loss0,
                 excess_fraction=1.0,
                 b_noise=start.b_noise, b_noise_ci_low=start.b_noise, b_noise_ci_high=start.b_noise,
                 b_simple=start.b_simple, b_simple_ci_low=start.b_simple,
                 b_simple_ci_high=start.b_simple, exact=True)]
    end = dict(problem=spec.label, point="end (mean steps to the target)", runs=len(ends),
               batch_size=b, lr=lr, steps=n_steps, exact=False)
    final = tr.values("loss")[:, -1]
    for key, values in (("loss", final), ("b_noise", [e.b_noise for e in ends]),
                        ("b_simple", [e.b_simple for e in ends])):
        v = np.asarray(values, dtype=np.float64)
        m, se = lossvar.stats.mean_se(v)
        ci = scipy.stats.t.interval(args.confidence, v.size - 1, loc=m, scale=se)
        end.update({key: float(m), f"{key}_ci_low": float(ci[0]), f"{key}_ci_high": float(ci[1])})
    end["excess_fraction"] = (end["loss"] - ref.loss_star) / (ref.loss0 - ref.loss_star)
    return pd.DataFrame([*rows, end])

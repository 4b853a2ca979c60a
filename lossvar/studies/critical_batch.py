"""The critical batch size: one-step gains, steps against examples, and the noise scale.

McCandlish, Kaplan, Amodei et al. (2018), "An Empirical Model of Large-Batch
Training" (arXiv:1812.06162; docs/theory.md, section 10), tested where lossvar
knows the answers:

1. One SGD step from w0 = 0 with batch B and learning rate eps: the expected
   loss is L - eps ||G||^2 + eps^2/2 (G^T H G + tr(H Sigma)/B) (independent
   draws), exact when the loss is quadratic. The Monte Carlo mean improvement
   L(w) - L(w - eps g_B) stands beside it; the best step is
   eps_opt(B) = eps_max / (1 + B_noise/B). Exact for least squares (one step
   of a quadratic), a second-order approximation for logistic regression.
2. Steps S to reach a target loss against examples E = B S, for a ladder of
   batch sizes, the constant learning rate tuned per B on a grid (powers of
   --lr-factor times 1.5/lambda_max, widened upward and downward until the
   best rate of a tuning ensemble is interior, a diverging rate counting as
   worse; then measured on a fresh ensemble), and the fit of the hyperbola
   (S/S_min - 1)(E/E_min - 1) = 1, i.e. S(B) = S_min + E_min/B, giving the
   critical batch B_crit = E_min/S_min (bootstrap intervals over runs),
   beside B_noise and B_simple from lossvar.gradient_noise at the start and
   along a full-batch path to the target.
3. The gradient noise itself: Monte Carlo E||g_B - G||^2 against the exact
   tr(Sigma)/B (times (N - B)/(N - 1) without replacement), with the fitted
   exponent of B.

Batches are drawn with replacement throughout parts 1 and 2 (independent
draws, so c_B = 1/B and B_noise enter exactly as in the paper).

The problems: least squares on a synthetic set (--n, --dim; the one-step
theory is exact), logistic regression on a real two-class set (--data,
breast_cancer) and softmax regression on a real ten-class set
(--softmax-data, digits: N = 1797, 64 features, p = 640), both with the
ridge of lossvar.datasets.problem_for and w* = lossvar.datasets.reference_params.
Each evaluation of the softmax loss over all 1797 examples is costly, so
that problem is lighter: its target is --softmax-target (0.1 of the initial
excess loss, which keeps the small batches' runs to a few hundred steps),
its one-step curves use --softmax-onestep-replicates batches at
every other batch size of the ladder (none with --quick), its SGD runs record
the loss more sparsely, and its with-replacement gradient-noise ladder stops
at the largest batch of --batch-sizes (a batch of all N examples drawn with
replacement is not special, and costs most).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st
from threadpoolctl import threadpool_limits

import lossvar
from lossvar import gradient_noise, gradient_variance, optim, plots, studies, theory
from lossvar import sampling as _sampling
from lossvar.engine import Condition, run
from lossvar.noise import GRADIENT_VARIANCE_COLUMNS as GV_COLUMNS
from lossvar.sgd import run_sgd
from lossvar.streams import as_seed_sequence
from lossvar.studies import checks

NAME = "critical_batch"
FULL = {"replicates": 64, "tune_replicates": 16, "onestep_replicates": 4000,
        "softmax_onestep_replicates": 256, "noise_replicates": 4000,
        "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256],
        "softmax_batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256], "lr_factor": 2 ** 0.5,
        "bootstrap": 2000}
QUICK = {"replicates": 16, "tune_replicates": 8, "onestep_replicates": 1000,
         "softmax_onestep_replicates": 0, "noise_replicates": 1000, "batch_sizes": [1, 4, 16, 64],
         "softmax_batch_sizes": [4, 16, 64, 256], "lr_factor": 2.0, "bootstrap": 500}
#: One-step learning rates, as multiples of eps_max = ||G||^2 / G^T H G.
EPS_MULTIPLES = np.geomspace(0.03, 2.0, 11)
#: Replicates per block of the one-step Monte Carlo (part of the random numbers' definition).
ONESTEP_BLOCK = 256
#: Gradient entries gathered at once by the one-step simulator (32 MB of float64).
GATHER_ELEMENTS = 2**22
#: Fractions of the initial excess loss at which the noise scales are reported along the path.
PATH_FRACTIONS = (1.0, 0.5, 0.1)
#: How the batches of parts 1 and 2 are drawn (c_B = 1/B, as in the paper).
DRAWS = "with_replacement"
#: Widest ratio of neighbouring learning rates: the grid must keep rates on both sides of
#: the best within the range where SGD reaches the target (a few decades here).
MAX_LR_FACTOR = 10.0


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=checks.count(2), default=None, help="SGD runs per batch size "
                   f"at the tuned learning rate, at least 2 (default {FULL['replicates']}, quick "
                   f"{QUICK['replicates']})")
    p.add_argument("--tune-replicates", type=checks.count(1), default=None, help="SGD runs per "
                   f"(batch size, learning rate) when tuning (default {FULL['tune_replicates']}, "
                   f"quick {QUICK['tune_replicates']})")
    p.add_argument("--onestep-replicates", type=checks.count(2), default=None, help="batches per "
                   f"batch size for the one-step curves, at least 2 (default "
                   f"{FULL['onestep_replicates']}, quick {QUICK['onestep_replicates']})")
    p.add_argument("--noise-replicates", type=checks.count(2), default=None, help="batches per batch "
                   f"size for E||g_B - G||^2, at least 2 (default {FULL['noise_replicates']}, quick "
                   f"{QUICK['noise_replicates']})")
    p.add_argument("--batch-sizes", type=checks.listing(checks.count(1), at_least=3), default=None,
                   metavar="LIST", help="the ladder of batch sizes, at least 3 up to each problem's N "
                   "(default 1,2,4,...,256; quick 1,4,16,64)")
    p.add_argument("--softmax-batch-sizes", type=checks.listing(checks.count(1), at_least=3),
                   default=None, metavar="LIST",
                   help="the ladder of the softmax problem (default 1,2,4,...,256; quick 4,16,64,256: "
                   "its S_min shows only at large B)")
    p.add_argument("--lr-factor", type=checks.number(1, MAX_LR_FACTOR, low_open=True), default=None,
                   help="ratio of neighbouring learning rates of the tuning grid, in (1, "
                   f"{MAX_LR_FACTOR:g}] (default sqrt 2, quick 2)")
    p.add_argument("--target", type=checks.number(0, 1, low_open=True, high_open=True), default=0.01,
                   help="target excess loss, as a fraction in (0, 1) of the excess loss at w0 = 0 "
                   "(default 0.01)")
    p.add_argument("--n", type=checks.count(2), default=1000, help="examples N of the synthetic "
                   "least-squares set, more than --dim (default 1000)")
    p.add_argument("--dim", type=checks.count(1), default=6,
                   help="features of the synthetic set (default 6)")
    p.add_argument("--data", default="breast_cancer", help="real two-class data set for "
                   "logistic regression: breast_cancer, or 'none'")
    p.add_argument("--softmax-data", default="digits", help="real multi-class data set for "
                   "softmax regression: digits, or 'none'")
    p.add_argument("--softmax-target", type=checks.number(0, 1, low_open=True, high_open=True),
                   default=0.1, help="target excess loss of the softmax problem, as a fraction in "
                   "(0, 1) of its excess loss at w0 = 0 (default 0.1)")
    p.add_argument("--softmax-onestep-replicates", type=checks.count(2, 0), default=None,
                   help="batches per batch size for the softmax problem's one-step curves, at every "
                   f"other size of the ladder; 0 skips them (default "
                   f"{FULL['softmax_onestep_replicates']}, quick {QUICK['softmax_onestep_replicates']})")
    p.add_argument("--bootstrap", type=checks.count(2), default=None, help="bootstrap resamples of "
                   "the runs for the hyperbola's intervals, at least 2 / (1 - --confidence) (default "
                   f"{FULL['bootstrap']}, quick {QUICK['bootstrap']})")
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default 0.95)")
    return p


def check(args):
    if args.data not in ("none", "breast_cancer"):
        raise ValueError(f"--data must be 'breast_cancer' or 'none'; got {args.data!r}")
    if args.softmax_data not in ("none", "digits"):
        raise ValueError(f"--softmax-data must be 'digits' or 'none'; got {args.softmax_data!r}")
    if args.n <= args.dim:
        raise ValueError(f"--n must exceed --dim = {args.dim} (least squares needs more examples "
                         f"than features); got {args.n}")
    # the ladders: 3 sizes up to N leave the hyperbola S_min + E_min/B a degree of freedom
    ladders = [("--batch-sizes", args.batch_sizes, args.n, "the synthetic set of --n")]
    if args.data != "none":
        ladders.append(("--batch-sizes", args.batch_sizes, lossvar.datasets.load(args.data).n,
                        f"--data {args.data}"))
    if args.softmax_data != "none":
        ladders.append(("--softmax-batch-sizes", args.softmax_batch_sizes,
                        lossvar.datasets.load(args.softmax_data).n,
                        f"--softmax-data {args.softmax_data}"))
    for flag, sizes, n, where in ladders:
        if sum(b <= n for b in sizes) < 3:
            raise ValueError(f"{flag} must hold at least 3 sizes up to N = {n} of {where} (larger "
                             f"ones are skipped there); got {','.join(map(str, sizes))}")
    # each tail of the percentile interval needs a resample
    fewest = math.ceil(2 / (1 - args.confidence) - 1e-9)
    if args.bootstrap < fewest:
        raise ValueError(f"--bootstrap must be at least 2 / (1 - --confidence) = {fewest} (a "
                         f"resample in each tail of the percentile interval); got {args.bootstrap}")
    # the synthetic set, its per-example gradients, covariance and Hessian; the one-step gains
    checks.held(6 * args.n * (args.dim + 1) + 3 * args.dim**2, f"--n {args.n} with --dim {args.dim}")
    for flag in ("onestep_replicates", "softmax_onestep_replicates"):
        checks.held(len(EPS_MULTIPLES) * getattr(args, flag), f"--{flag.replace('_', '-')}")


# -- the problems ---------------------------------------------------------------------


@dataclass
class _Spec:
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
    record: dict  # keyword arguments of _record
    full_with_replacement: bool  # the gradient-noise ladder adds B = N with replacement


def _problems(args, seed):
    """The problems of the run, as _Spec."""
    rng = lossvar.streams.stream(seed)
    scales = np.geomspace(1.0, 0.3, args.dim)  # condition number about 11: a real S_min
    X = rng.standard_normal((args.n, args.dim)) * scales
    y = X @ np.full(args.dim, 2.0) + rng.standard_normal(args.n)
    sizes = args.batch_sizes
    dense = dict(dense=50, points=120)
    out = [_Spec("least squares (synthetic)", lossvar.LinearRegression(),
                 lossvar.Dataset(X, y, name="synthetic", task="regression"), True, args.target,
                 sizes, args.onestep_replicates, sizes, 4000, dense, True)]
    if args.data != "none":
        data = lossvar.datasets.load(args.data)
        out.append(_Spec(f"logistic ({args.data})", lossvar.datasets.problem_for(data), data, False,
                         args.target, sizes, args.onestep_replicates, sizes, 4000, dense, True))
    if args.softmax_data != "none":
        data = lossvar.datasets.load(args.softmax_data)
        out.append(_Spec(f"softmax ({args.softmax_data})", lossvar.datasets.problem_for(data), data,
                         False, args.softmax_target, args.softmax_batch_sizes,
                         args.softmax_onestep_replicates, args.softmax_batch_sizes[::2], 4000,
                         dict(dense=20, points=50), False))
    return out


class _Reference:
    """What every part needs of one problem: w0, w*, losses, target, curvature, noise at w0."""

    def __init__(self, problem, data, target):
        self.problem, self.data = problem, data
        self.X, self.y = data.X, np.asarray(data.y, dtype=np.float64)
        p = problem.n_params(data.d)
        self.w0 = np.zeros(p)
        self.w_star = lossvar.datasets.reference_params(data, problem)
        self.loss0 = float(problem.mean_loss(self.w0, self.X, self.y))
        self.loss_star = float(problem.mean_loss(self.w_star, self.X, self.y))
        self.target = self.loss_star + target * (self.loss0 - self.loss_star)
        self.hessian = problem.hessian(self.w0, self.X, self.y)
        self.lambda_max = float(np.linalg.eigvalsh(self.hessian)[-1])
        self.grads = problem.grad(self.w0, self.X, self.y)
        self.grad = self.grads.mean(axis=0)
        self.cov = np.atleast_2d(np.cov(self.grads, rowvar=False, bias=True))  # Sigma, over N
        self.noise = gradient_noise(problem, data, self.w0)

    def loss(self, w):
        return self.problem.mean_loss(w, self.X, self.y)


# -- part 1: one step -------------------------------------------------------------------


class _OneStepGains:
    """Picklable simulator: L(w) - L(w - eps g_B) for every eps of a grid, per random batch."""

    def __init__(self, ref, batch_size, eps):
        self.problem, self.X, self.y = ref.problem, ref.X, ref.y
        self.w, self.grads, self.loss0 = ref.w0, ref.grads, ref.loss0
        self.batch_size, self.eps = batch_size, eps

    def __call__(self, rng, size):
        idx = _sampling.with_replacement(rng, self.grads.shape[0], self.batch_size, size)
        # (size, p): the batches' means, gathering at most GATHER_ELEMENTS gradient entries at once
        step = max(1, GATHER_ELEMENTS // (self.batch_size * self.grads.shape[1]))
        g = np.concatenate([self.grads[idx[s:s + step]].mean(axis=1) for s in range(0, size, step)])
        out = np.empty((size, self.eps.size))
        for k, eps in enumerate(self.eps):  # a loop over the grid, not over replicates
            out[:, k] = self.loss0 - self.problem.mean_loss(self.w - eps * g, self.X, self.y)
        return out


def _one_step(spec, ref, args, root):
    label, sizes = spec.label, [b for b in spec.onestep_sizes if b <= spec.data.n]
    if not spec.onestep_replicates:
        return pd.DataFrame(), pd.DataFrame()
    noise = ref.noise
    eps_max = noise.grad_norm2 / noise.grad_hess_grad
    eps = eps_max * EPS_MULTIPLES
    conditions = [Condition((b,), spec.onestep_replicates, ONESTEP_BLOCK, _OneStepGains(ref, b, eps),
                            label=f"one step, B={b}", reduce="stack") for b in sizes]
    with checks.phase(args, f"one-step gains, {label}"):
        outputs = run(conditions, root, **_engine_options(args))
    rows, opt_rows = [], []
    kind = "exact" if spec.exact else "second-order"
    for b, out in zip(sizes, outputs, strict=True):
        gains = out.values
        mean, se = lossvar.stats.mean_se(gains, axis=0)
        model = ref.loss0 - theory.one_step_expected_loss(ref.loss0, ref.grad, ref.hessian, ref.cov,
                                                          b, eps, sampling=DRAWS)
        for k in range(eps.size):
            rows.append(dict(problem=label, batch_size=b, lr=eps[k], lr_over_eps_max=EPS_MULTIPLES[k],
                             replicates=gains.shape[0], improvement=mean[k], improvement_se=se[k],
                             theory=model[k], theory_kind=kind, z=(mean[k] - model[k]) / se[k]))
        best = theory.optimal_learning_rate(ref.grad, ref.hessian, ref.cov, b, sampling=DRAWS)
        fitted = fitted_optimum(gains, eps, args.confidence)
        opt_rows.append(dict(problem=label, batch_size=b, eps_opt=best.learning_rate, **fitted,
                             eps_max=best.eps_max, b_noise=best.b_noise,
                             improvement_opt=best.improvement, theory_kind=kind))
    return pd.DataFrame(rows), pd.DataFrame(opt_rows)


def fitted_optimum(gains, eps, confidence):
    """eps_opt from the Monte Carlo curves: each replicate's curve projected on a eps - c eps^2.

    The projection is linear, so its mean is the projection of the mean curve;
    the replicates' (a_r, c_r) are i.i.d., so eps_opt = mean a / (2 mean c) has the
    delta-method standard error of a ratio. Exact for a quadratic loss (each
    curve is then exactly a eps - c eps^2); on the grid's range otherwise.

    Returns the columns ``eps_opt_mc``, ``eps_opt_mc_se``, ``eps_opt_mc_ci_low``,
    ``eps_opt_mc_ci_high`` (Fieller's interval for the ratio at ``confidence``;
    NaN where it is unbounded) and ``eps_opt_estimable``: the fitted parabola has
    a maximum at a positive step (mean a > 0 and mean c > 0) and Fieller's
    interval is a bounded interval of positive steps (so c is significantly
    positive and the interval does not reach 0). Where it is False the ratio is
    no estimate of a best step (a curve that does not bend down over the grid,
    or one too noisy to locate its maximum); it is kept in ``eps_opt_mc`` only
    as the raw ratio of the fit.
    """
    design = np.column_stack([eps, -eps**2])
    coef = np.linalg.lstsq(design, gains.T, rcond=None)[0]  # (2, R)
    a, c = coef
    ratio = a.mean() / (2 * c.mean())
    lin = (a - 2 * ratio * c) / (2 * c.mean())
    se = float(lossvar.stats.mean_se(lin)[1])
    # Fieller: {r : (A - r D)^2 <= z^2 Var(A - r D)} with A = mean a, D = 2 mean c
    z = lossvar.stats.two_sided_z(confidence)
    cov = np.cov(np.vstack([a, 2 * c])) / a.size
    A, D = a.mean(), 2 * c.mean()
    q2, q1, q0 = D**2 - z**2 * cov[1, 1], A * D - z**2 * cov[0, 1], A**2 - z**2 * cov[0, 0]
    disc = q1**2 - q2 * q0
    lo = hi = np.nan
    if q2 > 0 and disc >= 0:
        lo, hi = (q1 - np.sqrt(disc)) / q2, (q1 + np.sqrt(disc)) / q2
    estimable = bool(A > 0 and D > 0 and np.isfinite(lo) and lo > 0)
    return dict(eps_opt_mc=float(ratio), eps_opt_mc_se=se, eps_opt_mc_ci_low=float(lo),
                eps_opt_mc_ci_high=float(hi), eps_opt_estimable=estimable)


# -- part 2: steps against examples -----------------------------------------------------


def _record(max_steps, dense=50, points=120):
    """Every step up to ``dense``, then ``points`` steps geometrically apart (the crossing is
    interpolated between records; 120 points to 4000 steps are about 3% apart)."""
    geo = np.round(np.geomspace(dense, max(max_steps, dense + 1), points)).astype(np.int64)
    grid = np.unique(np.concatenate([np.arange(0, dense + 1), geo, [max_steps]]))
    return grid[grid <= max_steps]


def _steps_to_target(tr, ref):
    """Per run, the (interpolated) step at which the loss first reaches the target; NaN if never.

    Between the last record above the target and the first at or below it,
    log(L - L*) is interpolated linearly in the step.
    """
    loss = tr.values("loss", used_only=False)
    steps = tr.steps.astype(float)
    with np.errstate(invalid="ignore"):
        below = loss <= ref.target
    out = np.full(loss.shape[0], np.nan)
    for r in np.flatnonzero(below.any(axis=1)):
        k = int(below[r].argmax())
        if k == 0:
            out[r] = 0.0
            continue
        tiny = 1e-300
        e0 = np.log(max(loss[r, k - 1] - ref.loss_star, tiny))
        e1 = np.log(max(loss[r, k] - ref.loss_star, tiny))
        et = np.log(ref.target - ref.loss_star)
        frac = 1.0 if e0 == e1 else (e0 - et) / (e0 - e1)
        out[r] = steps[k - 1] + (steps[k] - steps[k - 1]) * frac
    return out


def _ensemble(spec, ref, b, lr, replicates, max_steps, seed, args):
    with warnings.catch_warnings():  # a diverging learning rate is a tuning outcome, not an error
        warnings.simplefilter("ignore", lossvar.DivergenceWarning)
        tr = run_sgd(ref.problem, ref.data, optim.sgd(lr), steps=int(max_steps), batch_size=b,
                     replicates=replicates, sampling="with_replacement",
                     record=_record(max_steps, **spec.record), rng=seed,
                     **studies.execution(args))
    return _steps_to_target(tr, ref), len(tr.diverged)


def _lr_base(ref):
    """The grid's anchor, k = 0: 1.5/lambda_max of H(w0), stable for full-batch descent there."""
    return 1.5 / ref.lambda_max


#: Most learning rates tried above, and below, the anchor.
MAX_RATES = 40


def _tune(spec, ref, b, args, seed, start, cap):
    """The best rate of the grid lr_k = 1.5/lambda_max * f^-k; (k, lr, mean, steps), the rows.

    From k = ``start`` (for the smallest B the grid point nearest the best
    single step eps_opt(B), for the others the best k of the next smaller
    batch: the best rate grows with B), the first rate allowed ``cap``
    steps, the grid is walked upward (k - 1, k - 2, ...) until a rate
    fails (a run diverges or misses the target within the step cap) or is
    worse than the best twice in a row, then downward from k + 1 until a
    finite rate is worse than the best twice in a row. A failed rate counts
    as worse than every finite one, so the best rate is interior (a worse or
    failed rate on each side of it) unless a walk ran out of its MAX_RATES.
    """
    rows, tried = [], {}
    up, down = lossvar.streams.children(seed, 2)
    seeds = {**{-k - 1: s for k, s in enumerate(lossvar.streams.children(up, MAX_RATES))},
             **dict(enumerate(lossvar.streams.children(down, MAX_RATES)))}

    def best():
        finite = {k: v for k, v in tried.items() if np.isfinite(v[1])}
        return min(finite.items(), key=lambda kv: kv[1][1]) if finite else (None, (None, np.inf, None))

    def evaluate(k):
        nonlocal cap
        lr = _lr_base(ref) * args.lr_factor ** -k
        s, diverged = _ensemble(spec, ref, b, lr, args.tune_replicates, cap, seeds[k], args)
        ok = bool(np.isfinite(s).all())
        mean = float(s.mean()) if ok else np.inf
        rows.append(dict(problem=spec.label, batch_size=b, k=k, lr=lr, replicates=s.size,
                         reached=int(np.isfinite(s).sum()), diverged=diverged, step_cap=cap,
                         steps_mean=mean if ok else np.nan))
        improved = ok and mean < best()[1][1]
        tried[k] = (lr, mean, s)
        if improved:
            cap = int(np.ceil(3 * np.max(s))) + 10
        return ok, improved

    for direction in (-1, 1):
        k, worse = start, 0
        if direction == 1:  # the rates between the best and the start are already worse than the best
            k_best = best()[0]
            k, worse = start + 1, (0 if k_best is None else min(2, start - k_best))
        while worse < 2 and -MAX_RATES <= k < MAX_RATES:
            ok, improved = evaluate(k)
            if direction == -1 and not ok:
                break
            if improved:
                worse = 0
            elif best()[0] is not None:
                worse += 1
            k += direction
    k_best, (lr, mean, s) = best()
    return k_best, lr, mean, s, tried, rows, cap


def _steps(spec, ref, sizes, args, root, bar):
    rows, tuning, runs = [], [], {}
    eps_opt = theory.optimal_learning_rate(ref.grad, ref.hessian, ref.cov, sizes[0],
                                           sampling=DRAWS).learning_rate
    start = int(np.round(np.log(_lr_base(ref) / eps_opt) / np.log(args.lr_factor)))
    cap = spec.first_cap
    for b, seed in zip(sizes, lossvar.streams.children(root, len(sizes)), strict=True):
        with bar.part(1, calls=None):  # rates tried: not known beforehand
            tune_seed, run_seed = lossvar.streams.children(seed, 2)
            k, lr, tuned_mean, tuned, tried, trows, cap = _tune(spec, ref, b, args, tune_seed, start, cap)
            if k is None and cap < spec.first_cap:  # the previous batch's step cap was too tight here
                tuning += trows
                k, lr, tuned_mean, tuned, tried, trows, cap = _tune(spec, ref, b, args, tune_seed, start,
                                                                    spec.first_cap)
            tuning += trows
            start = start if k is None else k
            if k is None:
                rows.append(dict(problem=spec.label, batch_size=b, lr=np.nan, replicates=0, reached=0))
                continue
            above, below = tried.get(k - 1), tried.get(k + 1)
            s, diverged = _ensemble(spec, ref, b, lr, args.replicates,
                                    int(np.ceil(4 * np.max(tuned))) + 20, run_seed, args)
            if np.isfinite(s).sum() < 2:  # no mean steps with a standard error at this B
                rows.append(dict(problem=spec.label, batch_size=b, lr=lr, replicates=s.size,
                                 reached=int(np.isfinite(s).sum()), diverged=diverged))
                continue
            runs[b] = s[np.isfinite(s)]
            m, se = lossvar.stats.mean_se(runs[b])
            rows.append(dict(problem=spec.label, batch_size=b, lr=lr, lr_k=k,
                             lr_over_base=args.lr_factor ** -k, lr_at_grid_top=above is None,
                             lr_interior=bool(above is not None and below is not None
                                              and above[1] > tuned_mean and below[1] > tuned_mean),
                             rates_tried=len(tried), replicates=s.size, reached=int(np.isfinite(s).sum()),
                             diverged=diverged, steps=m, steps_se=se, examples=b * m, examples_se=b * se))
    return pd.DataFrame(rows), pd.DataFrame(tuning), runs


def _hyperbola(runs, args, seed, label):
    """S(B) = S_min + E_min / B by weighted least squares, bootstrap over runs within each B.

    Weights 1/se^2 are those of the measured means and stay fixed across
    resamples, so each resample's fit is a linear map of its means.
    """
    if len(runs) < 3:
        raise ValueError(f"{label}: only {len(runs)} batch sizes ({', '.join(map(str, sorted(runs)))}) "
                         "had 2 or more runs reach the target at their tuned rate, and the "
                         "hyperbola needs 3; use more --replicates or --tune-replicates, or a larger "
                         "target")
    sizes = np.array(sorted(runs), dtype=float)
    means, se = (np.array(v) for v in zip(*(lossvar.stats.mean_se(runs[b]) for b in sorted(runs)),
                                          strict=True))
    w = 1.0 / np.maximum(se, 1e-12) ** 2
    # S(B) is a line in 1/B: intercept S_min, slope E_min.
    fit = lossvar.stats.line_fit(1.0 / sizes, means, w)
    s_min, e_min, chi2 = float(fit.intercept), float(fit.slope), float(fit.chi2)
    rng = lossvar.streams.stream(seed)
    boot = np.empty((args.bootstrap, sizes.size))
    for j, b in enumerate(sorted(runs)):
        v = runs[b]
        boot[:, j] = v[rng.integers(0, v.size, (args.bootstrap, v.size))].mean(axis=1)
    boot_fit = lossvar.stats.line_fit(1.0 / sizes, boot, w)
    bs_s, bs_e = boot_fit.intercept, boot_fit.slope
    alpha = 1.0 - args.confidence
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    with np.errstate(divide="ignore", invalid="ignore"):
        bs_crit = bs_e / bs_s
    out = dict(s_min=s_min, e_min=e_min, b_crit=e_min / s_min, chi2=chi2, dof=sizes.size - 2,
               chi2_pvalue=float(_st.chi2.sf(chi2, sizes.size - 2)), bootstrap=args.bootstrap,
               interval="bootstrap percentile over runs")
    for name, v in (("s_min", bs_s), ("e_min", bs_e), ("b_crit", bs_crit)):
        lo, hi = np.percentile(v, q)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(lo), float(hi)
    return out


def _noise_path(spec, ref):
    """B_simple and B_noise along full-batch gradient descent (step 1/lambda_max) to the target."""
    label, rows, w = spec.label, [], ref.w0.copy()
    levels = sorted({*PATH_FRACTIONS, spec.target}, reverse=True)
    excess0 = ref.loss0 - ref.loss_star
    lr = 1.0 / ref.lambda_max
    for step in range(200_000):
        frac = (ref.loss(w) - ref.loss_star) / excess0
        while levels and frac <= levels[0]:
            n = gradient_noise(ref.problem, ref.data, w)
            rows.append(dict(problem=label, point=f"excess {levels[0]:g} of initial", gd_step=step,
                             excess_fraction=frac, b_simple=n.b_simple, b_noise=n.b_noise,
                             grad_norm2=n.grad_norm2, trace_cov=n.trace_cov))
            levels.pop(0)
        if not levels:
            break
        w = w - lr * ref.problem.mean_grad(w, ref.X, ref.y)
    return pd.DataFrame(rows)


# -- part 3: the gradient noise -----------------------------------------------------------


def _gradient_noise_table(spec, ref, sizes, args, root):
    label, tables, fits = spec.label, [], []
    seeds = lossvar.streams.children(root, 2)
    for sampling, seed in zip(("with_replacement", "without_replacement"), seeds, strict=True):
        full = sampling == "without_replacement" or spec.full_with_replacement
        ladder = sorted({b for b in sizes if b <= ref.data.n} | ({ref.data.n} if full else set()))
        res = gradient_variance(ref.problem, ref.data, ref.w0, ladder, replicates=args.noise_replicates,
                                sampling=sampling, rng=seed, confidence=args.confidence,
                                execution=lossvar.Execution(**_engine_options(args)))
        # E||g_B - G||^2 is the total variance tr Cov(g_B): the 1/B law is fitted as a variance's
        table = res.table
        table = table.assign(variance=table["mean"], variance_se=table.mean_se, exact_variance=table.exact)
        table = table[[*GV_COLUMNS[:-1], "variance", "variance_se", "exact_variance", GV_COLUMNS[-1]]]
        tables.append(table.assign(problem=label))
        fit = lossvar.scaling_fit(table, confidence=args.confidence)
        fits.append(dict(problem=label, sampling=sampling, exponent=fit.exponent, se=fit.se,
                         ci_low=fit.ci_low, ci_high=fit.ci_high, pvalue=fit.pvalue))
    table = pd.concat(tables, ignore_index=True)
    table = table[["problem", *[c for c in table.columns if c != "problem"]]]
    return table, pd.DataFrame(fits)


def _engine_options(args):
    return {"workers": args.workers}


# -- the study ----------------------------------------------------------------------------


def compute(args, folder):
    # Every matrix here is small (at most 1797 x 640): one BLAS thread is faster than several that
    # wait for each other, most of all on a shared machine, and the same for every run.
    with threadpool_limits(limits=1, user_api="blas"):
        return _compute(args, folder)


def _compute(args, folder):
    root = as_seed_sequence(args.seed)
    seeds = lossvar.streams.children(root, 2)
    problems = _problems(args, seeds[0])
    parts = {k: [] for k in ("one_step", "one_step_opt", "steps", "tuning", "critical_batch",
                             "noise_path", "gradient_variance", "gradient_scaling")}
    for spec, seed in zip(problems, lossvar.streams.children(seeds[1], len(problems)), strict=True):
        s1, s2, s3, s4 = lossvar.streams.children(seed, 4)
        ref = _Reference(spec.problem, spec.data, spec.target)
        sizes = [b for b in spec.sizes if b <= spec.data.n]
        one, opt = _one_step(spec, ref, args, s1)
        with checks.phase(args, f"SGD tuning and runs per batch size, {spec.label}",
                          len(sizes)) as bar:
            steps, tuning, runs = _steps(spec, ref, sizes, args, s2, bar)
        path = _noise_path(spec, ref)
        fit = _hyperbola(runs, args, s3, spec.label)
        start, end = path.iloc[0], path.iloc[-1]
        fit = dict(problem=spec.label, **fit, b_noise_start=start.b_noise, b_simple_start=start.b_simple,
                   b_noise_target=end.b_noise, b_simple_target=end.b_simple, target=spec.target,
                   lr_interior_all=bool(steps.lr_interior.fillna(False).astype(bool).all()))
        with checks.phase(args, f"gradient noise, {spec.label}", 2):
            gv, gfit = _gradient_noise_table(spec, ref, sizes, args, s4)
        for key, value in (("one_step", one), ("one_step_opt", opt), ("steps", steps),
                           ("tuning", tuning), ("critical_batch", pd.DataFrame([fit])),
                           ("noise_path", path), ("gradient_variance", gv),
                           ("gradient_scaling", gfit)):
            if len(value):  # a problem without one-step curves adds no rows there
                parts[key].append(value)
    tables = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    scaling = tables["gradient_scaling"]  # the exponent tests are a family: Holm across them
    scaling["holm_pvalue"] = lossvar.stats.holm(scaling.pvalue.to_numpy(float))
    for name, table in tables.items():
        folder.table(name, table)
    _figures(folder, tables, args)
    return _summary(args, tables)


#: At most this many batch sizes per one-step panel (every other size of a longer ladder).
MAX_CURVES = 5
#: Lower edge of the one-step panels, in units of the noiseless best gain (curves leave below).
GAIN_FLOOR = -0.6


def _shown_sizes(sizes):
    sizes = sorted(set(int(b) for b in sizes))
    return sizes[::-(-len(sizes) // MAX_CURVES)]


def _model_gain(x, batch_size, b_noise):
    """The one-step model's gain in units of its noiseless best, at eps = x eps_max (eq. 2.3)."""
    return 2 * x - x**2 * (1 + b_noise / batch_size)


def _log_ticks(axis, subs=(1.0, 2.0, 5.0)):
    """Major ticks at ``subs`` x 10^k written as plain numbers, unlabelled minor ticks.

    ``subs=None``: as many as the axis' range leaves room for (1, 2, 5 within about a decade,
    1 and 3 within two and a half, else decades).
    """
    from matplotlib import ticker

    if subs is None:
        lo, hi = sorted(axis.get_view_interval())
        decades = np.log10(hi / lo)
        subs = (1.0, 2.0, 5.0) if decades < 1.4 else (1.0, 3.0) if decades < 2.6 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _theory_style(kind):
    """Exact theory per the package (thin, dark, solid); the second-order model dashed."""
    return dict(plots.EXACT) if kind == "exact" else {**plots.EXACT, "ls": (0, (4, 2))}


def _figure_legend(fig, axes, ncol, title=None, first=()):
    """One legend above the figure for every labelled artist of ``axes``, read row by row;
    the labels ``first`` (in their order) lead, then the others as drawn."""
    handles = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    lead = [lab for lab in first if lab in handles]
    handles = {lab: handles[lab] for lab in [*lead, *[x for x in handles if x not in lead]]}
    handles = plots.legend_order(handles, ncol)
    return fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=ncol,
                      title=title, columnspacing=1.4, handletextpad=0.5)


def _number(v):
    """A noise scale or batch size for a figure: 3 significant digits, no exponent below 10^5."""
    return f"{v:.0f}" if 1000 <= abs(v) < 1e5 else f"{v:.3g}"


def _figures(folder, t, args):
    with plots.style():
        if len(t["one_step"]):
            folder.figure("one_step", _one_step_figure(t, args.confidence))
        folder.figure("steps_examples", _steps_figure(t, args.confidence))
        folder.figure("gradient_variance", _noise_figure(t, args.confidence))


def _one_step_figure(t, confidence):
    one, opt = t["one_step"], t["one_step_opt"]
    labels = list(dict.fromkeys(one.problem))
    z = lossvar.stats.two_sided_z(confidence)
    shown = {lab: _shown_sizes(one.batch_size[one.problem == lab]) for lab in labels}
    names = [f"B = {b}" for b in sorted({b for v in shown.values() for b in v})]
    colors, marks = plots.palette(names), plots.markers(names)
    best_color = "0.45"  # not one of the batch sizes' colours: every B of the ladder
    fig, axes = plots.subplots(len(labels), 2, width="full", height=0.35 + 2.05 * len(labels),
                               squeeze=False, gridspec_kw={"width_ratios": [1.3, 1.0]})
    kinds = set()
    for (left, right), label in zip(axes, labels, strict=True):
        g = one[one.problem == label]
        o = opt[opt.problem == label].sort_values("batch_size")
        kind = g.theory_kind.iloc[0]
        kinds.add(kind)
        b_noise, e_max = float(o.b_noise.iloc[0]), float(o.eps_max.iloc[0])
        first = o.iloc[0]
        gain_max = float(first.improvement_opt * (1 + b_noise / first.batch_size))  # B -> infinity
        # left: the gain of one step against its size, in units of the noiseless best gain
        xx = np.geomspace(g.lr_over_eps_max.min(), g.lr_over_eps_max.max(), 300)
        k = len(shown[label])
        for i, b in enumerate(shown[label]):
            c = g[g.batch_size == b].sort_values("lr")
            name = f"B = {b}"
            dodge = 10 ** ((i - (k - 1) / 2) * 0.012)
            y = c.improvement.to_numpy(float) / gain_max
            half = z * c.improvement_se.to_numpy(float) / gain_max
            plots.mc_points(left, c.lr_over_eps_max.to_numpy(float) * dodge, y, y - half, y + half,
                            color=colors[name], marker=marks[name], label=name, ms=3.2)
            left.plot(xx, _model_gain(xx, b, b_noise), **_theory_style(kind))
        top = max(1.12, float((g.improvement / gain_max).max()) * 1.08)
        left.set_ylim(GAIN_FLOOR, top)
        left.axhline(0.0, color="0.6", lw=0.5, zorder=0)
        left.set_xscale("log")
        _log_ticks(left.xaxis)
        left.set_xlabel(r"step size $\varepsilon\,/\,\varepsilon_{\max}$")
        left.set_ylabel(r"gain $\mathrm{E}\,[L(w_0) - L(w_0 - \varepsilon g_B)]\,/\,\Delta L_{\max}$")
        left.set_title(f"{label}: one step from $w_0 = 0$", loc="left")
        left.text(0.01, 0.02, r"$\varepsilon_{\max}$" + f" = {e_max:.3g}, "
                  r"$\Delta L_{\max}$" + f" = {gain_max:.3g}", transform=left.transAxes,
                  fontsize=6.5, color="0.25", ha="left", va="bottom")
        # right: the best step against B
        bb = np.geomspace(o.batch_size.min() / 1.5, o.batch_size.max() * 1.5, 200)
        right.plot(bb, 1 / (1 + b_noise / bb), **_theory_style(kind))
        right.axhline(1.0, color="0.55", lw=0.6, ls=":", zorder=1)
        right.text(0.01, 1.0, r" $\varepsilon_{\max}$", va="top", ha="left", fontsize=6.5,
                   color="0.35", transform=right.get_yaxis_transform())
        est = o.eps_opt_estimable.astype(bool).to_numpy()
        e = o[est]
        plots.mc_points(right, e.batch_size, e.eps_opt_mc / e_max, e.eps_opt_mc_ci_low / e_max,
                        e.eps_opt_mc_ci_high / e_max, color=best_color, marker="o",
                        label="best step, fitted to Monte Carlo")
        hi = float((e.eps_opt_mc_ci_high / e_max).max()) if len(e) else 1.0
        right.set_ylim(0.0, max(1.12, 1.06 * hi))
        bad = o[~est]
        if len(bad):
            right.plot(bad.batch_size, np.zeros(len(bad)), ls="none", marker="v", ms=5, mfc="white",
                       mec=best_color, mew=1.0, clip_on=False, zorder=5,
                       label="not estimable (at the axis)")
        right.axvline(b_noise, color="0.55", lw=0.6, ls=(0, (1, 1.5)), zorder=1)
        right.text(b_noise, 0.04, r" $B_{\rm noise}$" + f" = {b_noise:.3g}", transform=
                   right.get_xaxis_transform(), fontsize=6.5, color="0.25", ha="left", va="bottom")
        right.set_xscale("log")
        _log_ticks(right.xaxis)
        right.set_xlabel(r"batch size $B$")
        right.set_ylabel(r"best step $\varepsilon_{\rm opt}\,/\,\varepsilon_{\max}$")
        right.set_title("best single step against $B$" + ("" if kind == "exact" else
                        "\nsecond-order model: local at $w_0$, not exact at large steps"), loc="left")
    lines = fig.add_axes([0, 0, 0, 0], visible=False)  # the legend's order: B, theory, best step
    for name in names:
        plots.mc_points(lines, [], [], [], [], color=colors[name], marker=marks[name], label=name,
                        ms=3.2)
    for kind, text in (("exact", "exact theory"),
                       ("second-order", "second-order model")):
        if kind in kinds:
            lines.plot([], [], **_theory_style(kind), label=text)
    _figure_legend(fig, [lines, *np.ravel(axes)], ncol=max(len(names), 4), first=names,
                   title=f"Monte Carlo means (markers) with {plots.interval_words(confidence)} (bars)")
    words = plots.interval_words(confidence)
    plots.caption(fig, (
        "McCandlish et al. (2018), eq. 2.3: one SGD step of size $\\varepsilon$ from $w_0 = 0$ with a "
        "batch of $B$ examples drawn with replacement. Left: mean gain of the step (markers, "
        f"bars: {words}, normal approximation, mean $\\pm z$ standard errors) against the "
        "step, both scaled: $\\varepsilon_{\\max} = |G|^2/G^\\top H G$ and "
        "$\\Delta L_{\\max} = |G|^4/(2\\,G^\\top H G)$, the best step and gain of a noiseless "
        "gradient. The model's curve is $2x - x^2(1 + B_{\\rm noise}/B)$ with "
        "$x = \\varepsilon/\\varepsilon_{\\max}$: solid where it is exact (a quadratic loss), "
        "dashed where it is the second-order expansion at $w_0$. Batch sizes " + "; ".join(
            f"{', '.join(map(str, shown[lab]))} ({lab.split(' (')[0]})" for lab in labels)
        + f" are shown. The vertical axis stops at {GAIN_FLOOR:g}: the curves of large steps and "
        "small batches keep falling below it. Right: the best step "
        "$\\varepsilon_{\\rm opt} = \\varepsilon_{\\max}/(1 + B_{\\rm noise}/B)$ (line) and the "
        "maximum of $a\\varepsilon - c\\varepsilon^2$ fitted to the Monte Carlo gains over the grid "
        f"(markers, bars: Fieller's {words.replace(' intervals', ' interval')} for the ratio "
        "$a/2c$, every batch size of the ladder). Where the fitted parabola has no maximum at a "
        "positive step or its interval is unbounded or reaches 0, the fit is not estimable and "
        "no number is drawn (open triangle at the axis; column eps_opt_estimable). For a "
        "non-quadratic loss the fitted maximum summarizes the curve over the grid "
        f"({EPS_MULTIPLES[0]:g} to {EPS_MULTIPLES[-1]:g} $\\varepsilon_{{\\max}}$), where the "
        "second-order model, an expansion at $w_0$, need not hold.")
    )
    return fig


def _steps_figure(t, confidence):
    crit = t["critical_batch"]
    labels = list(crit.problem)
    z = lossvar.stats.two_sided_z(confidence)
    color = plots.palette(["Monte Carlo"])["Monte Carlo"]
    fig, axes = plots.subplots(1, len(labels), width="full", height=2.75, squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        s = t["steps"][(t["steps"].problem == label) & (t["steps"].reached > 0)].sort_values("batch_size")
        c = crit[crit.problem == label].iloc[0]
        b = s.batch_size.to_numpy(float)
        steps, half = s.steps.to_numpy(float), z * s.steps_se.to_numpy(float)
        # E = B S: the interval of one B runs along the line E = B S (45 degrees on log axes)
        for bi, lo, hi in zip(b, steps - half, steps + half, strict=True):
            ax.plot([bi * lo, bi * hi], [lo, hi], color=color, lw=plots.MONTE_CARLO["elinewidth"],
                    solid_capstyle="butt", zorder=3)
        ax.plot(b * steps, steps, ls="none", marker="o", ms=plots.MONTE_CARLO["ms"], color=color,
                mew=plots.MONTE_CARLO["mew"], zorder=3, label="Monte Carlo, tuned rate per $B$")
        for bi, si in zip(b, steps, strict=True):
            ax.annotate(f"{bi:g}", (bi * si, si), xytext=(4, 2), textcoords="offset points",
                        fontsize=6, color="0.3")
        bb = np.geomspace(0.5 * b.min(), 4 * b.max(), 300)
        ss = c.s_min + c.e_min / bb
        ax.plot(bb * ss, ss, color=plots.EXACT["color"], lw=0.9, ls=(0, (4, 2)), zorder=4,
                label=r"fitted $(S/S_{\min} - 1)(E/E_{\min} - 1) = 1$")
        ax.axhline(c.s_min, color="0.6", lw=0.6, ls=":", zorder=1)
        ax.axvline(c.e_min, color="0.6", lw=0.6, ls=":", zorder=1)
        ax.plot([2 * c.e_min], [2 * c.s_min], ls="none", marker="D", ms=4.5, mfc="white",
                mec=plots.EXACT["color"], mew=1.0, zorder=5,
                label=r"$B = B_{\rm crit}$ on the fit ($2E_{\min}$, $2S_{\min}$)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.autoscale_view()
        _log_ticks(ax.xaxis, subs=None)
        _log_ticks(ax.yaxis, subs=None)
        ax.set_xlabel(r"examples $E = B\,S$")
        ax.set_ylabel(r"steps $S$ to the target loss")
        ax.set_title(f"{label}, target {c.target:g}", loc="left")
        ax.text(0.97, 0.97,
                r"$B_{\rm crit}$" + f" = {_number(c.b_crit)}\n"
                f"{_percent(confidence)} CI [{_number(c.b_crit_ci_low)}, {_number(c.b_crit_ci_high)}]"
                "\n" r"$B_{\rm noise}$" + f" {_number(c.b_noise_start)} at $w_0$,\n"
                f"{_number(c.b_noise_target)} at target",
                transform=ax.transAxes, ha="right", va="top", fontsize=6.5, linespacing=1.3, zorder=6)
    _figure_legend(fig, axes, ncol=3, title="Monte Carlo means (markers) with "
                   f"{plots.interval_words(confidence)} (bars; numbers: batch size $B$)")
    plots.caption(fig, (
        "McCandlish et al. (2018), section 2.2: steps $S$ and examples $E = BS$ to reach the target "
        "excess loss (a fraction of that at $w_0 = 0$, after each panel's name) with SGD (batches "
        "drawn with replacement), for each batch size $B$ of the ladder at "
        "its best constant learning rate (tuned on a grid, then measured on fresh runs). Bars: "
        f"{plots.interval_words(confidence)} of the mean steps (normal approximation, mean $\\pm z$ "
        "standard errors; most are shorter than the markers); $E$ moves with $S$, so each bar lies "
        "along the line $E = BS$. Dashed: "
        "the hyperbola $S(B) = S_{\\min} + E_{\\min}/B$ fitted by weighted least squares, with its "
        "asymptotes $S_{\\min}$ and $E_{\\min}$ (dotted); the open diamond is its point at "
        "$B = B_{\\rm crit} = E_{\\min}/S_{\\min}$. $B_{\\rm crit}$'s interval: percentile "
        "bootstrap over runs (the "
        "tuned learning rates held fixed). $B_{\\rm noise}$ from the exact gradient covariance, "
        "at $w_0 = 0$ and where full-batch descent reaches the target."))
    return fig


def _percent(confidence):
    return f"{100 * float(confidence):.4g}%"


def _noise_figure(t, confidence):
    gv, fits = t["gradient_variance"], t["gradient_scaling"]
    labels = list(dict.fromkeys(gv.problem))
    pal = plots.palette(list(dict.fromkeys(gv.sampling)))
    marks = plots.markers(list(pal))
    fig = _new_figure(height=4.6)
    grid = fig.add_gridspec(3, len(labels), height_ratios=[2.2, 1.0, 0.62])
    axes = []
    for j, label in enumerate(labels):
        g = gv[gv.problem == label].drop(columns="problem")
        top = fig.add_subplot(grid[0, j])
        bottom = fig.add_subplot(grid[1, j], sharex=top)
        plots.variance_plot(g, ax=top, confidence=confidence, palette=pal, legend=False, note=False,
                            title=label)
        top.set_ylabel(r"$\mathrm{E}\,|g_B - G|^2$")
        top.set_xlabel("")
        top.tick_params(labelbottom=False)
        _relabel(top, r"$\mathrm{tr}\,\Sigma/B$ (the $1/B$ law)")
        plots.ratio_plot(g[g.exact_variance > 0], ax=bottom, confidence=confidence, palette=pal,
                         legend=False)
        bottom.set_ylabel("Monte Carlo / exact")
        _log_ticks(bottom.xaxis, subs=(1.0,))
        axes += [top, bottom]
    _figure_legend(fig, axes, ncol=4, first=[plots.sampling_label(x) for x in pal],
                   title="Monte Carlo estimates (markers) with "
                   f"{plots.interval_words(confidence)} (bars)")
    table = fig.add_subplot(grid[2, :])
    rows, colors, mk = [], [], []
    for i, f in enumerate(fits.itertuples()):
        same = i and fits.problem.iloc[i - 1] == f.problem
        rows.append(["" if same else f.problem, plots.sampling_label(f.sampling).replace("fixed data, ", ""),
                     f"{f.exponent:.4f}  [{f.ci_low:.4f}, {f.ci_high:.4f}]",
                     f"{f.pvalue:#.2g}, Holm {f.holm_pvalue:#.2g}"])
        colors.append(pal[f.sampling])
        mk.append(marks[f.sampling])
    plots.table_panel(table, ["problem", "sampling", f"exponent $a$ of $\\mathrm{{E}}|g_B - G|^2 "
                              f"\\propto B^a$\n({_percent(confidence)} CI)",
                              "p-value of $a = -1$\n(raw, Holm)"],
                      rows, colors=colors, marks=mk, color_col=1)
    ns = ", ".join(f"{int(n)}" for n in dict.fromkeys(gv[gv.exact_variance == 0].n))
    plots.caption(fig, (
        "The gradient noise at $w_0 = 0$: Monte Carlo mean of $|g_B - G|^2$ over random batches "
        "(markers, offset slightly in $B$ per sampling scheme; bars: "
        f"{plots.interval_words(confidence)}, normal approximation) against the exact "
        "$\\mathrm{tr}\\,\\Sigma/B$, times $(N - B)/(N - 1)$ without replacement (dark line, drawn "
        "over the markers; $\\Sigma$ the covariance of the per-example gradients); wide grey "
        "line: $\\mathrm{tr}\\,\\Sigma/B$. Middle: Monte Carlo divided by exact, with its "
        "interval; the theory holds where the bars cross 1. The full batch $B = N$ "
        f"({ns}) without replacement has exactly zero noise and is not drawn. Table: exponent "
        "$a$ fitted by weighted least squares after dividing by the finite-population factor, "
        f"its interval and the p-value of $a = -1$, raw and after Holm's correction across the "
        f"{len(fits)} fits."))
    return fig


def _new_figure(height):
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(plots.FULL_WIDTH, height), layout="constrained")


def _relabel(ax, reference_label):
    """Rename the reference line of ``plots.variance_plot`` (s^2/B there is tr Sigma / B here)."""
    for line in ax.get_lines():
        if line.get_label().startswith("$s^2/B$"):
            line.set_label(reference_label)


def _summary(args, t):
    lines = [f"# critical_batch (seed {args.seed})", "",
             "McCandlish, Kaplan, Amodei et al. (2018), arXiv:1812.06162, tested on problems with "
             "known answers (docs/theory.md, section 10). Batches drawn with replacement in the "
             f"one-step and SGD parts. Intervals at {args.confidence:.0%}.", "",
             "## 1. One step from w = 0", ""]
    one, opt = t["one_step"], t["one_step_opt"]
    for label, g in one.groupby("problem", sort=False):
        kind = g.theory_kind.iloc[0]
        worst = float(g.z.abs().max())
        rel = float(((g.improvement - g.theory).abs() / g.theory.abs().max()).max())
        small = g[g.lr_over_eps_max <= 0.3]
        rel_small = float(((small.improvement - small.theory).abs() / g.theory.abs().max()).max())
        verdict = ("agree (|z| <= 4)" if worst <= 4 else "DISAGREE") if kind == "exact" else (
            "approximate: a second-order model of a non-quadratic loss, close for small steps "
            f"(eps <= 0.3 eps_max: max |difference| / max |theory| = {rel_small:.3g}), not for large")
        lines.append(f"- {label}: {kind} one-step curves vs Monte Carlo over {len(g)} (B, eps) points: "
                     f"max |z| = {worst:.2f}, max |difference| / max |theory| = {rel:.3g} -> {verdict}.")
        o = opt[opt.problem == label]
        est = o[o.eps_opt_estimable.astype(bool)]
        zo = ((est.eps_opt_mc - est.eps_opt) / est.eps_opt_mc_se).abs().max() if len(est) else np.nan
        missing = sorted(o.batch_size[~o.eps_opt_estimable.astype(bool)].tolist())
        lines.append(f"  eps_opt(B) = eps_max/(1 + B_noise/B) with eps_max = {o.eps_max.iloc[0]:.4g}, "
                     f"B_noise = {o.b_noise.iloc[0]:.4g}; Monte Carlo eps_opt vs theory: max |z| = "
                     f"{zo:.2f} over the {len(est)} of {len(o)} batch sizes where it is estimable"
                     + (f"; NOT estimable for B in {missing} (the fitted a eps - c eps^2 has no "
                        "maximum at a positive step, or its Fieller interval is unbounded or reaches "
                        "0: column eps_opt_estimable)" if missing else "") + ".")
        if kind != "exact":
            lines.append("  The second-order model is local (a Taylor expansion at w = 0): it need not "
                         "hold at steps near eps_max, where the fitted optimum is measured.")
    skipped = [c.problem for c in t["critical_batch"].itertuples() if c.problem not in set(one.problem)]
    if skipped:
        lines.append(f"- {', '.join(skipped)}: no one-step curves in this run "
                     "(--softmax-onestep-replicates 0).")
    targets = ", ".join(f"{c.target:g} for {c.problem}" for c in t["critical_batch"].itertuples())
    lines += ["", "## 2. Steps against examples", "",
              f"Target: excess loss as a fraction of its value at w = 0: {targets}. Learning rate "
              f"per B: the best of the grid 1.5/lambda_max * {args.lr_factor:.4g}^-k (k of either "
              f"sign, lambda_max of H at w = 0) on {args.tune_replicates} tuning runs, the grid "
              "walked upward until a rate diverges or misses the target and downward until the "
              f"mean steps grow twice in a row; then {args.replicates} fresh runs measured. "
              "S(B) = S_min + E_min/B is the hyperbola (S/S_min - 1)(E/E_min - 1) = 1; fitted by "
              "weighted least squares, intervals by the bootstrap over runs "
              f"({args.bootstrap} resamples; the learning-rate choice is held fixed, so its "
              "uncertainty is not in them).", "",
              "| problem | S_min | E_min | B_crit = E_min/S_min | B_noise start / target | "
              "B_simple start / target | fit chi2 (dof), p |", "|---|---|---|---|---|---|---|"]
    for c in t["critical_batch"].itertuples():
        lines.append(
            f"| {c.problem} | {c.s_min:.3g} [{c.s_min_ci_low:.3g}, {c.s_min_ci_high:.3g}] | "
            f"{c.e_min:.3g} [{c.e_min_ci_low:.3g}, {c.e_min_ci_high:.3g}] | "
            f"{c.b_crit:.3g} [{c.b_crit_ci_low:.3g}, {c.b_crit_ci_high:.3g}] | "
            f"{c.b_noise_start:.3g} / {c.b_noise_target:.3g} | {c.b_simple_start:.3g} / "
            f"{c.b_simple_target:.3g} | {c.chi2:.3g} ({c.dof}), {c.chi2_pvalue:.2g} |")
    lines.append("")
    steps = t["steps"]
    for label, g in steps.groupby("problem", sort=False):
        tuned = g[g.reached > 0]
        edge = sorted(tuned.batch_size[~tuned.lr_interior.astype(bool)].tolist())
        rates = ", ".join(f"{r.lr_over_base:.3g}" for r in tuned.itertuples())
        if edge:
            verdict = (f"NOT interior for B in {edge}: a rate beside it was not tried, so S there "
                       "is an upper bound for the best constant rate")
        else:
            verdict = "interior for every B (a worse, diverging or too slow rate on both sides)"
        lines.append(f"- {label}: best learning rate / (1.5/lambda_max) per B: {rates}; {verdict}.")
    lines.append("")
    path = t["noise_path"]
    for c in t["critical_batch"].itertuples():
        p = path[path.problem == c.problem]
        along = ", ".join(f"{r.b_noise:.3g} ({r.excess_fraction:.2g})" for r in p.itertuples())
        lo, hi = float(p.b_noise.min()), float(p.b_noise.max())
        inside = c.b_crit_ci_high >= lo and c.b_crit_ci_low <= hi
        lines.append(f"- {c.problem}: B_crit {c.b_crit:.3g} [{c.b_crit_ci_low:.3g}, "
                     f"{c.b_crit_ci_high:.3g}]; B_noise along full-batch descent (excess fraction in "
                     f"brackets): {along}. B_crit {'lies within' if inside else 'lies OUTSIDE'} the "
                     "range B_noise sweeps during training. B_noise grows as G shrinks, by orders "
                     "of magnitude here, so the paper's B_crit ~ B_noise (its eq. 2.11, derived for "
                     "a noise scale that stays put) is an order-of-magnitude statement on these "
                     "problems, not a sharp test.")
    lines += ["", "## 3. Gradient noise E||g_B - G||^2 at w = 0", ""]
    gv = t["gradient_variance"]
    pos = gv[gv.exact > 0]
    worst = float(((pos["mean"] - pos.exact) / pos.mean_se).abs().max())
    lines.append(f"Monte Carlo vs exact tr(Sigma)/B (times (N - B)/(N - 1) without replacement): "
                 f"max |z| = {worst:.2f} over {len(pos)} rows; the full batch without replacement "
                 "is exactly 0.")
    for f in t["gradient_scaling"].itertuples():
        lines.append(f"- {f.problem}, {f.sampling}: exponent {f.exponent:.4f} [{f.ci_low:.4f}, "
                     f"{f.ci_high:.4f}] (1/B law: p = {f.pvalue:.3g}, {f.holm_pvalue:.3g} after Holm "
                     f"across the {len(t['gradient_scaling'])} fits).")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run critical_batch --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check=check)


if __name__ == "__main__":
    raise SystemExit(main())

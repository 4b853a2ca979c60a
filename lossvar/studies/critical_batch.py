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
   --lr-factor below 1.5/lambda_max, chosen on a tuning ensemble, then
   measured on a fresh ensemble), and the fit of the hyperbola
   (S/S_min - 1)(E/E_min - 1) = 1, i.e. S(B) = S_min + E_min/B, giving the
   critical batch B_crit = E_min/S_min (bootstrap intervals over runs),
   beside B_noise and B_simple from lossvar.gradient_noise at the start and
   along a full-batch path to the target.
3. The gradient noise itself: Monte Carlo E||g_B - G||^2 against the exact
   tr(Sigma)/B (times (N - B)/(N - 1) without replacement), with the fitted
   exponent of B.

Batches are drawn with replacement throughout parts 1 and 2 (independent
draws, so c_B = 1/B and B_noise enter exactly as in the paper).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

import lossvar
from lossvar import optim, plots, studies, theory
from lossvar import sampling as _sampling
from lossvar._validate import as_seed_sequence
from lossvar.engine import Condition, run
from lossvar.gradient_noise import gradient_noise, gradient_variance
from lossvar.sgd import run_sgd

NAME = "critical_batch"
FULL = {"replicates": 64, "tune_replicates": 16, "onestep_replicates": 4000,
        "noise_replicates": 4000, "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256],
        "lr_factor": 2 ** 0.5, "bootstrap": 2000}
QUICK = {"replicates": 16, "tune_replicates": 8, "onestep_replicates": 1000,
         "noise_replicates": 1000, "batch_sizes": [1, 4, 16, 64], "lr_factor": 2.0,
         "bootstrap": 500}
#: One-step learning rates, as multiples of eps_max = ||G||^2 / G^T H G.
EPS_MULTIPLES = np.geomspace(0.03, 2.0, 11)
#: Replicates per block of the one-step Monte Carlo (part of the random numbers' definition).
ONESTEP_BLOCK = 256
#: Fractions of the initial excess loss at which the noise scales are reported along the path.
PATH_FRACTIONS = (1.0, 0.5, 0.1)


def build_parser():
    p = studies.parser(NAME, __doc__)
    p.add_argument("--replicates", type=int, default=None, help="SGD runs per batch size at the "
                   f"tuned learning rate (default {FULL['replicates']}, quick {QUICK['replicates']})")
    p.add_argument("--tune-replicates", type=int, default=None, help="SGD runs per (batch size, "
                   f"learning rate) when tuning (default {FULL['tune_replicates']}, quick "
                   f"{QUICK['tune_replicates']})")
    p.add_argument("--onestep-replicates", type=int, default=None, help="batches per batch size "
                   f"for the one-step curves (default {FULL['onestep_replicates']}, quick "
                   f"{QUICK['onestep_replicates']})")
    p.add_argument("--noise-replicates", type=int, default=None, help="batches per batch size for "
                   f"E||g_B - G||^2 (default {FULL['noise_replicates']}, quick "
                   f"{QUICK['noise_replicates']})")
    p.add_argument("--batch-sizes", type=studies.comma_list(int), default=None, metavar="LIST",
                   help="the ladder of batch sizes (default 1,2,4,...,256; quick 1,4,16,64)")
    p.add_argument("--lr-factor", type=float, default=None, help="ratio of neighbouring learning "
                   "rates of the tuning grid (default sqrt 2, quick 2)")
    p.add_argument("--target", type=float, default=0.01, help="target excess loss, as a fraction "
                   "of the excess loss at w0 = 0 (default 0.01)")
    p.add_argument("--n", type=int, default=1000, help="examples N of the synthetic least-squares "
                   "set (default 1000)")
    p.add_argument("--dim", type=int, default=6, help="features of the synthetic set (default 6)")
    p.add_argument("--data", default="breast_cancer", help="real classification data set for "
                   "logistic regression, one of breast_cancer, or 'none'")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples of the runs for "
                   f"the hyperbola's intervals (default {FULL['bootstrap']}, quick {QUICK['bootstrap']})")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    return p


def check(args):
    if args.data not in ("none", "breast_cancer"):
        raise ValueError(f"--data must be 'breast_cancer' or 'none'; got {args.data!r}")
    if not 0 < args.target < 1:
        raise ValueError(f"--target must be in (0, 1) (a fraction of the initial excess loss); "
                         f"got {args.target}")
    if len(args.batch_sizes) < 3 or min(args.batch_sizes) < 1:
        raise ValueError(f"--batch-sizes must hold at least 3 positive sizes; got {args.batch_sizes}")
    if not args.lr_factor > 1:
        raise ValueError(f"--lr-factor must be > 1; got {args.lr_factor}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1); got {args.confidence}")


# -- the problems ---------------------------------------------------------------------


def _problems(args, seed):
    """(label, problem, data, exact one-step theory?) for each problem of the run."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(1.0, 0.3, args.dim)  # condition number about 11: a real S_min
    X = rng.standard_normal((args.n, args.dim)) * scales
    y = X @ np.full(args.dim, 2.0) + rng.standard_normal(args.n)
    out = [("least squares (synthetic)", lossvar.LinearRegression(),
            lossvar.Dataset(X, y, name="synthetic", task="regression"), True)]
    if args.data != "none":
        data = lossvar.datasets.load(args.data)
        out.append((f"logistic ({args.data})", lossvar.datasets.problem_for(data), data, False))
    return out


class _Reference:
    """What every part needs of one problem: w0, w*, losses, target, curvature, noise at w0."""

    def __init__(self, problem, data, target):
        self.problem, self.data = problem, data
        self.X, self.y = data.X, np.asarray(data.y, dtype=np.float64)
        p = problem.n_params(data.d)
        self.w0 = np.zeros(p)
        self.w_star = problem.minimize(data.X, data.y)
        self.loss0 = float(problem.mean_loss(self.w0, self.X, self.y))
        self.loss_star = float(problem.mean_loss(self.w_star, self.X, self.y))
        self.target = self.loss_star + target * (self.loss0 - self.loss_star)
        self.hessian = problem.hessian(self.w0, self.X, self.y)
        self.lambda_max = float(np.linalg.eigvalsh(self.hessian)[-1])
        self.grads = problem.grad(self.w0, self.X, self.y)
        self.grad = self.grads.mean(axis=0)
        self.cov = np.cov(self.grads, rowvar=False, bias=True)  # Sigma, divides by N
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
        g = self.grads[idx].mean(axis=1)  # (size, p): every batch of the block at once
        out = np.empty((size, self.eps.size))
        for k, eps in enumerate(self.eps):  # a loop over the grid, not over replicates
            out[:, k] = self.loss0 - self.problem.mean_loss(self.w - eps * g, self.X, self.y)
        return out


def _one_step(label, ref, exact, sizes, args, root):
    noise = ref.noise
    eps_max = noise.grad_norm2 / noise.grad_hess_grad
    eps = eps_max * EPS_MULTIPLES
    conditions = [Condition((b,), args.onestep_replicates, ONESTEP_BLOCK, _OneStepGains(ref, b, eps),
                            label=f"one step, B={b}", reduce="stack") for b in sizes]
    outputs = run(conditions, root, **_engine_options(args))
    rows, opt_rows = [], []
    kind = "exact" if exact else "second-order"
    for b, out in zip(sizes, outputs, strict=True):
        gains = out.values
        mean = gains.mean(axis=0)
        se = gains.std(axis=0, ddof=1) / np.sqrt(gains.shape[0])
        model = ref.loss0 - theory.one_step_expected_loss(ref.loss0, ref.grad, ref.hessian, ref.cov,
                                                          b, eps)
        for k in range(eps.size):
            rows.append(dict(problem=label, batch_size=b, lr=eps[k], lr_over_eps_max=EPS_MULTIPLES[k],
                             replicates=gains.shape[0], improvement=mean[k], improvement_se=se[k],
                             theory=model[k], theory_kind=kind, z=(mean[k] - model[k]) / se[k]))
        best = theory.optimal_learning_rate(ref.grad, ref.hessian, ref.cov, b)
        lr_mc, lr_se = _fitted_optimum(gains, eps)
        opt_rows.append(dict(problem=label, batch_size=b, eps_opt=best.learning_rate, eps_opt_mc=lr_mc,
                             eps_opt_mc_se=lr_se, eps_max=best.eps_max, b_noise=best.b_noise,
                             improvement_opt=best.improvement, theory_kind=kind))
    return pd.DataFrame(rows), pd.DataFrame(opt_rows)


def _fitted_optimum(gains, eps):
    """eps_opt from the Monte Carlo curves: each replicate's curve projected on a eps - c eps^2.

    The projection is linear, so its mean is the projection of the mean curve;
    the replicates' (a_r, c_r) are i.i.d., so eps_opt = mean a / (2 mean c) has the
    delta-method standard error of a ratio. Exact for a quadratic loss (each
    curve is then exactly a eps - c eps^2); on the grid's range otherwise.
    """
    design = np.column_stack([eps, -eps**2])
    coef = np.linalg.lstsq(design, gains.T, rcond=None)[0]  # (2, R)
    a, c = coef
    ratio = a.mean() / (2 * c.mean())
    lin = (a - 2 * ratio * c) / (2 * c.mean())
    return float(ratio), float(lin.std(ddof=1) / np.sqrt(lin.size))


# -- part 2: steps against examples -----------------------------------------------------


def _record(max_steps):
    """Every step up to 50, then about 4% apart (the crossing is interpolated between records)."""
    geo = np.round(np.geomspace(50, max(max_steps, 51), 120)).astype(np.int64)
    grid = np.unique(np.concatenate([np.arange(0, 51), geo, [max_steps]]))
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


def _ensemble(ref, b, lr, replicates, max_steps, seed, args):
    import warnings

    with warnings.catch_warnings():  # a diverging learning rate is a tuning outcome, not an error
        warnings.simplefilter("ignore", lossvar.DivergenceWarning)
        tr = run_sgd(ref.problem, ref.data, optim.sgd(lr), steps=int(max_steps), batch_size=b,
                     replicates=replicates, sampling="with_replacement", record=_record(max_steps),
                     rng=seed, **studies.parallel(run_sgd, args))
    return _steps_to_target(tr, ref)


def _lr_top(ref):
    """The grid's largest rate: 1.5/lambda_max of H(w0), stable for full-batch descent there."""
    return 1.5 / ref.lambda_max


def _tune(label, ref, b, args, seed):
    """Descend the learning-rate grid until the mean steps grow twice in a row; the tuning rows."""
    rows, best, worse = [], None, 0
    cap = 4000
    seeds = seed.spawn(40)
    for k in range(40):
        lr = _lr_top(ref) * args.lr_factor ** -k
        s = _ensemble(ref, b, lr, args.tune_replicates, cap, seeds[k], args)
        ok = bool(np.isfinite(s).all())
        mean = float(s.mean()) if ok else np.inf
        rows.append(dict(problem=label, batch_size=b, lr=lr, replicates=s.size,
                         reached=int(np.isfinite(s).sum()), steps_mean=mean if ok else np.nan))
        if best is None or mean < best[1]:
            best, worse = (lr, mean, s), 0
            cap = int(np.ceil(3 * np.nanmax(s))) + 10 if ok else cap
        elif best[1] < np.inf:
            worse += 1
            if worse == 2:
                break
    return best, rows


def _steps(label, ref, sizes, args, root):
    rows, tuning, runs = [], [], {}
    for b, seed in zip(sizes, root.spawn(len(sizes)), strict=True):
        tune_seed, run_seed = seed.spawn(2)
        (lr, tuned_mean, tuned), trows = _tune(label, ref, b, args, tune_seed)
        tuning += trows
        if not np.isfinite(tuned_mean):
            rows.append(dict(problem=label, batch_size=b, lr=np.nan, replicates=0, reached=0))
            continue
        s = _ensemble(ref, b, lr, args.replicates, int(np.ceil(4 * np.nanmax(tuned))) + 20,
                      run_seed, args)
        runs[b] = s[np.isfinite(s)]
        m, se = runs[b].mean(), runs[b].std(ddof=1) / np.sqrt(runs[b].size)
        rows.append(dict(problem=label, batch_size=b, lr=lr, lr_at_grid_top=bool(lr == _lr_top(ref)),
                         replicates=s.size, reached=int(np.isfinite(s).sum()), steps=m, steps_se=se,
                         examples=b * m, examples_se=b * se))
    return pd.DataFrame(rows), pd.DataFrame(tuning), runs


def _hyperbola(runs, args, seed):
    """S(B) = S_min + E_min / B by weighted least squares, bootstrap over runs within each B.

    Weights 1/se^2 are those of the measured means and stay fixed across
    resamples, so each resample's fit is a linear map of its means.
    """
    sizes = np.array(sorted(runs), dtype=float)
    means = np.array([runs[b].mean() for b in sorted(runs)])
    se = np.array([runs[b].std(ddof=1) / np.sqrt(runs[b].size) for b in sorted(runs)])
    w = 1.0 / np.maximum(se, 1e-12) ** 2
    design = np.column_stack([np.ones_like(sizes), 1.0 / sizes])
    proj = np.linalg.solve(design.T @ (w[:, None] * design), design.T * w)  # (2, k)
    s_min, e_min = proj @ means
    resid = means - design @ np.array([s_min, e_min])
    chi2 = float(np.sum(w * resid**2))
    rng = np.random.default_rng(seed)
    boot = np.empty((args.bootstrap, sizes.size))
    for j, b in enumerate(sorted(runs)):
        v = runs[b]
        boot[:, j] = v[rng.integers(0, v.size, (args.bootstrap, v.size))].mean(axis=1)
    bs_s, bs_e = proj @ boot.T
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


def _noise_path(label, ref, args):
    """B_simple and B_noise along full-batch gradient descent (step 1/lambda_max) to the target."""
    rows, w = [], ref.w0.copy()
    levels = [*PATH_FRACTIONS, args.target]
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


def _gradient_noise_table(label, ref, sizes, args, root):
    tables, fits = [], []
    seeds = root.spawn(2)
    for sampling, seed in zip(("with_replacement", "without_replacement"), seeds, strict=True):
        ladder = sorted({b for b in sizes if b <= ref.data.n} | {ref.data.n})
        res = gradient_variance(ref.problem, ref.data, ref.w0, ladder, replicates=args.noise_replicates,
                                sampling=sampling, rng=seed, confidence=args.confidence,
                                **_engine_options(args))
        tables.append(res.table.assign(problem=label))
        fit = lossvar.scaling_fit(res, confidence=args.confidence)
        fits.append(dict(problem=label, sampling=sampling, exponent=fit.exponent, se=fit.se,
                         ci_low=fit.ci_low, ci_high=fit.ci_high, pvalue=fit.pvalue))
    table = pd.concat(tables, ignore_index=True)
    table = table[["problem", *[c for c in table.columns if c != "problem"]]]
    return table, pd.DataFrame(fits)


def _engine_options(args):
    return {"workers": args.workers}


# -- the study ----------------------------------------------------------------------------


def compute(args, folder):
    root = as_seed_sequence(args.seed)
    seeds = root.spawn(2)
    problems = _problems(args, seeds[0])
    parts = {k: [] for k in ("one_step", "one_step_opt", "steps", "tuning", "critical_batch",
                             "noise_path", "gradient_variance", "gradient_scaling")}
    for (label, problem, data, exact), seed in zip(problems, seeds[1].spawn(len(problems)),
                                                   strict=True):
        s1, s2, s3, s4 = seed.spawn(4)
        ref = _Reference(problem, data, args.target)
        sizes = [b for b in args.batch_sizes if b <= data.n]
        one, opt = _one_step(label, ref, exact, sizes, args, s1)
        steps, tuning, runs = _steps(label, ref, sizes, args, s2)
        path = _noise_path(label, ref, args)
        fit = _hyperbola(runs, args, s3)
        start, end = path.iloc[0], path.iloc[-1]
        fit = dict(problem=label, **fit, b_noise_start=start.b_noise, b_simple_start=start.b_simple,
                   b_noise_target=end.b_noise, b_simple_target=end.b_simple, target=args.target)
        gv, gfit = _gradient_noise_table(label, ref, sizes, args, s4)
        for key, value in (("one_step", one), ("one_step_opt", opt), ("steps", steps),
                           ("tuning", tuning), ("critical_batch", pd.DataFrame([fit])),
                           ("noise_path", path), ("gradient_variance", gv),
                           ("gradient_scaling", gfit)):
            parts[key].append(value)
    tables = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    for name, table in tables.items():
        folder.table(name, table)
    _figures(folder, tables, args)
    return _summary(args, tables)


def _figures(folder, t, args):
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(t["one_step"].problem))
    fig, axes = plt.subplots(len(labels), 2, figsize=(11, 4.2 * len(labels)), squeeze=False)
    for row, label in zip(axes, labels, strict=True):
        one = t["one_step"][t["one_step"].problem == label].copy()
        kind = one.theory_kind.iloc[0]
        one["B"] = "B = " + one.batch_size.astype(str)
        plots.loss_curves(one, x="lr", y="improvement", hue="B", se="improvement_se",
                          exact=one, exact_y="theory", ax=row[0], logx=True, logy=False,
                          xlabel="learning rate eps", ylabel="E[L(w) - L(w - eps g_B)]",
                          title=f"{label}: one step from w = 0\ndashed: {kind} theory "
                                "(McCandlish et al. 2018, eq. 2.3)")
        row[0].axhline(0.0, color="0.5", lw=0.7)
        opt = t["one_step_opt"][t["one_step_opt"].problem == label]
        b = np.geomspace(opt.batch_size.min(), opt.batch_size.max(), 100)
        e_max, b_noise = opt.eps_max.iloc[0], opt.b_noise.iloc[0]
        row[1].plot(b, e_max / (1 + b_noise / b), "-", color="C0", label="eps_max / (1 + B_noise/B)")
        row[1].errorbar(opt.batch_size, opt.eps_opt_mc, yerr=1.96 * opt.eps_opt_mc_se, fmt="o",
                        color="C1", capsize=3, label="Monte Carlo (fitted a eps - c eps^2)")
        row[1].axvline(b_noise, color="0.4", ls=":", label=f"B_noise = {b_noise:.3g}")
        row[1].axhline(e_max, color="0.7", ls="--", lw=0.8, label="eps_max")
        row[1].set_xscale("log")
        row[1].set_xlabel("batch size B")
        row[1].set_ylabel("optimal learning rate eps_opt")
        row[1].set_title(f"{label}: best single step against B", fontsize=10)
        row[1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    folder.figure("one_step", fig)

    fig, axes = plt.subplots(1, len(labels), figsize=(5.6 * len(labels), 4.4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        s = t["steps"][(t["steps"].problem == label) & (t["steps"].reached > 0)]
        c = t["critical_batch"][t["critical_batch"].problem == label].iloc[0]
        ax.errorbar(s.examples, s.steps, xerr=1.96 * s.examples_se, yerr=1.96 * s.steps_se, fmt="o",
                    capsize=3, label="Monte Carlo (tuned lr per B)")
        for r in s.itertuples():
            ax.annotate(f"B={r.batch_size}", (r.examples, r.steps), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        bb = np.geomspace(0.3 * s.batch_size.min(), 3 * s.batch_size.max(), 200)
        ss = c.s_min + c.e_min / bb
        ax.plot(bb * ss, ss, "-", color="C3", lw=1,
                label=f"(S/S_min - 1)(E/E_min - 1) = 1\nB_crit = {c.b_crit:.3g} "
                      f"[{c.b_crit_ci_low:.3g}, {c.b_crit_ci_high:.3g}]")
        ax.axhline(c.s_min, color="0.6", ls=":", lw=0.8)
        ax.axvline(c.e_min, color="0.6", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("examples E = B S")
        ax.set_ylabel("steps S to the target loss")
        ax.set_title(f"{label}: target = {args.target:g} of the initial excess loss\n"
                     f"B_noise: {c.b_noise_start:.3g} at start, {c.b_noise_target:.3g} at target",
                     fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    folder.figure("steps_examples", fig)

    fig, axes = plt.subplots(1, len(labels), figsize=(5.6 * len(labels), 4.4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        g = t["gradient_variance"][t["gradient_variance"].problem == label]
        plots.variance_plot(g.drop(columns="problem"), ax=ax,
                            title=f"{label}: E||g_B - G||^2 at w = 0 against B")
        ax.set_ylabel("E||g_B - G||^2 (= tr Cov g_B)")
    fig.tight_layout()
    folder.figure("gradient_variance", fig)


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
        zo = ((o.eps_opt_mc - o.eps_opt) / o.eps_opt_mc_se).abs().max()
        lines.append(f"  eps_opt(B) = eps_max/(1 + B_noise/B) with eps_max = {o.eps_max.iloc[0]:.4g}, "
                     f"B_noise = {o.b_noise.iloc[0]:.4g}; Monte Carlo eps_opt vs theory: max |z| = "
                     f"{zo:.2f}.")
    lines += ["", "## 2. Steps against examples", "",
              f"Target: excess loss {args.target:g} of its value at w = 0. Learning rate per B: the "
              f"best of the grid 1.5/lambda_max * {args.lr_factor:.4g}^-k on {args.tune_replicates} "
              f"tuning runs, then {args.replicates} fresh runs measured. S(B) = S_min + E_min/B is "
              "the hyperbola (S/S_min - 1)(E/E_min - 1) = 1; fitted by weighted least squares, "
              f"intervals by the bootstrap over runs ({args.bootstrap} resamples; the learning-rate "
              "choice is held fixed, so its uncertainty is not in them).", "",
              "| problem | S_min | E_min | B_crit = E_min/S_min | B_noise start / target | "
              "B_simple start / target | fit chi2 (dof), p |", "|---|---|---|---|---|---|---|"]
    for c in t["critical_batch"].itertuples():
        lines.append(
            f"| {c.problem} | {c.s_min:.3g} [{c.s_min_ci_low:.3g}, {c.s_min_ci_high:.3g}] | "
            f"{c.e_min:.3g} [{c.e_min_ci_low:.3g}, {c.e_min_ci_high:.3g}] | "
            f"{c.b_crit:.3g} [{c.b_crit_ci_low:.3g}, {c.b_crit_ci_high:.3g}] | "
            f"{c.b_noise_start:.3g} / {c.b_noise_target:.3g} | {c.b_simple_start:.3g} / "
            f"{c.b_simple_target:.3g} | {c.chi2:.3g} ({c.dof}), {c.chi2_pvalue:.2g} |")
    top = t["steps"][t["steps"].lr_at_grid_top.fillna(False).astype(bool)]
    for label, g in top.groupby("problem", sort=False):
        lines.append(f"- {label}: the best learning rate is the grid's largest (1.5/lambda_max of H at "
                     f"w = 0) for B in {sorted(g.batch_size.tolist())}: there S is an upper bound for "
                     "the best constant rate (for logistic regression the curvature falls along the "
                     "path, so larger rates could be stable), which biases S_min up and B_crit down.")
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
                     f"{f.ci_high:.4f}] (1/B law: p = {f.pvalue:.3g}).")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run critical_batch --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check=check)


if __name__ == "__main__":
    raise SystemExit(main())

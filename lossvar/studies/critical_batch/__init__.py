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

A tanh network on digits (--network: 64-32-10, a smaller 64-8-10 with --quick),
whose loss is not convex, runs beside them: it starts from a Glorot draw (w = 0
is a saddle), its w* is a local minimum, it has no one-step curves, and parts 2
and 3 run on it as on the others (--network-target, --network-batch-sizes).
Along its training the noise scale grows as the loss falls (McCandlish et al.
2018, section 3): B_noise and B_simple are exact at every point of the
full-batch path (more points than for the convex problems), and at the end of
training they are measured at the last point of 8 fresh SGD runs at the
ladder's batch size nearest B_crit (its tuned rate, its mean steps to the
target), with intervals across the runs. Beyond the noise scales at fixed
points and the gradient noise of part 3, no number of the network has exact
theory.
"""

from __future__ import annotations

import math

import pandas as pd
from threadpoolctl import threadpool_limits

import lossvar
from lossvar import plots, studies
from lossvar.studies import checks, network
from lossvar.studies.critical_batch import parts
from lossvar.studies.critical_batch.summary import summary

NAME = "critical_batch"
FULL = {"replicates": 64, "tune_replicates": 16, "onestep_replicates": 4000,
        "softmax_onestep_replicates": 256, "noise_replicates": 4000,
        "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256],
        "softmax_batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256], "lr_factor": 2 ** 0.5,
        "bootstrap": 2000, "network": "64-32-10", "network_batch_sizes": [1, 4, 16, 64, 256]}
QUICK = {"replicates": 16, "tune_replicates": 8, "onestep_replicates": 1000,
         "softmax_onestep_replicates": 0, "noise_replicates": 1000, "batch_sizes": [1, 4, 16, 64],
         "softmax_batch_sizes": [4, 16, 64, 256], "lr_factor": 2.0, "bootstrap": 500,
         "network": "64-8-10", "network_batch_sizes": [4, 16, 64, 256]}
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
    network.add_flag(p, FULL["network"], QUICK["network"])
    p.add_argument("--network-target", type=checks.number(0, 1, low_open=True, high_open=True),
                   default=0.2, help="target excess loss of the network, as a fraction in (0, 1) "
                   "of its excess loss at its start (default 0.2: below it, the smallest batches' "
                   "noise floor at a constant rate lies above the target)")
    p.add_argument("--network-batch-sizes", type=checks.listing(checks.count(1), at_least=3),
                   default=None, metavar="LIST", help="the ladder of the network (default "
                   "1,4,16,64,256; quick 4,16,64,256)")
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
    if args.network != "none":
        ladders.append(("--network-batch-sizes", args.network_batch_sizes,
                        lossvar.datasets.load(network.DATA).n, f"--network {args.network}"))
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
        checks.held(len(parts.EPS_MULTIPLES) * getattr(args, flag), f"--{flag.replace('_', '-')}")


# -- the study ----------------------------------------------------------------------------


def compute(args, folder):
    # Every matrix here is small (at most 1797 x 640): one BLAS thread is faster than several that
    # wait for each other, most of all on a shared machine, and the same for every run.
    with threadpool_limits(limits=1, user_api="blas"):
        return _compute(args, folder)


def _compute(args, folder):
    seeds = lossvar.streams.children(args.seed, 2)
    problems = parts.problems(args, seeds[0])
    found = {k: [] for k in ("one_step", "one_step_opt", "steps", "tuning", "critical_batch",
                             "noise_path", "gradient_variance", "gradient_scaling")}
    for spec, seed in zip(problems, lossvar.streams.children(seeds[1], len(problems)), strict=True):
        s1, s2, s3, s4 = lossvar.streams.children(seed, 4)
        ref = parts.Reference(spec.problem, spec.data, spec.target, spec.net)
        sizes = [b for b in spec.sizes if b <= spec.data.n]
        one, opt = parts.one_step(spec, ref, args, s1)
        with checks.phase(args, f"SGD tuning and runs per batch size, {spec.label}",
                          len(sizes)) as bar:
            steps, tuning, runs = parts.steps_to_target(spec, ref, sizes, args, s2, bar)
        path = parts.noise_path(spec, ref)
        fit = parts.critical_batch(spec, runs, args, s3, path, steps)
        with checks.phase(args, f"gradient noise, {spec.label}", 2):
            gv, gfit = parts.gradient_noise_table(spec, ref, sizes, args, s4)
        if spec.net is not None:
            with checks.phase(args, f"noise scale at the end of training, {spec.label}"):
                found.setdefault("noise_in_training", []).append(parts.noise_in_training(
                    spec, ref, steps, fit, args, lossvar.streams.children(seed, 5)[4]))
        for key, value in (("one_step", one), ("one_step_opt", opt), ("steps", steps),
                           ("tuning", tuning), ("critical_batch", pd.DataFrame([fit])),
                           ("noise_path", path), ("gradient_variance", gv),
                           ("gradient_scaling", gfit)):
            if len(value):  # a problem without one-step curves adds no rows there
                found[key].append(value)
    t = {k: pd.concat(v, ignore_index=True) for k, v in found.items()}
    scaling = t["gradient_scaling"]  # the exponent tests are a family: Holm across them
    scaling["holm_pvalue"] = lossvar.stats.holm(scaling.pvalue.to_numpy(float))
    for name, table in t.items():
        folder.table(name, table)
    c = args.confidence
    with plots.style():  # saved in the style too: matplotlib reads the tick sizes when it draws
        if len(t["one_step"]):
            folder.figure("one_step", plots.one_step_figure(t["one_step"], t["one_step_opt"],
                                                            confidence=c))
        folder.figure("steps_examples", plots.steps_examples_figure(t["steps"], t["critical_batch"],
                                                                    confidence=c))
        folder.figure("gradient_variance", plots.gradient_noise_figure(
            t["gradient_variance"], t["gradient_scaling"], confidence=c))
        if "noise_in_training" in t:
            folder.figure("noise_scale", plots.noise_scale_figure(
                t["noise_path"], t["noise_in_training"], t["critical_batch"], confidence=c))
    return summary(args, t)


def main(argv=None) -> int:
    """Run the study; see ``lossvar run critical_batch --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check=check)


if __name__ == "__main__":
    raise SystemExit(main())


"""Var of the batch-mean loss of your own per-sample losses, against the batch size.

Any model, any framework: the losses of a fixed data set (a 1-D .npy array, or
a CSV column) or those of one of scikit-learn's bundled data sets at its
reference fit. For each batch size B, the Monte Carlo variance of the mean
loss of a random batch, with its interval, beside the exact theory (s^2/B
with replacement, s^2/B (N - B)/(N - 1) without), the exact z-score and
p-value of each row, one calibrated verdict, and the fit of Var(B) ~ B^a
with the test of a = -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lossvar
from lossvar import studies
from lossvar.studies import checks

NAME = "variance"
FULL = {"replicates": 10_000, "batch_sizes": [1, 4, 16, 64, "full"]}
QUICK = {"replicates": 2_000, "batch_sizes": [1, 4, 16, "full"]}

EPILOG = """\
The losses come from --data:
  NAME       one of scikit-learn's bundled data sets (breast_cancer, diabetes,
             digits, iris, wine; needs the 'datasets' extra). Features are
             standardized; the natural model is fitted with a ridge penalty
             l2 = 1e-2 (least squares for diabetes, logistic regression for
             breast_cancer, softmax regression for the others), and the
             per-sample losses at that reference fit are used.
  FILE.npy   a 1-D array of per-sample losses.
  FILE.csv   one column of per-sample losses (an optional header line), or
             the index and values that pandas.Series.to_csv() writes.

Writes the results folder DIR: variance.csv (one row per batch size:
estimate, standard error, interval, exact variance, z, p-value),
scaling_fit.csv, variance.png/.svg, summary.md (the verdict and the fit of
Var(B) ~ B^a with the test of a = -1) and manifest.json (with the sha256 of
an input file), so that `lossvar verify DIR` can rerun and check it.
`lossvar variance ...` is the same command as `lossvar run variance ...`.

example:
  lossvar run variance --data losses.npy --batch-sizes 1,4,16,64,full \\
      --replicates 20000 --seed 1 --out results/mine
"""


def build_parser():
    p = studies.parser(NAME, __doc__, EPILOG)
    p.add_argument("--data", required=True, metavar="NAME|FILE.npy|FILE.csv",
                   help="a bundled data set name or a file of per-sample losses")
    p.add_argument("--batch-sizes", type=studies.batch_size_list, default=None, metavar="LIST",
                   help="comma-separated batch sizes, 'full' for N (default: "
                        f"{','.join(map(str, FULL['batch_sizes']))}; quick "
                        f"{','.join(map(str, QUICK['batch_sizes']))})")
    p.add_argument("--replicates", type=checks.count(2, "auto"), default=None, metavar="R",
                   help="batches drawn per batch size, or 'auto' (planned from the exact kurtosis "
                        f"for a relative standard error of 0.02) (default: {FULL['replicates']}, "
                        f"quick {QUICK['replicates']})")
    p.add_argument("--sampling", default="without_replacement",
                   choices=["without_replacement", "with_replacement"],
                   help="how a batch is drawn (default: without_replacement)")
    p.add_argument("--interval", default="fourth_moment",
                   choices=["fourth_moment", "chi2", "bootstrap"],
                   help="interval for each variance (default: fourth_moment, valid for "
                        "non-normal losses)")
    p.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default: 0.95)")
    return p


def _is_file(spec: str) -> bool:
    return Path(spec).suffix.lower() in (".npy", ".csv")


def read_losses(spec: str) -> np.ndarray:
    """The per-sample losses in a .npy or .csv file; ValueError naming --data."""
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--data: no such file: {spec}")
    try:
        arr = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else _read_csv_column(path)
    except ValueError as exc:
        if str(exc).startswith("--data"):
            raise
        raise ValueError(f"--data: cannot read {spec}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"--data: cannot read {spec}: {exc}") from None
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise ValueError(f"--data: {spec} must hold a 1-D array of losses; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"--data: {spec} must hold real numbers; got dtype {arr.dtype}")
    if arr.size < 2:
        raise ValueError(f"--data: {spec} holds N = {arr.size} loss(es); the variance of a batch "
                         "mean needs N >= 2")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"--data: {spec} must hold finite losses; entry {i} is {arr[i]}")
    return arr


def _read_csv_column(path: Path) -> np.ndarray:
    """One column of losses, or the ``index,value`` pairs of ``pandas.Series.to_csv()``.

    An optional header line; blank lines are skipped; errors name the file's
    own line numbers.
    """
    rows = [(i, ln.strip()) for i, ln in enumerate(path.read_text().splitlines(), start=1)
            if ln.strip()]
    if not rows:
        raise ValueError(f"--data: {path} is empty")
    if not all(_is_number(cell) for cell in rows[0][1].split(",")):
        rows = rows[1:]  # a header line (pandas writes ",0" above a Series)
    if not rows:
        raise ValueError(f"--data: {path} holds a header but no losses")
    width = len(rows[0][1].split(","))
    if width not in (1, 2):
        raise ValueError(f"--data: {path} must have one column of losses (or index and value, as "
                         f"pandas.Series.to_csv writes); line {rows[0][0]} has {width}")
    values = []
    for i, line in rows:
        cells = line.split(",")
        if len(cells) != width:
            raise ValueError(f"--data: {path} line {i} has {len(cells)} columns; the first data "
                             f"line has {width}")
        if not _is_number(cells[-1]):
            raise ValueError(f"--data: {path} line {i} is not a number: {cells[-1]!r}")
        values.append(float(cells[-1]))
    return np.array(values)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _size(spec: str) -> int:
    """N, the number of losses --data gives (without fitting a model)."""
    if _is_file(spec):
        return read_losses(spec).size
    return lossvar.datasets.load(spec).n


def check(args):
    studies.check_data(args.data, files=True)
    n = _size(args.data)
    sizes = studies.checked("--batch-sizes", lossvar.sampling.as_batch_sizes, args.batch_sizes, n,
                            args.sampling)
    if args.sampling == "without_replacement" and sizes == [n]:
        raise ValueError(f"--batch-sizes: needs a batch size below N = {n}: the full batch drawn "
                         f"without replacement is the whole data set, with no variance to show; "
                         f"got {','.join(map(str, args.batch_sizes))}")


def load(spec: str) -> tuple[np.ndarray, str]:
    """Per-sample losses from --data, and a description of them."""
    if _is_file(spec):
        return read_losses(spec), f"per-sample losses from {Path(spec).name}"
    data = lossvar.datasets.load(spec)
    problem = lossvar.datasets.problem_for(data)
    w = lossvar.datasets.reference_params(data, problem)
    return problem.loss(w, data.X, data.y), (
        f"{spec}: {problem.name} model, l2-regularized fit, N = {data.n}")


def compute(args, folder):
    if _is_file(args.data):
        folder.input("data", args.data)
    losses, what = load(args.data)
    res = lossvar.loss_variance(losses, args.batch_sizes, replicates=args.replicates,
                                sampling=args.sampling, confidence=args.confidence,
                                interval=args.interval, rng=args.seed, **studies.execution(args))
    folder.table("variance", res.table)
    lines = [f"# lossvar variance: {what}", "", f"Seed {args.seed}; {args.sampling}; "
             f"{args.confidence:.0%} intervals ({args.interval}).", "",
             f"Verdict: {lossvar.agreement(res)}", ""]
    try:
        fit = lossvar.scaling_fit(res, confidence=args.confidence)
    except ValueError as exc:
        lines.append(f"No scaling fit: {studies.plain(exc)}")
    else:
        folder.table("scaling_fit", fit.to_frame().rename(
            columns={"exponent_ci_low": "ci_low", "exponent_ci_high": "ci_high"}))
        lines.append(f"Scaling fit: {fit}")
    folder.figure("variance", _figure(res.table, what, args.confidence))
    print(f"lossvar {lossvar.__version__}: {what}; seed {args.seed}")
    print(res.table.to_string(index=False))
    print("\n".join(lines[4:]))
    return "\n".join(lines)


def _figure(table, what, confidence):
    from lossvar.plots import variance_plot

    ax = variance_plot(table, confidence=confidence, title=f"Variance of the loss estimator\n{what}")
    return ax.figure


def main(argv=None) -> int:
    """Run the study; see ``lossvar run variance --help``."""
    return studies.execute(compute, NAME, build_parser(), argv, FULL, QUICK, check)


if __name__ == "__main__":
    raise SystemExit(main())

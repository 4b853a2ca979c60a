"""The ``lossvar`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import __version__

DESCRIPTION = """\
lossvar measures the noise of stochastic optimization: the Monte Carlo
variance of the single-sample (SGD), mini-batch and full-batch loss
estimators, set beside the exact theory.
"""

VARIANCE_EPILOG = """\
The losses come from --data:
  NAME       one of scikit-learn's bundled data sets (breast_cancer, diabetes,
             digits, iris, wine; needs the 'datasets' extra). Features are
             standardized; the natural model is fitted with a ridge penalty
             l2 = 1e-2 (least squares for diabetes, logistic regression for
             breast_cancer, softmax regression for the others), and the
             per-sample losses at that reference fit are used.
  FILE.npy   a 1-D array of per-sample losses.
  FILE.csv   one column of per-sample losses (an optional header line).

Writes DIR/variance.csv (one row per batch size: estimate, standard error,
interval, exact variance) and DIR/variance.png (log-log plot), and prints the
table and the fit of Var(B) ~ B^a with the test of a = -1.

example:
  lossvar variance --data breast_cancer --batch-sizes 1,4,16,64,full \\
      --replicates 20000 --seed 1 --out results/bc
"""


RUN_EPILOG = """\
Every study takes --seed, --workers, --out DIR, --overwrite, --quick and --dpi,
and writes DIR (default: a new results/NAME-YYYYmmdd-HHMMSS) with tidy CSV
tables, PNG and SVG figures, summary.md and manifest.json.

example:
  lossvar run variance_scaling --data breast_cancer --seed 1 --out results/vs
"""


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _parse_batch_sizes(text: str):
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "full":
            out.append("full")
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"batch sizes must be comma-separated integers or 'full'; got {part!r}"
            ) from None
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossvar", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lossvar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    v = sub.add_parser("variance", help="variance of the loss estimator against batch size",
                       description="Monte Carlo variance of the mean loss of a random batch, "
                                   "for each batch size, beside the exact theory.",
                       epilog=VARIANCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("--data", required=True, metavar="NAME|FILE.npy|FILE.csv",
                   help="a bundled data set name or a file of per-sample losses")
    v.add_argument("--batch-sizes", type=_parse_batch_sizes, default=[1, 4, 16, 64, "full"],
                   metavar="LIST", help="comma-separated batch sizes, 'full' for N "
                                        "(default: 1,4,16,64,full)")
    v.add_argument("--replicates", type=int, default=10_000, metavar="R",
                   help="batches drawn per batch size (default: 10000)")
    v.add_argument("--sampling", default="without_replacement",
                   choices=["without_replacement", "with_replacement"],
                   help="how a batch is drawn (default: without_replacement)")
    v.add_argument("--interval", default="fourth_moment",
                   choices=["fourth_moment", "chi2", "bootstrap"],
                   help="interval for each variance (default: fourth_moment, valid for "
                        "non-normal losses)")
    v.add_argument("--confidence", type=float, default=0.95, help="interval level (default: 0.95)")
    v.add_argument("--seed", type=int, default=0, help="root random seed (default: 0)")
    v.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    v.add_argument("--overwrite", action="store_true",
                   help="replace variance.csv and variance.png if DIR already has them")
    v.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on when stderr is a terminal)")
    v.add_argument("--workers", type=int, default=1,
                   help="worker processes, where the engine supports them; never changes the "
                        "results (default: 1)")
    v.set_defaults(func=_cmd_variance)

    ls = sub.add_parser("list", help="the studies, one line each",
                        description="List the studies that `lossvar run` knows.")
    ls.set_defaults(func=_cmd_list)
    r = sub.add_parser("run", help="run a study into a results folder",
                       description="Run a study: `lossvar run NAME [options]`; "
                                   "`lossvar run NAME --help` shows its options.",
                       epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("name", metavar="NAME", help="a study name (see `lossvar list`)")
    r.add_argument("study_args", nargs=argparse.REMAINDER, metavar="...",
                   help="options passed to the study")
    r.set_defaults(func=_cmd_run)
    ver = sub.add_parser("verify", help="rerun a results folder and compare its tables bit for bit",
                         description="Rerun the study of FOLDER with the parameters in its "
                                     "manifest.json and report, table by table, whether the new "
                                     "tables are bit-identical. Exit status 0 only if all are.")
    ver.add_argument("folder", type=Path, metavar="FOLDER")
    ver.set_defaults(func=_cmd_verify)
    return parser


def load_losses(spec: str) -> tuple[np.ndarray, str]:
    """Per-sample losses from a data set name or a file, and a description of them."""
    path = Path(spec)
    if path.suffix.lower() in (".npy", ".csv"):
        if not path.is_file():
            raise CLIError(f"--data: no such file: {spec}")
        try:
            if path.suffix.lower() == ".npy":
                arr = np.load(path, allow_pickle=False)
            else:
                arr = _read_csv_column(path)
        except CLIError:
            raise
        except Exception as exc:
            raise CLIError(f"--data: cannot read {spec}: {exc}") from None
        arr = np.asarray(arr)
        if arr.ndim != 1:
            raise CLIError(f"--data: {spec} must hold a 1-D array of losses; got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise CLIError(f"--data: {spec} must hold real numbers; got dtype {arr.dtype}")
        return arr.astype(np.float64), f"per-sample losses from {path.name}"
    from . import datasets

    data = datasets.load(spec)
    problem = datasets.problem_for(data)
    w = datasets.reference_params(data, problem)
    return problem.loss(w, data.X, data.y), (
        f"{spec}: {problem.name} model, l2-regularized fit, N = {data.n}")


def _read_csv_column(path: Path) -> np.ndarray:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise CLIError(f"--data: {path} is empty")
    try:
        float(lines[0].split(",")[0])
    except ValueError:
        lines = lines[1:]  # a header line
    if not lines:
        raise CLIError(f"--data: {path} holds a header but no losses")
    values = []
    for i, line in enumerate(lines, start=1):
        cells = line.split(",")
        if len(cells) != 1:
            raise CLIError(f"--data: {path} must have one column of losses; line {i} has "
                           f"{len(cells)}")
        try:
            values.append(float(cells[0]))
        except ValueError:
            raise CLIError(f"--data: {path} line {i} is not a number: {cells[0]!r}") from None
    return np.array(values)


def _cmd_variance(args) -> int:
    from . import loss_variance, scaling_fit

    out: Path = args.out
    targets = [out / "variance.csv", out / "variance.png"]
    if not args.overwrite and any(t.exists() for t in targets):
        raise CLIError(f"--out: {out} already holds variance results; choose another folder "
                       "or pass --overwrite")
    losses, what = load_losses(args.data)
    from .studies import parallel

    execution = parallel(loss_variance, args)
    if args.progress is not None:
        execution["progress"] = args.progress
    res = loss_variance(losses, args.batch_sizes, replicates=args.replicates,
                        sampling=args.sampling, confidence=args.confidence,
                        interval=args.interval, rng=args.seed, **execution)
    out.mkdir(parents=True, exist_ok=True)
    res.table.to_csv(targets[0], index=False)
    _save_plot(res.table, targets[1], what)
    print(f"lossvar {__version__}: {what}; seed {args.seed}")
    print(res.table.to_string(index=False))
    try:
        print(scaling_fit(res))
    except ValueError as exc:
        print(f"(no scaling fit: {exc})")
    print(f"wrote {targets[0]} and {targets[1]}")
    return 0


def _cmd_list(args) -> int:
    from .studies import STUDIES

    width = max(len(n) for n in STUDIES)
    for name, what in STUDIES.items():
        print(f"{name:<{width}}  {what}")
    return 0


def _cmd_run(args) -> int:
    from . import studies

    try:
        module = studies.get(args.name)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return module.main(args.study_args)


def _cmd_verify(args) -> int:
    from . import studies
    from .results import ManifestError, read_manifest

    try:
        manifest = read_manifest(args.folder)
    except ManifestError as exc:
        raise CLIError(f"verify: {exc}") from None
    if manifest["study"] not in studies.STUDIES:
        raise CLIError(f"verify: the manifest names an unknown study {manifest['study']!r}; "
                       f"the studies are: {', '.join(studies.STUDIES)}")
    print(f"verifying {args.folder}: rerunning {manifest['study']} from its manifest ...")
    report = studies.verify(args.folder)
    print(report)
    return 0 if report.ok else 1


def _save_plot(table, path, what):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import variance_plot

    ax = variance_plot(table, title=f"Variance of the loss estimator\n{what}")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=150)
    plt.close(ax.figure)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ValueError, TypeError, ImportError, OSError) as exc:
        print(f"lossvar: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``lossvar`` command."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__, studies

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
  FILE.csv   one column of per-sample losses (an optional header line), or
             the index and values that pandas.Series.to_csv() writes.

Writes the results folder DIR like a study does: variance.csv (one row per
batch size: estimate, standard error, interval, exact variance, z, p-value),
scaling_fit.csv, variance.png/.svg, summary.md (the verdict and the fit of
Var(B) ~ B^a with the test of a = -1) and manifest.json, so that
`lossvar verify DIR` can rerun and check it.

example:
  lossvar variance --data breast_cancer --batch-sizes 1,4,16,64,full \\
      --replicates 20000 --seed 1 --out results/bc
"""


RUN_EPILOG = """\
Every study takes --seed, --workers, --out DIR, --overwrite, --quick, --dpi and --progress,
and writes DIR (default: a new results/NAME-YYYYmmdd-HHMMSS) with tidy CSV
tables, PNG and SVG figures, summary.md and manifest.json.

example:
  lossvar run variance_scaling --data breast_cancer --seed 1 --out results/vs
"""


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _replicates(text: str):
    if text == "auto":
        return text
    try:
        return studies.int_at_least(2)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2 or 'auto'; got {text!r}") from None


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
    v.add_argument("--batch-sizes", type=studies.batch_size_list, default=[1, 4, 16, 64, "full"],
                   metavar="LIST", help="comma-separated batch sizes, 'full' for N "
                                        "(default: 1,4,16,64,full)")
    v.add_argument("--replicates", type=_replicates, default=10_000, metavar="R",
                   help="batches drawn per batch size, or 'auto' (planned from the exact kurtosis "
                        "for a relative standard error of 0.02) (default: 10000)")
    v.add_argument("--sampling", default="without_replacement",
                   choices=["without_replacement", "with_replacement"],
                   help="how a batch is drawn (default: without_replacement)")
    v.add_argument("--interval", default="fourth_moment",
                   choices=["fourth_moment", "chi2", "bootstrap"],
                   help="interval for each variance (default: fourth_moment, valid for "
                        "non-normal losses)")
    v.add_argument("--confidence", type=studies.fraction, default=0.95,
                   help="interval level (default: 0.95)")
    v.add_argument("--seed", type=studies.int_at_least(0), default=0,
                   help="root random seed (default: 0)")
    v.add_argument("--out", required=True, metavar="DIR", help="output folder")
    v.add_argument("--overwrite", action="store_true",
                   help="replace DIR if it is an existing results folder")
    v.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on when stderr is a terminal)")
    v.add_argument("--workers", type=studies.int_at_least(1, -1), default=1,
                   help="worker processes, -1 for all cores; never changes the results (default: 1)")
    v.add_argument("--dpi", type=studies.int_at_least(1), default=300,
                   help="PNG resolution (default: 300)")
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
    ver = sub.add_parser("verify", help="rerun a results folder and compare its tables",
                         description="Rerun the study (or `lossvar variance` run) of FOLDER with "
                                     "the parameters in its manifest.json and judge each table: "
                                     "identical, reproduced to rounding (within 1e-9 relative, as "
                                     "another CPU or BLAS gives), DIFFERS, or changed after the "
                                     "run. Exit status 0 when every table is identical or "
                                     "reproduced to rounding.")
    ver.add_argument("folder", type=Path, metavar="FOLDER")
    ver.set_defaults(func=_cmd_verify)
    return parser


def load_losses(spec: str) -> tuple[np.ndarray, str]:
    """Per-sample losses from a data set name or a file, and a description of them."""
    try:
        studies.check_data(spec, files=True)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
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
        if arr.size < 2:
            raise CLIError(f"--data: {spec} holds N = {arr.size} loss(es); the variance of a batch "
                           "mean needs N >= 2")
        return arr.astype(np.float64), f"per-sample losses from {path.name}"
    from . import datasets

    data = datasets.load(spec)
    problem = datasets.problem_for(data)
    w = datasets.reference_params(data, problem)
    return problem.loss(w, data.X, data.y), (
        f"{spec}: {problem.name} model, l2-regularized fit, N = {data.n}")


def _read_csv_column(path: Path) -> np.ndarray:
    """One column of losses, or the ``index,value`` pairs of ``pandas.Series.to_csv()``.

    An optional header line; blank lines are skipped; errors name the file's
    own line numbers.
    """
    rows = [(i, ln.strip()) for i, ln in enumerate(path.read_text().splitlines(), start=1)
            if ln.strip()]
    if not rows:
        raise CLIError(f"--data: {path} is empty")
    if not all(_is_number(cell) for cell in rows[0][1].split(",")):
        rows = rows[1:]  # a header line (pandas writes ",0" above a Series)
    if not rows:
        raise CLIError(f"--data: {path} holds a header but no losses")
    width = len(rows[0][1].split(","))
    if width not in (1, 2):
        raise CLIError(f"--data: {path} must have one column of losses (or index and value, as "
                       f"pandas.Series.to_csv writes); line {rows[0][0]} has {width}")
    values = []
    for i, line in rows:
        cells = line.split(",")
        if len(cells) != width:
            raise CLIError(f"--data: {path} line {i} has {len(cells)} columns; the first data line "
                           f"has {width}")
        if not _is_number(cells[-1]):
            raise CLIError(f"--data: {path} line {i} is not a number: {cells[-1]!r}")
        values.append(float(cells[-1]))
    return np.array(values)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


VARIANCE = "variance"


def _cmd_variance(args) -> int:
    from . import agreement, loss_variance, scaling_fit
    from .results import StudyFolder

    params = {k: v for k, v in vars(args).items()
              if k not in ("func", "command", "progress", "workers", "out", "overwrite")}
    if Path(args.data).suffix.lower() in (".npy", ".csv"):
        params["data"] = str(Path(args.data).resolve())  # a rerun from anywhere finds it
    try:
        folder = StudyFolder.create(args.out, VARIANCE, params, overwrite=args.overwrite,
                                    dpi=args.dpi)
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None
    try:
        losses, what = load_losses(args.data)
        res = loss_variance(losses, args.batch_sizes, replicates=args.replicates,
                            sampling=args.sampling, confidence=args.confidence,
                            interval=args.interval, rng=args.seed, **studies.execution(args))
        folder.table("variance", res.table)
        lines = [f"# lossvar variance: {what}", "", f"Seed {args.seed}; {args.sampling}; "
                 f"{args.confidence:.0%} intervals ({args.interval}).", "",
                 f"Verdict: {agreement(res)}", ""]
        try:
            fit = scaling_fit(res, confidence=args.confidence)
        except ValueError as exc:
            lines.append(f"No scaling fit: {exc}")
        else:
            folder.table("scaling_fit", pd.DataFrame([{k: v for k, v in asdict(fit).items()
                                                       if not isinstance(v, (tuple, dict))}]))
            lines.append(f"Scaling fit: {fit}")
        folder.figure("variance", _plot(res.table, what, args.confidence))
        path = folder.finish("\n".join(lines))
    except BaseException:
        folder.discard()
        raise
    print(f"lossvar {__version__}: {what}; seed {args.seed}")
    print(res.table.to_string(index=False))
    print("\n".join(lines[4:]))
    print(f"wrote {path}")
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
    from .results import ManifestError, read_manifest, verify

    try:
        manifest = read_manifest(args.folder)
    except ManifestError as exc:
        raise CLIError(f"verify: {exc}") from None
    study = manifest["study"]
    if study != VARIANCE and study not in studies.STUDIES:
        raise CLIError(f"verify: the manifest names an unknown study {study!r}; "
                       f"the studies are: {', '.join(studies.STUDIES)}")
    print(f"verifying {args.folder}: rerunning {study} from its manifest ...")
    report = verify(args.folder, _rerun_variance) if study == VARIANCE else studies.verify(args.folder)
    print(report)
    return 0 if report.ok else 1


def _rerun_variance(study: str, argv: list, out) -> None:
    """Rerun a ``lossvar variance`` folder's command into the fresh folder ``out``."""
    with contextlib.redirect_stdout(io.StringIO()):  # the rerun's table is not the report
        status = main([VARIANCE, *argv, "--out", str(out), "--no-progress"])
    if status:
        raise RuntimeError(f"the rerun of {study} failed with exit status {status}")


def _plot(table, what, confidence):
    import matplotlib

    matplotlib.use("Agg")
    from .plots import variance_plot

    ax = variance_plot(table, confidence=confidence, title=f"Variance of the loss estimator\n{what}")
    ax.figure.tight_layout()
    return ax.figure


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

"""The studies: one module per claim of the lecture, each with ``main(argv=None)``.

Each study lives in ``lossvar/studies/NAME.py`` (installed with the package,
so ``lossvar run NAME`` works after ``pip install .``); ``studies/NAME.py`` at
the top of a checkout is a three-line script calling the same ``main``.
A study parses its options, computes from one root seed, and writes a results
folder through :mod:`lossvar.results`.

Option convention (which :func:`lossvar.results.params_to_argv` inverts, so
that ``lossvar verify`` can rerun a study from its manifest): ``--a-b`` has
dest ``a_b``, booleans are ``store_true`` flags, lists are comma-separated.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

from .. import results

#: name -> one-line description, in the lecture's order.
STUDIES = {
    "variance_scaling": "Var(Loss) of single-sample, mini-batch and full-batch estimators "
                        "against B, fixed and fresh data, synthetic and real",
    "sgd_vs_batch": "incremental SGD against full-batch GD and mini-batch at equal examples; "
                    "redundancy and diversity sweeps",
    "erm_spread": "distance of the empirical-risk minimizer from the expected-risk minimizer "
                  "against N and Var(div)",
    "robbins_monro": "step-size schedules: Robbins-Monro verdicts, exact convergence curves, "
                     "fitted rates, Polyak-Ruppert averaging",
    "trend_optimizers": "SGD, momentum, Nesterov, RMSProp and Adam: trajectories, update "
                        "variance and convergence with bands",
    "critical_batch": "McCandlish et al. (2018): one-step gains, steps vs examples, B_crit vs B_noise",
}


def names() -> list[str]:
    """The study names, in the lecture's order."""
    return list(STUDIES)


def get(name: str):
    """The module of study ``name`` (with its ``main``); ValueError listing the valid names."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; the studies are: {', '.join(STUDIES)}")
    return importlib.import_module(f"{__name__}.{name}")


def run(name: str, argv=None) -> int:
    """Run study ``name`` with command-line arguments ``argv``; its exit status."""
    return get(name).main(argv)


def verify(folder) -> results.VerifyReport:
    """Rerun the study of a results folder from its manifest and compare the tables."""
    def rerun(study, argv, out):
        status = run(study, [*argv, "--out", str(out)])
        if status:
            raise RuntimeError(f"the rerun of {study} failed with exit status {status}")

    return results.verify(folder, rerun)


# -- what every study shares ----------------------------------------------------------


def comma_list(kind):
    """argparse type: a comma-separated list of ``kind`` (int, float or str)."""
    def parse(text):
        try:
            return [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values; got {text!r}") from None
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def batch_size_list(text):
    """argparse type: comma-separated batch sizes, integers or 'full'."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            out.append(part if part == "full" else int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"batch sizes must be comma-separated integers or 'full'; got {part!r}") from None
    return out


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every study has.

    ``--seed``, ``--workers``, ``--out``, ``--overwrite``, ``--quick`` and
    ``--dpi``; a study adds its own size knobs with default None and fills
    them from its full or quick defaults (:func:`resolve`).
    """
    p = argparse.ArgumentParser(prog=f"lossvar run {name}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="root random seed (default: 0)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes for the Monte Carlo engine where it supports them; "
                        "never changes the results (default: 1)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: a new results/NAME-YYYYmmdd-HHMMSS)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is an existing results folder")
    p.add_argument("--quick", action="store_true",
                   help="small sizes that run in seconds (the tests use it)")
    p.add_argument("--dpi", type=int, default=120, help="PNG resolution (default: 120)")
    return p


def resolve(args, full: dict, quick: dict) -> dict:
    """Fill the options left at None from the full or ``--quick`` defaults; the parameters."""
    defaults = quick if args.quick else full
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return vars(args).copy()


def parallel(fn, args) -> dict:
    """The execution options of ``fn`` that it accepts: ``workers`` from the
    command line, and a progress bar when stderr is a terminal (never in the
    results: neither changes a bit)."""
    try:
        accepted = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    options = {"workers": args.workers, "progress": sys.stderr.isatty()}
    return {k: v for k, v in options.items() if k in accepted}


def start(name: str, args, params: dict) -> results.StudyFolder:
    """The results folder of a run (refusing to overwrite silently)."""
    return results.StudyFolder.create(args.out, name, params, overwrite=args.overwrite,
                                      dpi=args.dpi)


def execute(compute, name: str, p: argparse.ArgumentParser, argv, full: dict, quick: dict,
            check=None) -> int:
    """Parse ``argv``, resolve sizes, run ``compute(args, folder)``, print where results went.

    ``compute`` writes tables and figures into the folder and returns the
    summary text. ``check(args)``, if given, raises ValueError on bad option
    values before any folder is made. User errors (an existing folder, a bad
    option value) are one line on stderr and exit status 2.
    """
    import sys

    import matplotlib

    matplotlib.use("Agg")
    args = p.parse_args(argv)
    params = resolve(args, full, quick)
    try:
        if check is not None:
            check(args)
        folder = start(name, args, params)
    except (ValueError, OSError) as exc:
        print(f"lossvar: error: {exc}", file=sys.stderr)
        return 2
    summary = compute(args, folder)
    path = folder.finish(summary)
    print(f"{name}: wrote {path}")
    return 0

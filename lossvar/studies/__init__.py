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
import contextlib
import importlib
import io
import re
import signal
import sys
import warnings

from .. import results
from . import checks

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
    "variance": "your own per-sample losses (FILE.npy, FILE.csv) or a bundled data set: Var of the "
                "batch-mean loss against B, beside the exact theory",
}

#: The studies of the lecture's claims (the gallery shows these); ``variance`` is the
#: tool for a user's own losses.
LECTURE = tuple(name for name in STUDIES if name != "variance")


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


#: Flags added to studies after a manifest may have been written, and what their absence
#: from the manifest's parameters means: the run as it was made (lossvar 0.2 had no
#: network case; today's default adds one).
ADDED_FLAGS = {"network": ("--network", "none")}


def verify(folder) -> results.VerifyResult:
    """Check the inputs of a results folder, rerun its study from the manifest and
    compare the tables (:func:`lossvar.results.verify`).

    A manifest written before a flag of :data:`ADDED_FLAGS` existed is rerun
    with that flag's neutral value, so that the rerun makes the run that was
    made. The rerun's own output is not shown; if it fails, its error line
    becomes the report's ``rerun_error``.
    """
    try:
        recorded = set(results.read_manifest(folder)["parameters"])
    except results.ManifestError:
        recorded = None  # results.verify reports it

    def rerun(study, argv, out):
        if recorded is not None:
            known = {a.dest for a in get(study).build_parser()._actions}
            argv = [*argv, *(w for dest, words in ADDED_FLAGS.items()
                             if dest in known and dest not in recorded for w in words)]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                status = run(study, [*argv, "--out", str(out), "--no-progress"])
            except SystemExit as exc:  # argparse refused the manifest's arguments
                status = exc.code if isinstance(exc.code, int) else 2
            except Exception as exc:  # the study itself failed: say how, in one line
                raise results.RerunError(f"{study} raised {type(exc).__name__}: "
                                         f"{' '.join(str(exc).split())[:500]}") from exc
        if status:
            lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit status {status}"
            raise results.RerunError(f"{study} exited with status {status}: {why}")

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
    """argparse type: comma-separated batch sizes, positive integers or 'full'.

    The one parser of batch sizes for every command and study.
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            b = part if part == "full" else int(part)
        except ValueError:
            b = None
        if b is None or (b != "full" and b < 1):
            raise argparse.ArgumentTypeError(
                f"batch sizes must be comma-separated positive integers or 'full'; got {part!r}")
        out.append(b)
    return out


def int_at_least(low: int, *also):
    """argparse type: an integer >= ``low`` (or one of the values in ``also``)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (value < low and value not in also):
            extra = "".join(f" or {a}" for a in also)
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}{extra}; got {text!r}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def fraction(text):
    """argparse type: a number strictly between 0 and 1 (a confidence level)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number strictly between 0 and 1; got {text!r}")
    return value


def checked(flag: str, validate, *args, **kwargs):
    """``validate(*args, **kwargs)``, its errors reworded to name the command-line ``flag``.

    Library validators name their parameter (```batch_sizes` must be ...``);
    on the command line the user typed a flag, so a ValueError or TypeError
    becomes ``ValueError("--batch-sizes: must be ...")``.
    """
    try:
        return validate(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag}: {plain(exc)}") from None


def plain(exc: BaseException) -> str:
    """An error's message without the library's leading parameter name (```result` must
    ...`` becomes ``must ...``), for a command line where the user typed no such name."""
    return re.sub(r"^`[A-Za-z_0-9]+` ", "", str(exc))


def check_data(value: str, *, files: bool = False, none: bool = False) -> str:
    """The one ``--data`` check: a bundled data set name, or (``files``) a .npy/.csv
    file of per-sample losses, or (``none``) 'none'. Raises ValueError naming --data."""
    from ..datasets import NAMES

    allowed = list(NAMES) + (["none"] if none else [])
    if value in allowed:
        return value
    if files and value.lower().endswith((".npy", ".csv")):
        return value
    also = ", or a FILE.npy / FILE.csv of per-sample losses" if files else ""
    raise ValueError(f"--data must be one of {', '.join(allowed)}{also}; got {value!r}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, reading any word that starts with ``-`` and a digit as a value.

    argparse takes ``--batch-sizes -3,4`` for two options ("expected one
    argument") because ``-3,4`` is not a plain negative number; no lossvar
    option looks like a number, so such words go to the option's type, which
    refuses them by name ("--batch-sizes: ... got '-3'").
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")


def parser(name: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the options every study has.

    ``--seed``, ``--workers``, ``--out``, ``--overwrite``, ``--quick``, ``--dpi``
    and ``--progress/--no-progress``, each validated when parsed (before any
    work); a study adds its own size knobs with default None and fills them
    from its full or quick defaults (:func:`resolve`).
    """
    p = ArgumentParser(prog=f"lossvar run {name}", description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int_at_least(0), default=0, help="root random seed (default: 0)")
    p.add_argument("--workers", type=int_at_least(1, -1), default=1,
                   help="worker processes for the Monte Carlo engine, -1 for all cores; never "
                        "changes the results (default: 1)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: a new results/NAME-YYYYmmdd-HHMMSS)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if lossvar wrote it (a results folder holding only the "
                        "files its manifest lists)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes that run in seconds (the tests use it)")
    p.add_argument("--dpi", type=int_at_least(1), default=300, help="PNG resolution (default: 300)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on when stderr is a terminal)")
    return p


def resolve(args, full: dict, quick: dict) -> dict:
    """Fill the options left at None from the full or ``--quick`` defaults; the parameters.

    How a run is executed (``progress``) is not a parameter of its results.
    """
    defaults = quick if args.quick else full
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return {k: v for k, v in vars(args).items() if k != "progress"}


def execution(args) -> dict:
    """How to run the Monte Carlo: ``{"execution": lossvar.Execution(...)}`` from the
    command line's ``--workers`` and ``--progress`` (a progress bar by default when
    stderr is a terminal). Every Monte Carlo entry point takes it, and it never
    changes a bit of the results."""
    from ..engine import Execution

    return {"execution": Execution(workers=args.workers, progress=checks.progress_shown(args))}


def start(name: str, args, params: dict) -> results.StudyFolder:
    """The results folder of a run (refusing to overwrite silently)."""
    return results.StudyFolder.create(args.out, name, params, overwrite=args.overwrite,
                                      dpi=args.dpi)


#: Warnings of these kinds speak to developers, not to the user of a command.
_DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning)


def _message(warning) -> str:
    return " ".join(str(warning.message).split())


@contextlib.contextmanager
def user_warnings(folder=None):
    """Turn the warnings of a command's computation into notes: one line on stderr
    (``lossvar: warning: ...``) and, with a results ``folder``, a line in its
    summary's notes, instead of Python's warning with a source line. Developer
    warnings (deprecations) are dropped.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = []
            for w in caught:
                if issubclass(w.category, _DEVELOPER_WARNINGS) or _message(w) in seen:
                    continue
                seen.append(_message(w))
            for text in seen:
                print(f"lossvar: warning: {text}", file=sys.stderr)
                if folder is not None:
                    folder.note(f"warning: {text}")


class Terminated(SystemExit):
    """SIGTERM during a command: unwinds like Ctrl-C, so staging folders are removed."""


@contextlib.contextmanager
def terminated_unwinds():
    """While running, SIGTERM raises :class:`Terminated` (exit status 143) in the main
    thread instead of killing the process at once, so that ``finally`` and
    ``except BaseException`` blocks (the staging folder's removal) run."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(exc: BaseException, what: str = "") -> int:
    """Print the one line of an interrupted command; its exit status (130 or 143)."""
    how = "terminated" if isinstance(exc, Terminated) else "interrupted"
    print(f"lossvar: {how}{what}", file=sys.stderr)
    if isinstance(exc, Terminated):
        return int(exc.code) if isinstance(exc.code, int) else 143
    return 130


def execute(compute, name: str, p: argparse.ArgumentParser, argv, full: dict, quick: dict,
            check=None) -> int:
    """Parse ``argv``, resolve sizes, run ``compute(args, folder)``, print where results went.

    ``compute`` writes tables and figures into the folder and returns the
    summary text. Every option is checked before any work: by its argparse
    type, by :func:`lossvar.studies.checks.common` (the options every study
    shares), by ``check(args)`` (raising ValueError naming the option) and by
    the destination rules of :func:`lossvar.results.check_destination`. User errors
    are one line on stderr and exit status 2. Warnings of the computation
    become notes (:func:`user_warnings`). A run that fails, is interrupted
    (Ctrl-C: one line, exit status 130) or terminated (SIGTERM: exit status
    143) leaves no folder behind (an old one it was to replace is kept).
    """
    import matplotlib

    matplotlib.use("Agg")
    args = p.parse_args(argv)
    params = resolve(args, full, quick)
    try:
        checks.common(args)
        if check is not None:
            check(args)
        folder = start(name, args, params)
    except (ValueError, OSError) as exc:
        print(f"lossvar: error: {exc}", file=sys.stderr)
        return 2
    try:
        with terminated_unwinds():
            with user_warnings(folder):
                summary = compute(args, folder)
            path = folder.finish(summary)
    except (KeyboardInterrupt, Terminated) as exc:
        folder.discard()
        return interrupted(exc, "; the unfinished results folder was removed")
    except BaseException:
        folder.discard()
        raise
    print(f"{name}: wrote {path}")
    return 0

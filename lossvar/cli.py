"""The ``lossvar`` command: list, run, verify, and variance (a shortcut for ``run variance``).

Every user error is one line on stderr with exit status 2; Ctrl-C is one line
with exit status 130 (SIGTERM: 143); no traceback reaches the user for bad
input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, studies

DESCRIPTION = """\
lossvar measures the noise of stochastic optimization: the Monte Carlo
variance of the single-sample (SGD), mini-batch and full-batch loss
estimators, set beside the exact theory.
"""

RUN_EPILOG = """\
Every study takes --seed, --workers, --out DIR, --overwrite, --quick, --dpi and --progress,
and writes DIR (default: a new results/NAME-YYYYmmdd-HHMMSS) with tidy CSV
tables, PNG and SVG figures, summary.md and manifest.json.

example:
  lossvar run variance_scaling --data breast_cancer --seed 1 --out results/vs
"""

VERIFY_DESCRIPTION = """\
Check the input files that FOLDER's manifest records (sha256 and size), rerun
its study with the manifest's parameters, and judge each table: identical,
reproduced to rounding (within 1e-9 relative, as another CPU or BLAS gives),
DIFFERS, or changed after the run.

exit status:
  0  every table identical or reproduced to rounding
  1  a table differs, or was changed after the run
  2  FOLDER is not a readable lossvar results folder
  3  an input file is missing (nothing rerun)
  4  an input file changed since the run (nothing rerun)
  5  the rerun failed
"""


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = studies.ArgumentParser(prog="lossvar", description=DESCRIPTION,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lossvar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # `lossvar variance ARGS` is `lossvar run variance ARGS` (main rewrites it); listed here
    # for --help.
    sub.add_parser("variance", add_help=False,
                   help="variance of the loss estimator of your own losses against batch size "
                        "(the same as `lossvar run variance`)")
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
                         description=VERIFY_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ver.add_argument("folder", type=Path, metavar="FOLDER")
    ver.set_defaults(func=_cmd_verify)
    return parser


def _cmd_list(args) -> int:
    width = max(len(n) for n in studies.STUDIES)
    for name, what in studies.STUDIES.items():
        print(f"{name:<{width}}  {what}")
    return 0


def _cmd_run(args) -> int:
    try:
        module = studies.get(args.name)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return module.main(args.study_args)


def _cmd_verify(args) -> int:
    from .results import ManifestError, read_manifest

    try:
        manifest = read_manifest(args.folder)
    except ManifestError as exc:
        raise CLIError(f"verify: {exc}") from None
    study = manifest["study"]
    if study not in studies.STUDIES:
        raise CLIError(f"verify: the manifest names an unknown study {study!r}; "
                       f"the studies are: {', '.join(studies.STUDIES)}")
    print(f"verifying {args.folder}: rerunning {study} from its manifest ...")
    with studies.user_warnings():
        report = studies.verify(args.folder)
    print(report)
    return report.status


def main(argv=None) -> int:
    """Run the ``lossvar`` command with ``argv`` (default: ``sys.argv[1:]``); its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["variance"]:  # argparse's REMAINDER would stop at the first option
        argv = ["run", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with studies.terminated_unwinds():
            return args.func(args)
    except (KeyboardInterrupt, studies.Terminated) as exc:
        return studies.interrupted(exc)
    except (CLIError, ValueError, TypeError, ImportError, OSError) as exc:
        print(f"lossvar: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

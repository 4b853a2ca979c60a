"""Citable, verifiable results: a study's output folder, its manifest, and verification.

A study run writes one folder::

    FOLDER/
      manifest.json   study, every parameter, root seed, versions, platform,
                      git commit and dirty flag, sha256 of each table, wall time
      summary.md      the key numbers with their intervals and the command
                      that reproduces them
      NAME.csv        tidy tables, floats written with 17 significant digits
                      (exact round trip), so equal bits mean equal files
      NAME.png/.svg   figures

:func:`compare_tables` reruns nothing itself: :func:`verify` takes a
``rerun(study, argv, folder)`` callable (the study registry in
:mod:`lossvar.studies` provides it), so this module does not depend on the
studies. Wall time goes into the manifest only, never into a table.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from ._result import ResultBase

__all__ = [
    "FLOAT_FORMAT",
    "ManifestError",
    "StudyFolder",
    "TableCheck",
    "VerifyResult",
    "environment",
    "params_to_argv",
    "read_manifest",
    "read_table",
    "verify",
    "write_table",
]

#: Every float of every table: 17 significant digits round-trip a float64 exactly.
FLOAT_FORMAT = "%.17g"
MANIFEST = "manifest.json"
SUMMARY = "summary.md"
_VERSIONED = ("lossvar", "numpy", "scipy", "pandas", "python")
_NOT_RERUN = ("out", "overwrite", "progress")


class ManifestError(ValueError):
    """A results folder without a readable, complete manifest."""


# -- writing ---------------------------------------------------------------------------


def write_table(table: pd.DataFrame, path) -> str:
    """Write a tidy table as CSV with :data:`FLOAT_FORMAT`; return the sha256 of its bytes.

    The bytes depend only on the values (no index, ``\\n`` line ends), so two
    runs that compute the same numbers write identical files.
    """
    text = table.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    data = text.encode("utf-8")
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_table(path) -> pd.DataFrame:
    """Read a table written by :func:`write_table` back, every float bit for bit.

    pandas before 3.1 parses floats with a fast C routine by default that may
    round the 17th significant digit differently on some builds (seen with
    pandas 3.0 on an Intel Xeon), so there this reader asks for
    ``float_precision="round_trip"``; pandas 3.1 made exact parsing the default
    and deprecated the option. Use this reader to compare tables by value.
    """
    return pd.read_csv(path, **_ROUND_TRIP)


def _round_trip_option() -> dict:
    major, minor = (int(part) for part in pd.__version__.split(".")[:2])
    return {"float_precision": "round_trip"} if (major, minor) < (3, 1) else {}


_ROUND_TRIP = _round_trip_option()


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def environment() -> dict:
    """What a reader needs to reproduce a result and to explain a rounding difference.

    ``versions`` of lossvar, numpy, scipy, pandas and Python; ``platform``;
    ``machine`` (CPU model, numpy's SIMD targets in use, the BLAS library and
    its kernel: see :func:`machine`); and ``git``, the source revision:

    - from a git checkout of lossvar (an editable install), the live ``commit``
      and ``dirty`` flag, asked of git read-only;
    - otherwise the revision recorded when the package was built from a git
      checkout (``pip install .`` or a wheel), with the dirty flag at build
      time, ``source: "recorded at build"``;
    - from an sdist or a tree without git, ``commit`` None and ``source``
      saying so.
    """
    import numpy
    import scipy

    from ._build_revision import version as __version__

    versions = {"lossvar": __version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
                "pandas": pd.__version__, "python": platform.python_version()}
    return {"versions": versions, "platform": platform.platform(), "machine": machine(),
            "git": _git_state()}


def machine() -> dict:
    """The hardware and numerical libraries that decide the last bits of a result.

    numpy picks SIMD kernels for its ufuncs by CPU (and ``NPY_DISABLE_CPU_FEATURES``),
    OpenBLAS picks its kernel by CPU (and ``OPENBLAS_CORETYPE``); different kernels
    round differently, so two machines may agree only to rounding
    (docs/reproducibility.md; :func:`verify`).
    """
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "simd": _simd_in_use(), "blas": _blas()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _simd_in_use() -> list[str]:
    """The SIMD targets numpy dispatches to here (``baseline(...)`` included)."""
    try:
        from numpy.lib.introspect import opt_func_info
    except ImportError:  # numpy < 2.0 has no public introspection
        return []
    return sorted({sig["current"] for sigs in opt_func_info().values() for sig in sigs.values()})


def _blas() -> list[dict]:
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads")
    found = [{k: info.get(k) for k in keys} for info in threadpool_info() if info.get("user_api") == "blas"]
    return sorted(found, key=lambda b: (str(b["internal_api"]), str(b["version"])))


def _git_state() -> dict:
    live = _live_git()
    if live is not None:
        return {**live, "source": "live git checkout"}
    from . import _build_revision

    if _build_revision.commit:
        return {"commit": _build_revision.commit, "dirty": _build_revision.dirty,
                "source": "recorded at build"}
    return {"commit": None, "dirty": None,
            "source": "unknown: installed from an sdist or a tree without git"}


def _live_git() -> dict | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None

    def git(*args):
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args],
                              capture_output=True, text=True, timeout=20, check=True).stdout

    try:
        return {"commit": git("rev-parse", "HEAD").strip(),
                "dirty": bool(git("status", "--porcelain").strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def describe_revision(git: dict) -> str:
    """One phrase for summaries: ``git commit abc123 (dirty tree)``, or why none is known."""
    if not git.get("commit"):
        return "source revision " + git.get("source", "unknown")
    how = " (recorded at build)" if git.get("source") == "recorded at build" else ""
    return f"git commit {git['commit']}{' (dirty tree)' if git.get('dirty') else ''}{how}"


def params_to_argv(params: dict) -> list[str]:
    """The command-line arguments that reproduce ``params`` (a study's parsed options).

    Studies follow one convention, which this inverts: option ``--a-b`` has
    dest ``a_b``; booleans are ``store_true`` flags; lists are comma-separated.
    ``out`` and ``overwrite`` are left out (where results go is not a result).
    """
    argv = []
    for key, value in params.items():
        if key in _NOT_RERUN or value is None or value is False:
            continue
        opt = "--" + key.replace("_", "-")
        if value is True:
            argv.append(opt)
        elif isinstance(value, (list, tuple)):
            argv += [opt, ",".join(str(v) for v in value)]
        else:
            argv += [opt, str(value)]
    return argv


def default_folder(study: str, base="results") -> Path:
    """``results/STUDY-YYYYmmdd-HHMMSS``, with a suffix if that exists already."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{study}-{stamp}"
    i = 2
    while path.exists():
        path = Path(base) / f"{study}-{stamp}-{i}"
        i += 1
    return path


def check_destination(out, study, overwrite, *, option="--out") -> Path:
    """Where a run's folder will go; refuses, before any work, what it may not replace.

    ``out`` None means a new dated folder under ``results/``. An existing
    non-empty ``out`` is refused unless ``overwrite``, and then only if lossvar
    made it: it holds a readable manifest, and nothing but the files that
    manifest lists (:func:`foreign_files`). A folder with anything else in it
    is refused, naming what is foreign, so that ``--overwrite`` never deletes
    a file lossvar did not write. A file, or a file where a parent folder
    should be, is refused. ``option`` names the user-facing parameter in the
    errors (the command-line flag, or the API argument).
    """
    folder = default_folder(study) if out is None else Path(out)
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            where = "" if parent == folder else f" (needed as a parent folder of {folder})"
            raise FileExistsError(f"{option}: {parent} is a file, not a folder{where}; "
                                  "choose another folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{option}: {folder} exists and is not empty; choose another "
                                  "folder, omit it for a new dated one, or pass --overwrite")
        try:
            foreign = foreign_files(folder)
        except ManifestError as exc:
            raise FileExistsError(f"{option}: {folder} is not a lossvar results folder ({exc}); "
                                  "refusing to overwrite it") from None
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise FileExistsError(f"{option}: {folder} holds files that lossvar did not write "
                                  f"({shown}); refusing to overwrite it: move them or choose "
                                  "another folder")
    return folder


def written_files(manifest: dict) -> list[str]:
    """The files a results folder's run wrote, as its manifest lists them.

    ``files`` in manifests since lossvar 0.2; for older ones, the tables and
    figures with ``summary.md`` and ``manifest.json``.
    """
    files = manifest.get("files")
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        return list(files)
    listed = [entry["file"] for entry in manifest["tables"].values()]
    figures = manifest.get("figures", [])
    return [*listed, *(f for f in figures if isinstance(f, str)), SUMMARY, MANIFEST]


def foreign_files(folder) -> list[str]:
    """The entries of a results folder that its manifest does not list (sorted).

    Raises :class:`ManifestError` if the folder has no readable lossvar manifest.
    """
    manifest = read_manifest(folder)
    ours = set(written_files(manifest))
    return sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir()
                  if p.name not in ours or not p.is_file())


#: The file inside a staging folder that says which process writes it.
_STAGING_MARK = ".lossvar-staging"


def _user_mode() -> int:
    """The mode a new folder gets under the process's umask (0o777 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_staging(parent) -> list[Path]:
    """Remove the staging folders beside ``parent``'s results left by dead runs.

    A staging folder (``.NAME.partial-PID-XXXX``) holds a mark naming the host
    and process that writes it; it is removed when that process no longer runs
    on this host (a run killed with SIGKILL, or a machine that lost power).
    Folders without a readable mark are left alone. Returns what was removed.
    """
    removed = []
    for work in Path(parent).glob(".*.partial-*"):
        try:
            mark = json.loads((work / _STAGING_MARK).read_text(encoding="utf-8"))
            pid, host = int(mark["pid"]), str(mark["host"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if host == platform.node() and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


def _sha256_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass
class StudyFolder:
    """The output folder of one study run, written piece by piece.

    Create with :meth:`create`, add tables and figures, then :meth:`finish`
    with the summary text: that writes ``summary.md`` and ``manifest.json``.
    Until then everything goes to a hidden staging folder beside ``path``, which
    :meth:`finish` moves into place (replacing an old results folder only then,
    with ``overwrite``) and :meth:`discard` removes: a run that fails leaves
    nothing behind, and an older result survives a failed rerun. Folders get
    the mode the user's umask gives.

    The manifest lists every file the run wrote (``files``), so that
    ``--overwrite`` can tell a lossvar folder from anything else, and each input
    file (:meth:`input`) with its sha256 and size, so that
    :func:`verify` can tell a changed input from a changed result.

    Examples
    --------
    >>> folder = StudyFolder.create("out", "demo", {"seed": 1})  # doctest: +SKIP
    >>> folder.table("numbers", df)                               # doctest: +SKIP
    >>> folder.finish("# demo\\n")                                 # doctest: +SKIP
    """

    path: Path
    study: str
    params: dict
    dpi: int = 300
    tables: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    overwrite: bool = False
    work: Path | None = None

    @classmethod
    def create(cls, out, study: str, params: dict, *, overwrite=False, dpi=300) -> StudyFolder:
        """Check the destination (see :func:`check_destination`) and open a staging folder.

        Staging folders of dead runs beside it are removed first
        (:func:`remove_stale_staging`).
        """
        path = check_destination(out, study, overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(path.parent)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent))
        os.chmod(work, _user_mode())  # mkdtemp makes it 0700
        (work / _STAGING_MARK).write_text(json.dumps({"pid": os.getpid(), "host": platform.node()}),
                                          encoding="utf-8")
        return cls(path, study, dict(params), dpi, overwrite=overwrite, work=work)

    def _staging(self) -> Path:
        if self.work is None:
            raise RuntimeError(f"the results folder {self.path} is finished; it takes no more files")
        return self.work

    def discard(self) -> None:
        """Remove the staging folder of a run that failed or was interrupted."""
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def input(self, option: str, path) -> Path:
        """Record an input file of the run (its sha256 and size) and return its path.

        ``option`` is the parameter that names it (``"data"`` for ``--data``).
        The manifest keeps the path as given, relative to where the run started
        when it lies below it, and relative to the results folder, so that
        :func:`verify` finds it from either place.
        """
        path = Path(path)
        sha, size = _sha256_and_size(path)
        absolute = path.resolve()
        try:
            shown = str(absolute.relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(absolute)
        self.inputs.append({"option": option, "path": shown, "absolute": str(absolute),
                            "from_folder": os.path.relpath(absolute, self.path.resolve().parent
                                                           / self.path.name),
                            "sha256": sha, "size": size})
        return path

    def note(self, text: str) -> None:
        """Add a line to the summary's notes (warnings and caveats of the run)."""
        if text not in self.notes:
            self.notes.append(text)

    def table(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Write ``NAME.csv`` and remember its sha256 and row count."""
        sha = write_table(table, self._staging() / f"{name}.csv")
        self.tables[name] = {"file": f"{name}.csv", "sha256": sha, "rows": int(len(table)),
                             "columns": [str(c) for c in table.columns]}
        return table

    def figure(self, name: str, fig) -> None:
        """Save a matplotlib figure as ``NAME.png`` and ``NAME.svg`` and close it."""
        import matplotlib.pyplot as plt

        fig.savefig(self._staging() / f"{name}.png", dpi=self.dpi, bbox_inches="tight")
        fig.savefig(self._staging() / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
        self.figures += [f"{name}.png", f"{name}.svg"]

    def command(self) -> str:
        """The one command that reproduces this run's tables."""
        return " ".join(["lossvar", "run", self.study, *map(_shell_word, params_to_argv(self.params))])

    def finish(self, summary: str) -> Path:
        """Write ``summary.md`` (with the notes and the reproducing command) and
        ``manifest.json``, then move the folder into place."""
        env = environment()
        notes = "".join(f"- {n}\n" for n in self.notes)
        text = summary.rstrip() + ("\n\n## Notes\n\n" + notes if notes else "") + (
            "\n\n## Reproduce\n\n```bash\n" + self.command() + " --out NEW_FOLDER\n```\n\n"
            f"Check a folder bit for bit: `lossvar verify {self.path}`.\n\n"
            f"lossvar {env['versions']['lossvar']}, numpy {env['versions']['numpy']}, "
            f"scipy {env['versions']['scipy']}, pandas {env['versions']['pandas']}, "
            f"python {env['versions']['python']}; {describe_revision(env['git'])}.\n")
        (self._staging() / SUMMARY).write_text(text, encoding="utf-8")
        files = sorted([*(t["file"] for t in self.tables.values()), *self.figures, SUMMARY, MANIFEST])
        manifest = {
            "made_by": "lossvar",
            "study": self.study,
            "parameters": self.params,
            "seed": self.params.get("seed"),
            "argv": params_to_argv(self.params),
            "command": self.command(),
            "inputs": self.inputs,
            **env,
            "tables": self.tables,
            "figures": self.figures,
            "files": files,
            "notes": self.notes,
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "wall_time_seconds": round(time.perf_counter() - self.started, 3),
        }
        (self._staging() / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (self._staging() / _STAGING_MARK).unlink()
        check_destination(self.path, self.study, self.overwrite)  # nothing appeared meanwhile
        old = None
        if self.path.exists():  # moved aside first: the old results survive a failed move
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=self.path.parent))
            os.replace(self.path, old / self.path.name)
        try:
            self._staging().rename(self.path)
        except BaseException:
            if old is not None:
                os.replace(old / self.path.name, self.path)
                old.rmdir()
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.work = None
        return self.path


def _shell_word(word: str) -> str:
    """A command-line word quoted for a POSIX shell only where it needs it."""
    import shlex

    return shlex.quote(word)


# -- reading and verifying -------------------------------------------------------------


def read_manifest(folder) -> dict:
    """The manifest of a results folder; :class:`ManifestError` if missing or corrupt."""
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise ManifestError(f"{folder} is not a folder")
    if not path.is_file():
        raise ManifestError(f"{folder} has no {MANIFEST}; is it a lossvar results folder?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is corrupt: {exc}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} is corrupt: expected a JSON object")
    missing = [k for k in ("study", "parameters", "tables", "versions") if k not in manifest]
    if missing:
        raise ManifestError(f"{path} is corrupt: missing {', '.join(missing)}")
    tables = manifest["tables"]
    if not isinstance(tables, dict) or not all(
            isinstance(v, dict) and {"file", "sha256"} <= set(v) for v in tables.values()):
        raise ManifestError(f"{path} is corrupt: 'tables' must map names to file and sha256")
    return manifest


#: Two tables "reproduce to rounding" when every number agrees within this relative
#: tolerance (of itself, or of the largest magnitude in its column, for values that
#: are small differences of large ones). Different SIMD and BLAS kernels differ by a
#: few ulps per operation (about 1e-16 relative); through the fits, moments and
#: iterative solvers behind a table that grows to about 1e-12 (the largest seen
#: across the studies is in docs/reproducibility.md), while a real change in code
#: or data moves numbers by far more than 1e-9.
ROUNDING_RTOL = 1e-9

IDENTICAL, ROUNDING, DIFFERS, CHANGED = ("identical", "reproduced to rounding", "DIFFERS",
                                         "changed after the run")


@dataclass(frozen=True)
class TableCheck:
    """The verdict on one table.

    Attributes
    ----------
    table : str
    outcome : str
        ``"identical"`` (bit for bit), ``"reproduced to rounding"`` (every number
        within :data:`ROUNDING_RTOL` of the rerun's), ``"DIFFERS"``, or
        ``"changed after the run"`` (the file no longer matches the manifest's
        sha256, whatever the rerun says).
    detail : str
        Where it differs first, or the largest rounding difference.
    max_rel_diff : float
        The largest relative difference found between the two tables (0 when
        identical, NaN when they cannot be compared number by number).
    """

    table: str
    outcome: str
    detail: str = ""
    max_rel_diff: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in (IDENTICAL, ROUNDING)

    @property
    def identical(self) -> bool:
        return self.outcome == IDENTICAL

    def __str__(self) -> str:
        return f"{self.table}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


#: Exit statuses of ``lossvar verify`` (:attr:`VerifyResult.status`).
VERIFIED, NOT_VERIFIED, INPUT_MISSING, INPUT_CHANGED, RERUN_FAILED = 0, 1, 3, 4, 5


@dataclass(frozen=True)
class InputCheck:
    """The state of one input file of a results folder.

    Attributes
    ----------
    option : str
        The parameter that names it (``data`` for ``--data``).
    recorded : str
        Its path as the manifest records it.
    outcome : str
        ``"unchanged"``, ``"input missing"`` (found nowhere the manifest points
        to) or ``"input changed"`` (found, with another sha256 or size).
    found : str or None
        Where it was found.
    """

    option: str
    recorded: str
    outcome: str
    found: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "unchanged"

    def __str__(self) -> str:
        where = f" (found at {self.found})" if self.found and self.found != self.recorded else ""
        return f"input --{self.option.replace('_', '-')} {self.recorded}: {self.outcome}{where}"


@dataclass(frozen=True)
class VerifyResult(ResultBase):
    """What :func:`verify` found.

    A result (docs/guide/results.md): ``to_frame()`` has one row per table
    compared (``study``, ``table``, ``outcome``, ``detail``, ``max_rel_diff``;
    no row when nothing was compared). It has no interval (``confidence`` is
    None).

    Attributes
    ----------
    study : str
    checks : list of TableCheck
        One per table of the manifest (empty when an input is missing or
        changed, or the rerun failed: then nothing was compared).
    version_warnings : list of str
        Package versions that differ from the manifest's (bits may then differ).
    platform_notes : list of str
        What differs between the machine that made the results and this one
        (CPU, SIMD targets, BLAS kernel): the usual cause of rounding differences.
    inputs : list of InputCheck
        The input files the manifest records, checked before any rerun.
    rerun_error : str
        Why the rerun failed ('' when it ran).
    """

    study: str
    checks: list
    version_warnings: list
    platform_notes: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    rerun_error: str = ""
    confidence: ClassVar[None] = None

    def to_frame(self) -> pd.DataFrame:
        """One row per table compared: ``study``, ``table``, ``outcome``, ``detail``,
        ``max_rel_diff``."""
        return pd.DataFrame([dict(study=self.study, table=c.table, outcome=c.outcome, detail=c.detail,
                                  max_rel_diff=c.max_rel_diff) for c in self.checks],
                            columns=["study", "table", "outcome", "detail", "max_rel_diff"])

    @property
    def ok(self) -> bool:
        """True when every table is identical or reproduced to rounding."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def identical(self) -> bool:
        """True when every table is bit-identical."""
        return bool(self.checks) and all(c.identical for c in self.checks)

    @property
    def status(self) -> int:
        """The exit status of ``lossvar verify``: 0 verified, 1 a table differs
        or was changed, 3 an input file is missing, 4 an input file changed,
        5 the rerun failed."""
        outcomes = {c.outcome for c in self.inputs}
        if "input missing" in outcomes:
            return INPUT_MISSING
        if "input changed" in outcomes:
            return INPUT_CHANGED
        if self.rerun_error:
            return RERUN_FAILED
        return VERIFIED if self.ok else NOT_VERIFIED

    def summary(self) -> str:
        """The verdict on each table, and the overall one with what differs between the machines."""
        lines = [f"WARNING: {w}" for w in self.version_warnings]
        bad_inputs = [c for c in self.inputs if not c.ok]
        if bad_inputs:
            lines += [str(c) for c in bad_inputs]
            what = "missing" if self.status == INPUT_MISSING else "changed since the run"
            lines.append(f"NOT verified: an input file is {what}; nothing was rerun")
            return "\n".join(lines)
        if self.rerun_error:
            lines.append(f"NOT verified: the rerun failed: {self.rerun_error}")
            return "\n".join(lines)
        lines += [str(c) for c in self.checks]
        n_bad = sum(not c.ok for c in self.checks)
        n = len(self.checks)
        if self.identical:
            lines.append(f"verified: all {n} tables bit-identical")
        elif self.ok:
            worst = max(c.max_rel_diff for c in self.checks)
            lines.append(f"verified: {sum(c.identical for c in self.checks)} of {n} tables "
                         f"bit-identical, the others reproduced to rounding (largest relative "
                         f"difference {worst:.2g}, tolerance {ROUNDING_RTOL:g})")
            if self.platform_notes:
                lines.append("the two platforms differ in: " + "; ".join(self.platform_notes))
        else:
            lines.append(f"NOT verified: {n_bad} of {n} tables differ")
        return "\n".join(lines)


class RerunError(RuntimeError):
    """The rerun of a study by :func:`verify` failed (its message says why, in one line)."""


def _read_text_table(data: bytes):
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _column_scale(values) -> float:
    nums = [abs(v) for v in (_as_float(t) for t in values) if v is not None and math.isfinite(v)]
    return max(nums, default=0.0)


def compare_bytes(old: bytes, new: bytes, rtol: float = ROUNDING_RTOL) -> tuple[str, str, float]:
    """Compare two CSV tables: ``(outcome, detail, largest relative difference)``.

    Identical bytes are ``identical``. Otherwise the tables must have the same
    columns and rows; text cells must be equal, and each number ``a`` in the
    folder and ``b`` in the rerun must satisfy
    ``|a - b| <= rtol * max(|a|, |b|, scale)``, where ``scale`` is the largest
    magnitude in the column (a value that is a small difference of large ones
    carries the large ones' rounding); NaN equals NaN, infinities must match.
    """
    if old == new:
        return IDENTICAL, "", 0.0
    try:
        a, b = _read_text_table(old), _read_text_table(new)
    except (ValueError, pd.errors.ParserError):
        return DIFFERS, "the file cannot be read as CSV", math.nan
    if list(a.columns) != list(b.columns):
        return DIFFERS, f"columns differ: {list(a.columns)} vs {list(b.columns)}", math.nan
    if len(a) != len(b):
        return DIFFERS, f"{len(a)} rows in the folder, {len(b)} in the rerun", math.nan
    worst, where, first_bad = 0.0, "", None
    for col in a.columns:
        scale = _column_scale(a[col])
        for i, (x, y) in enumerate(zip(a[col], b[col], strict=True)):
            if x == y:
                continue
            fx, fy = _as_float(x), _as_float(y)
            if fx is None or fy is None or not (math.isfinite(fx) and math.isfinite(fy)):
                rel = math.inf
            else:
                rel = abs(fx - fy) / max(abs(fx), abs(fy), scale)
            if rel > worst:
                worst, where = rel, f"row {i}, column {col!r}: {x} vs rerun {y}"
            if rel > rtol and first_bad is None:
                first_bad = f"first at row {i}, column {col!r}: {x} vs rerun {y}"
    if first_bad is not None:
        return DIFFERS, f"{first_bad}; largest relative difference {worst:.3g}", worst
    if worst == 0.0:
        return ROUNDING, "the same numbers, formatted differently", 0.0
    return ROUNDING, f"largest relative difference {worst:.2g}, at {where}", worst


def compare_tables(manifest: dict, folder, new_folder) -> list[TableCheck]:
    """Compare each table of ``folder`` (and its manifest sha256) with a rerun's."""
    checks = []
    for name, entry in manifest["tables"].items():
        old_path, new_path = Path(folder) / entry["file"], Path(new_folder) / entry["file"]
        if not old_path.is_file():
            checks.append(TableCheck(name, DIFFERS, f"{entry['file']} is missing from the folder",
                                     math.nan))
            continue
        old = old_path.read_bytes()
        if hashlib.sha256(old).hexdigest() != entry["sha256"]:
            checks.append(TableCheck(name, CHANGED, f"{entry['file']} does not match the sha256 "
                                     "in the manifest: it was edited after the run", math.nan))
            continue
        if not new_path.is_file():
            checks.append(TableCheck(name, DIFFERS, "the rerun did not write it", math.nan))
            continue
        checks.append(TableCheck(name, *compare_bytes(old, new_path.read_bytes())))
    return checks


def version_warnings(manifest: dict) -> list[str]:
    """One line per package whose version differs from the manifest's."""
    now = environment()["versions"]
    then = manifest.get("versions", {})
    return [f"{pkg} is {now[pkg]} here but was {then.get(pkg)} when the results were made; "
            "the tables may legitimately differ" for pkg in _VERSIONED if then.get(pkg) != now[pkg]]


def platform_differences(manifest: dict) -> list[str]:
    """What differs between the manifest's machine and this one (CPU, SIMD, BLAS)."""
    then, now = manifest.get("machine"), machine()
    if not isinstance(then, dict):
        return ["the manifest records no machine (made by an older lossvar)"]
    notes = []
    for key, label in (("cpu", "CPU"), ("simd", "numpy SIMD targets"), ("blas", "BLAS")):
        if then.get(key) != now[key]:
            notes.append(f"{label}: {_brief(key, then.get(key))} there, {_brief(key, now[key])} here")
    return notes


def _brief(key, value) -> str:
    if key == "blas" and isinstance(value, list):
        return ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')})"
                         for b in value) or "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def check_inputs(manifest: dict, folder) -> list[InputCheck]:
    """Find each input file the manifest records and compare its sha256 and size.

    Looked for relative to the results folder (where it was relative to the
    folder when the run was made), then at the recorded path (relative to the
    current folder), then at the absolute path of the run.
    """
    checks = []
    for entry in manifest.get("inputs", []) or []:
        folder_path = Path(folder)
        candidates = [folder_path / entry.get("from_folder", ""), Path(entry.get("path", "")),
                      Path(entry.get("absolute", ""))]
        found = next((c for c in candidates if str(c) not in ("", ".") and c.is_file()), None)
        recorded = str(entry.get("path"))
        if found is None:
            checks.append(InputCheck(entry.get("option", "?"), recorded, "input missing"))
            continue
        sha, size = _sha256_and_size(found)
        same = sha == entry.get("sha256") and size == entry.get("size")
        checks.append(InputCheck(entry.get("option", "?"), recorded,
                                 "unchanged" if same else "input changed", os.path.normpath(found)))
    return checks


def _with_inputs(argv: list[str], inputs: list[InputCheck]) -> list[str]:
    """``argv`` with each input option's value replaced by where the file was found."""
    argv = list(argv)
    for check in inputs:
        opt = "--" + check.option.replace("_", "-")
        if opt in argv[:-1] and check.found is not None:
            argv[argv.index(opt) + 1] = check.found
    return argv


def verify(folder, rerun) -> VerifyResult:
    """Check a folder's inputs, rerun its study from the manifest and compare the tables.

    First each input file the manifest records is found and compared with its
    sha256 and size (:func:`check_inputs`): a missing or changed input is
    reported as such, and nothing is rerun. Then each table is judged on its
    own: ``identical`` bit for bit, ``reproduced to rounding`` (every number
    within :data:`ROUNDING_RTOL`, as different CPUs and BLAS kernels give; the
    report names what differs between the two platforms), ``DIFFERS``, or
    ``changed after the run`` when the folder's file no longer matches the
    sha256 in its manifest (a failure whatever the rerun gives).

    Parameters
    ----------
    folder : path
        A results folder written by :class:`StudyFolder`.
    rerun : callable
        ``rerun(study, argv, out)`` runs the study named in the manifest with
        the manifest's arguments into the fresh folder ``out``; it raises
        :class:`RerunError` if the run fails.

    Returns
    -------
    VerifyResult
        ``ok`` when every table is identical or reproduced to rounding;
        ``status`` is the exit status of ``lossvar verify``.
    """
    manifest = read_manifest(folder)
    argv = manifest.get("argv")
    if not isinstance(argv, list):
        argv = params_to_argv(manifest["parameters"])
    inputs = check_inputs(manifest, folder)
    warnings_, notes = version_warnings(manifest), platform_differences(manifest)
    if not all(c.ok for c in inputs):
        return VerifyResult(manifest["study"], [], warnings_, notes, inputs)
    with tempfile.TemporaryDirectory(prefix="lossvar-verify-") as tmp:
        out = Path(tmp) / "rerun"
        try:
            rerun(manifest["study"], _with_inputs([str(a) for a in argv], inputs), out)
        except RerunError as exc:
            return VerifyResult(manifest["study"], [], warnings_, notes, inputs, str(exc))
        checks = compare_tables(manifest, folder, out)
    return VerifyResult(manifest["study"], checks, warnings_, notes, inputs)

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
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "FLOAT_FORMAT",
    "ManifestError",
    "StudyFolder",
    "TableCheck",
    "VerifyReport",
    "environment",
    "params_to_argv",
    "read_manifest",
    "verify",
    "write_table",
]

#: Every float of every table: 17 significant digits round-trip a float64 exactly.
FLOAT_FORMAT = "%.17g"
MANIFEST = "manifest.json"
SUMMARY = "summary.md"
_VERSIONED = ("lossvar", "numpy", "scipy", "pandas", "python")
_NOT_RERUN = ("out", "overwrite")


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


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def environment() -> dict:
    """Versions, platform and (from a git checkout of lossvar) the commit and dirty flag.

    ``git`` is asked read-only (``--no-optional-locks``); outside a checkout,
    or without git, ``commit`` and ``dirty`` are None.
    """
    import numpy
    import scipy

    from . import __version__

    versions = {"lossvar": __version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
                "pandas": pd.__version__, "python": platform.python_version()}
    return {"versions": versions, "platform": platform.platform(), "git": _git_state()}


def _git_state() -> dict:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}

    def git(*args):
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args],
                              capture_output=True, text=True, timeout=20, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


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


def _prepare(out, study, overwrite) -> Path:
    folder = default_folder(study) if out is None else Path(out)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"--out: {folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"--out: {folder} exists and is not empty; choose another "
                                  "folder, omit --out for a new dated one, or pass --overwrite")
        if not (folder / MANIFEST).is_file():
            raise FileExistsError(f"--out: {folder} is not a lossvar results folder (no "
                                  f"{MANIFEST}); refusing to overwrite it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class StudyFolder:
    """The output folder of one study run, written piece by piece.

    Create with :meth:`create`, add tables and figures, then :meth:`finish`
    with the summary text: that writes ``summary.md`` and ``manifest.json``.

    Examples
    --------
    >>> folder = StudyFolder.create("out", "demo", {"seed": 1})  # doctest: +SKIP
    >>> folder.table("numbers", df)                               # doctest: +SKIP
    >>> folder.finish("# demo\\n")                                 # doctest: +SKIP
    """

    path: Path
    study: str
    params: dict
    dpi: int = 120
    tables: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def create(cls, out, study: str, params: dict, *, overwrite=False, dpi=120) -> StudyFolder:
        """Make the folder: ``out``, or a new dated one under ``results/`` if None.

        An existing non-empty ``out`` is refused unless ``overwrite`` (and then
        only if it is a results folder, with a manifest).
        """
        return cls(_prepare(out, study, overwrite), study, dict(params), dpi)

    def table(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Write ``NAME.csv`` and remember its sha256 and row count."""
        sha = write_table(table, self.path / f"{name}.csv")
        self.tables[name] = {"file": f"{name}.csv", "sha256": sha, "rows": int(len(table)),
                             "columns": [str(c) for c in table.columns]}
        return table

    def figure(self, name: str, fig) -> None:
        """Save a matplotlib figure as ``NAME.png`` and ``NAME.svg`` and close it."""
        import matplotlib.pyplot as plt

        fig.savefig(self.path / f"{name}.png", dpi=self.dpi, bbox_inches="tight")
        fig.savefig(self.path / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
        self.figures += [f"{name}.png", f"{name}.svg"]

    def command(self) -> str:
        """The one command that reproduces this run's tables."""
        return " ".join(["lossvar", "run", self.study, *params_to_argv(self.params)])

    def finish(self, summary: str) -> Path:
        """Write ``summary.md`` (with the reproducing command) and ``manifest.json``."""
        env = environment()
        text = summary.rstrip() + (
            "\n\n## Reproduce\n\n```bash\n" + self.command() + " --out NEW_FOLDER\n```\n\n"
            f"Check a folder bit for bit: `lossvar verify {self.path}`.\n\n"
            f"lossvar {env['versions']['lossvar']}, numpy {env['versions']['numpy']}, "
            f"scipy {env['versions']['scipy']}, pandas {env['versions']['pandas']}, "
            f"python {env['versions']['python']}; git commit "
            f"{env['git']['commit'] or 'n/a'}{' (dirty tree)' if env['git']['dirty'] else ''}.\n")
        (self.path / SUMMARY).write_text(text, encoding="utf-8")
        manifest = {
            "study": self.study,
            "parameters": self.params,
            "seed": self.params.get("seed"),
            "argv": params_to_argv(self.params),
            "command": self.command(),
            **env,
            "tables": self.tables,
            "figures": self.figures,
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "wall_time_seconds": round(time.perf_counter() - self.started, 3),
        }
        (self.path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return self.path


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


@dataclass(frozen=True)
class TableCheck:
    """The verdict on one table: ``identical`` or not, and why."""

    table: str
    identical: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.table}: {'identical' if self.identical else 'DIFFERS'}" + (
            f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found.

    Attributes
    ----------
    study : str
    checks : list of TableCheck
        One per table of the manifest.
    version_warnings : list of str
        Package versions that differ from the manifest's (bits may then differ).
    """

    study: str
    checks: list
    version_warnings: list

    @property
    def ok(self) -> bool:
        """True when every table is bit-identical."""
        return bool(self.checks) and all(c.identical for c in self.checks)

    def __str__(self) -> str:
        lines = [f"WARNING: {w}" for w in self.version_warnings]
        lines += [str(c) for c in self.checks]
        n_bad = sum(not c.identical for c in self.checks)
        lines.append(f"verified: all {len(self.checks)} tables bit-identical" if self.ok else
                     f"NOT verified: {n_bad} of {len(self.checks)} tables differ")
        return "\n".join(lines)


def _first_difference(old: bytes, new: bytes) -> str:
    try:
        a = pd.read_csv(io.BytesIO(old), dtype=str, keep_default_na=False)
        b = pd.read_csv(io.BytesIO(new), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError):
        return "the file cannot be read as CSV"
    if list(a.columns) != list(b.columns):
        return f"columns differ: {list(a.columns)} vs {list(b.columns)}"
    if len(a) != len(b):
        return f"{len(a)} rows in the folder, {len(b)} in the rerun"
    for i in range(len(a)):
        for col in a.columns:
            if a.at[i, col] != b.at[i, col]:
                return f"first at row {i}, column {col!r}: {a.at[i, col]} vs rerun {b.at[i, col]}"
    return "bytes differ (formatting)"


def compare_tables(manifest: dict, folder, new_folder) -> list[TableCheck]:
    """Compare each table of ``folder`` (and its manifest sha256) with a rerun's."""
    checks = []
    for name, entry in manifest["tables"].items():
        old_path, new_path = Path(folder) / entry["file"], Path(new_folder) / entry["file"]
        if not old_path.is_file():
            checks.append(TableCheck(name, False, f"{entry['file']} is missing from the folder"))
            continue
        if not new_path.is_file():
            checks.append(TableCheck(name, False, "the rerun did not write it"))
            continue
        old, new = old_path.read_bytes(), new_path.read_bytes()
        tampered = hashlib.sha256(old).hexdigest() != entry["sha256"]
        if old == new and not tampered:
            checks.append(TableCheck(name, True, ""))
        elif old == new:
            checks.append(TableCheck(name, False, "the file does not match the manifest's sha256"))
        else:
            why = _first_difference(old, new)
            if tampered:
                why += "; the file was changed after the run (sha256 differs from the manifest)"
            checks.append(TableCheck(name, False, why))
    return checks


def version_warnings(manifest: dict) -> list[str]:
    """One line per package whose version differs from the manifest's."""
    now = environment()["versions"]
    then = manifest.get("versions", {})
    return [f"{pkg} is {now[pkg]} here but was {then.get(pkg)} when the results were made; "
            "the tables may legitimately differ" for pkg in _VERSIONED if then.get(pkg) != now[pkg]]


def verify(folder, rerun) -> VerifyReport:
    """Rerun a study from its manifest and compare the tables bit for bit.

    Parameters
    ----------
    folder : path
        A results folder written by :class:`StudyFolder`.
    rerun : callable
        ``rerun(study, argv, out)`` runs the study named in the manifest with
        the manifest's arguments into the fresh folder ``out``.

    Returns
    -------
    VerifyReport
        ``ok`` only if every table is bit-identical to the folder's and the
        folder's files still match the manifest's sha256.
    """
    manifest = read_manifest(folder)
    argv = manifest.get("argv")
    if not isinstance(argv, list):
        argv = params_to_argv(manifest["parameters"])
    with tempfile.TemporaryDirectory(prefix="lossvar-verify-") as tmp:
        out = Path(tmp) / "rerun"
        rerun(manifest["study"], [str(a) for a in argv], out)
        checks = compare_tables(manifest, folder, out)
    return VerifyReport(manifest["study"], checks, version_warnings(manifest))


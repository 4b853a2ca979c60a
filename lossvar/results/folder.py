"""A study's results folder: where it goes, how it is written safely, its manifest."""


from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .provenance import describe_revision, environment
from .tables import file_digest, write_table

MANIFEST = "manifest.json"
SUMMARY = "summary.md"
_NOT_RERUN = ("out", "overwrite", "progress")


class ManifestError(ValueError):
    """A results folder without a readable, complete manifest."""


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
        sha, size = file_digest(path)
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

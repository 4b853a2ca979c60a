"""Verification of a results folder: rerun its command and compare every table."""


from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from .._result import ResultBase
from .folder import params_to_argv, read_manifest
from .provenance import VERSIONED, environment, machine
from .tables import file_digest

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
            "the tables may legitimately differ" for pkg in VERSIONED if then.get(pkg) != now[pkg]]


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
        sha, size = file_digest(found)
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

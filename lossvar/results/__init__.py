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
:mod:`lossvar.studies` provides it), so this package does not depend on the
studies. Wall time goes into the manifest only, never into a table.

One module per step: :mod:`.tables` (CSV files and hashes), :mod:`.provenance`
(software, machine, revision), :mod:`.folder` (writing a folder safely and
reading its manifest), :mod:`.verify` (rerunning and comparing).
"""

from .folder import (
    MANIFEST,
    SUMMARY,
    ManifestError,
    StudyFolder,
    check_destination,
    default_folder,
    foreign_files,
    params_to_argv,
    read_manifest,
    remove_stale_staging,
    written_files,
)
from .provenance import describe_revision, environment, machine
from .tables import FLOAT_FORMAT, read_table, sha256_file, write_table
from .verify import (
    ROUNDING_RTOL,
    InputCheck,
    RerunError,
    TableCheck,
    VerifyResult,
    check_inputs,
    compare_bytes,
    compare_tables,
    platform_differences,
    verify,
    version_warnings,
)

__all__ = [
    "FLOAT_FORMAT",
    "InputCheck",
    "MANIFEST",
    "ManifestError",
    "ROUNDING_RTOL",
    "RerunError",
    "SUMMARY",
    "StudyFolder",
    "TableCheck",
    "VerifyResult",
    "check_destination",
    "check_inputs",
    "compare_bytes",
    "compare_tables",
    "default_folder",
    "describe_revision",
    "environment",
    "foreign_files",
    "machine",
    "params_to_argv",
    "platform_differences",
    "read_manifest",
    "read_table",
    "remove_stale_staging",
    "sha256_file",
    "verify",
    "version_warnings",
    "write_table",
    "written_files",
]

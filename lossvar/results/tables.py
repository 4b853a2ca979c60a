"""Tables as CSV files that round-trip every float64 exactly, and file hashes."""


from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

FLOAT_FORMAT = "%.17g"


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
    return file_digest(path)[0]


def file_digest(path) -> tuple[str, int]:
    """Hex sha256 and size in bytes of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


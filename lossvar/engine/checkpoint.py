"""Checkpoint folders: each finished chunk written atomically, with a checksum, and read back on resume."""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["CheckpointMismatch", "CheckpointStore", "atomic_write"]


class CheckpointMismatch(ValueError):
    """A checkpoint folder was written by a call with other parameters."""


class CheckpointStore:
    """A checkpoint folder: ``meta.json`` plus one checksummed file per chunk."""

    def __init__(self, folder, fingerprint, chunk_size):
        from .._build_revision import version as __version__

        self.folder = Path(folder)
        self.meta = dict(fingerprint or {}, chunk_size=chunk_size, lossvar=__version__)
        self.meta = json.loads(json.dumps(self.meta, sort_keys=True, default=str))
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "meta.json"
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise CheckpointMismatch(f"`checkpoint`: {meta_path} is unreadable ({exc}); "
                                         "remove the folder to start afresh") from None
            differ = sorted(k for k in set(old) | set(self.meta) if old.get(k) != self.meta.get(k))
            if differ:
                detail = "; ".join(f"{k}: checkpoint has {old.get(k)!r}, this call "
                                   f"{self.meta.get(k)!r}" for k in differ)
                raise CheckpointMismatch(f"`checkpoint` {self.folder} was written with other "
                                         f"parameters ({detail}); use another folder or remove it")
        else:
            atomic_write(meta_path, json.dumps(self.meta, sort_keys=True, indent=1).encode())

    def _path(self, condition, chunk):
        key = "_".join(str(k) for k in condition.key)
        return self.folder / f"chunk-{key}-{chunk[0]}-{chunk[1]}.npz"

    def save(self, condition, chunk, result):
        moments, values = result
        buf = io.BytesIO()
        arrays = {}
        if moments is not None:
            arrays["moments"] = moments
        if isinstance(values, dict):
            arrays.update({f"values.{k}": a for k, a in values.items()})
        elif values is not None:
            arrays["values"] = values
        np.savez(buf, **arrays)
        payload = buf.getvalue()
        atomic_write(self._path(condition, chunk),
                      hashlib.sha256(payload).hexdigest().encode() + payload)

    def load(self, condition, chunk, keep):
        path = self._path(condition, chunk)
        if not path.exists():
            return None
        raw = path.read_bytes()
        digest, payload = raw[:64], raw[64:]
        try:
            ok = hashlib.sha256(payload).hexdigest().encode() == digest
            if ok:
                with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                    moments = z["moments"] if "moments" in z else None
                    values = z["values"] if "values" in z else None
                    named = {k[7:]: z[k] for k in z.files if k.startswith("values.")}
                    values = named or values
                needs_values = condition.reduce == "stack" or keep
                ok = (values is not None) or not needs_values
        except (ValueError, OSError, KeyError):
            ok = False
        if not ok:
            warnings.warn(f"checkpoint chunk {path.name} is corrupted or incomplete; recomputing it",
                          RuntimeWarning, stacklevel=3)
            return None
        return moments, values


def atomic_write(path: Path, data: bytes):
    """Write via a temporary file, fsync, and rename: a reader sees all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

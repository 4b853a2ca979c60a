"""What a results folder records about the run's software, machine and revision."""


from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pandas as pd

VERSIONED = ("lossvar", "numpy", "scipy", "pandas", "python")


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

    from .._build_revision import version as __version__

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
    from .. import _build_revision

    if _build_revision.commit:
        return {"commit": _build_revision.commit, "dirty": _build_revision.dirty,
                "source": "recorded at build"}
    return {"commit": None, "dirty": None,
            "source": "unknown: installed from an sdist or a tree without git"}


def _live_git() -> dict | None:
    root = Path(__file__).resolve().parents[2]
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


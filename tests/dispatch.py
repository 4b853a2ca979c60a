"""Another CPU's view of the same code: the environment that makes numpy and
OpenBLAS choose other kernels than they would on this machine.

numpy dispatches its ufuncs to SIMD targets by CPU; ``NPY_DISABLE_CPU_FEATURES``
turns off the targets it uses here (all of them above the build's baseline, so
the highest dispatchable features this machine has are among them; naming an
absent one is an error on some numpy versions, so only present ones are named).
OpenBLAS picks a kernel by CPU; ``OPENBLAS_CORETYPE`` forces another: Haswell
where it picked something else (e.g. SkylakeX on AVX-512), else Sandybridge
(AVX without FMA, so its sums round differently). Run as a script, it prints the
assignments for a shell: ``env $(python tests/dispatch.py) python -m pytest``.
"""

from __future__ import annotations

import platform


def simd_targets_in_use() -> list[str]:
    """The non-baseline SIMD targets numpy dispatches to on this machine."""
    try:
        from numpy.lib.introspect import opt_func_info
    except ImportError:  # numpy < 2.0: no public introspection of the dispatch
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__

        return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    current = {sig["current"] for sigs in opt_func_info().values() for sig in sigs.values()}
    return sorted(t for t in current if not t.startswith("baseline"))


def blas_kernel() -> str | None:
    """The kernel numpy's OpenBLAS runs here (None without OpenBLAS)."""
    import numpy  # noqa: F401  (loads numpy's BLAS so that threadpoolctl sees it)
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("internal_api") == "openblas":
            return info.get("architecture")
    return None


def alternate_environment() -> dict[str, str]:
    """``NPY_DISABLE_CPU_FEATURES`` and ``OPENBLAS_CORETYPE`` for another dispatch."""
    env = {}
    targets = simd_targets_in_use()
    if targets:
        env["NPY_DISABLE_CPU_FEATURES"] = ",".join(targets)
    kernel = blas_kernel()
    if kernel is not None:
        if platform.machine().lower() in ("x86_64", "amd64", "i686"):
            env["OPENBLAS_CORETYPE"] = "Haswell" if kernel.lower() != "haswell" else "Sandybridge"
        elif kernel.upper() != "ARMV8":
            env["OPENBLAS_CORETYPE"] = "ARMV8"
    return env


if __name__ == "__main__":
    print(" ".join(f"{k}={v}" for k, v in alternate_environment().items()))

"""Test-wide settings.

Property-based tests draw new examples on every local run (the ``dev``
profile: exploration finds new corner cases). CI selects the ``ci`` profile
(``CI`` is set in its environment, or ``HYPOTHESIS_PROFILE=ci``): derandomized,
so the same examples run every time and a red CI is always a real regression.

Tests leave nothing outside their temporary folders: dask's scratch space (a
``LocalCluster``'s worker folders, by default ``dask-scratch-space`` in the
system's temporary folder) goes into pytest's temporary folder for the session.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session", autouse=True)
def dask_scratch_in_pytest_tmp(tmp_path_factory):
    """dask's ``temporary-directory`` inside pytest's temporary folder, for every test.

    Through the environment (read when dask is imported, and inherited by worker
    processes) and, where dask is already imported, its configuration as well.
    """
    folder = str(tmp_path_factory.mktemp("dask-scratch"))
    before = os.environ.get("DASK_TEMPORARY_DIRECTORY")
    os.environ["DASK_TEMPORARY_DIRECTORY"] = folder
    configured = None
    if "dask.config" in sys.modules:
        configured = sys.modules["dask.config"].set({"temporary-directory": folder})
    yield folder
    if configured is not None:
        configured.__exit__(None, None, None)
    if before is None:
        os.environ.pop("DASK_TEMPORARY_DIRECTORY", None)
    else:
        os.environ["DASK_TEMPORARY_DIRECTORY"] = before


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for the PyTorch tests' small models: threads only add contention on
    a busy machine. A module asks for it with ``pytest.mark.usefixtures``."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

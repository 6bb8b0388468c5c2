"""Shared pytest options and fixtures.

* ``--runslow`` runs tests marked ``slow`` (skipped by default).
* ``cifar_root`` is the real CIFAR-10 root from ``CL_DATA_ROOT``; tests using it skip when unset.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """Root of a real CIFAR-10 copy (image-folder export), or skip."""
    root = os.environ.get("CL_DATA_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("real CIFAR-10 not configured: set CL_DATA_ROOT to a CIFAR-10 copy")
    return Path(root)


@pytest.fixture(autouse=True)
def _private_caches(tmp_path_factory, monkeypatch):
    """Keep tests out of the user's ~/.cache: the default data folder is a temp folder, and the
    decoded-image cache goes to CL_CACHE_DIR when CI sets it (shared, content-keyed), else to a
    temp folder."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "xdg"))
    if not os.environ.get("CL_CACHE_DIR"):
        monkeypatch.setenv("CL_CACHE_DIR", str(base / "cl-cache"))

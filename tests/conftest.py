"""Shared pytest options and fixtures.

* ``--runslow`` runs tests marked ``slow`` (skipped by default); tests marked ``cuda`` skip
  without a CUDA GPU.
* ``CL_HYPOTHESIS_PROFILE`` picks the hypothesis profile: "ci" (default) or "long".
* ``cifar_root`` is the real CIFAR-10 root from ``CL_DATA_ROOT``; tests using it skip when unset.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

# Property grid (tests/test_property_grid.py): "ci" is fixed-seed and fast (< 2 min on 2 cores);
# CL_HYPOTHESIS_PROFILE=long explores more examples with a random seed.
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CL_HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip_cuda = pytest.mark.skip(reason="cuda: no CUDA GPU here (scripts/gpu_check.sh)")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip_cuda)
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

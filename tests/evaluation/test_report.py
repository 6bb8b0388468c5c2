"""Tests for cl_analysis.evaluation.report.analyze_features on synthetic features (CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_analysis import diagnostics
from cl_analysis.evaluation.report import analyze_features


def _clusters(n_per: int = 60, classes: int = 4, d: int = 16, spread: float = 0.2, seed: int = 0):
    """Unnormalised features in ``classes`` well separated clusters, and their labels."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, d, generator=g), dim=1) * 5
    y = torch.arange(classes).repeat_interleave(n_per)
    return centres[y] + spread * torch.randn(len(y), d, generator=g), y


def test_report_on_clustered_features(tmp_path):
    z, y = _clusters()
    views = z + 0.05 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    rep = analyze_features(z, y, tmp_path, temperature=0.2, views=views,
                           class_names=["a", "b", "c", "d"])
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    assert rep["knn_top1"] == 1.0 and not rep["collapsed"]  # separable clusters
    assert rep["tolerance"] > 0.9 and rep["classes"] == ["a", "b", "c", "d"]
    assert any("L2-normalised" in note for note in rep["notes"])  # norms ~5
    assert rep["rankme"] == pytest.approx(diagnostics.rankme(F.normalize(z.double(), dim=1)))
    assert len(rep["spectrum"]) == 16 and rep["alpha_req"]["fit_range"][0] == 1
    assert sum(rep["gradient_ratio_profile"]) <= 1 + 1e-9
    assert rep["alignment"] < 0.01
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "http" not in page  # with t-SNE
    assert "not collapsed" in page
    assert rep["knn_top5"] == 1.0 and rep["tsne"]["points"] == 240
    sep = rep["local_separation_mean"]  # positive (the other view) then n1 >= n2 >= ... n10
    assert len(sep) == 11 and sep[0] > 0.99 and all(a >= b for a, b in zip(sep[1:], sep[2:]))
    assert rep["local_separation_positive"] == "other view"


def test_report_with_two_augmented_views(tmp_path):
    z, y = _clusters()
    g = torch.Generator().manual_seed(3)
    v1, v2 = (z + 0.3 * torch.randn(z.shape, generator=g) for _ in range(2))
    rep = analyze_features(z, y, tmp_path, views=(v1, v2), tsne_points=0)
    u1, u2 = F.normalize(v1.double(), dim=1), F.normalize(v2.double(), dim=1)
    assert rep["alignment"] == pytest.approx(float((u1 - u2).norm(dim=1).square().mean()))
    assert "tsne" not in rep
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 4
    with pytest.raises(ValueError, match="pair"):
        analyze_features(z, y, tmp_path, views=(v1, v2, v1))


def test_report_without_views_uses_a_same_class_proxy(tmp_path):
    z, y = _clusters(seed=4)
    rep = analyze_features(z, y, tmp_path, tsne_points=50)
    assert "alignment" not in rep and rep["local_separation_positive"].startswith("nearest")
    assert any("alignment not measured" in note for note in rep["notes"])
    assert rep["knn_top5"] >= rep["knn_top1"]


def test_report_says_collapsed_with_numbers(tmp_path):
    z = torch.randn(1, 32).repeat(100, 1) + 1e-4 * torch.randn(100, 32)
    y = torch.arange(100) % 5
    rep = analyze_features(z.numpy(), y.numpy(), tmp_path)
    assert rep["collapsed"] and rep["notes"][0].startswith("collapsed: feature std")
    assert rep["wasserstein_uniformity"] == pytest.approx(math.sqrt(2), abs=1e-3)
    assert f"{rep['rankme']:.3g}" in rep["notes"][0]
    assert "report: collapsed" in (tmp_path / "report.html").read_text()


def test_unit_features_get_no_normalisation_note(tmp_path):
    z, y = _clusters(seed=2)
    rep = analyze_features(F.normalize(z, dim=1), y, tmp_path)
    assert not any("L2-normalised" in note for note in rep["notes"])
    assert rep["knn_split"] == {"train": 192, "test": 48, "seed": 0, "k": 192}


@pytest.mark.parametrize("z, y, match", [
    (np.zeros(10), np.zeros(10, dtype=int), "shape"),
    (np.ones((1, 4)), np.zeros(1, dtype=int), "N >= 2"),
    (np.vstack([np.ones((3, 4)), [[np.nan, 0, 0, 0]]]), np.zeros(4, dtype=int), r"rows \[3\]"),
    (np.vstack([np.ones((3, 4)), np.zeros((1, 4))]), np.zeros(4, dtype=int), "all-zero"),
    (np.ones((4, 4)), np.zeros(3, dtype=int), r"labels must have shape \(4,\)"),
    (np.ones((4, 4)), np.zeros(4), "integers"),
    ("features.npy", np.zeros(4, dtype=int), "numpy array"),
])
def test_bad_input_raises(tmp_path, z, y, match):
    with pytest.raises(ValueError, match=match):
        analyze_features(z, y, tmp_path)
    assert not (tmp_path / "report.json").exists()

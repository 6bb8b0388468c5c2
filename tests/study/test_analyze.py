"""`cl-analysis analyze`: every input kind and every refusal (issue 11 §4)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cl_analysis.cli import main
from cl_analysis.study.analyze import analyze, load_array, load_backbone, map_resnet_keys

FAST = dict(tsne_points=0)


def clusters(n_per=30, classes=3, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, d, generator=g), dim=1) * 3
    y = torch.arange(classes).repeat_interleave(n_per)
    return (centres[y] + 0.2 * torch.randn(len(y), d, generator=g)).numpy(), y.numpy()


def cifar_resnet(arch="resnet18", cifar=True):
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None)
    if cifar:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    for m in net.modules():  # non-trivial running statistics: eval mode must use them
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def features_of(net, x):
    with torch.no_grad():
        return torch.flatten(net(x), 1)


# --- features files ---------------------------------------------------------------------------
def test_features_npy_through_the_cli(tmp_path, capsys):
    z, y = clusters()
    np.save(tmp_path / "f.npy", z)
    np.save(tmp_path / "l.npy", y)
    rc = main(["analyze", "--features", str(tmp_path / "f.npy"), "--labels",
               str(tmp_path / "l.npy"), "--out", str(tmp_path / "r"), "--tsne-points", "40"])
    assert rc == 0
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["source"]["input"] == "features" and rep["n"] == 90 and rep["dim"] == 8
    assert rep["knn_top1"] == 1.0 and rep["knn_top5"] == 1.0 and not rep["collapsed"]
    assert "tsne" in rep and (tmp_path / "r" / "report.html").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "not collapsed" in out and "L2-normalised" in out  # norms ~3: the note


@pytest.mark.parametrize("kind", ["npz", "pt", "npz-single"])
def test_features_npz_and_pt(tmp_path, kind):
    z, y = clusters()
    if kind == "npz":
        np.savez(tmp_path / "f.npz", features=z, labels=y)
        f = lab = tmp_path / "f.npz"
    elif kind == "npz-single":
        np.savez(tmp_path / "f.npz", z)
        np.savez(tmp_path / "l.npz", y)
        f, lab = tmp_path / "f.npz", tmp_path / "l.npz"
    else:
        torch.save({"z": torch.from_numpy(z), "labels": torch.from_numpy(y)}, tmp_path / "f.pt")
        f = lab = tmp_path / "f.pt"
    rep = analyze(tmp_path / "r", features=str(f), labels=str(lab), **FAST)
    assert rep["n"] == 90 and rep["knn_top1"] == 1.0


def test_collapsed_features_say_so(tmp_path, capsys):
    z = np.tile(np.random.default_rng(0).normal(size=(1, 16)), (60, 1))
    z += 1e-5 * np.random.default_rng(1).normal(size=z.shape)
    np.save(tmp_path / "f.npy", z)
    np.save(tmp_path / "l.npy", np.arange(60) % 3)
    assert main(["analyze", "--features", str(tmp_path / "f.npy"), "--labels",
                 str(tmp_path / "l.npy"), "--out", str(tmp_path / "r"),
                 "--tsne-points", "0"]) == 0
    assert "COLLAPSED" in capsys.readouterr().out
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["collapsed"] and rep["notes"][0].startswith("collapsed: feature std")
    assert "RankMe" in rep["notes"][0] and "report: collapsed" in (
        tmp_path / "r" / "report.html").read_text()


def _refused(tmp_path, capsys, argv, match):
    assert main(["analyze", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert match in err, err


def test_refusals_of_features_input(tmp_path, capsys):
    z, y = clusters()
    np.save(tmp_path / "l.npy", y)
    np.save(tmp_path / "short.npy", y[:10])
    np.save(tmp_path / "f.npy", z)
    np.save(tmp_path / "flat.npy", z[:, 0])
    bad = z.copy()
    bad[[3, 7]] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"not an array at all")
    (tmp_path / "f.csv").write_text("1,2\n")
    L = ["--labels", str(tmp_path / "l.npy")]
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "flat.npy"), *L], "(N, D)")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "nan.npy"), *L], "first rows [3, 7]")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "f.npy"), "--labels",
                                str(tmp_path / "short.npy")],
             "has shape (10,); it must be (90,): one integer label")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "junk.npy"), *L], "cannot read")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "obj.npy"), *L], "object array")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "f.csv"), *L], ".npy, .npz or .pt")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "none.npy"), *L], "does not exist")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "f.npy")], "needs --labels")
    _refused(tmp_path, capsys, [], "exactly one input")
    _refused(tmp_path, capsys, ["--features", str(tmp_path / "f.npy"), "--run",
                                str(tmp_path)], "exactly one input")


# --- checkpoints: peer key layouts ----------------------------------------------------------------
def _layouts(net):
    sd = net.state_dict()
    lightning = {f"backbone.{k}": v for k, v in sd.items() if not k.startswith("fc.")}
    lightning.update({"projector.0.weight": torch.zeros(2048, 512),
                      "classifier.weight": torch.zeros(10, 512),
                      "momentum_backbone.conv1.weight": torch.zeros(64, 3, 3, 3)})
    children = nn.Sequential(*list(net.children())[:-1])
    return {
        "torchvision": sd,  # conv1.weight, layer1.0..., fc.*
        "solo-learn": {"state_dict": lightning, "epoch": 3, "global_step": 10},
        "lightly": {f"backbone.{k}": v for k, v in children.state_dict().items()},
        "ours-ddp": {"model": {f"module.backbone.{k}": v for k, v in sd.items()
                               if not k.startswith("fc.")}},
    }


@pytest.mark.parametrize("layout", ["torchvision", "solo-learn", "lightly", "ours-ddp"])
def test_checkpoint_layouts_give_the_same_features(tmp_path, layout):
    net = cifar_resnet()
    torch.save(_layouts(net)[layout], tmp_path / "w.pt")
    loaded, info = load_backbone(tmp_path / "w.pt")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net.fc = nn.Identity()
    assert torch.allclose(features_of(loaded, x), features_of(net, x), atol=1e-5)
    assert info["architecture"] == "resnet18" and info["stem"].startswith("cifar")
    if layout == "solo-learn":
        assert "momentum" not in info["layout"] and info["dropped_keys"] >= 3


def test_lightly_resnet_generator_layout(tmp_path):
    lightly_models = pytest.importorskip("lightly.models")
    torch.manual_seed(0)
    gen = lightly_models.ResNetGenerator("resnet-18")
    backbone = nn.Sequential(*list(gen.children())[:-1], nn.AdaptiveAvgPool2d(1)).eval()
    torch.save({f"backbone.{k}": v for k, v in backbone.state_dict().items()}, tmp_path / "w.pt")
    loaded, info = load_backbone(tmp_path / "w.pt")
    assert info["layout"].startswith("lightly-resnet-generator")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(features_of(loaded, x), features_of(backbone, x), atol=1e-5)


def test_resnet50_imagenet_stem(tmp_path):
    net = cifar_resnet("resnet50", cifar=False)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded, info = load_backbone(tmp_path / "w.pt")
    assert info["architecture"] == "resnet50" and info["stem"].startswith("imagenet")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    net.fc = nn.Identity()
    assert torch.allclose(features_of(loaded, x), features_of(net, x), atol=1e-4)


def test_unknown_layout_names_the_keys(tmp_path):
    torch.save({"encoder.stem.weight": torch.zeros(3), "encoder.blocks.0.w": torch.zeros(2)},
               tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"unknown checkpoint layout.*encoder\.stem\.weight"):
        load_backbone(tmp_path / "w.pt")


def test_keys_that_do_not_fit_are_named(tmp_path):
    sd = cifar_resnet().state_dict()
    sd["layer4.1.extra.weight"] = torch.zeros(1)
    del sd["layer3.0.bn2.bias"]
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"missing \['layer3.0.bn2.bias'\].*layer4.1.extra"):
        load_backbone(tmp_path / "w.pt")
    mapped, _, _ = map_resnet_keys(cifar_resnet().state_dict())
    assert not any(k.startswith("fc.") for k in mapped)


def test_checkpoint_needing_unpickling_is_refused(tmp_path):
    sd = cifar_resnet().state_dict()
    torch.save({"state_dict": sd, "hyper_parameters": argparse.Namespace(lr=0.1)},
               tmp_path / "w.ckpt")
    with pytest.raises(ValueError, match="weights only.*arbitrary code"):
        load_backbone(tmp_path / "w.ckpt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_backbone(tmp_path / "junk.pt")
    torch.save({"features": torch.zeros(4, 2), "meta": argparse.Namespace(a=1)},
               tmp_path / "f.pt")
    with pytest.raises(ValueError, match="weights only"):
        load_array(tmp_path / "f.pt")


def _image_folder(root, n=8, size=32):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c, cls in enumerate(("a", "b", "c")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                px = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8)
                px[..., c] = 255  # class colour
                Image.fromarray(px.numpy()).save(folder / f"{i}.png")
    return root


def test_checkpoint_with_images(tmp_path):
    root = _image_folder(tmp_path / "data")
    torch.save(cifar_resnet().state_dict(), tmp_path / "w.pt")
    rep = analyze(tmp_path / "r", checkpoint=str(tmp_path / "w.pt"), data_root=str(root),
                  dataset="imagefolder", **FAST)
    assert rep["source"]["input"] == "checkpoint" and rep["dim"] == 512 and rep["n"] == 24
    assert 0 <= rep["alignment"] <= 4 and rep["local_separation_positive"] == "other view"
    assert rep["classes"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="--data-root"):
        analyze(tmp_path / "r2", checkpoint=str(tmp_path / "w.pt"))


# --- runs ---------------------------------------------------------------------------------------
def test_run_with_and_without_its_images(tmp_path, monkeypatch):
    from cl_analysis.evaluation.evaluate import evaluate_run
    from cl_analysis.training.config import TrainConfig
    from cl_analysis.training.pretrain import pretrain

    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    root = _image_folder(tmp_path / "data")
    cfg = TrainConfig(dataset="imagefolder", data_root=str(root), model="convnet",
                      convnet_widths=(8, 8, 8, 16), embedding_dim=16, image_size=16,
                      batch_size=8, epochs=1, lr_milestones=(), device="cpu", num_threads=1,
                      regime="simclr", loss="info_nce", temperature=0.2, linear_probe=False)
    pretrain(cfg, tmp_path / "run", progress=False)
    rep = analyze(tmp_path / "r", run=str(tmp_path / "run"), **FAST)
    assert rep["source"]["input"] == "run" and rep["dim"] == 16 and "alignment" in rep
    back = analyze(tmp_path / "rb", run=str(tmp_path / "run"), space="backbone", **FAST)
    assert back["dim"] == 16 and back["source"]["space"] == "backbone"
    assert main(["analyze", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "rc"),
                 "--tsne-points", "0"]) == 0
    # moved away from its data: the stored test projections
    evaluate_run(tmp_path / "run", linear=False, progress=False)
    (tmp_path / "run" / "config.json").write_text(json.dumps(
        {**json.loads((tmp_path / "run" / "config.json").read_text()),
         "data_root": str(tmp_path / "gone")}))
    stored = analyze(tmp_path / "r3", run=str(tmp_path / "run"), **FAST)
    assert "embeddings_test.pt" in stored["source"]["note"] and "alignment" not in stored


def test_a_bad_features_file_is_named_before_the_missing_labels(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        analyze(tmp_path / "r", features=str(tmp_path / "none.npy"))
    with pytest.raises(ValueError, match="--run .* does not exist"):
        analyze(tmp_path / "r", run=str(tmp_path / "no-run"))

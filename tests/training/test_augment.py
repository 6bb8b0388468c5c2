"""Batched per-sample augmentation vs torchvision.transforms.v2.functional, image by image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from cl_analysis.training.augment import (
    CIFAR_MEAN,
    CIFAR_STD,
    JITTER_OPS,
    EvalTransform,
    FlipAugment,
    PaperAugment,
    SimCLRAugment,
)

TV_OPS = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast,
          "saturation": F.adjust_saturation, "hue": F.adjust_hue}
LO = ((0 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)).view(1, 3, 1, 1)
HI = ((1 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)).view(1, 3, 1, 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _torchvision_reference(x: torch.Tensor, p: dict, size: int, flip_first: bool) -> torch.Tensor:
    """Apply torchvision v2 functional ops image by image with the recorded parameters."""
    outs = []
    for i in range(len(x)):
        img = F.resized_crop(x[i], int(p["top"][i]), int(p["left"][i]), int(p["height"][i]),
                             int(p["width"][i]), [size, size], antialias=True)
        if flip_first and p["flip"][i]:
            img = F.horizontal_flip(img)
        if p["jitter"][i]:
            for op in p["order"][i].tolist():
                img = TV_OPS[JITTER_OPS[op]](img, float(p[JITTER_OPS[op]][i]))
        if p["grayscale"][i]:
            img = F.rgb_to_grayscale(img, num_output_channels=3)
        if not flip_first and p["flip"][i]:
            img = F.horizontal_flip(img)
        outs.append(F.normalize(img, list(CIFAR_MEAN), list(CIFAR_STD)))
    return torch.stack(outs)  # (B, 3, size, size)


@pytest.mark.parametrize("size", [32, 16, 40], ids=["same", "downsample", "upsample"])
@pytest.mark.parametrize("cls,flip_first", [(PaperAugment, False), (SimCLRAugment, True)])
def test_matches_torchvision_image_by_image(cls, flip_first, size):
    x = torch.rand(24, 3, 32, 32, generator=_gen(0))  # (B, 3, H, W) float in [0, 1]
    x_before = x.clone()
    module = cls(size=size)
    out, params = module(x, generator=_gen(1), return_params=True)
    assert torch.equal(x, x_before)  # the input is never modified
    assert out.shape == (24, 3, size, size) and out.dtype == torch.float32
    ref = _torchvision_reference(x, params, size, flip_first)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)


def test_uint8_input_equals_float_input_and_torchvision():
    x8 = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=_gen(2))
    module = PaperAugment()
    out8, params = module(x8, generator=_gen(3), return_params=True)
    outf = module(x8.float() / 255, generator=_gen(3))
    torch.testing.assert_close(out8, outf, atol=1e-6, rtol=0)
    ref = _torchvision_reference(x8.float() / 255, params, 32, flip_first=False)
    torch.testing.assert_close(out8, ref, atol=2e-5, rtol=0)


def test_non_square_input_and_grayscale_images():
    x = torch.rand(12, 3, 24, 40, generator=_gen(4))
    x[:4] = x[:4, :1]  # grey images: saturation 0, hue undefined
    module = SimCLRAugment(size=32, strength=1.0)
    out, params = module(x, generator=_gen(5), return_params=True)
    torch.testing.assert_close(out, _torchvision_reference(x, params, 32, True), atol=2e-5, rtol=0)


def test_parameters_differ_across_samples():
    _, p = PaperAugment()(torch.rand(64, 3, 32, 32), generator=_gen(6), return_params=True)
    boxes = torch.stack([p["top"], p["left"], p["height"], p["width"]], dim=1)  # (B, 4)
    assert len(torch.unique(boxes, dim=0)) > 32
    for name in JITTER_OPS:
        assert len(torch.unique(p[name])) == 64
    assert len(torch.unique(p["order"], dim=0)) > 8  # of the 24 permutations
    assert torch.equal(p["order"].sort(dim=1).values, torch.arange(4).expand(64, 4))
    assert 0 < int(p["flip"].sum()) < 64 and 0 < int(p["grayscale"].sum()) < 64
    assert bool(p["jitter"].all())  # the paper's jitter is always applied


def test_probabilities_and_ranges_over_a_large_batch():
    _, p = SimCLRAugment(strength=0.5)(torch.rand(4000, 3, 8, 8), generator=_gen(7),
                                       return_params=True)
    assert abs(p["jitter"].float().mean().item() - 0.8) < 0.03
    assert abs(p["grayscale"].float().mean().item() - 0.2) < 0.03
    assert abs(p["flip"].float().mean().item() - 0.5) < 0.03
    for name, (lo, hi) in [("brightness", (0.6, 1.4)), ("hue", (-0.1, 0.1))]:
        assert lo <= p[name].min() and p[name].max() <= hi
        assert p[name].min() < lo + 0.01 and p[name].max() > hi - 0.01
    assert not PaperAugment(flip=False)(torch.rand(64, 3, 8, 8), return_params=True)[1][
        "flip"].any()


def test_crop_parameters_follow_torchvision_distribution():
    n = 3000
    _, p = SimCLRAugment(size=32)(torch.zeros(n, 3, 32, 32), generator=_gen(8),
                                  return_params=True)
    ours = torch.stack([p["height"], p["width"], p["top"], p["left"]], 1).double()  # (n, 4)
    torch.manual_seed(8)
    rrc = v2.RandomResizedCrop(32, scale=(0.08, 1.0))
    tv = torch.tensor([[d["height"], d["width"], d["top"], d["left"]] for d in
                       (rrc.make_params([torch.zeros(3, 32, 32)]) for _ in range(n))]).double()
    assert (ours[:, 0] + ours[:, 2] <= 32).all() and (ours[:, 1] + ours[:, 3] <= 32).all()
    # means of h, w, top, left agree within ~4 standard errors
    se = (ours.std(0) ** 2 / n + tv.std(0) ** 2 / n).sqrt()
    assert ((ours.mean(0) - tv.mean(0)).abs() < 4 * se).all(), (ours.mean(0), tv.mean(0))
    area = (ours[:, 0] * ours[:, 1]) / 1024
    assert area.min() >= 0.06 and area.max() <= 1.0


def test_jitter_without_crop_leaves_the_input_alone():
    from cl_analysis.training.augment import BatchAugment

    x = torch.rand(8, 3, 16, 16, generator=_gen(17))
    x_before = x.clone()
    out, p = BatchAugment(size=None, flip=False, gray_p=0.0)(x, generator=_gen(18),
                                                              return_params=True)
    assert torch.equal(x, x_before) and out.shape == x.shape
    assert "top" not in p and not p["flip"].any()


def test_crop_fallback_is_torchvision_central_crop():
    # scale (1, 1) on a wide 10x40 image never fits, so every sample takes the fallback
    from cl_analysis.training.augment import BatchAugment

    module = BatchAugment(size=8, scale=(1.0, 1.0), jitter=None, gray_p=0.0, flip=False)
    _, p = module(torch.rand(5, 3, 10, 40), return_params=True)
    tv = v2.RandomResizedCrop(8, scale=(1.0, 1.0)).make_params([torch.zeros(3, 10, 40)])
    for key in ("top", "left", "height", "width"):
        assert p[key].tolist() == [tv[key]] * 5


def test_same_seed_same_output_and_global_rng():
    x = torch.rand(8, 3, 32, 32, generator=_gen(9))
    module = SimCLRAugment()
    torch.testing.assert_close(module(x, generator=_gen(10)), module(x, generator=_gen(10)),
                               atol=0, rtol=0)
    assert not torch.allclose(module(x, generator=_gen(10)), module(x, generator=_gen(11)))
    torch.manual_seed(12)
    a = module(x)
    torch.manual_seed(12)
    torch.testing.assert_close(a, module(x), atol=0, rtol=0)


def test_output_statistics_in_range():
    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=_gen(13))
    for module in (PaperAugment(), SimCLRAugment(), FlipAugment(), EvalTransform()):
        out = module(x)
        assert torch.isfinite(out).all()
        assert (out >= LO - 1e-5).all() and (out <= HI + 1e-5).all()
        assert out.mean().abs() < 1.0 and 0.3 < out.std() < 2.0


def test_flip_augment_and_eval_transform():
    x = torch.rand(32, 3, 32, 32, generator=_gen(14))
    out, p = FlipAugment()(x, generator=_gen(15), return_params=True)
    norm = F.normalize(x, list(CIFAR_MEAN), list(CIFAR_STD))
    expected = torch.where(p["flip"][:, None, None, None], norm.flip(-1), norm)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert 0 < int(p["flip"].sum()) < 32
    torch.testing.assert_close(EvalTransform()(x), norm, atol=1e-6, rtol=0)
    for size in (16, 48):
        ref = F.normalize(F.resize(x, [size, size], antialias=True), list(CIFAR_MEAN),
                          list(CIFAR_STD))
        torch.testing.assert_close(EvalTransform(size)(x), ref, atol=2e-5, rtol=0)


def test_module_follows_the_input_device():
    x = torch.rand(4, 3, 32, 32)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    outs = [PaperAugment()(x.to(d), generator=_gen(16)).cpu() for d in devices]
    for out in outs[1:]:  # a CPU generator gives the same views on every device
        torch.testing.assert_close(out, outs[0], atol=1e-4, rtol=0)


def test_clear_errors():
    module = PaperAugment()
    with pytest.raises(ValueError, match="x\\[None\\]"):
        module(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        module(torch.zeros(2, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="strength"):
        SimCLRAugment(strength=3.0)
    with pytest.raises(ValueError, match="size"):
        PaperAugment(size=0)

"""Batched augmentation with per-sample random parameters, on the training device.

``torchvision.transforms.v2`` applied to a batched tensor draws **one** set of parameters for the
whole batch, so every image would get the same crop and the same colour jitter: wrong for
contrastive views. The modules here take a uint8 or float ``(B, 3, H, W)`` batch on any device and
draw every random parameter per sample, then apply the same maths as torchvision's
``RandomResizedCrop`` / ``ColorJitter`` / ``RandomGrayscale`` / ``RandomHorizontalFlip`` /
``Normalize`` (checked image by image against ``torchvision.transforms.v2.functional`` in
``tests/training/test_augment.py``).

* :class:`PaperAugment`: Wang & Liu's CIFAR pipeline (paper.md §2).
* :class:`SimCLRAugment`: SimCLR's CIFAR pipeline (paper.md §5, colour strength s = 0.5, no blur).
* :class:`FlipAugment`: linear-probe training (random flip + normalise).
* :class:`EvalTransform`: test time (resize if needed + normalise).

Each random module's ``forward(x, generator=None, return_params=False)`` returns float32
normalised ``(B, 3, size, size)``; with ``return_params=True`` also a dict of per-sample tensors
(on the generator's device, the CPU by default) describing what was done:

* ``top``, ``left``, ``height``, ``width`` (B,) int64: the crop box in input pixels;
* ``flip`` (B,) bool; ``grayscale`` (B,) bool; ``jitter`` (B,) bool: colour jitter applied;
* ``brightness``, ``contrast``, ``saturation``, ``hue`` (B,) float32: jitter factors;
* ``order`` (B, 4) int64: ``order[b, p]`` is the jitter op at position p for sample b, with ops
  numbered as in torchvision (0 brightness, 1 contrast, 2 saturation, 3 hue).

On an accelerator the step makes no host sync: the parameters, drawn on a CPU generator (so a
run's views are the same on every device), travel in one pinned, non-blocking copy, and the colour
jitter is applied with per-sample masks (``jitter_mode="mask"``) instead of the CPU path's index
lists (``"index"``, cheaper on a CPU). Both modes give the same images.

The resized crop is an exact separable resampling: one (size, H) and one (size, W) weight matrix
per sample, with the weights of torchvision's antialiased bilinear resize (a triangle filter
widened by the downscale factor, normalised over the crop). It therefore matches
``resized_crop(..., antialias=True)`` when upsampling (the usual case at 32x32 output) **and** when
downsampling (e.g. 32x32 images cropped to a 16x16 output). The flip is folded into the column
weights. On CUDA with TF32 matmuls enabled the crop is computed in TF32 (~1e-3 relative error).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .augment_ops import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    grayscale,
    resample,
    resample_weights,
    to_float_batch,
)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the paper code's values (paper.md §2)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # torchvision's fn_idx numbering
JITTER_MODES = ("auto", "index", "mask")
_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _check_prob(name: str, p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


def _jitter_ranges(brightness, contrast, saturation, hue) -> list[tuple[float, float] | None]:
    """ColorJitter ranges as torchvision: [max(0, 1 - v), 1 + v] and [-h, h]; None = op off."""
    ranges = []
    for name, v in zip(JITTER_OPS[:3], (brightness, contrast, saturation)):
        if float(v) < 0:
            raise ValueError(f"{name} jitter must be >= 0, got {v}")
        ranges.append(None if v == 0 else (max(0.0, 1.0 - float(v)), 1.0 + float(v)))
    if not 0.0 <= float(hue) <= 0.5:
        raise ValueError(f"hue jitter must lie in [0, 0.5] (a fraction of the colour wheel), "
                         f"got {hue}; for SimCLR that means strength <= 2.5")
    ranges.append(None if hue == 0 else (-float(hue), float(hue)))
    return ranges


class BatchAugment(nn.Module):
    """Resized crop -> flip -> colour jitter -> grayscale -> normalise, each drawn per sample.

    The building block of :class:`PaperAugment` and :class:`SimCLRAugment`; use those.

    Args:
        size: output side length, or ``None`` to keep the input size without cropping.
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height).
        flip: random horizontal flip with p = 0.5.
        jitter: (brightness, contrast, saturation, hue) strengths as in ``ColorJitter``, or None.
        jitter_p: probability of applying the colour jitter (``RandomApply``).
        gray_p: probability of converting to grayscale (``RandomGrayscale``).
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
    """

    def __init__(self, size: int | None = 32, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3),
                 flip: bool = True, jitter=(0.4, 0.4, 0.4, 0.4), jitter_p: float = 1.0,
                 gray_p: float = 0.2, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__()
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive int (output side in pixels), got {size!r}")
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1 (crop area / image area), "
                             f"got {scale}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max (width/height), got {ratio}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values with std > 0, got {mean}, {std}")
        self.size, self.scale, self.ratio, self.flip = size, tuple(scale), tuple(ratio), flip
        self.ranges = _jitter_ranges(*jitter) if jitter is not None else [None] * 4
        self.jitter_p = _check_prob("jitter_p", jitter_p) if jitter is not None else 0.0
        self.gray_p = _check_prob("gray_p", gray_p)
        # auto: index lists on a CPU, per-sample masks (no host sync) on an accelerator
        self.jitter_mode = "auto"
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def sample_params(self, batch: int, height: int, width: int,
                      generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Draw the per-sample parameters of a batch (see the module docstring for the keys)."""
        dev = generator.device if generator is not None else torch.device("cpu")

        def rand(*shape, dtype=torch.float32):  # U[0, 1)
            return torch.rand(*shape, generator=generator, device=dev, dtype=dtype)

        p = {}
        if self.size is not None:
            p.update(_crop_params(batch, height, width, self.scale, self.ratio, rand))
        p["flip"] = rand(batch) < 0.5 if self.flip else torch.zeros(batch, dtype=torch.bool,
                                                                   device=dev)
        p["jitter"] = rand(batch) < self.jitter_p
        for name, rng in zip(JITTER_OPS, self.ranges):
            lo, hi = rng if rng is not None else ((0.0, 0.0) if name == "hue" else (1.0, 1.0))
            p[name] = lo + (hi - lo) * rand(batch)  # (B,)
        p["order"] = rand(batch, 4).argsort(dim=1)  # (B, 4) a random permutation per sample
        p["grayscale"] = rand(batch) < self.gray_p
        return p

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Apply given per-sample ``params`` (deterministic); returns float32 normalised."""
        x = to_float_batch(x)  # (B, 3, H, W) in [0, 1]
        dev = x.device
        p = params_to(params, dev)  # B numbers each
        if self.size is not None:
            wy = resample_weights(p["top"], p["height"], x.shape[-2], self.size)  # (B, S, H)
            wx = resample_weights(p["left"], p["width"], x.shape[-1], self.size)  # (B, S, W)
            wx = torch.where(p["flip"][:, None, None], wx.flip(1), wx)  # flip = reversed columns
            x = resample(x, wy, wx)  # (B, 3, S, S)
        elif self.flip:
            x = torch.where(p["flip"][:, None, None, None], x.flip(-1), x)  # (B, 3, H, W)
        else:
            x = x.clone()  # the jitter below writes in place; never into the caller's tensor
        if any(r is not None for r in self.ranges):
            mode = self.jitter_mode
            if mode not in JITTER_MODES:
                raise ValueError(f"jitter_mode must be one of {JITTER_MODES}, got {mode!r}")
            if mode == "mask" or (mode == "auto" and dev.type != "cpu"):
                x = self._jitter_masked(x, p)
            else:
                x = self._jitter(x, p, params["jitter"].cpu(), params["order"].cpu())
        if self.gray_p > 0:
            x = torch.where(p["grayscale"][:, None, None, None], grayscale(x).expand_as(x), x)
        return (x - self.mean.to(dev)) / self.std.to(dev)  # (B, 3, S, S)

    def _jitter(self, x: Tensor, p: dict[str, Tensor], applied: Tensor, order: Tensor) -> Tensor:
        """The four colour ops in each sample's own random order (4 positions x 4 ops).

        The samples that get op k at position ``pos`` are picked with index lists built from the
        CPU copies ``applied`` (B,) and ``order`` (B, 4), so a CUDA batch needs no host sync.
        """
        for pos in range(4):
            for op, rng in enumerate(self.ranges):
                if rng is None:
                    continue
                idx = (applied & (order[:, pos] == op)).nonzero().squeeze(1)  # (n,) on the CPU
                if len(idx) == 0:
                    continue
                idx = idx.to(x.device, non_blocking=True)
                factor = p[JITTER_OPS[op]].index_select(0, idx).view(-1, 1, 1, 1)  # (n, 1, 1, 1)
                x.index_copy_(0, idx, _OPS[op](x.index_select(0, idx), factor))  # (n, 3, H, W)
        return x

    def _jitter_masked(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        """The colour ops of :meth:`_jitter` with per-sample masks: no index list, no host sync.

        Each op runs on the whole batch at each of the 4 positions and ``torch.where`` keeps it
        for the samples whose ``order`` puts it there (4x the arithmetic of the index path, in
        exchange for a fixed, sync-free sequence of kernels).
        """
        for pos in range(4):
            for op, rng in enumerate(self.ranges):
                if rng is None:
                    continue
                keep = (p["jitter"] & (p["order"][:, pos] == op)).view(-1, 1, 1, 1)  # (B,1,1,1)
                factor = p[JITTER_OPS[op]].view(-1, 1, 1, 1)
                x = torch.where(keep, _OPS[op](x, factor), x)  # (B, 3, H, W)
        return x

    def forward(self, x: Tensor, generator: torch.Generator | None = None,
                return_params: bool = False):
        """Augment a batch.

        Args:
            x: uint8 ``(B, 3, H, W)`` in [0, 255] or float in [0, 1], on any device.
            generator: source of randomness (CPU or on x's device); default: torch's global RNG.
            return_params: also return the per-sample parameters.

        Returns:
            float32 ``(B, 3, size, size)`` normalised views, and the params dict if asked.
        """
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a batch (B, 3, H, W), got {tuple(getattr(x, 'shape', ()))}"
                             f"; for a single image pass x[None]")
        params = self.sample_params(x.shape[0], x.shape[2], x.shape[3], generator)
        out = self.apply(x, params)
        return (out, params) if return_params else out


def params_to(params: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """``params`` on ``device``; from the CPU to an accelerator in one pinned, non-blocking copy.

    The per-sample tensors (int64 crop boxes and orders, bools, float32 factors) are packed into
    one float64 buffer (every value is exact in float64), copied once, and unpacked on the
    device: one transfer that the host does not wait for, instead of one blocking copy per key.
    """
    device = torch.device(device)
    if all(v.device == device for v in params.values()):
        return dict(params)
    if device.type == "cpu" or any(v.device.type != "cpu" for v in params.values()):
        return {k: v.to(device) for k, v in params.items()}
    keys = list(params)
    flat = [params[k].reshape(len(params[k]), -1).double() for k in keys]  # (B, c_k) each
    widths = [f.shape[1] for f in flat]
    packed = torch.cat(flat, dim=1)
    if torch.cuda.is_available() and device.type == "cuda":
        packed = packed.pin_memory()
    moved = packed.to(device, non_blocking=True).split(widths, dim=1)
    return {k: m.to(params[k].dtype).view(params[k].shape) for k, m in zip(keys, moved)}


def _crop_params(batch: int, height: int, width: int, scale, ratio, rand) -> dict[str, Tensor]:
    """The parameters of torchvision's ``RandomResizedCrop``, vectorised over the batch.

    Ten attempts per sample of (area ~ U(scale) * H * W, log aspect ~ U(log ratio)); the first
    attempt whose box fits is used, with its top-left corner uniform over the valid positions;
    samples with no fitting attempt get torchvision's central-crop fallback.
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * rand(batch, 10, dtype=torch.float64))
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * rand(batch, 10, dtype=torch.float64))  # (B, 10)
    w = torch.round(torch.sqrt(target * aspect)).long()  # (B, 10), round half to even like round()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, 10)
    first = ok.int().argmax(dim=1, keepdim=True)  # (B, 1) first fitting attempt
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], ok.any(dim=1)  # (B,)
    in_ratio = width / height  # central-crop fallback, as torchvision
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    top = (rand(batch, dtype=torch.float64) * (height - h + 1)).floor().long()  # U{0..H-h}
    left = (rand(batch, dtype=torch.float64) * (width - w + 1)).floor().long()
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return {"top": top, "left": left, "height": h, "width": w}


class PaperAugment(BatchAugment):
    """Wang & Liu's CIFAR/SVHN pretraining augmentation (paper.md §2, the authors' code).

    RandomResizedCrop(size, scale=(0.2, 1), ratio=(3/4, 4/3)) -> ColorJitter(0.4, 0.4, 0.4, 0.4)
    (always applied) -> RandomGrayscale(p=0.2) -> RandomHorizontalFlip -> Normalize(CIFAR_MEAN,
    CIFAR_STD). The paper lists the flip but it is commented out in the authors' code snapshot
    (paper.md §2, §9.7); ``flip=False`` reproduces the code.

    Args:
        size: output side length.
        flip: random horizontal flip (paper text: yes; authors' code: no).
        mean: normalisation mean (CIFAR_MEAN by default).
        std: normalisation std (CIFAR_STD by default).
    """

    def __init__(self, size: int = 32, flip: bool = True, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__(size, scale=(0.2, 1.0), flip=flip, jitter=(0.4, 0.4, 0.4, 0.4),
                         jitter_p=1.0, gray_p=0.2, mean=mean, std=std)


class SimCLRAugment(BatchAugment):
    """SimCLR's CIFAR-10 augmentation (paper.md §5, Appendix B.9): no blur, strength s = 0.5.

    RandomResizedCrop(size, scale=(0.08, 1)) -> RandomHorizontalFlip -> RandomApply(ColorJitter(
    0.8s, 0.8s, 0.8s, 0.2s), p=0.8) -> RandomGrayscale(p=0.2) -> Normalize.

    Args:
        size: output side length.
        strength: colour distortion strength s (0.5 for CIFAR, 1.0 for ImageNet; at most 2.5).
        mean: normalisation mean (CIFAR_MEAN by default).
        std: normalisation std (CIFAR_STD by default).
    """

    def __init__(self, size: int = 32, strength: float = 0.5, mean=CIFAR_MEAN, std=CIFAR_STD):
        s = float(strength)
        if not 0.0 <= s <= 2.5:
            raise ValueError(f"strength must lie in [0, 2.5] (hue jitter 0.2*s <= 0.5), got {s}")
        super().__init__(size, scale=(0.08, 1.0), flip=True,
                         jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), jitter_p=0.8, gray_p=0.2,
                         mean=mean, std=std)


class FlipAugment(BatchAugment):
    """Linear-probe training augmentation: random horizontal flip, then normalise (paper.md §2)."""

    def __init__(self, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__(None, flip=True, jitter=None, gray_p=0.0, mean=mean, std=std)


class EvalTransform(nn.Module):
    """Test-time transform: resize to ``size`` if needed (antialiased bilinear), then normalise.

    Args:
        size: output side length, or ``None`` to keep the input size.
        mean: normalisation mean.
        std: normalisation std.
    """

    def __init__(self, size: int | None = None, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__()
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive int or None (keep the input size), got "
                             f"{size!r}")
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Float32 normalised ``(B, 3, size, size)`` from a uint8 or [0, 1] float batch."""
        x = to_float_batch(x)  # (B, 3, H, W)
        b, _, h, w = x.shape
        if self.size is not None and (h, w) != (self.size, self.size):
            zeros = torch.zeros(b, dtype=torch.long, device=x.device)
            wy = resample_weights(zeros, torch.full_like(zeros, h), h, self.size)  # (B, S, H)
            wx = resample_weights(zeros, torch.full_like(zeros, w), w, self.size)  # (B, S, W)
            x = resample(x, wy, wx)  # (B, 3, S, S)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

"""Batched image kernels with per-sample factors, behind :mod:`cl_analysis.augment`.

Every function takes float images in [0, 1] of shape ``(B, 3, H, W)`` and, where it has one, a
per-sample factor broadcastable to ``(B, 1, 1, 1)``. The formulas are those of
``torchvision.transforms.v2.functional`` for float tensors (blend with black / the mean of the
grayscale image / the grayscale image, hue shift through HSV, luma weights 0.2989/0.587/0.114,
clamping to [0, 1]), so a batch here equals a loop of torchvision calls over its images.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale
_HUE_OFFSETS: dict[torch.device, Tensor] = {}  # (1, 3, 1, 1) per device, built once


def _hue_offsets(device: torch.device) -> Tensor:
    """The sector offsets n = (5, 3, 1) of :func:`adjust_hue` on ``device``, created once.

    Building ``torch.tensor(..., device=cuda)`` in every call is a blocking host-to-device copy.
    """
    n = _HUE_OFFSETS.get(device)
    if n is None:
        n = _HUE_OFFSETS[device] = torch.tensor((5.0, 3.0, 1.0), device=device).view(1, 3, 1, 1)
    return n


def to_float_batch(x: Tensor) -> Tensor:
    """A uint8 ``(B, 3, H, W)`` batch scaled to float32 [0, 1], or a float batch as float32."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch (B, 3, H, W), got "
                         f"{tuple(getattr(x, 'shape', ()))}; for a single image pass x[None]")
    if x.dtype == torch.uint8:
        return x.float().div_(255)  # (B, 3, H, W)
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 in [0, 255] or float in [0, 1], got {x.dtype}")
    return x.float()


def resample_weights(start: Tensor, length: Tensor, in_size: int, out_size: int) -> Tensor:
    """Per-sample 1-D resampling matrices of an antialiased bilinear resized crop.

    Output pixel i of sample b is a weighted sum over input pixels ``start[b] ..
    start[b] + length[b] - 1``, with torchvision/PyTorch's antialiased bilinear weights
    (``interpolate(..., mode="bilinear", antialias=True)``): the triangle filter
    ``max(0, 1 - |d| / support)`` at distance d from the sample point ``scale * (i + 0.5)``, with
    ``scale = length / out_size`` and ``support = max(scale, 1)``, normalised over the crop. For
    upsampling (support 1) this is plain bilinear interpolation with edge clamping.

    Args:
        start: ``(B,)`` int64 first input pixel of each crop.
        length: ``(B,)`` int64 crop length in input pixels.
        in_size: input side length.
        out_size: output side length.

    Returns:
        ``(B, out_size, in_size)`` float32 weights; each row sums to 1.
    """
    dev = start.device
    scale = length.float() / out_size  # (B,) input pixels per output pixel
    support = scale.clamp(min=1.0)[:, None, None]  # (B, 1, 1) filter half-width
    centre = scale[:, None] * (torch.arange(out_size, device=dev) + 0.5)  # (B, out) crop coords
    pos = torch.arange(in_size, device=dev) - start[:, None] + 0.5  # (B, in) crop coords
    w = (1 - (pos[:, None, :] - centre[:, :, None]).abs() / support).clamp(min=0)  # (B, out, in)
    inside = (pos >= 0) & (pos < length[:, None])  # (B, in) pixel lies in the crop
    w = w * inside[:, None, :]
    return w / w.sum(dim=-1, keepdim=True)  # (B, out, in)


def resample(x: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
    """Separable per-sample resampling ``wy @ x @ wx^T`` of ``x`` ``(B, 3, H, W)``.

    Args:
        x: images ``(B, 3, H, W)``.
        wy: row weights ``(B, S, H)`` from :func:`resample_weights`.
        wx: column weights ``(B, T, W)``.

    Returns:
        ``(B, 3, S, T)`` resampled images.
    """
    b, c, h, w = x.shape
    s, t = wy.shape[1], wx.shape[1]
    rows = torch.bmm(wy, x.permute(0, 2, 1, 3).reshape(b, h, c * w))  # (B, S, 3 W)
    out = torch.bmm(rows.view(b, s * c, w), wx.transpose(1, 2))  # (B, S 3, T)
    return out.view(b, s, c, t).permute(0, 2, 1, 3).contiguous()  # (B, 3, S, T)


def grayscale(x: Tensor) -> Tensor:
    """Luma ``(B, 1, H, W)`` of RGB ``(B, 3, H, W)``."""
    r, g, b = x.unbind(dim=1)  # (B, H, W) each
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]).unsqueeze(1)  # (B, 1, H, W)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (x * factor + other * (1 - factor)).clamp_(0, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with black: ``clamp(x * factor)``."""
    return (x * factor).clamp_(0, 1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the mean of each image's grayscale version."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with each image's grayscale version."""
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate the hue by ``factor`` turns (in [-0.5, 0.5]), as torchvision's RGB -> HSV -> RGB.

    A hue rotation keeps V = max and S = (max - min) / max, so the round trip collapses to
    ``channel_c = max - (max - min) * clamp(min(k_c, 4 - k_c), 0, 1)`` with
    ``k_c = (n_c + 6 h') mod 6``, ``n = (5, 3, 1)`` for (r, g, b) and h' the rotated hue: the
    closed form of HSV -> RGB's six-sector table. Grey pixels (max = min) are unchanged.
    """
    r, g, b = x.unbind(dim=1)  # (B, H, W) each
    maxc, minc = x.amax(dim=1), x.amin(dim=1)  # (B, H, W)
    delta = maxc - minc
    d = torch.where(delta > 0, delta, 1.0)
    # hue in sixths of a turn, in (-1, 5]; ties go to r, then g, as in torchvision
    h6 = torch.where(maxc == r, (g - b) / d,
                     torch.where(maxc == g, (b - r) / d + 2.0, (r - g) / d + 4.0))  # (B, H, W)
    n = _hue_offsets(x.device)
    k = h6.unsqueeze(1) + (n + 6.0 * factor.view(-1, 1, 1, 1))  # (B, 3, H, W)
    k -= 6.0 * torch.floor(k * (1.0 / 6.0))  # mod 6
    ramp = torch.minimum(k, 4.0 - k).clamp_(0, 1)  # (B, 3, H, W)
    return maxc.unsqueeze(1) - delta.unsqueeze(1) * ramp  # (B, 3, H, W)

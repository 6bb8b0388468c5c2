"""Frozen features of a pretrained model, and the guard that the model stayed frozen.

``extract_features`` runs a model in eval mode without gradients over uint8 images;
``snapshot_model`` / ``assert_model_unchanged`` check that evaluation changed no parameter, buffer,
``requires_grad`` flag or grad (a bug class seen in peers' linear-evaluation code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_choice

__all__ = ["extract_features", "snapshot_model", "assert_model_unchanged", "MirrorThen"]


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def extract_features(model: nn.Module, images_uint8: Tensor, *, transform, batch_size: int = 512,
                     device: torch.device | str | None = None, which: str = "backbone",
                     progress: bool = True) -> Tensor | tuple[Tensor, Tensor]:
    """Features of a uint8 image tensor, batch by batch, with the model in eval mode.

    Every module's ``training`` flag is restored afterwards (also when an error is raised).

    Args:
        model: a ``ContrastiveModel`` (``features(x)`` -> h, ``forward(x)`` -> z, ``head``).
        images_uint8: uint8 (N, 3, H, W) images on the CPU (or any device).
        transform: callable mapping a uint8 batch on ``device`` to a float (B, 3, S, S) batch,
            e.g. ``EvalTransform(size)`` or a seeded ``PaperAugment``.
        batch_size: images per forward pass.
        device: where the batches go; must be the model's device (default).
        which: "backbone" -> h (N, F); "projection" -> L2-normalised z (N, D); "both" -> (h, z).
        progress: show a tqdm bar.

    Returns:
        float32 CPU tensor(s) as selected by ``which``.

    Raises:
        ValueError: on a bad image tensor, ``which`` or ``batch_size``, or a device mismatch.
    """
    check_choice("which", which, ("backbone", "projection", "both"))
    images = images_uint8
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a uint8 (N, 3, H, W) tensor, got "
                         f"{tuple(getattr(images, 'shape', ())) or type(images).__name__}")
    if images.shape[0] == 0 or isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"need a non-empty image tensor and batch_size >= 1, got "
                         f"{images.shape[0]} images and batch_size={batch_size!r}")
    model_device = _model_device(model)
    device = torch.device(device) if device is not None else model_device
    if device.type != model_device.type or (device.index or 0) != (model_device.index or 0):
        raise ValueError(f"the model is on {model_device} but device={device}; move it first "
                         f"with model.to({str(device)!r})")
    flags = {m: m.training for m in model.modules()}
    model.eval()
    hs, zs = [], []
    try:
        for i in tqdm(range(0, images.shape[0], int(batch_size)), desc=f"features ({which})",
                      disable=not progress, leave=False):
            x = transform(images[i:i + int(batch_size)].to(device, non_blocking=True))  # (B,3,S,S)
            if which == "projection":
                zs.append(model(x).float().cpu())  # (B, D) unit rows
                continue
            h = model.features(x)  # (B, F)
            hs.append(h.float().cpu())
            if which == "both":
                z = model.head(h) if hasattr(model, "head") else model(x)
                zs.append(F.normalize(z.float(), dim=1).cpu())  # (B, D)
    finally:
        for module, flag in flags.items():
            module.training = flag
    if which == "both":
        return torch.cat(hs), torch.cat(zs)
    return torch.cat(hs if which == "backbone" else zs)


def snapshot_model(model: nn.Module) -> dict:
    """Copy every parameter, buffer, ``requires_grad`` flag and ``.grad`` of ``model``."""
    params = {name: (p.detach().clone(), p.requires_grad,
                     None if p.grad is None else p.grad.detach().clone())
              for name, p in model.named_parameters()}
    return {"params": params,
            "buffers": {name: b.detach().clone() for name, b in model.named_buffers()}}


def assert_model_unchanged(model: nn.Module, snapshot: dict, where: str = "evaluation") -> None:
    """Raise ``RuntimeError`` if any parameter, buffer, ``requires_grad`` or grad differs.

    Args:
        model: the (supposedly frozen) model.
        snapshot: the output of :func:`snapshot_model` taken before ``where``.
        where: names the stage in the error message.

    Raises:
        RuntimeError: naming the first entries that changed (a backbone that is not frozen
            inflates linear-probe numbers; peers.md §3.3).
    """
    changed: list[str] = []
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    if params.keys() != snapshot["params"].keys() or buffers.keys() != snapshot["buffers"].keys():
        changed.append("the set of parameter/buffer names")
    for name, (value, requires_grad, grad) in snapshot["params"].items():
        p = params.get(name)
        if p is None:
            continue
        if p.requires_grad != requires_grad:
            changed.append(f"{name}.requires_grad")
        if p.shape != value.shape or not torch.equal(p.detach(), value):
            changed.append(name)
        if (p.grad is None) != (grad is None) or (grad is not None
                                                  and not torch.equal(p.grad, grad)):
            changed.append(f"{name}.grad")
    for name, value in snapshot["buffers"].items():
        b = buffers.get(name)
        if b is not None and (b.shape != value.shape or not torch.equal(b, value)):
            changed.append(f"buffer {name}")
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        shown = ", ".join(changed[:5]) + more
        raise RuntimeError(f"the backbone is not frozen: {shown} changed during {where}; "
                           "evaluation must run the model in eval mode without gradients or "
                           "optimizer steps on its parameters")


class MirrorThen:
    """Flip a uint8 batch (B, 3, H, W) horizontally, then apply ``transform``."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, images: Tensor) -> Tensor:
        """The mirrored batch, transformed."""
        return self.transform(images.flip(-1))



"""The paper's linear-classification protocol on frozen backbone features (Wang & Liu §5.1).

A single linear layer is trained on the global-avg-pooled backbone features for 100 epochs with
SGD (lr 30, momentum 0.9, weight decay 0, batch 256), the lr multiplied by 0.2 at epochs 40, 60
and 80; weights start from N(0, 0.01²) and the bias from 0; top-1 is measured on the test set.

CIFAR's only linear-train augmentation is a horizontal flip. Because the backbone is frozen and in
eval mode, the features of every train image and of its mirror image are computed once, and each
epoch every sample independently picks one of the two with probability 0.5. This is exactly the
flip-augmented protocol (eval-mode BN makes every feature independent of its batch), at the cost
of one (N, F) gather per epoch instead of a backbone pass per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_finite, check_matrix
from ..metrics import per_class_accuracy
from ..training.augment import EvalTransform
from .features import MirrorThen, assert_model_unchanged, extract_features, snapshot_model

__all__ = ["linear_probe", "probe_from_model", "snapshot_model", "assert_model_unchanged"]


def _check_inputs(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                  test_labels: Tensor, train_features_flipped: Tensor | None) -> None:
    for name, feats, labels in (("train", train_features, train_labels),
                                ("test", test_features, test_labels)):
        check_matrix(f"{name}_features", feats)
        check_finite(f"{name}_features", feats)
        if not isinstance(labels, Tensor) or labels.dim() != 1:
            raise ValueError(f"{name}_labels must be a 1-D integer tensor (N,)")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"{name}_labels must hold integer class ids, got {labels.dtype}")
        if labels.shape[0] != feats.shape[0]:
            raise ValueError(f"{name}_labels has {labels.shape[0]} entries but {name}_features "
                             f"has {feats.shape[0]} rows; pass one label per feature row")
        if feats.shape[0] == 0:
            raise ValueError(f"{name}_features is empty; the probe needs at least one sample")
        if int(labels.min()) < 0:
            raise ValueError(f"{name}_labels must be >= 0, got min {int(labels.min())}")
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(f"test_features has {test_features.shape[1]} dims but train_features "
                         f"has {train_features.shape[1]}; extract both with the same backbone")
    if train_features_flipped is not None:
        check_matrix("train_features_flipped", train_features_flipped)
        check_finite("train_features_flipped", train_features_flipped)
        if train_features_flipped.shape != train_features.shape:
            raise ValueError(f"train_features_flipped must match train_features "
                             f"{tuple(train_features.shape)}, got "
                             f"{tuple(train_features_flipped.shape)} (row i = mirror of row i)")


def _epoch_order(n: int, generator: torch.Generator, flip: bool,
                 device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """One epoch's sample order (n,) and per-sample flip coins (n,), indexed by sample.

    Drawn on the CPU generator (the coins are drawn even without flips, so the shuffles do not
    depend on ``flip``), then moved to ``device``.
    """
    perm = torch.randperm(n, generator=generator)  # (n,)
    use_flip = (torch.rand(n, generator=generator) < 0.5) & flip  # (n,) one coin per sample
    return perm.to(device), use_flip.to(device)


@torch.no_grad()
def _top1(classifier: nn.Linear, features: Tensor, labels: Tensor, chunk: int = 8192) -> float:
    correct = 0
    for i in range(0, features.shape[0], chunk):
        logits = classifier(features[i : i + chunk])  # (chunk, C)
        correct += int((logits.argmax(dim=1) == labels[i : i + chunk]).sum())
    return correct / features.shape[0]


def linear_probe(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                 test_labels: Tensor, *, epochs: int = 100, lr: float = 30.0,
                 milestones: Sequence[int] = (40, 60, 80), gamma: float = 0.2,
                 weight_decay: float = 0.0, momentum: float = 0.9, batch_size: int = 256,
                 train_features_flipped: Tensor | None = None, num_classes: int | None = None,
                 init_std: float = 0.01, seed: int = 0, device: torch.device | str | None = None,
                 progress: bool = True) -> dict:
    """Train one linear layer on frozen features with the paper's schedule; report test top-1.

    The lr of epoch ``e`` (0-based) is ``lr * gamma ** #{m in milestones : m <= e}``, i.e. 30 for
    epochs 0-39, 6 for 40-59, 1.2 for 60-79 and 0.24 for 80-99 (the authors' 1-based
    ``epoch > 40`` rule).

    Args:
        train_features: (N, F) frozen features of the un-flipped train images.
        train_labels: (N,) integer class ids.
        test_features: (M, F) frozen features of the test images (no augmentation).
        test_labels: (M,) integer class ids.
        epochs: training epochs (paper: 100).
        lr: initial learning rate (paper: 30.0).
        milestones: epochs at which the lr is multiplied by ``gamma`` (paper: 40, 60, 80).
        gamma: lr decay factor (paper: 0.2).
        weight_decay: L2 penalty (paper: 0).
        momentum: SGD momentum (paper: 0.9).
        batch_size: mini-batch size (paper: 256).
        train_features_flipped: (N, F) features of the horizontally flipped train images; each
            epoch every sample independently uses this row with probability 0.5. ``None``
            trains without flip augmentation.
        num_classes: number of classes; defaults to ``max(label) + 1`` over train and test.
        init_std: std of the normal weight init (paper.md: 0.01); the bias starts at 0. (The
            stored copy of the authors' ``LinearClassifierResNet`` uses sqrt(2 / n_classes),
            with the 0.01 init commented out; with lr 30 the init hardly matters.)
        seed: seeds the weight init, the shuffling and the flip choices.
        device: where to train; defaults to the device of ``train_features``.
        progress: show a tqdm bar over epochs.

    Returns:
        ``{"top1": test top-1 of the final classifier (fraction in [0, 1]),
        "best_top1": best per-epoch test top-1 (what the authors' script logs as best_acc),
        "train_top1": top-1 of the final classifier on the un-flipped train features,
        "history": [{"epoch", "lr", "loss", "train_top1" (running, on the augmented batches),
        "test_top1", "flip_fraction"} per epoch],
        "per_class_top1": test accuracy of each class (final classifier; None: no test rows)}``.

    Raises:
        ValueError: on mis-shaped or non-finite inputs or invalid hyper-parameters.
    """
    _check_inputs(train_features, train_labels, test_features, test_labels, train_features_flipped)
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if not lr > 0 or not gamma > 0 or weight_decay < 0 or not 0 <= momentum < 1:
        raise ValueError(f"need lr > 0, gamma > 0, weight_decay >= 0, 0 <= momentum < 1; got lr="
                         f"{lr}, gamma={gamma}, weight_decay={weight_decay}, momentum={momentum}")
    milestones = sorted(int(m) for m in milestones)
    n_seen = int(max(train_labels.max(), test_labels.max())) + 1
    num_classes = n_seen if num_classes is None else int(num_classes)
    if num_classes < n_seen:
        raise ValueError(f"num_classes={num_classes} but labels go up to {n_seen - 1}")

    device = torch.device(device) if device is not None else train_features.device
    x_train = train_features.detach().to(device, torch.float32)  # (N, F)
    x_flip = None if train_features_flipped is None else (
        train_features_flipped.detach().to(device, torch.float32))  # (N, F)
    y_train = train_labels.detach().to(device, torch.int64)  # (N,)
    x_test = test_features.detach().to(device, torch.float32)  # (M, F)
    y_test = test_labels.detach().to(device, torch.int64)  # (M,)

    generator = torch.Generator().manual_seed(int(seed))
    # skip_init: no draw from the global RNG; the paper's init comes from `generator`
    classifier = torch.nn.utils.skip_init(nn.Linear, x_train.shape[1], num_classes, device=device)
    with torch.no_grad():
        weight = torch.randn(num_classes, x_train.shape[1], generator=generator) * init_std
        classifier.weight.copy_(weight)  # (C, F)
        classifier.bias.zero_()  # (C,)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=gamma)
    loss_fn = nn.CrossEntropyLoss()

    history: list[dict] = []
    n = x_train.shape[0]
    bar = tqdm(range(int(epochs)), desc="linear probe", disable=not progress, leave=False)
    for epoch in bar:
        classifier.train()
        epoch_lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device)  # device accumulators: no per-step sync
        correct = torch.zeros((), dtype=torch.int64, device=device)
        perm, use_flip = _epoch_order(n, generator, x_flip is not None, device)
        x_epoch = x_train if x_flip is None else torch.where(use_flip[:, None], x_flip, x_train)
        x_epoch, y_epoch = x_epoch[perm], y_train[perm]  # (N, F), (N,) in this epoch's order
        for i in range(0, n, int(batch_size)):
            xb, yb = x_epoch[i:i + int(batch_size)], y_epoch[i:i + int(batch_size)]  # (B, F), (B,)
            logits = classifier(xb)  # (B, C)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.detach().argmax(dim=1) == yb).sum()
        scheduler.step()
        classifier.eval()
        test_top1 = _top1(classifier, x_test, y_test)
        loss_sum, correct = float(loss_sum) / n, int(correct) / n
        history.append({"epoch": epoch, "lr": epoch_lr, "loss": loss_sum, "train_top1": correct,
                        "test_top1": test_top1, "flip_fraction": int(use_flip.sum()) / n})
        bar.set_postfix(loss=f"{loss_sum:.3f}", test_top1=f"{test_top1:.4f}")
    check_finite("linear classifier weight", classifier.weight.detach())
    with torch.no_grad():
        pred = torch.cat([classifier(x_test[i:i + 8192]).argmax(dim=1)
                          for i in range(0, x_test.shape[0], 8192)])  # (M,)
    return {"top1": history[-1]["test_top1"], "best_top1": max(h["test_top1"] for h in history),
            "train_top1": _top1(classifier.eval(), x_train, y_train), "history": history,
            "per_class_top1": per_class_accuracy(pred, y_test, num_classes)}


def probe_from_model(model: nn.Module, train_set, test_set, *, image_size: int,
                     batch_size: int = 512, device: torch.device | str | None = None,
                     progress: bool = True, **probe_kwargs) -> dict:
    """Extract frozen backbone features and run :func:`linear_probe` (the paper's protocol).

    Features of the train images, of their mirror images and of the test images are extracted
    in eval mode without gradients; the model's parameters, buffers, ``requires_grad`` flags and
    grads are compared before and after, and any change raises.

    Args:
        model: a ``ContrastiveModel`` (uses ``model.features``: global-avg-pooled backbone).
        train_set: ``ImageDataset`` with uint8 ``images`` (N, 3, H, W) and ``labels`` (N,).
        test_set: ``ImageDataset`` for the test split.
        image_size: side the ``EvalTransform`` resizes to.
        batch_size: extraction batch size (the probe's own batch is ``probe_kwargs``).
        device: where to extract and train; defaults to the model's device.
        progress: show tqdm bars.
        **probe_kwargs: forwarded to :func:`linear_probe` (epochs, lr, milestones, seed, ...).

    Returns:
        The dict of :func:`linear_probe`.

    Raises:
        RuntimeError: if the backbone changed during extraction or probing.
    """
    if device is None:
        device = next(model.parameters()).device
    transform = EvalTransform(image_size)
    snapshot = snapshot_model(model)
    kwargs = dict(batch_size=batch_size, device=device, which="backbone", progress=progress)
    h_train = extract_features(model, train_set.images, transform=transform, **kwargs)  # (N, F)
    h_flip = extract_features(model, train_set.images, transform=MirrorThen(transform), **kwargs)
    h_test = extract_features(model, test_set.images, transform=transform, **kwargs)  # (M, F)
    assert_model_unchanged(model, snapshot, "feature extraction")
    result = linear_probe(h_train, torch.as_tensor(train_set.labels), h_test,
                          torch.as_tensor(test_set.labels), train_features_flipped=h_flip,
                          device=device, progress=progress, **probe_kwargs)
    assert_model_unchanged(model, snapshot, "the linear probe")
    return result

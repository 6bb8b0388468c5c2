"""Evaluation of a pretrained model: features, linear probe, kNN and the paper's embedding metrics.

:func:`evaluate_model` measures (a) clean test-set metrics on the L2-normalised projections z of
the test images and of two ``PaperAugment`` views of each, kNN accuracy and the paper's linear
probe on frozen backbone features, and (b) when the run's memory bank is given, the authors' own
protocol (paper.md §1 "How the authors actually computed": augmented *training* images as queries
against the whole bank, training labels). The model runs in eval mode without gradients, and a
guard checks that no parameter, buffer, ``requires_grad`` flag or grad changed (peers.md §3.3).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import gradients, metrics
from .._checks import check_choice, check_temperature
from ..training import data
from ..training.augment import EvalTransform, PaperAugment
from ..training.checkpoint import load_checkpoint, save_atomic, write_json_atomic
from ..training.models import build_model
from .features import (
    MirrorThen,
    _model_device,
    assert_model_unchanged,
    extract_features,
    snapshot_model,
)
from .linear_probe import linear_probe

__all__ = ["extract_features", "evaluate_model", "evaluate_run", "linear_probe", "EVAL_KEYS"]

EVAL_KEYS = (
    "linear_top1", "linear_best_top1", "linear_train_top1", "linear_epochs", "linear_test_curve",
    "knn_top1", "knn_top5", "knn_top1_backbone", "knn_protocol", "knn_k", "knn_by_protocol",
    "knn_per_class", "linear_per_class",
    "uniformity", "tolerance", "alignment", "positive_similarity", "penalty_entropy",
    "effective_negatives", "local_separation_mean", "local_separation_k",
    "n_train", "n_test", "temperature", "image_size", "feature_dim", "embedding_dim", "seed")
BANK_KEYS = (
    "uniformity_bank", "tolerance_bank", "positive_similarity_bank", "penalty_entropy_bank",
    "effective_negatives_bank", "local_separation_bank_mean", "bank_protocol_samples",
    "knn_top1_bank")
N_SAVED_ANCHORS = 200  # anchors of the saved local-separation box plot (the authors' Fig. 8)


def _augmented(model, images, augment, seed, **kw) -> Tensor:
    """L2-normalised projections of one seeded random view per image (N, D)."""
    generator = torch.Generator().manual_seed(int(seed))
    return extract_features(model, images, transform=partial(augment, generator=generator),
                            which="projection", **kw)


def _gradient_stats(sim_rows, positive: Tensor, temperature: float, k: int, chunk: int = 1024):
    """Mean entropy / effective negatives and per-anchor local separation, in row chunks.

    ``sim_rows(a, b)`` returns the (b - a, M) similarity rows a..b-1.
    """
    ent, eff, sep = [], [], []
    for a in range(0, positive.shape[0], chunk):
        s, p = sim_rows(a, a + chunk), positive[a:a + chunk]  # (c, M), (c,)
        ent.append(gradients.penalty_entropy(s, p, temperature))  # (c,)
        eff.append(gradients.effective_negatives(s, p, temperature))  # (c,)
        sep.append(metrics.local_separation(s, p, k=k))  # (c, k + 1)
    return torch.cat(ent).mean().item(), torch.cat(eff).mean().item(), torch.cat(sep).cpu()


def _bank_protocol(model, train_set, bank, n_queries, augment, temperature, k, seed, saved, kw,
                   knn, test_z, test_y):
    """The authors' metrics: augmented train images as queries against the whole memory bank."""
    bank = getattr(bank, "bank", bank)  # MemoryBank or (N, D) tensor
    if not isinstance(bank, Tensor) or bank.dim() != 2 or bank.shape[0] != len(train_set):
        raise ValueError(f"bank must be (N_train, D) = ({len(train_set)}, D) and row-aligned with "
                         f"train_set, got {tuple(getattr(bank, 'shape', ()))}; pass the run's "
                         "training subset")
    if int(n_queries) < 1:
        raise ValueError(f"bank_protocol_samples must be >= 1, got {n_queries}")
    device = kw["device"]
    bank = F.normalize(bank.detach().float().to(device), dim=1)  # rows are unit after updates
    n = min(int(n_queries), len(train_set))
    idx = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(int(seed) + 3))
    idx = idx[:n].sort().values  # (Q,)
    q = _augmented(model, train_set.images[idx], augment, seed + 4, **kw).to(device)  # (Q, D)
    y = torch.as_tensor(train_set.labels).long()
    ent, eff, sep = _gradient_stats(lambda a, b: q[a:b] @ bank.T, idx.to(device), temperature, k)
    saved["local_separation_bank"] = sep.float()
    return {
        "uniformity_bank": metrics.uniformity_bank(q, bank, t=2.0).item(),
        "tolerance_bank": metrics.tolerance_bank(q, y[idx], bank, y).item(),
        "positive_similarity_bank": sep[:, 0].mean().item(),
        "knn_top1_bank": float(metrics.knn_accuracy(bank, y, test_z, test_y, **knn)),
        "penalty_entropy_bank": ent, "effective_negatives_bank": eff,
        "local_separation_bank_mean": sep.mean(dim=0).tolist(), "bank_protocol_samples": n,
    }


def evaluate_model(model: nn.Module, train_set, test_set, *, image_size: int, temperature: float,
                   knn: dict | None = None, linear: bool | dict = True, bank=None,
                   bank_protocol_samples: int = 1000, local_separation_k: int = 10,
                   augment=None, batch_size: int = 512, seed: int = 0,
                   device: torch.device | str | None = None, progress: bool = True,
                   arrays: dict | None = None) -> dict:
    """Evaluate a model on a train/test split; returns a flat JSON-serialisable dict.

    Keys (test-set metrics use the clean L2-normalised projections z unless said otherwise):

    * ``linear_top1``, ``linear_best_top1``, ``linear_train_top1``, ``linear_epochs``,
      ``linear_test_curve``: the paper's linear probe on frozen backbone features h with flip
      augmentation (final-epoch test top-1, best epoch's, final train top-1, epochs, per-epoch
      test top-1); all ``None`` when ``linear`` is false.
    * ``knn_top1`` (weighted kNN on z; default InstDisc k=200, exp(s/0.07) votes, k capped at
      N_train), ``knn_top5`` (the same vote, label among the 5 top-voted classes),
      ``knn_top1_backbone`` (same on L2-normalised h), ``knn_protocol``, ``knn_k``,
      ``knn_by_protocol`` ({protocol: accuracy on z} for every ``metrics.KNN_PROTOCOLS`` entry),
      ``knn_per_class`` / ``linear_per_class`` (test accuracy of each class, a list indexed by
      label, ``metrics.per_class_accuracy``; for long-tailed training sets, issue 11 §3).
    * ``uniformity`` (t=2, in [0, 4t], larger = more uniform), ``tolerance`` (class-conditional
      mean cosine, in [-1, 1]).
    * ``alignment`` (alpha=2, in [0, 4]), ``positive_similarity`` (mean cosine): two views of
      each test image. ``penalty_entropy`` (nats), ``effective_negatives`` (exp of it): means over
      test anchors of the relative-penalty distribution r_i (Eq. 5) at ``temperature``; anchor =
      view 1 of image i, candidates = view 2 of every test image (positive: image i), so
      ``effective_negatives`` is bounded by n_test - 1 (9,999 on CIFAR-10), not by a bank size.
      All accuracies here are fractions in [0, 1].
      ``local_separation_mean``: k+1 means (positive, n1..nk) over the same anchors;
      ``local_separation_k``.
    * only with ``bank`` (the authors' protocol: ``bank_protocol_samples`` augmented train images
      vs the whole bank, train labels; queries embedded in eval mode, the authors logged them in
      train mode): ``uniformity_bank``, ``tolerance_bank``, ``positive_similarity_bank``,
      ``penalty_entropy_bank``, ``effective_negatives_bank``, ``local_separation_bank_mean``,
      ``bank_protocol_samples`` (queries used), ``knn_top1_bank`` (test z vs the bank).
    * ``n_train``, ``n_test``, ``temperature``, ``image_size``, ``feature_dim``,
      ``embedding_dim``, ``seed``.

    Args:
        model: a ``ContrastiveModel`` on ``device``; left unchanged (checked).
        train_set: ``ImageDataset``; the bank rows follow its order.
        test_set: ``ImageDataset`` of the test split.
        image_size: side length the transforms produce.
        temperature: the run's tau (for the penalty entropy).
        knn: kwargs of ``metrics.knn_accuracy`` (``protocol``, ``k``, ``temperature``, ...).
        linear: run the probe (True), skip it (False), or a dict of ``linear_probe`` kwargs.
        bank: the run's ``MemoryBank`` or its (N_train, D) tensor, or None.
        bank_protocol_samples: training queries of the bank protocol (authors: 1000).
        local_separation_k: hardest negatives per anchor (Fig. 8: 10).
        augment: view augmentation called with a ``generator`` keyword (default
            ``PaperAugment(image_size)``).
        batch_size: extraction batch size.
        seed: seeds the views, the bank queries and the probe.
        device: the model's device (default).
        progress: show tqdm bars.
        arrays: if a dict, filled with the tensors ``evaluate_run`` saves.

    Raises:
        ValueError: on bad arguments. RuntimeError: if the model changed during evaluation.
    """
    temperature = check_temperature(temperature)
    n_train, n_test, k = len(train_set), len(test_set), int(local_separation_k)
    if n_train < 2 or n_test <= k:
        raise ValueError(f"need >= 2 train and > local_separation_k={k} test images, got "
                         f"{n_train} and {n_test}; use larger subsets or a smaller k")
    device = torch.device(device) if device is not None else _model_device(model)
    y_tr = torch.as_tensor(train_set.labels).long()  # (N,)
    y_te = torch.as_tensor(test_set.labels).long()  # (M,)
    augment = augment if augment is not None else PaperAugment(image_size)
    kw = dict(batch_size=batch_size, device=device, progress=progress)
    snapshot = snapshot_model(model)
    clean = EvalTransform(image_size)

    h_tr, z_tr = extract_features(model, train_set.images, transform=clean, which="both", **kw)
    h_te, z_te = extract_features(model, test_set.images, transform=clean, which="both", **kw)
    out: dict = {"n_train": n_train, "n_test": n_test, "temperature": temperature,
                 "image_size": int(image_size), "feature_dim": int(h_tr.shape[1]),
                 "embedding_dim": int(z_tr.shape[1]), "seed": int(seed)}

    knn = {"protocol": "instdisc", **(knn or {})}
    check_choice("knn protocol", knn["protocol"], metrics.KNN_PROTOCOLS)
    if knn.get("k") is None:  # the protocol's k, capped at the training-set size
        knn["k"] = min(metrics.KNN_PROTOCOLS[knn["protocol"]].get("k", 200), n_train)
    on = partial(Tensor.to, device=device)
    out["knn_top1"] = float(metrics.knn_accuracy(on(z_tr), y_tr, on(z_te), y_te, **knn))
    out["knn_top5"] = float(metrics.knn_accuracy(on(z_tr), y_tr, on(z_te), y_te, top=5, **knn))
    out["knn_top1_backbone"] = float(metrics.knn_accuracy(
        F.normalize(on(h_tr), dim=1), y_tr, F.normalize(on(h_te), dim=1), y_te, **knn))
    out["knn_protocol"], out["knn_k"] = knn["protocol"], int(knn["k"])
    n_classes = len(test_set.classes) if getattr(test_set, "classes", None) else None
    out["knn_per_class"] = metrics.per_class_accuracy(
        metrics.knn_predict(on(z_tr), y_tr, on(z_te), **knn).cpu(), y_te, n_classes)
    # every peer's protocol on the same features (peers.md §3.7), k capped at N_train
    out["knn_by_protocol"] = {
        name: float(metrics.knn_accuracy(on(z_tr), y_tr, on(z_te), y_te, protocol=name,
                                         k=min(settings.get("k", 200), n_train)))
        for name, settings in metrics.KNN_PROTOCOLS.items()}

    out["uniformity"] = metrics.uniformity(on(z_te), t=2.0).item()
    out["tolerance"] = metrics.tolerance(on(z_te), y_te).item()
    z1 = on(_augmented(model, test_set.images, augment, seed + 1, **kw))  # (M, D) view 1
    z2 = on(_augmented(model, test_set.images, augment, seed + 2, **kw))  # (M, D) view 2
    out["alignment"] = metrics.alignment(z1, z2).item()
    out["positive_similarity"] = (z1 * z2).sum(dim=1).mean().item()
    # anchor = view 1 of test image i; candidates = view 2 of every test image (positive: column i)
    ent, eff, sep = _gradient_stats(lambda a, b: z1[a:b] @ z2.T,
                                    torch.arange(n_test, device=device), temperature, k)
    out.update(penalty_entropy=ent, effective_negatives=eff, local_separation_k=k,
               local_separation_mean=sep.mean(dim=0).tolist())
    anchors = torch.randperm(n_test, generator=torch.Generator().manual_seed(int(seed)))
    saved = {"z": z_te.half(), "labels": y_te, "local_separation": sep.float(),
             "local_separation_anchors": anchors[:N_SAVED_ANCHORS].sort().values}

    if bank is not None:
        out.update(_bank_protocol(model, train_set, bank, bank_protocol_samples, augment,
                                  temperature, k, seed, saved, kw, knn, on(z_te), y_te))

    out.update(dict.fromkeys(("linear_top1", "linear_best_top1", "linear_train_top1",
                              "linear_epochs", "linear_test_curve", "linear_per_class")))
    if linear:
        probe = {"seed": seed, **({} if linear is True else dict(linear))}
        h_flip = extract_features(model, train_set.images, transform=MirrorThen(clean),
                                  which="backbone", **kw)  # (N, F) mirror images
        assert_model_unchanged(model, snapshot, "feature extraction")
        res = linear_probe(h_tr, y_tr, h_te, y_te, train_features_flipped=h_flip, device=device,
                           progress=progress, **probe)
        out.update(linear_top1=res["top1"], linear_best_top1=res["best_top1"],
                   linear_train_top1=res["train_top1"], linear_epochs=len(res["history"]),
                   linear_test_curve=[h["test_top1"] for h in res["history"]],
                   linear_per_class=res["per_class_top1"])
    assert_model_unchanged(model, snapshot, "evaluation")
    if arrays is not None:
        arrays.update(saved)
    return out


def evaluate_run(run_dir, *, train_set=None, test_set=None, linear: bool | dict | None = None,
                 progress: bool = True, device: str | None = None, probe_epochs: int | None = None,
                 data_root: str | None = None) -> dict:
    """Evaluate a run directory; write ``eval.json`` and ``embeddings_test.pt`` atomically.

    Rebuilds the model from ``config.json``, loads ``checkpoint.pt`` (``model`` and, in the
    memory-bank regime, ``bank``) and prepares the data as ``pretrain`` did (same stratified
    subset and seed, downsizing), so the bank rows line up with the training images. The test
    set is used in full, or a stratified ``eval_test_size`` of it (seeded). The evaluation
    settings (``linear_probe``, ``probe_epochs``, ``eval_test_size``) come from the run's config;
    the arguments below override them. ``embeddings_test.pt`` holds ``z`` (float16 (M, D) test
    projections) and ``labels`` (M,) in the test set's order (class-sorted for class folders:
    subsample at random with :meth:`cl_analysis.study.runs.Run.test_embeddings`),
    ``local_separation``
    ((M, k+1) per test anchor), ``local_separation_anchors`` (200 seeded anchors for Fig. 8 box
    plots) and, with a bank, ``local_separation_bank`` ((Q, k+1) in the authors' protocol).

    Args:
        run_dir: directory with ``config.json`` and ``checkpoint.pt`` (a finished run).
        train_set: the training split given to ``pretrain`` (None: load from the data root).
        test_set: the test split (None: load from the data root).
        linear: True / False to run / skip the probe, or a dict of ``linear_probe`` kwargs;
            None: the config's ``linear_probe``.
        progress: show tqdm bars.
        device: evaluation device (default: the config's ``device``).
        probe_epochs: probe epochs, milestones 40/60/80 of 100 scaled proportionally
            (10 -> 4/6/8); None: the config's ``probe_epochs``.
        data_root: where the data lives now (a run moved to another machine); None: the
            recorded ``data_root``. Location only: the run's result does not depend on it.

    Returns:
        The dict of :func:`evaluate_model` plus ``run_dir``, ``dataset``, ``model``, ``head``,
        ``regime``, ``loss``, ``epochs`` (configured), ``pretrain_epochs`` (completed).

    Raises:
        ValueError: no run there, an unfinished run (completed < configured epochs), or a
            device that is not available.
    """
    from ..training.config import TrainConfig
    from ..training.environment import resolve_device
    from ..training.pretrain import prepare_data

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} does not exist; pass a run directory written by "
                         f"`cl-analysis pretrain`")
    if probe_epochs is not None and (isinstance(probe_epochs, bool) or int(probe_epochs) < 1):
        raise ValueError(f"probe_epochs must be an integer >= 1, got {probe_epochs!r}")
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} has no config.json; pass a run directory written by "
                         f"`cl-analysis pretrain`")
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    if data_root is not None:
        cfg = cfg.replace(data_root=str(data_root))
    if not (run_dir / "checkpoint.pt").is_file():
        raise ValueError(f"{run_dir} has no checkpoint.pt: the run has not finished an epoch; "
                         f"train it with `cl-analysis pretrain --out {run_dir} --resume`")
    device = resolve_device(device if device is not None else cfg.device)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    done = int(state.get("epoch", -1))
    if done < cfg.epochs:
        raise ValueError(f"{run_dir} is unfinished: {done} of {cfg.epochs} epochs trained; "
                         f"finish it with `cl-analysis pretrain --out {run_dir} --resume`")
    model = build_model(cfg.model, cfg.head, cfg.embedding_dim, cfg.convnet_widths)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    bank = state.get("bank")
    bank = bank.get("bank") if isinstance(bank, dict) else bank  # MemoryBank state dict

    train_set, test_set = prepare_data(cfg.replace(monitor_size=None), train_set, test_set,
                                       progress)
    if test_set is None:
        test_set = data.load_dataset(cfg.dataset, cfg.data_root, "test", progress=progress)
        if test_set.images.shape[-1] > cfg.image_size:
            test_set = data.resize(test_set, cfg.image_size)
    if cfg.eval_test_size is not None and cfg.eval_test_size < len(test_set):
        test_set = data.subset(test_set, cfg.eval_test_size, seed=cfg.seed)
    linear = cfg.linear_probe if linear is None else linear
    epochs = cfg.probe_epochs if probe_epochs is None else int(probe_epochs)
    if linear and epochs != 100:
        scaled = tuple(sorted({m for m in (round(m * epochs / 100) for m in (40, 60, 80))
                               if 1 <= m < epochs}))  # distinct, inside the run
        linear = {"epochs": epochs, "milestones": scaled,
                  **({} if linear is True else dict(linear))}
    arrays: dict = {}
    out = evaluate_model(model, train_set, test_set, image_size=cfg.image_size,
                         temperature=cfg.temperature, linear=linear, bank=bank, seed=cfg.seed,
                         device=device, progress=progress, arrays=arrays)
    out.update(run_dir=str(run_dir), dataset=cfg.dataset, model=cfg.model, head=cfg.head,
               regime=cfg.regime, loss=cfg.loss, epochs=cfg.epochs, pretrain_epochs=done,
               class_names=list(test_set.classes))
    save_atomic(arrays, run_dir / "embeddings_test.pt")
    write_json_atomic(out, run_dir / "eval.json")
    return out

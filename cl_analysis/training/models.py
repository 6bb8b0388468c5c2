"""Backbones and projection heads: ResNet-18 with the CIFAR stem, a small ConvNet, linear/MLP heads.

Wang & Liu (CVPR 2021, §5.1) train a ResNet-18 whose first conv is 3x3 (stride 1, no max-pool in
the authors' code) followed by a single linear layer 512 -> 128; the embedding is L2-normalised
onto the unit hypersphere. SimCLR (Chen et al. 2020, §2.1) uses a one-hidden-layer MLP head instead.
"""

from __future__ import annotations

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from .._checks import check_choice

MODEL_NAMES = ("resnet18", "convnet")
HEAD_KINDS = ("linear", "mlp", "bn_linear")


def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """ResNet-18 with the CIFAR stem, returning 512-d pooled features (Wang & Liu §5.1).

    torchvision's ``resnet18`` with ``conv1`` replaced by a 3x3, stride-1, padding-1 conv without
    bias, the first max-pool removed and ``fc`` replaced by ``Identity``. The ImageNet stem on
    32-px images is a known reproduction killer (0.765 accuracy in lightly#1419, peers.md §3.3).

    Args:
        num_classes: passed to torchvision; irrelevant once ``fc`` is dropped.

    Returns:
        A module mapping (B, 3, H, W) images to (B, 512) features, with ``feature_dim = 512``.
    """
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.feature_dim = 512
    return net


class ConvNet(nn.Module):
    """A small CPU backbone: 4 blocks of conv3x3-BN-ReLU, 2x2 max-pool after all but the last.

    Global average pooling gives ``widths[-1]``-d features. Works at 16x16 (-> 2x2 before pooling)
    and 32x32 (-> 4x4).

    Args:
        widths: output channels of the 4 blocks.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) == 0 or any(w <= 0 for w in widths):
            raise ValueError(f"widths must be positive channel counts, e.g. (32, 64, 128, 256); "
                             f"got {widths}")
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.feature_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, widths[-1]) globally average-pooled features."""
        return self.body(x).mean(dim=(2, 3))  # (B, C)


class ProjectionHead(nn.Module):
    """Projection g(h): a linear layer (Wang & Liu) or a one-hidden-layer ReLU MLP (SimCLR §2.1).

    Args:
        in_dim: backbone feature dimension (512 for ResNet-18).
        out_dim: embedding dimension (128 in both papers).
        kind: "linear" (the paper's ``nn.Linear(512, 128)``), "mlp" (in -> hidden -> out), or
            "bn_linear" (``BatchNorm1d`` then linear: centres the post-ReLU features, whose
            shared mean otherwise maps every image to nearly the same z at initialisation; the
            quick CPU profile uses it to avoid an early memory-bank collapse, see profiles.py).
        hidden_dim: MLP width; defaults to ``in_dim`` as in SimCLR.
    """

    def __init__(self, in_dim: int, out_dim: int = 128, kind: str = "linear",
                 hidden_dim: int | None = None):
        super().__init__()
        check_choice("head kind", kind, HEAD_KINDS)
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"in_dim and out_dim must be positive, got {in_dim}, {out_dim}")
        self.in_dim, self.out_dim, self.kind = int(in_dim), int(out_dim), kind
        if kind == "linear":
            self.net = nn.Linear(in_dim, out_dim)
        elif kind == "bn_linear":
            self.net = nn.Sequential(nn.BatchNorm1d(in_dim), nn.Linear(in_dim, out_dim))
        else:
            hidden = int(hidden_dim or in_dim)
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, out_dim))

    def forward(self, h: Tensor) -> Tensor:
        """(B, in_dim) features -> (B, out_dim) unnormalised projections."""
        return self.net(h)


class ContrastiveModel(nn.Module):
    """Backbone f plus projection head g; ``forward`` returns z = g(f(x)) / ||g(f(x))||.

    The L2-normalised z lies on the unit hypersphere where s_ij = z_i^T z_j (Wang & Liu §3);
    ``features`` returns the backbone representation h used for linear evaluation.

    Args:
        backbone: maps (B, 3, H, W) to (B, feature_dim); must expose ``feature_dim``.
        head: a ``ProjectionHead`` whose ``in_dim`` matches the backbone.
    """

    def __init__(self, backbone: nn.Module, head: ProjectionHead):
        super().__init__()
        feature_dim = getattr(backbone, "feature_dim", None)
        if feature_dim is None:
            raise ValueError("backbone needs a feature_dim attribute (its output width); "
                             "set backbone.feature_dim = <int>")
        if head.in_dim != feature_dim:
            raise ValueError(f"head.in_dim={head.in_dim} does not match the backbone's "
                             f"feature_dim={feature_dim}; build the head with in_dim={feature_dim}")
        self.backbone, self.head = backbone, head
        self.feature_dim = int(feature_dim)
        self.embedding_dim = head.out_dim

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, feature_dim) backbone features h."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, embedding_dim) L2-normalised float32 embeddings z."""
        z = self.head(self.backbone(x))  # (B, D), bf16 under autocast
        return F.normalize(z.float(), dim=1)  # (B, D) float32, unit norm


def build_model(name: str = "resnet18", head: str = "linear", embedding_dim: int = 128,
                widths: tuple[int, ...] | None = None,
                hidden_dim: int | None = None) -> ContrastiveModel:
    """Build a ``ContrastiveModel`` by name.

    Args:
        name: "resnet18" (CIFAR stem, the paper) or "convnet" (small CPU model).
        head: "linear" (the paper) or "mlp" (SimCLR).
        embedding_dim: output dimension of the head (128 in the paper).
        widths: ConvNet block widths; ignored for resnet18.
        hidden_dim: MLP hidden width (defaults to the feature dimension).

    Returns:
        The model, in training mode, on the CPU.
    """
    check_choice("model", name, MODEL_NAMES)
    if name == "resnet18":
        backbone = resnet18_cifar()
    else:
        backbone = ConvNet(tuple(widths) if widths is not None else (32, 64, 128, 256))
    proj = ProjectionHead(backbone.feature_dim, embedding_dim, kind=head, hidden_dim=hidden_dim)
    return ContrastiveModel(backbone, proj)

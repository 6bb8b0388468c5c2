import pytest
import torch
from torch import nn

from cl_analysis.training.models import (
    ContrastiveModel,
    ConvNet,
    ProjectionHead,
    build_model,
    resnet18_cifar,
)


def test_resnet18_cifar_stem_and_features():
    net = resnet18_cifar()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1) and net.conv1.bias is None
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)
    net.eval()
    with torch.no_grad():
        h = net(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, 512) and net.feature_dim == 512


@pytest.mark.parametrize("size", [16, 32])
def test_convnet_shapes(size):
    net = ConvNet((8, 16, 16, 24))
    assert net(torch.randn(3, 3, size, size)).shape == (3, 24)
    assert net.feature_dim == 24
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 4 and len(pools) == 3


def test_projection_heads():
    lin = ProjectionHead(512, 128)
    assert isinstance(lin.net, nn.Linear) and lin(torch.randn(4, 512)).shape == (4, 128)
    mlp = ProjectionHead(64, 32, kind="mlp")
    assert [type(m) for m in mlp.net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert mlp.net[0].out_features == 64  # hidden defaults to in_dim (SimCLR)
    assert ProjectionHead(64, 32, kind="mlp", hidden_dim=100).net[0].out_features == 100
    with pytest.raises(ValueError, match="head.*linear, mlp, bn_linear.*bogus"):
        ProjectionHead(64, 32, kind="bogus")


@pytest.mark.parametrize("head", ["linear", "mlp", "bn_linear"])
def test_contrastive_model_normalised(head):
    model = build_model("convnet", head=head, embedding_dim=16, widths=(8, 8, 8, 8))
    x = torch.randn(5, 3, 16, 16)
    z = model(x)
    assert z.shape == (5, 16) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    assert model.features(x).shape == (5, 8) and model.feature_dim == 8


def test_build_model_resnet_and_errors():
    model = build_model()
    assert model.feature_dim == 512 and isinstance(model.head.net, nn.Linear)
    assert model.head.net.out_features == 128
    with pytest.raises(ValueError, match="model.*resnet18, convnet.*vgg"):
        build_model("vgg")
    with pytest.raises(ValueError, match="in_dim"):
        ContrastiveModel(ConvNet((4, 4, 4, 4)), ProjectionHead(8, 4))


def test_bn_linear_head_spreads_initial_embeddings():
    # post-ReLU pooled features share a large mean, so a plain linear head maps every image to
    # nearly the same z at initialisation; centring them first (bn_linear) spreads z out.
    torch.manual_seed(0)
    x = torch.rand(256, 3, 16, 16)

    def mean_cosine(head):
        torch.manual_seed(1)
        model = build_model("convnet", head=head, widths=(32, 64, 128, 256)).train()
        with torch.no_grad():
            z = model(x)
        off_diag = (z @ z.T).fill_diagonal_(float("nan"))
        return off_diag.nanmean().item()

    linear, centred = mean_cosine("linear"), mean_cosine("bn_linear")
    assert linear > 0.5, linear
    assert centred < 0.2, centred

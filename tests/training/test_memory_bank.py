import math

import pytest
import torch
import torch.nn.functional as F

from cl_analysis.training.memory_bank import MemoryBank


def test_init_matches_authors():
    bank = MemoryBank(1000, 128, generator=torch.Generator().manual_seed(0))
    stdv = 1 / math.sqrt(128 / 3)
    assert bank.bank.shape == (1000, 128)
    assert bank.bank.abs().max() <= stdv and bank.bank.min() < -0.9 * stdv
    # not normalised at init, but norm ~1 in expectation (E v^2 = 1 / D)
    norms = bank.bank.norm(dim=1)
    assert not torch.allclose(norms, torch.ones(1000)) and abs(norms.mean() - 1) < 0.05
    normed = MemoryBank(10, 8, normalize_init=True)
    torch.testing.assert_close(normed.bank.norm(dim=1), torch.ones(10))


def test_similarity_no_grad_into_bank():
    bank = MemoryBank(20, 8)
    z = F.normalize(torch.randn(4, 8), dim=1).requires_grad_()
    s = bank.similarity(z)
    assert s.shape == (4, 20) and s.dtype == torch.float32
    torch.testing.assert_close(s, z.detach() @ bank.bank.T)
    s.sum().backward()
    assert z.grad is not None and not bank.bank.requires_grad
    assert len(list(bank.parameters())) == 0


def test_update_formula_and_fill():
    bank = MemoryBank(10, 4, momentum=0.5, generator=torch.Generator().manual_seed(1))
    old = bank.bank.clone()
    idx = torch.tensor([3, 7])
    z = F.normalize(torch.randn(2, 4), dim=1).requires_grad_()
    bank.update(idx, z)
    expected = F.normalize(0.5 * old[idx] + 0.5 * z.detach(), dim=1)
    torch.testing.assert_close(bank.bank[idx], expected)
    others = torch.ones(10, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(bank.bank[others], old[others])
    bank.fill(torch.tensor([0]), z[:1])
    torch.testing.assert_close(bank.bank[0], z[0].detach())


def test_momentum_zero_copies_embedding():
    bank = MemoryBank(5, 3, momentum=0.0)
    z = F.normalize(torch.randn(5, 3), dim=1)
    bank.update(torch.arange(5), z)
    torch.testing.assert_close(bank.bank, z)


def test_state_dict_round_trip():
    a = MemoryBank(6, 4, generator=torch.Generator().manual_seed(2))
    b = MemoryBank(6, 4, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a.bank, b.bank)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.bank, b.bank) and list(a.state_dict()) == ["bank"]


def test_errors():
    with pytest.raises(ValueError, match="momentum"):
        MemoryBank(10, 4, momentum=1.0)
    bank = MemoryBank(10, 4)
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        bank.similarity(torch.randn(2, 5))
    with pytest.raises(ValueError, match="indices: expected values in"):
        bank.update(torch.tensor([10]), torch.randn(1, 4))

"""The search network: sizes the DARTS code has, alpha kept outside the weights, the mixed op's arithmetic."""

import pytest
import torch
from torch import nn

from rarts.ops import PRIMITIVES
from rarts.supernet import NUM_EDGES, NUM_OPS, Architecture, MixedOp, SearchCell, SearchNetwork


def tiny(layers=3, classes=5):
    torch.manual_seed(0)
    return SearchNetwork(C=4, num_classes=classes, layers=layers), Architecture()


def test_darts_sizes():
    """16 channels, 8 cells, 10 classes: 1,930,618 weights (the DARTS code's count) and 2 x 14 x 8 alphas."""
    net = SearchNetwork(16, 10, 8)
    assert sum(p.numel() for p in net.parameters()) == 1_930_618
    arch = Architecture()
    assert arch.alpha_normal.shape == (NUM_EDGES, NUM_OPS) == (14, 8)
    assert sum(p.numel() for p in arch.parameters()) == 224


def test_alpha_initialisation_is_small():
    torch.manual_seed(0)
    arch = Architecture()
    for alpha in arch.alphas():
        assert 2e-4 < alpha.std().item() < 5e-3
        assert alpha.abs().max().item() < 1e-2


@pytest.mark.parametrize("layers, expected", [(8, [2, 5]), (3, [1, 2]), (5, [1, 3])])
def test_reductions_at_one_and_two_thirds(layers, expected):
    net = SearchNetwork(C=4, num_classes=3, layers=layers)
    assert [i for i, cell in enumerate(net.cells) if cell.reduction] == expected


def test_weights_and_alpha_are_disjoint_and_complete():
    """Weights live in the network, alpha in the Architecture; a forward-backward reaches every one of them."""
    net, arch = tiny()
    weight_ids = {id(p) for p in net.parameters()}
    assert weight_ids.isdisjoint({id(p) for p in arch.parameters()})
    assert list(arch.parameters()) == arch.alphas()
    assert not any(p.shape == (NUM_EDGES, NUM_OPS) for p in net.parameters())
    x = torch.randn(2, 3, 8, 8)
    loss = nn.functional.cross_entropy(net(x, arch), torch.tensor([0, 1]))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for alpha in arch.alphas():
        assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_forward_shape_and_architecture_or_weights_pair():
    net, arch = tiny()
    x = torch.randn(2, 3, 8, 8)
    out = net(x, arch)
    assert out.shape == (2, 5)
    assert torch.equal(out, net(x, arch.weights()))


def test_two_weight_sets_share_one_architecture():
    """RARTS's w and y: two plain instances of one network, one architecture object."""
    torch.manual_seed(0)
    arch = Architecture()
    w, y = SearchNetwork(4, 3, 3), SearchNetwork(4, 3, 3)
    x = torch.randn(2, 3, 8, 8)
    (w(x, arch).sum() + y(x, arch).sum()).backward()
    assert arch.alpha_normal.grad is not None


def test_search_cells_use_batchnorm_without_affine():
    net, _ = tiny()
    for cell in net.cells:
        assert isinstance(cell, SearchCell)
        for m in cell.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert not m.affine


def test_mixed_op_skips_none_and_puts_bn_after_pools():
    mixed = MixedOp(4, 1)
    assert [PRIMITIVES[k] for k in mixed.op_index] == list(PRIMITIVES[1:])
    for k, op in zip(mixed.op_index, mixed.ops):
        if "pool" in PRIMITIVES[k]:
            assert isinstance(op[-1], nn.BatchNorm2d) and not op[-1].affine


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_of_its_ops(stride):
    torch.manual_seed(0)
    mixed = MixedOp(4, stride)
    x = torch.randn(2, 4, 8, 8)
    w = torch.softmax(torch.randn(NUM_OPS), dim=0)
    expected = sum(w[k] * op(x) for k, op in zip(mixed.op_index, mixed.ops))  # none adds w[0] * 0
    assert torch.allclose(mixed(x, w), expected, atol=1e-6)
    one_hot_none = torch.zeros(NUM_OPS)
    one_hot_none[PRIMITIVES.index("none")] = 1.0
    assert torch.count_nonzero(mixed(x, one_hot_none)) == 0


def test_mixed_op_gradient_in_float64():
    """Autograd's gradient with respect to the mixing weights against central differences."""
    torch.manual_seed(0)
    mixed = MixedOp(2, 1).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    w = torch.softmax(torch.randn(NUM_OPS, dtype=torch.float64), dim=0).requires_grad_()
    assert torch.autograd.gradcheck(lambda w: mixed(x, w), (w,), eps=1e-6, atol=1e-5)

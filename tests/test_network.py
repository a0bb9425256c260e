"""The final networks: DARTS's parameter counts, forward and backward of tiny ones, auxiliary head, drop-path."""

import torch
from torch import nn

from rarts.flops import count_mult_adds, count_operations
from rarts.genotype import KNOWN_GENOTYPES, Genotype
from rarts.network import (
    INPUT_SIZES,
    NetworkCIFAR,
    NetworkImageNet,
    build_network,
    count_params,
    drop_path,
    summarize_network,
)

V2 = KNOWN_GENOTYPES["DARTS_V2"]


def test_darts_v2_parameter_counts():
    """The counts DARTS reports (auxiliary head excluded): 3,349,342 on CIFAR-10 and 4,718,752 on ImageNet."""
    cifar = build_network(V2, "cifar10")
    assert (cifar.stem[0].out_channels, len(cifar.cells)) == (108, 20)
    assert count_params(cifar) == 3_349_342
    assert count_params(cifar, include_auxiliary=True) == 3_825_768
    imagenet = build_network(V2, "imagenet")
    assert count_params(imagenet) == 4_718_752
    assert build_network(V2, "cifar100").classifier.out_features == 100


def test_darts_v2_cifar_mult_adds():
    ops = count_operations(build_network(V2, "cifar10"), INPUT_SIZES["cifar10"])
    assert ops["mult_adds"] == 528_359_040
    assert ops["all_layers"] == 547_473_034


def test_darts_v2_imagenet_mult_adds():
    """529.9M by convolutions and linear layers; 544.59M by the ptflops rule (quark0/darts issue 46 quotes
    544.59M from ptflops); the DARTS paper's 574M is not reproduced by either."""
    summary = summarize_network(build_network(V2, "imagenet"), INPUT_SIZES["imagenet"])
    assert summary["mult_adds"] == 529_911_552
    assert summary["operations"]["all_layers"] == 544_589_032
    assert summary["mult_adds_auxiliary_head"] == 1_554_432


def test_mult_adds_by_formula_on_a_single_convolution():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 3, groups=8, stride=2, padding=1))
    assert count_mult_adds(conv, (3, 10, 10)) == 10 * 10 * 8 * 3 * 9 + 5 * 5 * 8 * 1 * 9


def tiny_cifar(auxiliary=True, layers=3):
    torch.manual_seed(0)
    return NetworkCIFAR(C=4, num_classes=10, layers=layers, auxiliary=auxiliary, genotype=V2)


def test_tiny_cifar_forward_backward_and_auxiliary_head():
    model = tiny_cifar()
    x = torch.randn(2, 3, 32, 32)  # the auxiliary head needs the 8x8 map of a 32x32 input
    logits, logits_aux = model(x)
    assert logits.shape == logits_aux.shape == (2, 10)
    (logits.sum() + 0.4 * logits_aux.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    logits, logits_aux = model(x)
    assert logits_aux is None


def test_auxiliary_head_leaves_the_main_logits_unchanged():
    """With 3 cells the auxiliary head hangs on the last cell; an in-place ReLU there would alter the logits."""
    model = tiny_cifar()
    x = torch.randn(2, 3, 32, 32)
    with_aux, _ = model(x)
    model.auxiliary_head = None
    without_aux, _ = model(x)
    assert torch.equal(with_aux, without_aux)


def test_tiny_imagenet_forward_backward():
    torch.manual_seed(0)
    model = NetworkImageNet(C=4, num_classes=7, layers=3, auxiliary=False, genotype=V2)
    logits, logits_aux = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7) and logits_aux is None
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_other_cell_shapes_build():
    """Three nodes, a concat that leaves one out: the network follows the genotype."""
    g = Genotype(
        normal=(("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("avg_pool_3x3", 0))
        + (("max_pool_3x3", 3), ("sep_conv_5x5", 1)),
        normal_concat=(2, 4),
        reduce=(("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 2), ("sep_conv_3x3", 1))
        + (("dil_conv_3x3", 3), ("skip_connect", 0)),
        reduce_concat=(2, 3, 4),
    )
    torch.manual_seed(0)
    model = NetworkCIFAR(C=4, num_classes=3, layers=3, auxiliary=False, genotype=g)
    assert model(torch.randn(2, 3, 8, 8))[0].shape == (2, 3)


def test_drop_path_is_identity_at_zero_and_scales_kept_samples():
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    assert drop_path(x, 0.0) is x
    torch.manual_seed(0)
    ones = torch.ones(2000, 1, 1, 1, dtype=torch.float64)
    y = drop_path(ones, 0.25)
    assert y.dtype == torch.float64 and y.device == ones.device
    assert set(y.unique().tolist()) <= {0.0, 1.0 / 0.75}
    assert abs(y.mean().item() - 1.0) < 0.05  # the expectation is kept


def test_drop_path_is_off_in_eval_and_on_in_training():
    model = tiny_cifar(auxiliary=False)
    x = torch.randn(4, 3, 8, 8)
    model.eval()
    reference, _ = model(x)
    model.drop_path_prob = 0.5
    assert torch.equal(model(x)[0], reference)
    model.train()
    model.drop_path_prob = 0.0
    torch.manual_seed(1)
    plain, _ = model(x)
    model.drop_path_prob = 0.5
    torch.manual_seed(1)
    dropped, _ = model(x)
    assert not torch.allclose(plain, dropped)

"""Our axial transformer against the `axial_attention` library it replaces: the same parameters
under the same names, the same initial weights for a seed, and the same forward and gradients."""

import pytest
import torch

from anomalyclip.model.axial import AxialTransformer
from anomalyclip.model.temporal import TemporalModel
from naive import LibraryAxial

E, N, L, HEADS = 32, 8, 4, 8


def library(depth: int) -> LibraryAxial:
    return LibraryAxial(dim=E, depth=depth, heads=HEADS, dim_heads=None, reversible=True, axial_pos_emb_shape=(N, L))


@pytest.mark.parametrize("depth", [1, 2])
def test_same_names_order_shapes_and_initial_weights(depth):
    torch.manual_seed(3)
    ours = AxialTransformer(E, depth, HEADS, N, L)
    torch.manual_seed(3)
    lib = library(depth)
    a, b = ours.state_dict(), lib.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # created in the library's order: a seed gives the same model


def assert_close_at_scale(a: torch.Tensor, b: torch.Tensor, rel: float, msg: str = "") -> None:
    """max |a - b| within `rel` of max |b|: the library's backward rebuilds activations by
    inverting each block, whose rounding grows with depth, so an elementwise relative bound is
    meaningless on small entries."""
    err, scale = (a - b).abs().max().item(), b.abs().max().item()
    assert err <= rel * scale, f"{msg}: max |diff| {err:.3g} vs scale {scale:.3g}"


def _perturbed_pair(depth: int):
    torch.manual_seed(0)
    lib = library(depth)
    with torch.no_grad():
        for p in lib.parameters():  # off the initialisation (unit norms, zero biases)
            p.add_(0.1 * torch.randn_like(p))
    ours = AxialTransformer(E, depth, HEADS, N, L)
    ours.load_state_dict(lib.state_dict())
    return ours, lib


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("recompute", [False, True])
def test_forward_and_gradients_equal_the_library(depth, recompute):
    ours, lib = _perturbed_pair(depth)
    x = torch.randn(3, N, L, E, generator=torch.Generator().manual_seed(1))
    target = torch.randn(3, N, L, E, generator=torch.Generator().manual_seed(2))
    xo, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yl = ours(xo, recompute=recompute), lib(xl)  # the library runs its reversible backward
    torch.testing.assert_close(yo, yl, atol=1e-5, rtol=1e-5)
    ((yo - target) ** 2).sum().backward()
    ((yl - target) ** 2).sum().backward()
    assert_close_at_scale(xo.grad, xl.grad, 1e-5, "input")
    grads_lib = dict(lib.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert_close_at_scale(p.grad, grads_lib[name].grad, 1e-5, name)


def test_temporal_model_keys_are_the_released_ones():
    """The authors' checkpoints name these keys under `net.temporal_model.` (FORMATS.md)."""
    keys = set(TemporalModel(40, E, 1, HEADS, N, L).state_dict())
    assert {"projection.weight", "classifier.layer_norm.weight", "classifier.linear.bias",
            "axial_attn.pos_emb.param_0", "axial_attn.layers.blocks.0.f.net.fn.fn.to_q.weight",
            "axial_attn.layers.blocks.0.g.net.fn.norm.bias", "axial_attn.layers.blocks.1.f.net.0.g",
            "axial_attn.layers.blocks.1.g.net.3.weight"} <= keys

"""The density loss against hand-computed values, finite differences and a naive reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deft import density_loss, saturation

# eps = 1 makes s(a) = a²/(a²+1) easy by hand: s(0)=0, s(±1)=1/2, s(2)=4/5, s(3)=9/10.
LAYER_A = torch.tensor(
    [
        [[0.0, 1.0], [3.0, -1.0]],  # s = [[0, .5], [.9, .5]] → token means [.25, .7]
        [[2.0, 2.0], [0.0, 0.0]],  # s = [[.8, .8], [0, 0]]  → token means [.8, 0]
    ]
)
LAYER_B = torch.tensor(
    [
        [[1.0], [0.0]],  # token means [.5, 0]
        [[3.0], [3.0]],  # token means [.9, .9]
    ]
)
MASK = torch.tensor([[1, 1], [1, 0]])  # sample 1's second token is padding


def test_saturation_by_hand_with_the_paper_eps():
    a = torch.tensor([0.0, math.sqrt(1e-7), -math.sqrt(3e-7), 1.0])
    expected = torch.tensor([0.0, 0.5, 0.75, 1.0 / (1.0 + 1e-7)])
    torch.testing.assert_close(saturation(a), expected, rtol=1e-6, atol=0.0)


def test_loss_by_hand_counts_padding_without_a_mask():
    # layer A: n = [(.25+.7)/2, (.8+0)/2] = [.475, .4]; layer B: n = [.25, .9]
    per_sample = density_loss([LAYER_A, LAYER_B], eps=1.0, reduce=False)
    torch.testing.assert_close(per_sample, torch.tensor([[0.475, 0.4], [0.25, 0.9]]))
    loss = density_loss([LAYER_A, LAYER_B], eps=1.0)
    torch.testing.assert_close(loss, torch.tensor((0.475 + 0.4 + 0.25 + 0.9) / 4))


def test_loss_by_hand_with_a_mask_averages_over_real_tokens_only():
    # sample 1 keeps only its first token: layer A n = .8 (not .4), layer B n = .9 (unchanged)
    per_sample = density_loss([LAYER_A, LAYER_B], MASK, eps=1.0, reduce=False)
    torch.testing.assert_close(per_sample, torch.tensor([[0.475, 0.8], [0.25, 0.9]]))
    loss = density_loss([LAYER_A, LAYER_B], MASK, eps=1.0)
    torch.testing.assert_close(loss, torch.tensor((0.475 + 0.8 + 0.25 + 0.9) / 4))
    # an all-ones mask is the reference behaviour
    ones = torch.ones(2, 2)
    torch.testing.assert_close(density_loss(LAYER_A, ones, eps=1.0), density_loss(LAYER_A, eps=1.0))


def test_virtual_prompt_tokens_before_the_mask_count_as_real():
    # 2 virtual tokens prepended (prompt tuning): the mask covers only the last 2 positions.
    a = torch.tensor([[[1.0], [3.0], [0.0], [2.0]]])  # s = [.5, .9, 0, .8]
    mask = torch.tensor([[0, 1]])  # real: virtual .5, virtual .9, (pad 0 dropped), .8
    torch.testing.assert_close(
        density_loss(a, mask, eps=1.0, virtual_tokens=2), torch.tensor((0.5 + 0.9 + 0.8) / 3)
    )
    # a mask that already covers the virtual tokens is taken as it is
    full = torch.tensor([[1, 1, 0, 1]])
    torch.testing.assert_close(
        density_loss(a, full, eps=1.0, virtual_tokens=2), torch.tensor((0.5 + 0.9 + 0.8) / 3)
    )


@pytest.mark.parametrize(("mask_tokens", "virtual_tokens"), [(2, 0), (2, 1), (3, 2), (5, 0)])
def test_a_mask_of_another_length_is_an_error_not_padded(mask_tokens, virtual_tokens):
    a = torch.ones(1, 4, 3)
    with pytest.raises(ValueError, match=f"covers {mask_tokens} tokens but activations"):
        density_loss(a, torch.ones(1, mask_tokens), virtual_tokens=virtual_tokens)


def test_a_sample_without_real_tokens_contributes_zero():
    loss = density_loss(LAYER_A, torch.tensor([[1, 1], [0, 0]]), eps=1.0, reduce=False)
    torch.testing.assert_close(loss, torch.tensor([[0.475, 0.0]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_fp32(dtype):
    a = torch.tensor([[[1e-4, 0.0, 2e-4, 1.0]]], dtype=dtype)
    exact = a.double().square() / (a.double().square() + 1e-7)
    s = saturation(a)
    assert s.dtype == torch.float32
    torch.testing.assert_close(s.double(), exact, rtol=1e-6, atol=0.0)
    assert float(s[0, 0, 0]) == pytest.approx(0.0909, abs=1e-3)
    if dtype == torch.float16:  # why fp32 matters: (1e-4)² underflows to 0 in fp16
        assert float((a * a)[0, 0, 0]) == 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = density_loss(a)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), exact.mean(), rtol=1e-6, atol=0.0)


def test_gradient_matches_finite_differences_in_float64():
    torch.manual_seed(0)
    # values around sqrt(eps) ≈ 3e-4, where s(a) actually bends
    a = (torch.randn(2, 3, 4, dtype=torch.float64) * 5e-4).requires_grad_()
    b = (torch.randn(2, 3, 2, dtype=torch.float64) * 5e-4).requires_grad_()
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(lambda x, y: density_loss([x, y], mask), (a, b))
    assert torch.autograd.gradcheck(lambda x: saturation(x, eps=1e-7), (a,))


def test_fp32_backward_equals_autograd_of_the_literal_formula_in_fp64():
    torch.manual_seed(1)
    a = (torch.randn(64) * torch.logspace(-6, 1, 64)).requires_grad_()
    saturation(a).sum().backward()
    # the literal formula in fp64 is the truth (in fp32 its quotient rule loses digits to cancellation)
    literal = a.detach().double().requires_grad_()
    (literal.square() / (literal.square() + 1e-7)).sum().backward()
    torch.testing.assert_close(a.grad.double(), literal.grad, rtol=1e-5, atol=1e-6)


def test_fp32_loss_gradient_equals_autograd_of_the_literal_formula_in_fp64():
    # density_loss fuses the mean over features into its own backward: check it the same way
    torch.manual_seed(2)
    scales = torch.logspace(-6, 1, 5 * 16).view(1, 5, 16)
    a = (torch.randn(3, 5, 16) * scales).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    density_loss([a], mask).backward()
    literal = a.detach().double().requires_grad_()
    per_token = (literal.square() / (literal.square() + 1e-7)).mean(dim=-1)
    real = mask.double()
    ((per_token * real).sum(-1) / real.sum(-1)).mean().backward()
    torch.testing.assert_close(a.grad.double(), literal.grad, rtol=1e-5, atol=1e-9)


def test_half_precision_gradient_comes_back_in_the_input_dtype():
    a = torch.tensor([1e-4, -3e-4, 0.5], dtype=torch.float16, requires_grad=True)
    saturation(a).sum().backward()
    assert a.grad.dtype == torch.float16
    assert torch.isfinite(a.grad).all()


def test_only_the_activation_itself_is_saved_for_backward():
    a = torch.randn(4, 8, requires_grad=True)
    activation = a * 2  # a non-leaf, like a real activation
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        saturation(activation)
    assert len(saved) == 1
    assert saved[0].data_ptr() == activation.data_ptr()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        density_loss([activation.view(2, 2, 8)])  # no mask: nothing but the activation is saved
    assert [t.data_ptr() for t in saved] == [activation.data_ptr()]


def test_huge_and_zero_activations_stay_finite():
    a = torch.tensor([0.0, 1e20, -1e20, 3e38], requires_grad=True)
    s = saturation(a)
    torch.testing.assert_close(s, torch.tensor([0.0, 1.0, 1.0, 1.0]))
    s.sum().backward()
    assert torch.isfinite(a.grad).all()
    b = a.detach().view(1, 1, 4).requires_grad_()
    loss = density_loss([b])
    torch.testing.assert_close(loss, torch.tensor(0.75))
    loss.backward()
    assert torch.isfinite(b.grad).all()


def test_other_layouts_two_dimensional_flattened_and_feature_maps():
    a3 = torch.rand(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # [B·T, F] (OPT flattens tokens) is split back into samples with the mask's batch size
    flat = a3.reshape(6, 4)
    torch.testing.assert_close(density_loss(flat, mask), density_loss(a3, mask))
    torch.testing.assert_close(density_loss(flat), density_loss(a3))
    # [B, F]: one token per sample; [B, H, W, F]: H·W tokens
    torch.testing.assert_close(density_loss(a3[:, 0]), density_loss(a3[:, :1]))
    torch.testing.assert_close(density_loss(a3.reshape(2, 3, 1, 4)), density_loss(a3))


@pytest.mark.parametrize(
    ("activations", "mask", "message"),
    [
        ([], None, "activations is empty"),
        ([torch.zeros(3)], None, r"activations\[0\] must have shape"),
        (["x"], None, r"activations\[0\] must be a tensor"),
        ([torch.zeros(2, 3, 4), torch.zeros(3, 3, 4)], torch.ones(2, 3), r"activations\[1\]"),
        ([torch.zeros(2, 3, 4)], torch.ones(2, 5), r"attention_mask covers 5 tokens"),
        ([torch.zeros(2, 3, 4)], torch.ones(2, 3, 1), r"attention_mask must have shape"),
        ([torch.zeros(7, 4)], torch.ones(2, 3), r"activations\[0\] has shape \(7, 4\)"),
    ],
)
def test_shape_errors_name_the_argument(activations, mask, message):
    with pytest.raises((ValueError, TypeError), match=message):
        density_loss(activations, mask)


def test_reduce_false_needs_one_batch_size_and_eps_must_be_positive():
    with pytest.raises(ValueError, match="different batch sizes"):
        density_loss([torch.ones(2, 3, 4), torch.ones(6, 4)], reduce=False)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        density_loss(torch.ones(2, 3, 4), eps=0.0)


def _naive(layers: list[list], mask: list[list[int]] | None, eps: float) -> float:
    """The spec's formula with plain Python loops: mean over l and b of the masked (t, f) mean."""
    values = []
    for layer in layers:
        for b, sample in enumerate(layer):
            weights = [1] * len(sample) if mask is None else mask[b]
            total = sum(
                w * sum(a * a / (a * a + eps) for a in token) / len(token)
                for w, token in zip(weights, sample, strict=True)
            )
            values.append(total / max(sum(weights), 1))
    return sum(values) / len(values)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_matches_a_naive_loop_implementation(data):
    batch, tokens = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    widths = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    value = st.sampled_from([0.0, 1e-5, -3e-4, 1e-3, 0.5, -2.0])
    layers = [
        data.draw(
            st.lists(
                st.lists(st.lists(value, min_size=w, max_size=w), min_size=tokens, max_size=tokens),
                min_size=batch,
                max_size=batch,
            )
        )
        for w in widths
    ]
    bits = st.lists(st.integers(0, 1), min_size=tokens, max_size=tokens)
    mask = data.draw(st.none() | st.lists(bits, min_size=batch, max_size=batch))
    tensors = [torch.tensor(layer, dtype=torch.float64) for layer in layers]
    mask_tensor = None if mask is None else torch.tensor(mask)
    loss = density_loss(tensors, mask_tensor)
    assert float(loss) == pytest.approx(_naive(layers, mask, 1e-7), rel=1e-9, abs=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_under_cuda_fp16_autocast_the_loss_is_computed_in_fp32():
    linear = torch.nn.Linear(4, 4).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        activation = linear(torch.randn(2, 3, 4, device="cuda")) * 1e-4  # fp16, |a| ~ 1e-4
        loss = density_loss(activation)
    assert activation.dtype == torch.float16
    assert loss.dtype == torch.float32
    exact = activation.double().square() / (activation.double().square() + 1e-7)
    torch.testing.assert_close(loss.double(), exact.mean(), rtol=1e-6, atol=0.0)
    loss.backward()
    assert torch.isfinite(linear.weight.grad).all()

"""Activations by name and the bottleneck adapter: shapes, inits, dropout, errors, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from peft_core import BottleneckAdapter, QuickGELU, get_activation
from peft_core.activations import activation_names

# -- activations --------------------------------------------------------------------------------


def test_quick_gelu_value():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    expected = x * torch.sigmoid(1.702 * x)
    assert torch.allclose(QuickGELU()(x), expected, rtol=0, atol=1e-15)
    # Not the exact GELU: the two differ visibly around |x| ~ 2.
    assert not torch.allclose(QuickGELU()(x), nn.functional.gelu(x), atol=1e-3)


@pytest.mark.parametrize("name", ["quick_gelu", "quickgelu", "Quick-GELU", "QUICK_GELU"])
def test_quick_gelu_by_name(name):
    act = get_activation(name)
    assert isinstance(act, QuickGELU)
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64)
    assert torch.allclose(act(x), x * torch.sigmoid(1.702 * x), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("relu", torch.relu),
        ("gelu", lambda x: nn.functional.gelu(x)),
        ("gelu_new", lambda x: nn.functional.gelu(x, approximate="tanh")),
        ("gelu_tanh", lambda x: nn.functional.gelu(x, approximate="tanh")),
        ("gelu_pytorch_tanh", lambda x: nn.functional.gelu(x, approximate="tanh")),
        ("silu", nn.functional.silu),
        ("swish", nn.functional.silu),
        ("tanh", torch.tanh),
        ("sigmoid", torch.sigmoid),
        ("identity", lambda x: x),
        ("linear", lambda x: x),
    ],
)
def test_named_activations_compute_the_right_function(name, reference):
    x = torch.linspace(-3, 3, 25, dtype=torch.float64)
    act = get_activation(name)
    assert isinstance(act, nn.Module)
    assert torch.equal(act(x), reference(x))


def test_relu_is_relu():
    act = get_activation("ReLU")
    assert isinstance(act, nn.ReLU)
    assert torch.equal(act(torch.tensor([-1.0, 0.0, 2.5])), torch.tensor([0.0, 0.0, 2.5]))


def test_each_call_builds_a_new_module():
    assert get_activation("gelu") is not get_activation("gelu")


def test_module_is_passed_through_and_factory_is_called():
    module = nn.Hardswish()
    assert get_activation(module) is module
    assert isinstance(get_activation(nn.Mish), nn.Mish)
    assert isinstance(get_activation(lambda: nn.ELU(alpha=0.5)), nn.ELU)


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match="activation='mish2'") as info:
        get_activation("mish2")
    for name in ("gelu", "quick_gelu", "relu"):
        assert name in str(info.value)
    assert activation_names() == sorted(activation_names())
    assert "quick_gelu" in activation_names()


def test_bad_factory_and_bad_type():
    with pytest.raises(TypeError, match="factory returned int"):
        get_activation(lambda: 3)
    with pytest.raises(TypeError, match="got int"):
        get_activation(3)


@pytest.mark.parametrize("function", [torch.nn.functional.gelu, torch.relu])
def test_functional_activation_gets_a_clear_error(function):
    # Calling F.gelu() to build a module failed with "missing 1 required positional argument".
    with pytest.raises(TypeError, match=r"activation=.*nn\.GELU"):
        get_activation(function)


# -- adapter ------------------------------------------------------------------------------------


def _manual_forward(adapter: BottleneckAdapter, x: torch.Tensor, act) -> torch.Tensor:
    hidden = act(x @ adapter.down.weight.T + adapter.down.bias)
    out = hidden @ adapter.up.weight.T + adapter.up.bias
    return x + out if adapter.residual else out


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("shape", [(16,), (5, 16), (2, 3, 16)])
def test_shapes(shape, residual):
    adapter = BottleneckAdapter(16, 4, residual=residual)
    assert adapter.down.weight.shape == (4, 16)
    assert adapter.down.bias.shape == (4,)
    assert adapter.up.weight.shape == (16, 4)
    assert adapter.up.bias.shape == (16,)
    assert sum(p.numel() for p in adapter.parameters()) == 16 * 4 + 4 + 4 * 16 + 16
    assert adapter(torch.randn(shape)).shape == shape


def test_forward_is_up_act_down_with_and_without_residual():
    torch.manual_seed(0)
    x = torch.randn(3, 8, dtype=torch.float64)
    for residual in (False, True):
        adapter = BottleneckAdapter(
            8, 3, activation="relu", residual=residual, init="xavier"
        ).double()
        assert torch.allclose(adapter(x), _manual_forward(adapter, x, torch.relu), atol=1e-12)


def test_zero_up_output_is_exactly_zero_and_identity_with_residual():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16) * 100
    adapter = BottleneckAdapter(16, 4, init="zero_up")
    out = adapter(x)
    assert torch.equal(out, torch.zeros_like(x))
    assert torch.equal(adapter.up.weight, torch.zeros(16, 4))
    assert torch.equal(adapter.up.bias, torch.zeros(16))
    residual = BottleneckAdapter(16, 4, init="zero_up", residual=True)
    assert torch.equal(residual(x), x)


def test_zero_up_can_still_learn():
    # Only the up projection is zero; the down projection is random so up receives a gradient.
    torch.manual_seed(0)
    adapter = BottleneckAdapter(16, 4, init="zero_up", residual=True)
    assert adapter.down.weight.abs().sum() > 0
    adapter(torch.randn(8, 16)).pow(2).sum().backward()
    assert adapter.up.weight.grad.abs().sum() > 0


def test_normal_init_statistics():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(1024, 256, init="normal")
    for weight in (adapter.down.weight, adapter.up.weight):
        # 262,144 samples: the sample std of N(0, 0.02^2) is within ~3e-5 of 0.02.
        assert weight.std().item() == pytest.approx(0.02, abs=5e-4)
        assert abs(weight.mean().item()) < 5e-4
        assert weight.abs().max().item() > 0.06  # really normal, not a narrow uniform
    assert torch.equal(adapter.down.bias, torch.zeros(256))
    assert torch.equal(adapter.up.bias, torch.zeros(1024))


def test_xavier_init_bounds_and_tiny_biases():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(512, 64, init="xavier")
    for linear in (adapter.down, adapter.up):
        fan_out, fan_in = linear.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weights = linear.weight.abs()
        assert weights.max().item() <= bound
        assert weights.max().item() > 0.95 * bound  # uniform over the whole range, not narrower
        # Uniform(-a, a) has std a / sqrt(3).
        assert linear.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
        assert linear.bias.abs().max().item() < 1e-5
        assert linear.bias.abs().max().item() > 0  # N(0, 1e-6^2), not zeros
    assert adapter.down.bias.std().item() == pytest.approx(1e-6, rel=0.3)


def test_reset_parameters_reinitialises():
    adapter = BottleneckAdapter(8, 2, init="zero_up")
    with torch.no_grad():
        for p in adapter.parameters():
            p.fill_(1.0)
    adapter.reset_parameters()
    assert torch.equal(adapter.up.weight, torch.zeros(8, 2))
    assert torch.equal(adapter.down.bias, torch.zeros(2))


@pytest.mark.parametrize(
    ("activation", "reference"),
    [
        ("quick_gelu", lambda h: h * torch.sigmoid(1.702 * h)),
        ("relu", torch.relu),
        ("gelu", nn.functional.gelu),
    ],
)
def test_adapter_activation_by_name(activation, reference):
    torch.manual_seed(0)
    adapter = BottleneckAdapter(8, 4, activation=activation, init="xavier").double()
    x = torch.randn(5, 8, dtype=torch.float64)
    assert torch.allclose(adapter(x), _manual_forward(adapter, x, reference), atol=1e-12)


def test_adapter_accepts_activation_module():
    act = nn.Tanh()
    adapter = BottleneckAdapter(8, 4, activation=act)
    assert adapter.act is act


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(16, 512, activation="relu", dropout=0.5, init="xavier")
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    adapter.dropout.register_forward_hook(
        lambda m, inputs, output: captured.append((inputs[0], output))
    )
    x = torch.randn(4, 16)

    adapter.train()
    train_out = adapter(x)
    hidden, dropped = captured[-1]
    alive = hidden != 0
    zeroed = (dropped == 0) & alive
    # About half of the non-zero activations are dropped; the survivors are scaled by 1 / (1 - p).
    assert 0.3 < zeroed.sum().item() / alive.sum().item() < 0.7
    kept = (dropped != 0) & alive
    assert torch.allclose(dropped[kept], hidden[kept] * 2)
    assert not torch.allclose(train_out, _manual_forward(adapter, x, torch.relu))

    adapter.eval()
    eval_out = adapter(x)
    hidden, dropped = captured[-1]
    assert torch.equal(hidden, dropped)
    assert torch.equal(eval_out, adapter(x))
    assert torch.allclose(eval_out, _manual_forward(adapter, x, torch.relu), atol=1e-6)


def test_no_dropout_by_default_even_in_train_mode():
    adapter = BottleneckAdapter(8, 4).train()
    x = torch.randn(3, 8)
    assert torch.equal(adapter(x), adapter(x))
    assert adapter.dropout.p == 0.0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"dim": 0}, "dim"),
        ({"dim": -3}, "dim"),
        ({"dim": 2.0}, "dim"),
        ({"dim": True}, "dim"),
        ({"bottleneck": 0}, "bottleneck"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": float("nan")}, "dropout"),
        ({"dropout": "0.1"}, "dropout"),
        ({"dropout": None}, "dropout"),
        ({"residual": "no"}, "residual"),
        ({"residual": None}, "residual"),
        ({"init": "kaiming"}, "init"),
        ({"activation": "not_an_activation"}, "activation"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    arguments = {"dim": 8, "bottleneck": 2, **kwargs}
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        BottleneckAdapter(**arguments)


def test_extra_repr():
    text = repr(BottleneckAdapter(8, 2, residual=True, init="zero_up"))
    assert "dim=8, bottleneck=2, residual=True, init='zero_up'" in text


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "quick_gelu", "silu"])
def test_gradcheck_inputs_and_parameters(activation, residual):
    torch.manual_seed(0)
    adapter = BottleneckAdapter(
        5, 3, activation=activation, residual=residual, init="xavier"
    ).double()
    names = [name for name, _ in adapter.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in adapter.parameters())
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)

    def fn(x, *params):
        return torch.func.functional_call(adapter, dict(zip(names, params, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5)

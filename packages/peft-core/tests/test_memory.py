"""measure_activation_memory against byte counts worked out by hand, and cuda_peak_memory on CPU.

What autograd saves in current PyTorch (float32 = 4 bytes per element), for 2-D inputs:

* ``nn.Linear`` runs ``addmm(bias, input, weight.T)``. It saves ``input`` only if the *weight*
  needs a gradient (grad_weight = grad.T @ input) and ``weight.T`` only if the *input* needs one
  (grad_input = grad @ weight). Saved weights are parameters and never count.
* ``relu`` saves its *output* (its backward masks by ``result > 0``), only if its input needs grad.
* ``sum`` saves only the input's sizes, no tensor.
* ``mul`` saves both operands (each one's gradient needs the other).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peft_core import cuda_peak_memory, measure_activation_memory

F32 = 4


def _mlp(frozen_first: bool) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    if frozen_first:
        model[0].requires_grad_(False)
    return model


def test_docstring_example():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    # addmm saves x (2x4) for the weight gradient; relu saves its 2x3 output.
    assert (
        measure_activation_memory(lambda: torch.relu(layer(x)).sum(), layer)
        == (2 * 4 + 2 * 3) * F32
    )


def test_frozen_first_layer_saves_only_the_hidden_activation():
    model = _mlp(frozen_first=True)
    x = torch.randn(5, 4)
    # Linear 1: nothing needs a gradient -> no graph, nothing saved.
    # ReLU: its input does not require grad -> nothing saved.
    # Linear 2: weight trainable -> saves its input h = relu(...) of shape 5x8; input h needs no
    #           gradient, so weight.T is not saved (it would not count anyway: a parameter).
    expected = 5 * 8 * F32  # 160
    assert measure_activation_memory(lambda: model(x).sum(), model) == expected
    assert measure_activation_memory(lambda: model(x).sum()) == expected


def test_all_trainable_mlp():
    model = _mlp(frozen_first=False)
    x = torch.randn(5, 4)
    # Linear 1 saves x (5x4) for its weight gradient.
    # ReLU saves its output h (5x8); Linear 2 saves h again for its weight gradient and W2.T for
    # the gradient to h. h is one storage, counted once; W2.T is a parameter view, never counted.
    expected = 5 * 4 * F32 + 5 * 8 * F32  # 80 + 160
    assert measure_activation_memory(lambda: model(x).sum(), model) == expected


def test_requires_grad_input_through_frozen_model_saves_only_activations():
    model = _mlp(frozen_first=False)
    model.requires_grad_(False)
    x = torch.randn(5, 4, requires_grad=True)
    # Linear 1 saves W1.T (parameter: not counted) and not x (no weight gradient needed).
    # ReLU saves h (5x8). Linear 2 saves W2.T (parameter) only.
    assert measure_activation_memory(lambda: model(x).sum(), model) == 5 * 8 * F32


def test_nothing_trainable_is_zero():
    model = _mlp(frozen_first=False)
    model.requires_grad_(False)
    x = torch.randn(5, 4)
    assert measure_activation_memory(lambda: model(x).sum(), model) == 0
    assert measure_activation_memory(lambda: model(x).sum()) == 0


def test_storage_saved_twice_counts_once():
    x = torch.randn(6, 5, requires_grad=True)
    # mul saves x as both operands: one storage, 6*5 floats.
    assert measure_activation_memory(lambda: (x * x).sum()) == 6 * 5 * F32
    y = torch.randn(6, 5, requires_grad=True)
    assert measure_activation_memory(lambda: (x * y).sum()) == 2 * 6 * 5 * F32


def test_views_of_one_storage_count_the_storage_once():
    x = torch.randn(6, 5, requires_grad=True)
    # x[0] and x[1] are views into x's storage: the whole storage (30 floats) is held, once.
    assert measure_activation_memory(lambda: (x[0] * x[1]).sum()) == 6 * 5 * F32


def test_a_measurement_inside_another_counts_for_both():
    x = torch.randn(6, 5, requires_grad=True)
    y = torch.randn(6, 5, requires_grad=True)
    inner: list[int] = []

    def step():
        first = (x * 2).exp()  # exp saves its output: 30 floats, seen by the outer only
        inner.append(measure_activation_memory(lambda: (first * y).sum()))  # first and y
        return first

    assert measure_activation_memory(step) == 2 * 6 * 5 * F32  # first (once) and y
    assert inner == [2 * 6 * 5 * F32]


def test_a_graph_dropped_inside_the_measurement_cannot_hide_a_later_tensor():
    # The first product's graph is dropped at once; without holding its saved storage, the
    # allocator may hand the same storage address to the next one, which then looked counted.
    x = torch.randn(64, 64, requires_grad=True)

    def step():
        for _ in range(20):
            (x * torch.randn(64, 64)).sum()  # saves the random factor, then drops the graph
        return (x * torch.randn(64, 64)).sum()

    assert measure_activation_memory(step) == 21 * 64 * 64 * F32


def test_parameters_are_excluded_but_plain_tensors_are_not():
    x = torch.randn(3, 4, requires_grad=True)
    weight = torch.randn(4, 2, requires_grad=True)
    parameter = nn.Parameter(weight.detach().clone())
    # mm(x, w) saves x (for grad_w) and w (for grad_x).
    plain = measure_activation_memory(lambda: (x @ weight).sum())
    assert plain == (3 * 4 + 4 * 2) * F32
    assert measure_activation_memory(lambda: (x @ parameter).sum()) == 3 * 4 * F32
    # A view of a parameter (transpose) is excluded too.
    assert measure_activation_memory(lambda: (x @ parameter.T.T).sum()) == 3 * 4 * F32


def test_buffers_excluded_when_model_is_passed():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4).eval()
    x = torch.randn(5, 4)
    # Eval-mode batch norm with trainable affine saves its input (5x4), the running mean and var
    # (4 each, buffers) and the weight (a parameter); the extra saved "save_mean/invstd" are empty.
    assert measure_activation_memory(lambda: bn(x).sum(), bn) == 5 * 4 * F32
    assert measure_activation_memory(lambda: bn(x).sum()) == (5 * 4 + 4 + 4) * F32
    # Several modules may be passed as an iterable.
    assert measure_activation_memory(lambda: bn(x).sum(), [nn.Linear(1, 1), bn]) == 5 * 4 * F32


@pytest.mark.parametrize("frozen_first", [True, False])
def test_grows_linearly_with_batch_size(frozen_first):
    model = _mlp(frozen_first)

    def measure(batch: int) -> int:
        x = torch.randn(batch, 4)
        return measure_activation_memory(lambda: model(x).sum(), model)

    sizes = {batch: measure(batch) for batch in (1, 2, 4, 16)}
    per_example = sizes[1]
    assert per_example > 0
    assert sizes == {batch: batch * per_example for batch in sizes}


def test_graph_still_usable_after_measuring():
    model = _mlp(frozen_first=True)
    x = torch.randn(3, 4)
    outputs = []
    measure_activation_memory(lambda: outputs.append(model(x).sum()), model)
    outputs[0].backward()
    assert model[2].weight.grad is not None
    assert model[0].weight.grad is None


def test_meta_device_model_counts_like_a_real_one():
    # Meta tensors have no data pointer; keyed by it, every storage looked like one (a parameter's),
    # and a model on meta measured 0 bytes.
    real = _mlp(frozen_first=False)
    with torch.device("meta"):
        meta = _mlp(frozen_first=False)
    x = torch.randn(5, 4)

    def step(model, inputs):
        return lambda: model(inputs).sum()

    expected = measure_activation_memory(step(real, x), real)
    # x for the first weight's gradient; relu's output, which is also the second layer's input.
    assert expected == (5 * 4 + 5 * 8) * F32
    assert measure_activation_memory(step(meta, x.to("meta")), meta) == expected


def test_cuda_peak_memory_none_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available; the None branch only runs without CUDA")
    assert cuda_peak_memory(lambda: torch.zeros(10)) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_memory_sees_a_temporary_allocation():
    device = torch.device("cuda", torch.cuda.current_device())
    keep = torch.zeros(1024, device=device)  # allocated before: not part of the peak
    mebibyte = 1 << 20

    def allocate_and_free():
        scratch = torch.empty(mebibyte, dtype=torch.uint8, device=device)
        scratch.fill_(1)
        del scratch

    peak = cuda_peak_memory(allocate_and_free, device)
    assert isinstance(peak, int)
    assert mebibyte <= peak < 2 * mebibyte + 4096
    assert cuda_peak_memory(lambda: None, device) == 0
    del keep

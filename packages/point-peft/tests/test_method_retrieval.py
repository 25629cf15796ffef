"""Parameter-free attention over the memory bank, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from point_peft.method import retrieve

pytestmark = pytest.mark.usefixtures("one_thread")

# Four unit columns in 2-D: e_x, e_y, (0.6, 0.8) and -e_x.
BANK = torch.tensor([[1.0, 0.0, 0.6, -1.0], [0.0, 1.0, 0.8, 0.0]], dtype=torch.float64)


def test_hand_computed_example():
    # q1 = (3, 4): q̂ = (0.6, 0.8), similarities (0.6, 0.8, 1.0, -0.6) -> top-2 columns 2 then 1.
    # q2 = (-2, 0): q̂ = (-1, 0), similarities (-1, 0, -0.6, 1) -> top-2 columns 3 then 1.
    query = torch.tensor([[3.0, 4.0], [-2.0, 0.0]], dtype=torch.float64)
    result = retrieve(query, BANK, top_k=2)

    assert result.indices.tolist() == [[2, 1], [3, 1]]
    torch.testing.assert_close(
        result.similarities, torch.tensor([[1.0, 0.8], [1.0, 0.0]], dtype=torch.float64)
    )
    # softmax with temperature 1: exp(v_k) / Σ exp(v)
    w1 = [
        math.exp(1.0) / (math.exp(1.0) + math.exp(0.8)),
        math.exp(0.8) / (math.exp(1.0) + math.exp(0.8)),
    ]
    w2 = [math.e / (math.e + 1.0), 1.0 / (math.e + 1.0)]
    torch.testing.assert_close(result.weights, torch.tensor([w1, w2], dtype=torch.float64))
    aggregated = torch.tensor(
        [[w1[0] * 0.6 + w1[1] * 0.0, w1[0] * 0.8 + w1[1] * 1.0], [-w2[0], w2[1]]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(result.aggregated, aggregated)
    # context = [q ; r ; M[:, I_1] ; M[:, I_2]], the query as given (not normalised)
    expected_context = torch.stack(
        [
            torch.stack([query[0], aggregated[0], BANK[:, 2], BANK[:, 1]]),
            torch.stack([query[1], aggregated[1], BANK[:, 3], BANK[:, 1]]),
        ]
    )
    torch.testing.assert_close(result.context, expected_context)
    assert torch.equal(result.context[:, 0], query)  # carried exactly
    assert torch.equal(result.entries, expected_context[:, 2:])  # bank columns, gathered exactly


def test_batched_retrieval_equals_one_sample_at_a_time():
    generator = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(16, 50, generator=generator), dim=0)
    query = torch.randn(7, 16, generator=generator)
    batched = retrieve(query, bank, top_k=8)
    for row in range(7):
        single = retrieve(query[row : row + 1], bank, top_k=8)
        assert torch.equal(single.indices, batched.indices[row : row + 1])
        torch.testing.assert_close(single.context, batched.context[row : row + 1])
    # brute force: the top-8 are the 8 largest cosine similarities
    cosine = (query / query.norm(dim=1, keepdim=True)) @ bank
    expected = cosine.sort(dim=1, descending=True).values[:, :8]
    torch.testing.assert_close(batched.similarities, expected)


def test_the_query_scale_does_not_change_what_is_retrieved():
    query = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    small, large = retrieve(query, BANK, 3), retrieve(100 * query, BANK, 3)
    assert torch.equal(small.indices, large.indices)
    torch.testing.assert_close(small.weights, large.weights)


@pytest.mark.parametrize(
    ("query", "bank", "top_k", "message"),
    [
        (torch.zeros(2, 3, 1), BANK, 1, "query must have shape \\(batch, dim\\)"),
        (torch.zeros(2, 3), BANK, 1, "bank must have shape \\(dim, size\\) with dim=3"),
        (torch.zeros(2, 2), BANK, 5, "top_k must be an integer in \\[1, 4\\]"),
        (torch.zeros(2, 2), BANK, 0, "top_k must be an integer in \\[1, 4\\]"),
    ],
)
def test_errors_name_the_argument(query, bank, top_k, message):
    with pytest.raises(ValueError, match=message):
        retrieve(query.to(torch.float64), bank, top_k)

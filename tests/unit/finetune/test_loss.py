"""turn_weighted_loss: every answer turn weighs the same, checked against a loop by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from somprobe.errors import InputError
from somprobe.finetune.dataset import IGNORE_INDEX
from somprobe.finetune.loss import answer_turns, turn_weighted_loss

X = IGNORE_INDEX


def reference(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over turns of each turn's mean next-token loss, by explicit loops."""
    per_turn = []
    for row in range(labels.shape[0]):
        current: list[float] = []
        for t in range(1, labels.shape[1]):
            if labels[row, t] == X:
                if current:
                    per_turn.append(sum(current) / len(current))
                    current = []
                continue
            ce = F.cross_entropy(logits[row, t - 1][None], labels[row, t][None])
            current.append(float(ce))
        if current:
            per_turn.append(sum(current) / len(current))
    return sum(per_turn) / len(per_turn)


def test_equals_a_loop_by_hand_on_random_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(5):
        logits = torch.randn(3, 12, 7, generator=gen)
        labels = torch.randint(0, 7, (3, 12), generator=gen)
        mask = torch.rand(3, 12, generator=gen) < 0.4
        labels[mask] = X
        labels[:, 0] = X
        labels[trial % 3, 5] = 2  # at least one supervised label
        got = float(turn_weighted_loss(logits, labels))
        assert got == pytest.approx(reference(logits, labels), rel=1e-5), trial


def test_a_one_word_answer_weighs_as_much_as_a_long_one() -> None:
    """Token-mean loss lets the long turn dominate; the turn loss does not."""
    logits = torch.zeros(1, 10, 4)
    logits[0, 0:5, 1] = 10.0  # the long turn (labels 1 at positions 1..5) is easy
    labels = torch.tensor([[X, 1, 1, 1, 1, 1, X, X, 3, X]])  # short turn: "3" at 8, wrong
    token_mean = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=X)
    turn = turn_weighted_loss(logits, labels)
    short = F.cross_entropy(logits[0, 7][None], torch.tensor([3]))
    assert float(turn) == pytest.approx((float(short) + 0.0) / 2, abs=1e-3)
    assert float(turn) > 2.5 * float(token_mean)


def test_turns_are_runs_of_supervised_positions_across_rows() -> None:
    labels = torch.tensor([[X, 4, 4, X, 5], [6, X, X, 7, 7]])
    assert answer_turns(labels).tolist() == [[-1, 0, 0, -1, 1], [2, -1, -1, 3, 3]]


def test_one_turn_per_row_of_equal_length_is_the_token_mean() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 5, generator=gen)
    labels = torch.tensor([[X, X, 1, 2, 3, X], [X, X, X, 0, 4, 2]])
    token_mean = F.cross_entropy(
        logits[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1), ignore_index=X
    )
    assert float(turn_weighted_loss(logits, labels)) == pytest.approx(float(token_mean), rel=1e-6)


def test_gradient_flows() -> None:
    logits = torch.randn(1, 4, 3, requires_grad=True)
    turn_weighted_loss(logits, torch.tensor([[X, 1, X, 2]])).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (torch.zeros(1, 4, 3), torch.full((1, 4), X), "no supervised label"),
        (torch.zeros(1, 4, 3), torch.zeros(1, 5, dtype=torch.long), "do not match"),
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), "do not match"),
    ],
)
def test_bad_input_is_a_clear_error(
    logits: torch.Tensor, labels: torch.Tensor, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        turn_weighted_loss(logits, labels)

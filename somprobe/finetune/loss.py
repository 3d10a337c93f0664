"""Answer-turn-weighted language-model loss: every answer turn counts the same.

With the usual token-mean loss a 40-token caption outweighs a one-word answer 40 to 1,
so a model can lower its loss by polishing easy caption tokens while one-word answers
(a shape, a colour, "Yes") stay wrong. Here each maximal run of supervised label
positions is one answer turn; a token's loss is divided by its turn's length and the
result averaged over the turns of the batch.

Example:
    >>> import torch
    >>> logits = torch.zeros(1, 5, 3)
    >>> labels = torch.tensor([[-100, 1, -100, 2, 2]])
    >>> round(float(turn_weighted_loss(logits, labels)), 4)  # log(3) for uniform logits
    1.0986
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from somprobe.errors import InputError
from somprobe.finetune.dataset import IGNORE_INDEX


def answer_turns(labels: Int[Tensor, "batch seq"]) -> Int[Tensor, "batch seq"]:
    """Turn index of every supervised position (runs of labels ≠ ignore), -1 elsewhere.

    Turns are numbered 0, 1, … across the whole batch in row-major order.
    """
    valid = labels != IGNORE_INDEX
    before = torch.zeros_like(valid)
    before[:, 1:] = valid[:, :-1]
    starts = valid & ~before
    turn = torch.cumsum(starts.flatten().long(), 0).view_as(labels) - 1
    return torch.where(valid, turn, torch.full_like(turn, -1))


def turn_weighted_loss(
    logits: Float[Tensor, "batch seq vocab"], labels: Int[Tensor, "batch seq"]
) -> Float[Tensor, ""]:
    """Mean over answer turns of each turn's mean next-token cross-entropy.

    ``labels`` are aligned with the inputs (as a causal LM's ``labels`` argument): the
    logits at position ``t`` predict ``labels[t + 1]``.

    Raises:
        InputError: shapes that do not match, or no supervised position at all.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise InputError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match "
            "(need batch × seq × vocab and batch × seq)"
        )
    target = labels[:, 1:]
    turn = answer_turns(target)
    valid = turn >= 0
    if not bool(valid.any()):
        raise InputError("no supervised label in the batch: every label is the ignore index")
    token_loss = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        target.reshape(-1).clamp(min=0),
        reduction="none",
    ).view_as(target)
    turns = int(turn.max()) + 1
    flat_turn = turn[valid]
    sums = torch.zeros(turns, dtype=token_loss.dtype, device=token_loss.device)
    sums = sums.index_add(0, flat_turn, token_loss[valid])
    counts = torch.zeros(turns, dtype=token_loss.dtype, device=token_loss.device)
    counts = counts.index_add(0, flat_turn, torch.ones_like(token_loss[valid]))
    return (sums / counts).mean()


__all__ = ["answer_turns", "turn_weighted_loss"]

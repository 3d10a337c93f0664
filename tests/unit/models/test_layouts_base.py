"""Shared layout pieces: how a sequence's image tokens are cut into one run per image."""

from __future__ import annotations

import pytest
import torch

from somprobe.errors import LayoutError
from somprobe.models.layouts.base import split_image_tokens

IMG = 9


def test_each_image_gets_its_own_run() -> None:
    ids = torch.tensor([[1, IMG, IMG, 5, IMG, IMG, IMG, 2], [IMG, IMG, IMG, IMG, IMG, 3, 3, 3]])
    runs = split_image_tokens(ids, IMG, [2, 3, 2, 3])
    assert [(row, chunk.tolist()) for row, chunk in runs] == [
        (0, [1, 2]),
        (0, [4, 5, 6]),
        (1, [0, 1]),  # two placeholders side by side: one run each, in order
        (1, [2, 3, 4]),
    ]


def test_an_image_whose_tokens_span_text_is_refused() -> None:
    """Counts given in the wrong order: the first image would take tokens on both sides of
    the text between the two placeholders (an image's tokens are always consecutive)."""
    ids = torch.tensor([[1, IMG, IMG, 5, 5, IMG, IMG, IMG, IMG, 2]])
    with pytest.raises(LayoutError, match="consecutive"):
        split_image_tokens(ids, IMG, [3, 3])
    assert [c.tolist() for _, c in split_image_tokens(ids, IMG, [2, 4])] == [[1, 2], [5, 6, 7, 8]]

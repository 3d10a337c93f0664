"""Hand-built TagSets for the data tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from somprobe.tagging import Tag, TagSet


def build_tagset(categories: Sequence[str | None], label_mode: str = "number") -> TagSet:
    """One 4×4-pixel tag per category, on a (8 * n)-wide strip, ids 1..n."""
    n = len(categories)
    width, height = max(8 * n, 8), 8
    tags = []
    for i, cat in enumerate(categories):
        mask = np.zeros((height, width), dtype=bool)
        mask[2:6, 8 * i + 2 : 8 * i + 6] = True
        label = str(i + 1) if label_mode == "number" else "abcdefghijklmnopqrstuvwxyz"[i]
        tags.append(
            Tag(i + 1, label, mask, mask.copy(), (8 * i + 4.0, 4.0), (8 * i + 2, 2, 8 * i + 6, 6),
                category=cat, source_id=i)
        )  # fmt: skip
    return TagSet(tags, (width, height), label_mode=label_mode)  # type: ignore[arg-type]


@pytest.fixture
def make_tagset() -> Callable[..., TagSet]:
    return build_tagset

"""Regions from label images and mask stacks."""

from __future__ import annotations

import numpy as np
import pytest

from somprobe.errors import InputError
from somprobe.tagging.regions import from_label_image, from_masks


def test_label_image_matches_equality_masks() -> None:
    labels = np.random.default_rng(0).integers(-2, 6, (20, 30))
    regions = from_label_image(labels, categories={3: "three"}, metadata={"m": 1})
    values = [v for v in np.unique(labels) if v != 0]
    assert [r.source_id for r in regions] == values
    for r in regions:
        assert np.array_equal(r.mask, labels == r.source_id)
        assert r.metadata == {"m": 1}
        assert r.category == ("three" if r.source_id == 3 else None)
    everything = from_label_image(labels, background=None)
    assert len(everything) == len(values) + 1
    assert sum(r.area for r in everything) == labels.size


def test_label_image_edge_cases() -> None:
    assert from_label_image(np.zeros((3, 3), int)) == []
    with pytest.raises(InputError, match="integers"):
        from_label_image(np.zeros((3, 3)))
    with pytest.raises(InputError, match="2-D"):
        from_label_image(np.zeros((3,), int))


def test_masks_from_stack_and_list() -> None:
    stack = np.zeros((3, 4, 5), bool)
    stack[0, 0] = True
    stack[1, 1] = True
    regions = from_masks(stack, categories=["a", None, "c"], source_ids=[10, 11, "z"])
    assert [r.category for r in regions] == ["a", None, "c"]
    assert [r.source_id for r in regions] == [10, 11, "z"]
    assert all(np.array_equal(r.mask, stack[i]) for i, r in enumerate(regions))
    as_list = from_masks(list(stack), metadata=[{"i": i} for i in range(3)])
    assert [r.source_id for r in as_list] == [0, 1, 2]
    assert as_list[2].metadata == {"i": 2}


def test_masks_bad_input() -> None:
    with pytest.raises(InputError, match="3 masks"):
        from_masks(np.zeros((3, 4, 5), bool), categories=["a"])
    with pytest.raises(InputError, match="shape"):
        from_masks([np.zeros((4, 5), bool), np.zeros((5, 4), bool)])
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        from_masks(np.zeros((4, 5), bool))

"""Per-patch labels of toy scenes, against a pixel-by-pixel count written here."""

from __future__ import annotations

import numpy as np
import pytest

from somprobe.data.toyworld import make_scene, world
from somprobe.data.toyworld.patch_labels import object_shares, patch_labels
from somprobe.errors import InputError


def _reference(scene, min_share):  # type: ignore[no-untyped-def]
    cfg = scene.config
    p, g = cfg.patch_size, cfg.image_size // cfg.patch_size
    shape = np.zeros((g, g), dtype=int)
    colour = np.zeros((g, g), dtype=int)
    for r in range(g):
        for c in range(g):
            counts = [
                int(reg.mask[r * p : (r + 1) * p, c * p : (c + 1) * p].sum())
                for reg in scene.regions
            ]
            k = int(np.argmax(counts))
            if counts[k] / (p * p) >= min_share:
                shape[r, c] = cfg.shapes.index(scene.objects[k].shape) + 1
                colour[r, c] = cfg.colours.index(scene.objects[k].colour) + 1
    return shape, colour


@pytest.mark.parametrize("name", ["v1", "v2"])
@pytest.mark.parametrize("min_share", [0.25, 0.5, 1.0])
def test_labels_match_a_pixel_count(name: str, min_share: float) -> None:
    for seed in range(6):
        scene = make_scene(world(name), seed)
        labels = patch_labels(scene, min_share=min_share)
        shape, colour = _reference(scene, min_share)
        np.testing.assert_array_equal(labels.shape, shape)
        np.testing.assert_array_equal(labels.colour, colour)
        assert ((labels.owner >= 0) == (labels.shape > 0)).all()
        assert (labels.share[labels.owner >= 0] >= min_share).all()


def test_background_and_owner() -> None:
    scene = make_scene(world("v2"), 3)
    labels = patch_labels(scene)
    assert (labels.shape == 0).any() and (labels.shape > 0).any()
    for k, obj in enumerate(scene.objects):
        owned = labels.owner == k
        if owned.any():
            assert set(labels.shape[owned]) == {world("v2").shapes.index(obj.shape) + 1}
    shares = object_shares(scene)
    assert shares.shape == (len(scene.objects), 8, 8)
    assert np.allclose(shares.sum(axis=0) <= 1 + 1e-9, True)


def test_bad_input() -> None:
    scene = make_scene(world("v2"), 0)
    for bad in (0, -0.1, 1.5):
        with pytest.raises(InputError, match="min_share"):
            patch_labels(scene, min_share=bad)

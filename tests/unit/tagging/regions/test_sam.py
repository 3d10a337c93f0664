"""SAM regions through transformers, on a tiny randomly initialised SamModel (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from somprobe.errors import InputError, ModelLoadError
from somprobe.tagging.regions import from_sam
from somprobe.tagging.regions.sam import box_nms

SIDE = 64
IMAGE = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
LOOSE = {"pred_iou_thresh": -1e9, "stability_score_thresh": -1e9, "points_per_side": 4}


@pytest.fixture(scope="module")
def tiny_sam():  # type: ignore[no-untyped-def]
    import torch
    from transformers import SamConfig, SamModel

    config = SamConfig(
        vision_config={
            "hidden_size": 16,
            "output_channels": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": SIDE,
            "patch_size": 16,
            "window_size": 2,
            "global_attn_indexes": [1],
            "num_pos_feats": 8,
            "mlp_dim": 32,
        },
        prompt_encoder_config={
            "hidden_size": 16,
            "image_size": SIDE,
            "patch_size": 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 16,
            "mlp_dim": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 16,
        },
    )
    torch.manual_seed(0)
    model = SamModel(config).eval()
    with torch.no_grad():  # spread the random init so masks are not all empty or full
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def test_regions_have_image_shape_and_are_ranked(tiny_sam) -> None:  # type: ignore[no-untyped-def]
    regions = from_sam(IMAGE, tiny_sam, nms_thresh=1.0, **LOOSE)
    assert len(regions) > 1
    scores = [r.metadata["predicted_iou"] for r in regions]
    assert scores == sorted(scores, reverse=True)
    for i, r in enumerate(regions):
        assert r.mask.shape == IMAGE.shape[:2] and r.mask.dtype == np.bool_
        assert r.source_id == i and r.metadata["method"] == "sam"
    again = from_sam(IMAGE, tiny_sam, nms_thresh=1.0, **LOOSE)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(regions, again, strict=True))


def test_filters_drop_masks(tiny_sam) -> None:  # type: ignore[no-untyped-def]
    everything = from_sam(IMAGE, tiny_sam, nms_thresh=1.0, **LOOSE)
    suppressed = from_sam(IMAGE, tiny_sam, nms_thresh=0.0, **LOOSE)
    assert 1 <= len(suppressed) < len(everything)
    areas = sorted(r.area for r in everything)
    cut = areas[len(areas) // 2]
    big = from_sam(IMAGE, tiny_sam, nms_thresh=1.0, min_area=cut, **LOOSE)
    assert len(big) == sum(a >= cut for a in areas)
    strict = dict(LOOSE, pred_iou_thresh=1e9)
    assert from_sam(IMAGE, tiny_sam, **strict) == []


def test_loads_from_a_saved_folder(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import SamImageProcessorPil

    tiny_sam.save_pretrained(tmp_path)
    SamImageProcessorPil(
        size={"longest_edge": SIDE}, pad_size={"height": SIDE, "width": SIDE}
    ).save_pretrained(tmp_path)
    from_path = from_sam(IMAGE, str(tmp_path), nms_thresh=1.0, **LOOSE)
    from_obj = from_sam(IMAGE, tiny_sam, nms_thresh=1.0, **LOOSE)
    assert len(from_path) == len(from_obj)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(from_path, from_obj, strict=True))


def test_bad_models_raise(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load a SAM model"):
        from_sam(IMAGE, str(tmp_path))
    with pytest.raises(InputError, match="SamModel"):
        from_sam(IMAGE, object())
    with pytest.raises(InputError, match="points_per_side"):
        from_sam(IMAGE, object(), points_per_side=0)


def nms_reference(boxes: list[list[int]], scores: list[float], thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        ok = True
        for k in keep:
            a, b = boxes[i], boxes[k]
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
            inter = iw * ih
            area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
            area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            if inter / (area_a + area_b - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@settings(max_examples=50, deadline=None)
@given(
    raw=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 8), st.integers(0, 8)),
        max_size=12,
    ),
    thr=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    seed=st.integers(0, 100),
)
def test_box_nms_matches_reference(raw: list, thr: float, seed: int) -> None:
    boxes = [[x, y, x + dx, y + dy] for x, y, dx, dy in raw]
    scores = np.random.default_rng(seed).choice([0.1, 0.5, 0.9], size=len(boxes)).tolist()
    got = box_nms(np.array(boxes).reshape(-1, 4), np.array(scores), thr)
    assert got == nms_reference(boxes, scores, thr)

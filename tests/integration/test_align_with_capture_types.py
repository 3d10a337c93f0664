"""score_alignment on the package's own Trace and ImageLayout (built by hand, no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from somprobe.capture.trace import QueryRecord, Trace
from somprobe.errors import TagMentionError
from somprobe.measure.align import score_alignment
from somprobe.models.layout import ImageEntry, ImageLayout, PatchGrid, Preprocess
from somprobe.tagging import Tag, TagSet

pytestmark = pytest.mark.integration


def _layout() -> ImageLayout:
    pre = Preprocess(style="crop", original_size=(8, 8), canvas_size=(8, 8), pad_offset=(0, 0),
                     resized_size=(8, 8), crop_origin=(0, 0), input_size=(8, 8))  # fmt: skip
    grid = PatchGrid(positions=np.arange(4, 20), rows=4, cols=4, patch_size=2, preprocess=pre)
    entry = ImageEntry(batch=0, original_size=(8, 8), grids=(grid,), cls_position=None,
                       token_positions=np.arange(4, 20))  # fmt: skip
    return ImageLayout(images=(entry,), sequence_length=30, image_token_id=99)


def _trace() -> Trace:
    trace = Trace(layers=[0, 1], heads=[0, 1, 2], key_mode="image")
    trace.set_keys(0, torch.arange(4, 20))
    att = torch.zeros(2, 3, 16)
    att[..., 1] = 1.0  # patch (0, 1): inside tag 1's object
    trace.add(QueryRecord(0, 25, 7, 0), att, None)
    return trace


def _tagset() -> TagSet:
    m = np.zeros((8, 8), bool)
    m[0:4, 0:4] = True
    return TagSet(tags=[Tag(1, "1", m, m, (1, 1), (0, 0, 2, 2))], image_size=(8, 8))


def test_scores_on_real_trace_and_layout() -> None:
    mentions = pd.DataFrame({"batch": [0], "mention": [0], "tag_id": [1],
                             "scored_positions": [(25,)]})  # fmt: skip
    df = score_alignment(_trace(), _layout(), _tagset(), mentions)
    assert len(df) == 2 * 3
    np.testing.assert_allclose(df["image_share_object"], 1.0)
    np.testing.assert_allclose(df["mass_object"], 1.0)  # the whole row on the object
    np.testing.assert_allclose(df["mass_text"], 0.0, atol=1e-7)
    assert (df["sink_rule"] == "skipped").all()  # one tag: the median rule cannot hold
    assert (df["pointing"] == 1.0).all()
    # 3 object patches (coverage ≥ 0.5) vs 13 others, one object patch on top, the rest tied
    np.testing.assert_allclose(df["auroc"], (13 + 2 * 13 * 0.5) / (3 * 13))
    with pytest.raises(TagMentionError, match="position 26"):
        score_alignment(_trace(), _layout(), _tagset(), mentions.assign(scored_positions=[(26,)]))

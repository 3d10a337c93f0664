"""Scores over every image token with a box: LLaVA-1.5 unchanged (bit for bit against the
grid-0 computation), LLaVA-NeXT's tile tokens scored and its image newlines left out,
Qwen2.5-VL's merged-token grid; the Fig. 4 maps drawn from each model's own layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from somprobe.data.toyworld import WorldConfig, make_scene, tag_scene
from somprobe.errors import InputError
from somprobe.measure import listing_alignment, plot_top_patches, tag_attention_maps
from somprobe.measure.align import region_pixel_masks, score_alignment, scored_tokens
from somprobe.measure.plots import top_patch_boxes
from somprobe.measure.recipes import teacher_forced_listing
from somprobe.models import (
    build_tiny_llava,
    build_tiny_llava_next,
    build_tiny_qwen2_5_vl,
    load_model,
)
from somprobe.models.layout import ImageLayout

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tagged() -> list[Any]:
    return [tag_scene(make_scene(WorldConfig(), (0, 1, i))) for i in range(3)]


class GridOnly:
    """An ImageLayout seen through its grid-0 calls only (no per-token calls): the
    computation score_alignment made before it scored every token with a box."""

    def __init__(self, layout: ImageLayout) -> None:
        self.layout = layout

    def __getattr__(self, name: str) -> Any:
        if name in ("token_boxes", "mask_to_tokens", "box_to_tokens", "num_grids"):
            raise AttributeError(name)
        return getattr(self.layout, name)


def _family(builder: Any, tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Any:
    return load_model(builder(tmp_path_factory.mktemp(builder.__name__), **options))


@pytest.mark.parametrize("strategy", ["default", "full"])
def test_llava_15_scores_are_bit_identical_to_the_grid_0_computation(
    tagged: list[Any], tmp_path_factory: pytest.TempPathFactory, strategy: str
) -> None:
    model, processor = _family(
        build_tiny_llava, tmp_path_factory, vision_feature_select_strategy=strategy
    )
    result, mentions = teacher_forced_listing(model, processor, tagged, hidden_states=False)
    layout = result.layout
    tagsets = [t.tagset for t in tagged]
    for image in range(len(tagged)):
        scored = scored_tokens(layout, image)
        assert scored.shape == layout.grid(image)
        assert scored.positions.tolist() == layout.patch_positions(image).tolist()
    for sinks in ("auto", None):
        got = score_alignment(result.trace, layout, tagsets, mentions, sinks=sinks)
        want = score_alignment(result.trace, GridOnly(layout), tagsets, mentions, sinks=sinks)
        assert len(got) and got["n_kept"].max() == np.prod(layout.grid(0))
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    if strategy == "full":  # the CLS has no box: it is extra mass, as before
        assert (got["mass_image_extra"] > 0).all()


@pytest.fixture(scope="module")
def next_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _family(build_tiny_llava_next, tmp_path_factory)


@pytest.fixture(scope="module")
def qwen_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _family(build_tiny_qwen2_5_vl, tmp_path_factory)


def test_llava_next_scores_every_tile_token_and_leaves_the_newlines_out(
    next_model: Any, tagged: list[Any]
) -> None:
    model, processor = next_model
    result, mentions = teacher_forced_listing(model, processor, tagged[:2], hidden_states=False)
    trace, layout = result.trace, result.layout
    scores = score_alignment(trace, layout, [t.tagset for t in tagged[:2]], mentions, sinks=None)
    for b in range(2):
        boxes = layout.token_boxes(b)
        boxed = ~np.isnan(boxes).any(axis=1)
        grids = layout.token_grid(b)
        assert (grids[boxed] >= 0).all() and (grids[~boxed] == -1).all()
        assert {0, 1} <= set(grids[boxed].tolist()) and (~boxed).any()  # base, tiles, newlines
        scored = scored_tokens(layout, b)
        assert scored.shape == (1, int(boxed.sum()))
        keys = trace.key_positions(b).tolist()
        positions = layout.image_token_positions(b).tolist()
        assert keys == positions
        for m in mentions[mentions["batch"] == b].itertuples():
            row = trace.attention(b, m.position).double().numpy()  # (layer, head, key)
            parts = region_pixel_masks(tagged[b].tagset, m.tag_id)
            got = scores[(scores["batch"] == b) & (scores["mention"] == m.mention)]
            got = got.sort_values(["layer", "head"])
            np.testing.assert_allclose(
                got["mass_image"], row[..., boxed].sum(-1).reshape(-1), rtol=1e-12
            )
            np.testing.assert_allclose(
                got["mass_image_extra"], row[..., ~boxed].sum(-1).reshape(-1), rtol=1e-12
            )
            for part in ("object", "mark", "other"):  # by hand, over every boxed token
                cover = layout.mask_to_tokens(parts[part], b)  # NaN for no box
                assert np.isnan(cover[~boxed]).all()
                expected = (row[..., boxed] * cover[boxed]).sum(-1).reshape(-1)
                np.testing.assert_allclose(got[f"mass_{part}"], expected, rtol=1e-9, atol=1e-15)
            assert (got["n_kept"] == boxed.sum()).all()
    total = scores["mass_image"] + scores["mass_image_extra"] + scores["mass_text"]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_qwen_scores_its_merged_token_grid(qwen_model: Any, tagged: list[Any]) -> None:
    model, processor = qwen_model
    result, mentions = teacher_forced_listing(model, processor, tagged[:2], hidden_states=False)
    layout = result.layout
    scores = score_alignment(result.trace, layout, [t.tagset for t in tagged[:2]], mentions)
    for b in range(2):
        scored = scored_tokens(layout, b)
        assert scored.shape == layout.grid(b)
        assert scored.positions.tolist() == layout.image_token_positions(b).tolist()
    assert (scores["mass_image_extra"] == 0).all()
    assert (scores["n_kept"] + scores["n_excluded"] == np.prod(layout.grid(0))).all()


def test_listing_alignment_runs_on_both_families(
    next_model: Any, qwen_model: Any, tagged: list[Any]
) -> None:
    """Random weights: plumbing only (every mention scored in both modes)."""
    for model, processor in (next_model, qwen_model):
        for mode in ("teacher_forced", "generated"):
            scores, mentions = listing_alignment(
                model, processor, tagged[:2], mode=mode, batch_size=2, max_new_tokens=6,
                progress=False,
            )  # fmt: skip
            assert set(mentions["batch"]) <= {0, 1}
            if mode == "teacher_forced":
                assert len(mentions) == sum(len(t.tagset.ids) for t in tagged[:2])
                n_layers = model.config.text_config.num_hidden_layers
                n_heads = model.config.text_config.num_attention_heads
                assert len(scores) == len(mentions) * n_layers * n_heads


def test_top_patch_maps_are_drawn_from_each_models_own_layout(
    next_model: Any, qwen_model: Any, tagged: list[Any], tmp_path: Path
) -> None:
    item = tagged[0]
    maps, layouts = {}, {}
    for name, (model, processor) in (("next", next_model), ("qwen", qwen_model)):
        maps[name], layouts[name] = tag_attention_maps(model, processor, item, 1)
        shape = scored_tokens(layouts[name], 0).shape
        assert all(m.shape == shape for m in maps[name].values())
    assert scored_tokens(layouts["next"], 0).shape != scored_tokens(layouts["qwen"], 0).shape
    fig = plot_top_patches(item.image, maps, layouts, item.tagset, k=3)
    assert len(fig.axes) == 2 * len(maps["next"])
    with pytest.raises(InputError, match="has shape"):
        plot_top_patches(item.image, maps, layouts["qwen"], item.tagset)
    with pytest.raises(InputError, match="no layout for model"):
        plot_top_patches(item.image, maps, {"next": layouts["next"]}, item.tagset)
    # a top token of LLaVA-NeXT's map may be a tile token: its box is the token's own box
    layout = layouts["next"]
    boxed = ~np.isnan(layout.token_boxes(0)).any(axis=1)
    flat = np.zeros(int(boxed.sum()))
    flat[-1] = 1.0  # the last tile token
    box = top_patch_boxes(flat[None], layout, 0, k=1)[0]
    np.testing.assert_allclose(box, layout.token_boxes(0, clip=True)[boxed][-1])
    assert layout.token_grid(0)[np.flatnonzero(boxed)[-1]] == 1

"""End to end on a tiny model: regions → tags → capture → mentions → scores."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from somprobe.errors import InputError
from somprobe.measure import listing_alignment, teacher_forced_listing
from somprobe.measure.align import PARTS, aggregate_by_layer
from somprobe.probes import build_probe_dataset
from somprobe.tagging import tag_regions
from somprobe.tagging.regions import Region


def _scene(seed: int, n: int = 3) -> tuple[Image.Image, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    height, width = 112, 140
    pixels = rng.integers(60, 120, (height, width, 3)).astype(np.uint8)
    masks = []
    for _ in range(n):
        x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
        w, h = rng.integers(25, 40, 2)
        mask = np.zeros((height, width), bool)
        mask[y0 : y0 + h, x0 : x0 + w] = True
        pixels[mask] = rng.integers(0, 255, 3)
        masks.append(mask)
    return Image.fromarray(pixels), masks


@pytest.fixture(scope="module")
def tagged():
    colours = ["red box", "blue box", "green box"]
    out = []
    for seed in range(3):
        image, masks = _scene(seed)
        regions = [Region(mask=m, category=c) for m, c in zip(masks, colours, strict=True)]
        out.append(tag_regions(image, regions))
    return out


def test_teacher_forced_listing_gives_one_row_per_mention_layer_head(tiny_llava, tagged):
    model, processor = tiny_llava
    scores, mentions = listing_alignment(model, processor, tagged, batch_size=2, progress=False)
    n_tags = sum(len(t.tagset) for t in tagged)
    assert len(mentions) == n_tags  # "1. …\n2. …": one listing mention per tag
    assert mentions["captured"].all() and not mentions["hallucinated"].any()
    for image, group in mentions.groupby("image"):
        assert group["tag_id"].tolist() == tagged[image].tagset.ids
    n_layers = model.config.text_config.num_hidden_layers
    n_heads = model.config.text_config.num_attention_heads
    assert len(scores) == n_tags * n_layers * n_heads
    shares = scores[[f"image_share_{p}" for p in PARTS]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, atol=1e-5)
    # absolute masses of the Recorder's softmax rows: the parts and the sinks make up the
    # image, and the image and the text the whole row
    parts = scores[[f"mass_{p}" for p in PARTS]].sum(axis=1) + scores["mass_sink"]
    np.testing.assert_allclose(parts, scores["mass_image"], atol=1e-6)
    whole = scores["mass_image"] + scores["mass_image_extra"] + scores["mass_text"]
    np.testing.assert_allclose(whole, 1.0, atol=1e-5)
    assert scores["mass_text"].between(0, 1).all()
    assert (scores["mass_object_markfree"] <= scores["mass_object"] + 1e-9).all()
    # three tags, one mention each: the sink rule applies by default
    assert (scores["sink_rule"] == "auto").all()
    auroc = scores["auroc"]
    assert auroc.notna().any()
    assert auroc.dropna().between(0, 1).all()
    assert (auroc.isna() | scores["chance_auroc"].eq(0.5)).all()
    assert (scores["topk_hit"].isna() == (scores["n_target"] == 0)).all()
    by_layer = aggregate_by_layer(scores)
    assert sorted(by_layer["layer"]) == list(range(n_layers))
    assert (by_layer["n_mentions"] == n_tags).all()
    assert (by_layer["n_topk_hit"] <= by_layer["n_mentions"]).all()
    assert {"lift_object_weighted", "n_lift_object_markfree_weighted"} <= set(by_layer.columns)
    off, _ = listing_alignment(model, processor, tagged, sinks=None, progress=False)
    assert (off["sink_rule"] == "none").all() and (off["n_excluded"] == 0).all()


def test_generated_mode_scores_what_the_model_wrote(tiny_llava, tagged):
    model, processor = tiny_llava
    scores, mentions = listing_alignment(
        model, processor, tagged[:2], mode="generated", max_new_tokens=12, progress=False
    )
    assert set(mentions.columns) >= {"image", "tag_id", "captured", "answer", "hallucinated"}
    # whatever the random model wrote, every scored row belongs to a captured mention
    assert len(scores) == int(mentions["captured"].sum()) * 2 * 4


def test_bad_inputs(tiny_llava, tagged):
    model, processor = tiny_llava
    with pytest.raises(InputError):
        listing_alignment(model, processor, [], progress=False)
    with pytest.raises(InputError):
        listing_alignment(model, processor, tagged, mode="free", progress=False)
    with pytest.raises(InputError):
        listing_alignment(model, processor, tagged, answers=["1. x"], progress=False)


@pytest.mark.parametrize("mode", ["teacher_forced", "generated"])
def test_mentions_carry_the_position_of_their_last_scored_token(tiny_llava, tagged, mode):
    model, processor = tiny_llava
    _, mentions = listing_alignment(
        model, processor, tagged[:2], mode=mode, max_new_tokens=12, progress=False
    )
    assert "position" in mentions.columns
    assert mentions["position"].tolist() == [int(p[-1]) for p in mentions["scored_positions"]]


def test_listing_alignment_mentions_feed_the_probe_recipe(tiny_llava, tagged):
    # README "Linear probes at tag tokens": build_probe_dataset(trace, mentions, tagsets)
    model, processor = tiny_llava
    _, mentions = listing_alignment(model, processor, tagged, batch_size=8, progress=False)
    result, forced = teacher_forced_listing(model, processor, tagged, attention=False)
    assert mentions["position"].tolist() == forced["position"].tolist()
    ds = build_probe_dataset(result.trace, mentions, [t.tagset for t in tagged])
    assert len(ds.samples) == len(mentions)
    assert ds.samples["position"].tolist() == mentions["position"].tolist()


@pytest.fixture(scope="module")
def superpixel_tags():
    from skimage import data

    from somprobe.tagging.regions import from_superpixels

    image = Image.fromarray(data.astronaut()).resize((160, 160))
    return [tag_regions(image, from_superpixels(image, min_size=400))]


def test_regions_without_category_need_a_describer_the_error_names(tiny_llava, superpixel_tags):
    model, processor = tiny_llava
    assert all(t.category is None for t in superpixel_tags[0].tagset)
    with pytest.raises(InputError, match="describer=region_describer"):
        listing_alignment(model, processor, superpixel_tags, progress=False)


def test_superpixel_tags_go_through_teacher_forced_listing_with_a_describer(
    tiny_llava, superpixel_tags
):
    from somprobe.data.listing import region_describer

    model, processor = tiny_llava
    scores, mentions = listing_alignment(
        model, processor, superpixel_tags, describer=region_describer, progress=False
    )
    tagset = superpixel_tags[0].tagset
    assert mentions["tag_id"].tolist() == tagset.ids
    assert mentions["answer"].iloc[0].splitlines()[0] == "1. region"
    assert mentions["captured"].all() and len(scores) == len(tagset) * 2 * 4
    _, forced = teacher_forced_listing(
        model, processor, superpixel_tags, describer=region_describer, attention=False
    )
    assert forced["position"].tolist() == mentions["position"].tolist()

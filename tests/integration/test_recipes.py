"""The shared measurement recipes agree with reading the trace by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from somprobe.data.toyworld import WorldConfig, make_scene, tag_scene
from somprobe.measure import (
    find_tag_mentions,
    patch_attention,
    tag_attention_maps,
    teacher_forced_listing,
)


@pytest.fixture(scope="module")
def tagged():
    return [tag_scene(make_scene(WorldConfig(), (0, 1, i))) for i in range(3)]


def by_hand(trace, layout, batch: int, positions: list[int]) -> np.ndarray:
    """(layer, head, rows, cols): the trace's rows at the patch columns, averaged."""
    keys = trace.key_positions(batch).tolist()
    columns = [keys.index(p) for p in layout.patch_positions(batch).tolist()]
    rows = torch.stack([trace.attention(batch, p) for p in positions]).double().mean(0)
    return rows[..., columns].reshape(*rows.shape[:2], *layout.grid(batch)).numpy()


def test_teacher_forced_listing_finds_every_tag_at_its_last_digit(tiny_llava, tagged) -> None:
    model, processor = tiny_llava
    result, mentions = teacher_forced_listing(model, processor, tagged)
    for b, item in enumerate(tagged):
        rows = mentions[mentions["batch"] == b]
        assert rows["tag_id"].tolist() == item.tagset.ids
        start, end = result.answer_spans[b]
        ids = result.inputs["input_ids"][b, start:end].tolist()
        alone = find_tag_mentions(processor.tokenizer, ids, tag_ids=item.tagset, offset=start)
        assert rows["scored_positions"].tolist() == alone["scored_positions"].tolist()
    assert (mentions["position"] == [p[-1] for p in mentions["scored_positions"]]).all()
    for m in mentions.itertuples():
        assert result.trace.has(m.batch, m.position)
        digit = processor.tokenizer.decode([int(result.inputs["input_ids"][m.batch, m.position])])
        assert digit.strip() == str(m.tag_id)[-1]


def test_patch_attention_and_tag_maps_equal_the_trace_read_by_hand(tiny_llava, tagged) -> None:
    model, processor = tiny_llava
    result, mentions = teacher_forced_listing(model, processor, tagged[:2])
    trace, layout = result.trace, result.layout
    for b in (0, 1):
        positions = mentions[mentions["batch"] == b]["position"].tolist()
        got = patch_attention(trace, layout, b, positions[:2])
        np.testing.assert_allclose(got, by_hand(trace, layout, b, positions[:2]), atol=1e-7)
    layer = 1
    maps, map_layout = tag_attention_maps(model, processor, tagged[0], layer)
    first = mentions[mentions["batch"] == 0]
    assert sorted(maps) == first["tag_id"].tolist()
    for m in first.itertuples():
        expected = by_hand(trace, layout, 0, [m.position])[layer].mean(0)
        np.testing.assert_allclose(maps[m.tag_id], expected, atol=1e-6)
    assert map_layout.grid(0) == layout.grid(0)


def test_tag_maps_of_regions_without_category_take_a_describer(tiny_llava) -> None:
    from skimage import data

    from somprobe.data.listing import region_describer
    from somprobe.tagging import tag_regions
    from somprobe.tagging.regions import from_superpixels

    model, processor = tiny_llava
    image = data.astronaut()[::4, ::4]
    item = tag_regions(image, from_superpixels(image, min_size=300))
    maps, layout = tag_attention_maps(model, processor, item, 1, describer=region_describer)
    assert sorted(maps) == item.tagset.ids
    assert all(m.shape == layout.grid(0) for m in maps.values())


def test_all_keys_and_image_keys_give_the_same_masses(tiny_llava, tagged) -> None:
    # the same teacher-forced pass captured at the image keys and at every key: the scores
    # agree, and the all-keys trace reads the text mass the image-keys one infers
    from somprobe.capture import digit_token_filter
    from somprobe.capture.teacher import teacher_force
    from somprobe.data.listing import listing_answer
    from somprobe.measure import DEFAULT_QUESTION, score_alignment
    from somprobe.measure.align import SCORE_COLUMNS

    model, processor = tiny_llava
    items = tagged[:2]
    image_keys, mentions = teacher_forced_listing(model, processor, items, hidden_states=False)
    all_keys = teacher_force(
        model, processor, [t.image for t in items], [DEFAULT_QUESTION] * len(items),
        [listing_answer(t.tagset, None, t.image) for t in items],
        queries=digit_token_filter(processor.tokenizer), hidden_states=False, keys="all",
    )  # fmt: skip
    tagsets = [t.tagset for t in items]
    a = score_alignment(image_keys.trace, image_keys.layout, tagsets, mentions)
    b = score_alignment(all_keys.trace, all_keys.layout, tagsets, mentions)
    for name in SCORE_COLUMNS:
        np.testing.assert_allclose(a[name], b[name], atol=2e-6, err_msg=name)
    for m in mentions.itertuples():
        row = all_keys.trace.attention(m.batch, m.position).double()
        image = all_keys.layout.image_token_positions(m.batch)
        text = row.sum(-1) - row[..., image].sum(-1)
        got = b[(b["batch"] == m.batch) & (b["mention"] == m.mention)]["mass_text"].to_numpy()
        np.testing.assert_allclose(got, text.reshape(-1).numpy(), atol=1e-9)

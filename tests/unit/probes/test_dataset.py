"""build_probe_dataset on a stand-in for the capture Trace (the real one plugs in later)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from somprobe.errors import DataFormatError, ProbeError, SomprobeError, TagMentionError
from somprobe.probes import ProbeDataset, TraceLike, build_probe_dataset, region_targets
from somprobe.tagging import Tag, TagSet


class StubTrace:
    """Has the planned Trace interface: layers, hidden(batch, position), queries."""

    def __init__(self, hidden: torch.Tensor, queries: pd.DataFrame | None = None) -> None:
        self._hidden = hidden  # [batch, position, layer, dim]
        self.layers = [0, 4, 8]
        if queries is not None:
            self.queries = queries

    def hidden(self, batch: int, position: int) -> torch.Tensor:
        return self._hidden[batch, position]


def _tagset(rng: np.random.Generator, n_tags: int, size: tuple[int, int]) -> TagSet:
    w, h = size
    tags = []
    for i in range(1, n_tags + 1):
        mask = np.zeros((h, w), bool)
        x0, y0 = rng.integers(0, w - 5), rng.integers(0, h - 4)
        mask[y0 : y0 + rng.integers(1, 4), x0 : x0 + rng.integers(1, 5)] = True
        meta = {"colour": ["red", "blue"][i % 2], "shape": "circle"}
        tags.append(Tag(i, str(i), mask, mask, (x0, y0), (0, 0, 1, 1), f"obj{i}", metadata=meta))
    return TagSet(tags, size)


@pytest.fixture
def setup() -> tuple[StubTrace, pd.DataFrame, list[TagSet]]:
    rng = np.random.default_rng(0)
    hidden = torch.randn(2, 12, 3, 5)
    tagsets = [_tagset(rng, 3, (16, 10)), _tagset(rng, 2, (9, 7))]
    mentions = pd.DataFrame(
        {
            "batch": [0, 0, 1, 0],
            "position": [3, 5, 7, 9],
            "tag_id": [1, 3, 2, 1],
            "step": [0, 1, 0, 2],
        }
    )
    return StubTrace(hidden), mentions, tagsets


def test_stub_satisfies_protocol(setup) -> None:
    trace, _, _ = setup
    assert isinstance(trace, TraceLike)


def test_features_are_hidden_states_at_mentions(setup) -> None:
    trace, mentions, tagsets = setup
    ds = build_probe_dataset(trace, mentions, tagsets, image_ids=["imgA", "imgB"])
    assert isinstance(ds, ProbeDataset)
    assert ds.features.shape == (3, 4, 5) and ds.layers == [0, 4, 8]
    for i, m in enumerate(mentions.itertuples()):
        torch.testing.assert_close(ds.features[:, i], trace._hidden[m.batch, m.position])
    s = ds.samples
    assert s["image_id"].tolist() == ["imgA", "imgA", "imgB", "imgA"]
    assert s["tag_id"].tolist() == [1, 3, 2, 1]
    assert s["step"].tolist() == [0, 1, 0, 2]  # extra mention columns kept
    assert s["colour"].tolist() == ["blue", "blue", "red", "blue"]
    assert s["category"].tolist() == ["obj1", "obj3", "obj2", "obj1"]
    # usable targets only: "shape" is constant here, mention columns are not ground truth
    assert ds.targets() == ["category", "colour", "centroid_x", "centroid_y", "area"]


def test_region_targets_match_scipy(setup) -> None:
    trace, mentions, tagsets = setup
    ds = build_probe_dataset(trace, mentions, tagsets)
    for row in ds.samples.itertuples():
        ts = tagsets[row.batch]
        mask = ts[row.tag_id].mask
        cy, cx = ndimage.center_of_mass(mask)
        w, h = ts.image_size
        assert row.centroid_x == pytest.approx((cx + 0.5) / w)
        assert row.centroid_y == pytest.approx((cy + 0.5) / h)
        assert row.area == pytest.approx(mask.sum() / (w * h))


def test_empty_mask_gives_nan_and_wrong_shape_raises() -> None:
    assert np.isnan(region_targets(np.zeros((3, 4), bool), (4, 3))).all()
    with pytest.raises(DataFormatError, match="mask has shape"):
        region_targets(np.zeros((4, 3), bool), (4, 3))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"batch": [5]}, "batch item 5"),
        ({"tag_id": [9]}, "names tag 9"),
    ],
)
def test_bad_mentions_raise(setup, change, match) -> None:
    trace, _, tagsets = setup
    m = pd.DataFrame({"batch": [0], "position": [1], "tag_id": [1]})
    for k, v in change.items():
        m[k] = v
    with pytest.raises(TagMentionError, match=match):
        build_probe_dataset(trace, m, tagsets)


def test_missing_columns_and_uncaptured_positions(setup) -> None:
    trace, mentions, tagsets = setup
    with pytest.raises(TagMentionError, match="need columns"):
        build_probe_dataset(trace, mentions.drop(columns="tag_id"), tagsets)
    q = pd.DataFrame({"batch": [0, 0], "position": [3, 5], "token_id": [1, 2], "step": [0, 0]})
    with pytest.raises(TagMentionError, match="did not capture"):
        build_probe_dataset(StubTrace(trace._hidden, q), mentions, tagsets)


def test_nan_hidden_states_raise(setup) -> None:
    trace, mentions, tagsets = setup
    trace._hidden[1, 7, 2, 0] = float("nan")
    with pytest.raises(ProbeError, match=r"NaN or infinity at layers \[8\]") as err:
        build_probe_dataset(trace, mentions, tagsets)
    assert isinstance(err.value, SomprobeError)


def test_metadata_clash_raises() -> None:
    # "area" is kept as "meta_area" (see below); when that name is taken too, it cannot be
    mask = np.ones((2, 2), bool)
    meta = {"area": 3, "meta_area": 4}
    tag = Tag(1, "1", mask, mask, (1, 1), (0, 0, 1, 1), "x", metadata=meta)
    trace = StubTrace(torch.zeros(1, 2, 3, 4))
    with pytest.raises(DataFormatError, match="clash"):
        build_probe_dataset(
            trace,
            pd.DataFrame({"batch": [0], "position": [0], "tag_id": [1]}),
            [TagSet([tag], (2, 2))],
        )


def _coco_annotations(n_images: int, rng: np.random.Generator) -> dict[str, object]:
    """A COCO instances dict: per image three boxes of two categories, COCO's own area."""
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "width": 64, "height": 48, "file_name": f"{image_id}.jpg"})
        for k, (x, y) in enumerate([(2, 2), (30, 4), (10, 26)]):
            w, h = int(rng.integers(12, 22)), int(rng.integers(10, 18))
            annotations.append(
                {
                    "id": 100 * image_id + k, "image_id": image_id,
                    "category_id": [1, 2, 1][k] if image_id % 2 else [2, 1, 2][k],
                    "iscrowd": 0, "bbox": [x, y, w, h], "area": float(w * h) + 0.5,
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )  # fmt: skip
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy-2 notice inside pycocotools
def test_coco_tagsets_keep_clashing_metadata_under_a_prefix_and_probe() -> None:
    from somprobe.probes import run_probes
    from somprobe.tagging import tag_regions
    from somprobe.tagging.regions import from_coco, load_coco

    rng = np.random.default_rng(0)
    coco = load_coco(_coco_annotations(12, rng))
    tagsets = []
    for image_id in range(1, 13):
        image = np.full((48, 64, 3), 90, np.uint8)
        tagsets.append(tag_regions(image, from_coco(coco, image_id)).tagset)
    rows = [(b, t.id) for b, ts in enumerate(tagsets) for t in ts]
    mentions = pd.DataFrame(
        {
            "batch": [b for b, _ in rows],
            "position": range(len(rows)),
            "tag_id": [t for _, t in rows],
        }
    )
    hidden = torch.randn(len(tagsets), len(rows), 3, 6, generator=torch.Generator().manual_seed(0))
    ds = build_probe_dataset(StubTrace(hidden), mentions, tagsets)

    assert {"area", "meta_area", "coco_category_id", "iscrowd", "bbox"} <= set(ds.samples.columns)
    first = tagsets[0][int(ds.samples.loc[0, "tag_id"])]
    assert ds.samples.loc[0, "meta_area"] == first.metadata["area"]  # COCO's own number
    assert ds.samples.loc[0, "area"] == pytest.approx(first.mask.sum() / (64 * 48))  # built-in
    assert "meta_area" in ds.target_columns and "area" in ds.target_columns
    res = run_probes(ds, ["category", "centroid_x", "area"], n_folds=3, n_boot=20)
    assert set(res.scores["target"]) == {"category", "centroid_x", "area"}

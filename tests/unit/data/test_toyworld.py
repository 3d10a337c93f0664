"""Toy world: determinism, exact masks, snapped tags, datasets that validate."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from somprobe.data.llava_json import read_records, validate_file
from somprobe.data.toyworld import WorldConfig, make_scene, object_pixels, tag_scene
from somprobe.data.toyworld.dataset import scene_seed, write_toy_dataset
from somprobe.data.toyworld.questions import caption, instruct_questions, pope_negatives
from somprobe.errors import InputError
from somprobe.tagging.io import load_tagset


def _digest(scene) -> str:  # type: ignore[no-untyped-def]
    return hashlib.sha256(np.asarray(scene.image).tobytes()).hexdigest()


def test_scenes_are_deterministic_and_seed_dependent() -> None:
    cfg = WorldConfig()
    a, b, c = make_scene(cfg, 5), make_scene(cfg, 5), make_scene(cfg, 6)
    assert _digest(a) == _digest(b)
    assert [o.category for o in a.objects] == [o.category for o in b.objects]
    assert all(np.array_equal(r.mask, s.mask) for r, s in zip(a.regions, b.regions, strict=True))
    assert _digest(a) != _digest(c)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), big=st.booleans())
def test_masks_are_exactly_the_drawn_pixels(seed: int, big: bool) -> None:
    cfg = WorldConfig(max_objects=8 if big else 5)
    scene = make_scene(cfg, seed)
    assert cfg.min_objects <= len(scene.objects) <= cfg.max_objects
    union = np.zeros((cfg.image_size, cfg.image_size), bool)
    for i, (obj, region) in enumerate(zip(scene.objects, scene.regions, strict=True)):
        drawn = object_pixels(scene, i)
        assert np.array_equal(drawn, region.mask)  # the pixels of that colour, exactly
        assert region.category == obj.category == f"{obj.colour} {obj.shape}"
        assert region.metadata["size"] in cfg.sizes
        assert region.area >= cfg.min_visible * region.metadata["full_area"]
        assert not (union & region.mask).any()  # visible masks are disjoint
        union |= region.mask
        # the object's centre is a patch centre and shows the object
        cx, cy = obj.center
        assert (cx - cfg.patch_size / 2) % cfg.patch_size == 0
        assert (cy - cfg.patch_size / 2) % cfg.patch_size == 0
        assert region.mask[int(cy), int(cx)]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_tags_sit_inside_one_patch_on_their_object(seed: int) -> None:
    cfg = WorldConfig()
    scene = make_scene(cfg, seed)
    tagged = tag_scene(scene)
    assert len(tagged.tagset) == len(scene.objects)
    areas = [t.area for t in tagged.tagset]
    assert areas == sorted(areas)  # SoM-LLaVA order: area ascending
    p = cfg.patch_size
    for tag in tagged.tagset:
        obj = scene.objects[tag.source_index]
        assert tag.center == obj.center
        x0, y0, x1, y1 = tag.mark_box
        assert x0 // p == (x1 - 1) // p and y0 // p == (y1 - 1) // p  # one patch
        assert tag.metadata["colour"] == obj.colour and tag.category == obj.category


def test_same_colour_objects_never_touch() -> None:
    cfg = WorldConfig(max_objects=8)
    for seed in range(40):
        scene = make_scene(cfg, seed)
        for i, a in enumerate(scene.regions):
            for b in scene.regions[i + 1 :]:
                if a.metadata["colour"] == b.metadata["colour"]:
                    assert not (ndimage.binary_dilation(a.mask) & b.mask).any()


def test_bad_config_and_impossible_scenes_raise() -> None:
    with pytest.raises(InputError, match="patch_size"):
        WorldConfig(image_size=100, patch_size=14)
    with pytest.raises(InputError, match="colours"):
        WorldConfig(colours=("red", "mauve"))
    with pytest.raises(InputError, match="could not place"):
        make_scene(WorldConfig(min_objects=30, max_objects=30), 0)
    assert WorldConfig.from_dict(WorldConfig().to_dict()) == WorldConfig()


def test_questions_follow_the_ground_truth() -> None:
    scene = make_scene(WorldConfig(), 11)
    assert caption(scene).startswith(f"There are {len(scene.objects)} shapes")
    present = {o.category for o in scene.objects}
    for q in instruct_questions(scene, np.random.default_rng(0), n=20):
        if q.kind == "count":
            assert q.answer == str(len(scene.objects))
        if q.kind == "exists":
            cat = q.question.removeprefix("Is there a ").removesuffix(" in the image?")
            assert (q.answer == "Yes") == (cat in present)
    rng = np.random.default_rng(1)
    colours = {o.colour for o in scene.objects}
    shapes = {o.shape for o in scene.objects}
    adv = pope_negatives(scene, "adversarial", 3, rng)
    assert not set(adv) & present
    # adversarial negatives re-bind present attributes when the scene allows it
    assert all(c.split()[0] in colours or c.split()[1] in shapes for c in adv)
    pop = pope_negatives(scene, "popular", 2, rng, popularity={"cyan cross": 99, "red star": 50})
    expected = [c for c in ("cyan cross", "red star") if c not in present]
    assert pop[: len(expected)] == expected


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("toy")
    manifest = write_toy_dataset(out, train_scenes=24, eval_scenes=6, seed=3, progress=False)
    return out, manifest


def test_dataset_validates_and_mixes_have_equal_size(dataset) -> None:  # type: ignore[no-untyped-def]
    out, manifest = dataset
    train = out / "train"
    for name in ("instruct", "listing", "qa", "mix_instruct", "mix_som"):
        summary = validate_file(train / f"{name}.json", image_root=train)
        assert summary.records == 24
    som = {r["source"]: r["taken"] for r in manifest["train"]["mixes"]["som"]}
    assert som == {"instruct": 12, "listing": 6, "qa": 6}
    ids = [r.id for r in read_records(train / "mix_som.json")]
    assert sum(str(i).startswith("som_listing_") for i in ids) == 6
    mix_inst = read_records(train / "mix_instruct.json")
    assert all(r.image.startswith("untagged/") for r in mix_inst)  # untagged images only
    for name in ("listing", "tag_qa", "instruct", "pope_random", "pope_popular",
                 "pope_adversarial"):  # fmt: skip
        validate_file(out / "eval" / f"{name}.json", image_root=out / "eval")
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3


def test_eval_split_truth_matches_tagsets_and_scenes_are_held_out(dataset) -> None:  # type: ignore[no-untyped-def]
    out, _ = dataset
    for rec in read_records(out / "eval" / "listing.json"):
        key = rec.image.removeprefix("tagged/images/").removesuffix(".png")
        ts = load_tagset(out / "eval" / "tagged" / "tagsets" / f"{key}.json")
        assert rec.extra["eval"]["tags"] == {t.label: t.category for t in ts}
    for setting in ("random", "popular", "adversarial"):
        recs = read_records(out / "eval" / f"pope_{setting}.json")
        labels = [r.extra["eval"]["label"] for r in recs]
        assert labels.count("yes") == labels.count("no") > 0
    train_hashes = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (out / "train" / "untagged").glob("*.png")
    }
    eval_hashes = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (out / "eval" / "untagged").glob("*.png")
    }
    assert len(train_hashes) == 24 and not train_hashes & eval_hashes
    assert scene_seed(3, "train", 0) != scene_seed(3, "eval", 0)


def test_dataset_is_reproducible(dataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, _ = dataset
    write_toy_dataset(tmp_path, train_scenes=24, eval_scenes=6, seed=3, progress=False)
    for name in (
        "train/mix_som.json",
        "eval/pope_adversarial.json",
        "train/untagged/train_000007.png",
    ):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


def test_explicit_mark_centers_must_lie_on_the_remaining_mask() -> None:
    from somprobe.tagging import tag_regions

    img = np.zeros((28, 28, 3), np.uint8)
    m = np.zeros((28, 28), bool)
    m[0:14, 0:14] = True
    assert tag_regions(img, [m], centers=[(7.0, 7.0)], min_area=0).tagset[1].center == (7.0, 7.0)
    with pytest.raises(InputError, match="not on a pixel"):
        tag_regions(img, [m], centers=[(20.0, 20.0)], min_area=0)
    with pytest.raises(InputError, match="centers has 2"):
        tag_regions(img, [m], centers=[None, None])


def test_toy_dataset_from_the_somprobe_command(tmp_path):
    from typer.testing import CliRunner

    from somprobe.cli import app

    out = tmp_path / "toy"
    result = CliRunner().invoke(
        app, ["data", "toy", str(out), "--train", "6", "--eval", "3", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "train" / "mix_som.json").exists()
    assert (out / "eval" / "listing.json").exists()


def test_an_evaluation_split_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``--train 0`` writes the held-out split only (no training files, no mixes)."""
    from typer.testing import CliRunner

    from somprobe.cli import app
    from somprobe.data.toyworld.dataset import load_manifest

    manifest = write_toy_dataset(tmp_path / "a", train_scenes=0, eval_scenes=3, seed=3,
                                 progress=False)  # fmt: skip
    assert not (tmp_path / "a" / "train").exists()
    assert manifest["train"]["files"] == {"scenes": 0} and manifest["train"]["mixes"] == {}
    assert manifest["eval"]["files"]["scenes"] == 3
    for name in ("listing", "tag_qa", "instruct", "pope_random"):
        validate_file(tmp_path / "a" / "eval" / f"{name}.json", image_root=tmp_path / "a" / "eval")
    assert load_manifest(tmp_path / "a")["eval"]["files"]["listing"] == 3
    # the same held-out scenes as a full dataset's
    full = write_toy_dataset(tmp_path / "b", train_scenes=2, eval_scenes=3, seed=3, progress=False)
    assert full["eval"]["files"] == manifest["eval"]["files"]
    for name in ("eval/pope_adversarial.json", "eval/tagged/images/eval_000002.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    result = CliRunner().invoke(
        app, ["data", "toy", str(tmp_path / "c"), "--train", "0", "--eval", "2", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "eval" / "listing.json").is_file()
    assert not (tmp_path / "c" / "train").exists()
    with pytest.raises(InputError, match="nothing to write"):
        write_toy_dataset(tmp_path / "d", train_scenes=0, eval_scenes=0, progress=False)
    with pytest.raises(InputError, match="no training scenes"):
        write_toy_dataset(tmp_path / "d", train_scenes=0, eval_scenes=1, mix_records=5)


def test_the_evaluation_split_holds_no_scene_pixels_while_it_writes_pope(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Memory stays flat in the scene count: images are freed scene by scene."""
    import gc
    import weakref

    from somprobe.data.toyworld import dataset as module

    images: list[weakref.ref] = []  # type: ignore[type-arg]
    real_iter, real_write = module.iter_scenes, module._write_lines
    alive_at_pope: list[int] = []

    def tracking_iter(*args, **kwargs):  # type: ignore[no-untyped-def]
        for key, scene in real_iter(*args, **kwargs):
            images.append(weakref.ref(scene.image))
            yield key, scene

    def tracking_write(lines, path):  # type: ignore[no-untyped-def]
        if path.name.startswith("pope_"):
            gc.collect()
            alive_at_pope.append(sum(ref() is not None for ref in images))
        return real_write(lines, path)

    monkeypatch.setattr(module, "iter_scenes", tracking_iter)
    monkeypatch.setattr(module, "_write_lines", tracking_write)
    module.write_eval_split(tmp_path / "eval", WorldConfig(), 6, progress=False)
    assert len(images) == 6 and len(alive_at_pope) == 3
    assert max(alive_at_pope) <= 1  # at most the loop's last scene

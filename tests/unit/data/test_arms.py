"""Matched arms: identical instruction records in identical order, SoM/control paired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from somprobe.data.llava_json import read_records, validate_file
from somprobe.data.toyworld.arms import (
    ARMS,
    arm_files,
    control_answer,
    instruction_digest,
    load_arms_manifest,
    write_arms_dataset,
)
from somprobe.data.toyworld.dataset import scene_seed
from somprobe.data.toyworld.scenes import make_scene, world
from somprobe.errors import DataFormatError, InputError
from somprobe.tagging.io import load_tagset


@pytest.fixture(scope="module")
def arms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("arms")
    write_arms_dataset(root, stage1_records=120, instruct_records=80, som_share=0.25,
                       eval_scenes=6, workers=1, progress=False)  # fmt: skip
    return root


def test_pools_have_the_asked_sizes_and_shares(arms: Path) -> None:
    m = load_arms_manifest(arms)
    assert m["pools"] == {"stage1": 120, "instruct": 80, "som": 20, "control": 20}
    assert m["som"] == {"share": 0.25, "listing": 7, "tag_qa": 13}  # listing : QA ≈ 1 : 2
    ids = [r.id for r in read_records(arms / "train" / "pools" / "instruct.json")]
    assert sum(i.startswith("digits_") for i in ids) == 4  # 5 % digit reading
    ids1 = [r.id for r in read_records(arms / "train" / "pools" / "stage1.json")]
    assert sum(i.startswith("digits_") for i in ids1) == 6 and len(set(ids1)) == 120
    for name in ("stage1", "instruct", "som", "control"):
        validate_file(arms / "train" / "pools" / f"{name}.json", image_root=arms / "train")


def test_the_three_arms_share_instruction_records_in_order(arms: Path) -> None:
    files = arm_files(arms, seed=0)
    digests = {instruction_digest(files[a]) for a in ARMS}
    assert len(digests) == 1
    recs = {a: read_records(files[a]) for a in ARMS}
    base_ids = [r.id for r in recs["baseline"]]
    for arm in ("som", "control"):
        kept = [r.id for r in recs[arm] if r.id.startswith(("instruct_", "digits_"))]
        assert kept == base_ids
        assert len(recs[arm]) == len(base_ids) + 20
    # SoM and control records sit at the same positions, on the same images
    som_pos = [
        i for i, r in enumerate(recs["som"]) if not r.id.startswith(("instruct_", "digits_"))
    ]
    ctl_pos = [i for i, r in enumerate(recs["control"]) if r.id.startswith("control_")]
    assert som_pos == ctl_pos
    assert [recs["som"][i].image for i in som_pos] == [recs["control"][i].image for i in ctl_pos]


def test_a_changed_record_changes_the_digest(arms: Path, tmp_path: Path) -> None:
    """The hash test can fail: swap two instruction records and the digest differs."""
    files = arm_files(arms, seed=0)
    data = json.loads(files["baseline"].read_text())
    data[0], data[1] = data[1], data[0]
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(data))
    assert instruction_digest(swapped) != instruction_digest(files["baseline"])


def test_seeds_reorder_but_keep_the_records(arms: Path) -> None:
    a, b = arm_files(arms, seed=0), arm_files(arms, seed=1)
    ra, rb = read_records(a["som"]), read_records(b["som"])
    assert [r.id for r in ra] != [r.id for r in rb]
    assert sorted(r.id for r in ra) == sorted(r.id for r in rb)
    assert instruction_digest(a["baseline"]) != instruction_digest(b["baseline"])
    assert arm_files(arms, seed=0) == a  # written once, then reused


def test_control_lists_objects_in_reading_order_without_tag_numbers(arms: Path) -> None:
    cfg = world("v2")
    for rec in read_records(arms / "train" / "pools" / "control.json"):
        key = rec.id.removeprefix("control_")
        index = int(key.split("_")[1])
        scene = make_scene(cfg, scene_seed(0, "train", index))
        answer = rec.conversations[1].value
        ordered = sorted(scene.objects, key=lambda o: (o.center[1], o.center[0]))
        assert answer.splitlines() == [f"{i}. {o.category}" for i, o in enumerate(ordered, 1)]
        assert "tag" not in rec.conversations[0].value.lower()
        tagset = load_tagset(arms / "train" / "tagged" / "tagsets" / f"{key}.json")
        assert sorted(t.category for t in tagset) == sorted(o.category for o in scene.objects)
    assert control_answer([]) == ""


def test_som_listing_uses_tag_numbers(arms: Path) -> None:
    for rec in read_records(arms / "train" / "pools" / "som.json"):
        if rec.id.startswith("listing_"):
            key = rec.id.removeprefix("listing_")
            tagset = load_tagset(arms / "train" / "tagged" / "tagsets" / f"{key}.json")
            expected = [f"{t.id}. {t.category}" for t in tagset]
            assert rec.conversations[1].value.splitlines() == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"stage1_records": 0}, InputError, "stage1_records=0"),
        ({"som_share": 1.5}, InputError, "som_share=1.5"),
        ({"digit_share": 0.9}, InputError, "digit_share=0.9"),
        ({"instruct_records": True}, InputError, "instruct_records=True"),
        ({"seed": -1}, InputError, "seed"),
    ],
)
def test_bad_settings_are_clear_errors(
    tmp_path: Path, kwargs: dict, error: type, message: str
) -> None:  # type: ignore[type-arg]
    with pytest.raises(error, match=message):
        write_arms_dataset(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_arm_files_need_an_arms_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="write_arms_dataset first"):
        arm_files(tmp_path, seed=0)
    (tmp_path / "manifest.json").write_text('{"format": "other", "config": {}}')
    with pytest.raises(DataFormatError, match=r"not a 'somprobe\.toyworld\.arms' manifest"):
        arm_files(tmp_path, seed=0)


def test_a_smaller_run_takes_a_matched_subset_of_the_same_pools(arms: Path) -> None:
    full = arm_files(arms, seed=0)
    small = arm_files(arms, seed=0, instruct=40, som=10)
    assert small["baseline"].parent != full["baseline"].parent
    assert len({instruction_digest(small[a]) for a in ARMS}) == 1
    recs = {a: read_records(small[a]) for a in ARMS}
    assert len(recs["baseline"]) == 40 and len(recs["som"]) == len(recs["control"]) == 50
    som_images = [r.image for r in recs["som"] if not r.id.startswith(("instruct_", "digits_"))]
    ctl_images = [r.image for r in recs["control"] if r.id.startswith("control_")]
    assert som_images == ctl_images
    full_ids = [r.id for r in read_records(full["baseline"])]
    assert [r.id for r in recs["baseline"]] == full_ids[:40]  # a prefix of the same order
    for bad in ({"instruct": 0}, {"instruct": 81}, {"som": 21}, {"som": True}):
        with pytest.raises(InputError, match="pool holds"):
            arm_files(arms, seed=0, **bad)

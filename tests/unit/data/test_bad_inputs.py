"""Hostile inputs to the public functions of ``somprobe.data`` (and its toy world): each
must raise a :class:`~somprobe.errors.SomprobeError` that names the problem, never a raw
``KeyError`` / ``TypeError`` / ``UnicodeDecodeError``, and never pass silently.

One table row per hostile input: (function call, error class, message pattern)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import somprobe.data as D
from somprobe.data.build import load_describer
from somprobe.data.mix import MixSource, mix_files
from somprobe.data.runner import Journal, parse_shard
from somprobe.data.tagging import folder_items, superpixel_source, tag_images
from somprobe.data.toyworld import WorldConfig, make_scene, shape_mask
from somprobe.data.toyworld.dataset import load_manifest, write_toy_dataset
from somprobe.errors import DataFormatError, InputError, SomprobeError, WriteError
from somprobe.tagging import Tag, TagSet


@dataclass(frozen=True)
class Files:
    """Hostile files, written once for the module."""

    root: Path
    good: Path  # a valid LLaVA file with one record "a"
    bad: Path  # a path under a regular file: unwritable, even for root

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    def tagged(self, name: str, tagset_text: str | None) -> Path:
        """A tagged folder holding one TagSet file with this content (None: no file)."""
        folder = self.root / name
        (folder / "tagsets").mkdir(parents=True, exist_ok=True)
        if tagset_text is not None:
            (folder / "tagsets" / "k.json").write_text(tagset_text)
        return folder

    def images(self, name: str, files: dict[str, bytes | None]) -> list[Any]:
        """Image items of a folder: None writes a valid 40×60 PNG, bytes that content."""
        folder = self.folder(name)
        for file, content in files.items():
            if content is None:
                Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(folder / file)
            else:
                (folder / file).write_bytes(content)
        return folder_items(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("hostile")
    good = root / "good.json"
    D.write_records([D.make_record("a", None, [("Q?", "A")])], good)
    (root / "a-file").write_text("a regular file\n")
    return Files(root, good, root / "a-file" / "sub")


def _record(**fields: Any) -> str:
    obj = {
        "id": "a",
        "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
    }
    obj.update(fields)
    return json.dumps([obj])


EMPTY = TagSet([], (4, 4))
RNG = np.random.default_rng(0)
MASK = np.ones((2, 2), bool)

Case = tuple[str, Callable[[Files], object], type[SomprobeError], str]

CASES: list[Case] = [
    # ---------------------------------------------------------------- LLaVA JSON files
    ("truncated array", lambda f: D.read_records(f.write("t.json", '[{"id": "a", "conv')), DataFormatError, r"record #0 \(line 1\) is not valid JSON"),
    ("cut after a record", lambda f: D.read_records(f.write("t2.json", f.good.read_text()[:-3])), DataFormatError, "after record #0, after record id='a', found 'end of file'"),
    ("zero-byte file", lambda f: D.read_records(f.write("e.json", "")), DataFormatError, r"expected a JSON array starting with '\['"),
    ("binary file", lambda f: D.read_records(f.write("b.json", b"\x00\x01\x02")), DataFormatError, "expected a JSON array"),
    ("not UTF-8", lambda f: D.read_records(f.write("u.json", b"[\xff\xfe]")), DataFormatError, "not UTF-8"),
    ("not UTF-8 JSONL", lambda f: D.read_records(f.write("u.jsonl", b'{"id": "\xff"}\n')), DataFormatError, "not UTF-8"),
    ("JSONL bad line", lambda f: D.read_records(f.write("l.jsonl", _record()[1:-1] + "\n{oops\n")), DataFormatError, r"record #1 \(line 2\) is not valid JSON"),
    ("array of numbers", lambda f: D.read_records(f.write("n.json", "[1, 2]")), DataFormatError, "expected a JSON object"),
    ("trailing garbage", lambda f: D.read_records(f.write("g.json", "[]x")), DataFormatError, "after the closing"),
    ("record without id", lambda f: D.read_records(f.write("i.json", _record(id=None).replace('"id": null, ', ""))), DataFormatError, "field 'id' is missing"),
    ("empty id", lambda f: D.read_records(f.write("i2.json", _record(id=""))), DataFormatError, "field 'id' must be a non-empty"),
    ("bool id", lambda f: D.read_records(f.write("i3.json", _record(id=True))), DataFormatError, "field 'id'"),
    ("no conversations", lambda f: D.read_records(f.write("c.json", '[{"id": "a"}]')), DataFormatError, "field 'conversations' must be a non-empty list"),
    ("turns not alternating", lambda f: D.read_records(f.write("c2.json", _record(conversations=[{"from": "gpt", "value": "A"}]))), DataFormatError, r"conversations\[0\]\.from"),
    ("turn value not a string", lambda f: D.read_records(f.write("c3.json", _record(conversations=[{"from": "human", "value": 3}]))), DataFormatError, r"conversations\[0\]\.value' must be a string"),
    ("image but no <image>", lambda f: D.read_records(f.write("im.json", _record(image="x.png"))), DataFormatError, "exactly once"),
    ("<image> but no image", lambda f: D.read_records(f.write("im2.json", _record(conversations=[{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]))), DataFormatError, "has no 'image'"),
    ("image not a string", lambda f: D.read_records(f.write("im3.json", _record(image=5))), DataFormatError, "field 'image'"),
    ("unvalidated read of a torn turn", lambda f: list(D.iter_records(f.write("w.json", '[{"id": "a", "conversations": [{"x": 1}]}]'), validate=False)), DataFormatError, r"conversations\[0\]"),
    ("unvalidated read of a non-object turn", lambda f: list(D.iter_records(f.write("w2.json", '[{"id": "a", "conversations": [3]}]'), validate=False)), DataFormatError, r"conversations\[0\]"),
    ("missing file", lambda f: D.read_records(f.root / "nope.json"), InputError, "no such file"),
    ("a folder, not a file", lambda f: D.read_records(f.root), InputError, "no such file"),
    ("validate: duplicate ids", lambda f: D.validate_file(f.write("d.json", _record()[:-1] + "," + _record()[1:])), DataFormatError, "duplicates record #0"),
    ("validate: missing image file", lambda f: D.validate_file(f.write("mi.json", _record(image="x.png", conversations=[{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}])), image_root=f.root), DataFormatError, "does not exist"),
    ("validate: image root missing", lambda f: D.validate_file(f.good, image_root=f.root / "nowhere"), InputError, "image root .* is not a folder"),
    ("validate_record: a list", lambda f: D.validate_record([]), DataFormatError, "expected a JSON object"),
    ("make_record: no turns", lambda f: D.make_record("a", None, []), DataFormatError, "non-empty list"),
    ("make_record: a turn of one string", lambda f: D.make_record("a", None, [("Q?",)]), InputError, r"\(question, answer\) pair"),  # type: ignore[list-item]
    ("make_record: a turn of numbers", lambda f: D.make_record("a", None, [(1, 2)]), InputError, r"\(question, answer\) pair"),  # type: ignore[list-item]
    ("write_records: unwritable", lambda f: D.write_records([], f.bad / "x.json"), WriteError, "cannot write"),
    ("write_records: invalid dict", lambda f: D.write_records([{"id": "a"}], f.root / "wr.json"), DataFormatError, "field 'conversations'"),
    ("write_records: not a record", lambda f: D.write_records([3], f.root / "wr2.json"), DataFormatError, "expected a JSON object"),  # type: ignore[list-item]
    # ---------------------------------------------------------------- mix
    ("mix: no sources", lambda f: mix_files([], f.root / "m.json"), InputError, "no sources"),
    ("mix: missing source", lambda f: mix_files([MixSource("a", f.root / "nope.json")], f.root / "m.json"), InputError, "no such file"),
    ("mix: empty source file", lambda f: mix_files([MixSource("a", f.write("z.json", ""))], f.root / "m.json"), DataFormatError, "expected a JSON array"),
    ("mix: truncated source", lambda f: mix_files([MixSource("a", f.write("t3.json", f.good.read_text()[:-8]))], f.root / "m.json"), DataFormatError, "not valid JSON|file ends"),
    ("mix: wrong-schema source", lambda f: mix_files([MixSource("a", f.write("s.json", '[{"id": "a"}]'))], f.root / "m.json"), DataFormatError, "field 'conversations'"),
    ("mix: negative size", lambda f: mix_files([MixSource("a", f.good, -1)], f.root / "m.json"), InputError, "size -1 must be a whole number"),
    ("mix: size above available", lambda f: mix_files([MixSource("a", f.good, 5)], f.root / "m.json"), InputError, "has 1 records but 5"),
    ("mix: size as text", lambda f: mix_files([MixSource("a", f.good, "3")], f.root / "m.json"), InputError, "size '3'"),  # type: ignore[arg-type]
    ("mix: negative seed", lambda f: mix_files([MixSource("a", f.good)], f.root / "m.json", seed=-1), InputError, "seed=-1"),
    ("mix: duplicate names", lambda f: mix_files([MixSource("a", f.good), MixSource("a", f.good)], f.root / "m.json"), InputError, "names must be unique"),
    ("mix: an id in two sources", lambda f: mix_files([MixSource("a", f.good), MixSource("b", f.good)], f.root / "m.json"), DataFormatError, "ids must be unique"),
    ("mix: zero buckets", lambda f: mix_files([MixSource("a", f.good)], f.root / "m.json", bucket_records=0), InputError, "bucket_records=0"),
    ("mix: prefix not a string", lambda f: mix_files([MixSource("a", f.good, image_prefix=3)], f.root / "m.json"), InputError, "image_prefix must be a string"),  # type: ignore[arg-type]
    ("mix: not a MixSource", lambda f: mix_files([("a", f.good)], f.root / "m.json"), InputError, "MixSource"),  # type: ignore[list-item]
    ("mix: unwritable output", lambda f: mix_files([MixSource("a", f.good)], f.bad / "m.json"), WriteError, "cannot write"),
    ("mix: output is a folder", lambda f: mix_files([MixSource("a", f.good)], f.root), WriteError, "it is a folder"),
    # ---------------------------------------------------------------- survey
    ("survey: min_items -3", lambda f: D.survey_file(f.good, min_items=-3), InputError, "min_items=-3"),
    ("survey: min_items 0", lambda f: D.survey_records([], min_items=0), InputError, "min_items=0"),
    ("survey: max_item_words 0", lambda f: D.is_listing_style("1. a\n2. b", max_item_words=0), InputError, "max_item_words=0"),
    ("survey: answer not a string", lambda f: D.classify_answer(3), InputError, "must be a string"),  # type: ignore[arg-type]
    ("survey: missing file", lambda f: D.survey_file(f.root / "nope.json"), InputError, "no such file"),
    ("survey: corrupt file", lambda f: D.survey_file(f.write("t4.json", "[{")), DataFormatError, "not valid JSON|file ends"),
    # ---------------------------------------------------------------- shards and journals
    ("shard: not i/n", lambda f: parse_shard("x"), InputError, "write it as i/n"),
    ("shard: i = n", lambda f: parse_shard("2/2"), InputError, "0 ≤ i < n"),
    ("shard: negative i", lambda f: parse_shard("-1/2"), InputError, "0 ≤ i < n"),
    ("shard: n = 0", lambda f: parse_shard("0/0"), InputError, "n ≥ 1"),
    ("shard: three parts", lambda f: parse_shard("1/2/3"), InputError, "write it as i/n"),
    ("journal: first line not settings", lambda f: Journal(f.write("j.partial.jsonl", '[1]\n{"key": "a", "line": null}\n'), {"a": 1}), DataFormatError, "line 1 is not a journal entry"),
    ("journal: entry without key", lambda f: Journal(f.write("j2.partial.jsonl", '{"settings": {"a": 1}}\n{"x": 1}\n{"key": "a", "line": null}\n'), {"a": 1}), DataFormatError, "line 2 is not a journal entry"),
    ("journal: damaged middle line", lambda f: Journal(f.write("j3.partial.jsonl", '{"settings": {"a": 1}}\n{oops\n{"key": "a", "line": null}\n'), {"a": 1}), DataFormatError, "line 2 is damaged"),
    ("journal: other settings", lambda f: Journal(f.write("j4.partial.jsonl", '{"settings": {"a": 2}}\n{"key": "a", "line": null}\n'), {"a": 1}), InputError, "rerun with the same options"),
    # ---------------------------------------------------------------- listing and tag-QA
    ("listing: empty tag set", lambda f: D.listing_record("a", "x.png", EMPTY, RNG), InputError, "no tags"),
    ("listing: tag without category", lambda f: D.label_describer(Tag(1, "1", MASK, MASK, (0.5, 0.5), (0, 0, 1, 1))), InputError, "has no category"),
    ("listing: empty instruction pool", lambda f: D.sample_instruction(RNG, ()), InputError, "pool is empty"),
    ("qa: zero questions", lambda f: D.tag_questions(EMPTY, RNG, n=0), InputError, "n=0"),
    ("qa: unknown kind", lambda f: D.tag_questions(EMPTY, RNG, kinds=("colour",)), InputError, "unknown QA kinds"),  # type: ignore[arg-type]
    ("build: no tagsets folder", lambda f: D.build_listing(f.root, f.root / "l.json"), InputError, "run `somprobe data tag`"),
    ("build: empty tagsets folder", lambda f: D.build_listing(f.tagged("t0", None), f.root / "l.json"), InputError, "no TagSet files"),
    ("build: truncated TagSet", lambda f: D.build_listing(f.tagged("t1", '{"trunc'), f.root / "l1.json", progress=False), DataFormatError, "is not valid JSON"),
    ("build: wrong-schema TagSet", lambda f: D.build_listing(f.tagged("t2", '{"foo": 1}'), f.root / "l2.json", progress=False), DataFormatError, "not a TagSet file"),
    ("build: negative seed", lambda f: D.build_listing(f.tagged("t3", "{}"), f.root / "l3.json", seed=-1), InputError, "seed=-1"),
    ("build: unwritable output", lambda f: D.build_listing(f.tagged("t4", "{}"), f.bad / "l.json"), WriteError, "cannot write"),
    ("build: zero questions", lambda f: D.build_qa(f.tagged("t5", "{}"), f.root / "q.json", questions=0), InputError, "questions=0"),
    ("build: unknown QA kind", lambda f: D.build_qa(f.tagged("t6", "{}"), f.root / "q.json", kinds=["x"]), InputError, "unknown QA kinds"),  # type: ignore[list-item]
    ("build: vocabulary as one string", lambda f: D.build_qa(f.tagged("t7", "{}"), f.root / "q.json", vocabulary="cat"), InputError, "list of category names"),
    ("describer: no colon", lambda f: load_describer("nocolon"), InputError, "package.module:function"),
    ("describer: no such module", lambda f: load_describer("no_such_module_x:f"), InputError, "cannot be loaded"),
    ("describer: not callable", lambda f: load_describer("os:sep"), InputError, "not callable"),
    ("describer: module with a syntax error", lambda f: (f.write("broken_describer.py", "def ("), sys.path.insert(0, str(f.root)), load_describer("broken_describer:f")), InputError, "SyntaxError"),
    # ---------------------------------------------------------------- tagging images
    ("tag: missing image folder", lambda f: folder_items(f.root / "nope"), InputError, "does not exist"),
    ("tag: folder without images", lambda f: folder_items(f.folder("empty")), InputError, "no images"),
    ("tag: two images, one name", lambda f: f.images("dup", {"a.png": None, "a.jpg": None}), InputError, "share the name"),
    ("tag: corrupt image", lambda f: tag_images(f.images("corrupt", {"a.png": b"junk"}), superpixel_source("slic"), f.root / "o1", progress=False), InputError, "cannot be read"),
    ("tag: image deleted after listing", lambda f: tag_images([i for i in f.images("gone", {"a.png": None}) if i.path.unlink() is None], superpixel_source("slic"), f.root / "o2", progress=False), InputError, "does not exist"),
    ("tag: unknown superpixel method", lambda f: superpixel_source("blob"), InputError, "choose one of"),
    ("tag: short side 0", lambda f: tag_images([], superpixel_source(), f.root / "o3", short_side=0), InputError, "short-side 0"),
    ("tag: limit -1", lambda f: tag_images([], superpixel_source(), f.root / "o3", limit=-1), InputError, "limit -1"),
    ("tag: unknown label mode", lambda f: tag_images([], superpixel_source(), f.root / "o3", tag_options={"label_mode": "roman"}), InputError, "label-mode 'roman'"),
    ("tag: unknown tagging option", lambda f: tag_images([], superpixel_source(), f.root / "o3", tag_options={"colour": 1}), InputError, "unknown tagging option"),
    ("tag: unwritable output", lambda f: tag_images([], superpixel_source(), f.bad / "o"), WriteError, "cannot write"),
    ("tag: missing mask folder", lambda f: D.mask_folder_source(f.root / "nope"), InputError, "does not exist"),
    ("tag: no mask for an image", lambda f: tag_images(f.images("nomask", {"a.png": None}), D.mask_folder_source(f.folder("nomasks")), f.root / "o4", progress=False), InputError, "no mask file"),
    ("tag: corrupt mask PNG", lambda f: (f.write("masks1/a.png", b"junk"), tag_images(f.images("m1", {"a.png": None}), D.mask_folder_source(f.root / "masks1"), f.root / "o5", progress=False)), DataFormatError, "cannot be read as an image"),
    ("tag: corrupt mask stack", lambda f: (f.write("masks2/a.npy", b"junk"), tag_images(f.images("m2", {"a.png": None}), D.mask_folder_source(f.root / "masks2"), f.root / "o6", progress=False)), DataFormatError, "not a numpy array file"),
    ("tag: mask of another size", lambda f: (np.save(f.folder("masks3") / "a.npy", np.ones((1, 10, 10), bool)), tag_images(f.images("m3", {"a.png": None}), D.mask_folder_source(f.root / "masks3"), f.root / "o7", progress=False)), InputError, "10×10 but the image is 60×40"),
    ("tag: categories not an object", lambda f: (np.save(f.folder("masks4") / "a.npy", np.ones((1, 40, 60), bool)), f.write("masks4/a.json", '["cat"]'), tag_images(f.images("m4", {"a.png": None}), D.mask_folder_source(f.root / "masks4"), f.root / "o8", progress=False)), DataFormatError, r"expected a JSON object \{label: category\}"),
    ("tag: missing COCO file", lambda f: D.coco_source(f.root / "nope.json", f.root), InputError, "no COCO annotation file"),
    ("tag: truncated COCO file", lambda f: D.coco_source(f.write("coco1.json", '{"images": ['), f.root), DataFormatError, "not valid JSON"),
    ("tag: COCO without images", lambda f: D.coco_source(f.write("coco2.json", '{"foo": 1}'), f.root), DataFormatError, "no 'images' list"),
    ("tag: COCO image without id", lambda f: D.coco_source(f.write("coco3.json", json.dumps({"images": [{"file_name": "x.jpg"}], "annotations": [], "categories": []})), f.root), DataFormatError, "missing field 'id'"),
    ("tag: COCO image missing on disk", lambda f: tag_images(D.coco_source(f.write("coco4.json", json.dumps({"images": [{"id": 1, "file_name": "none.jpg", "width": 4, "height": 4}], "annotations": [], "categories": []})), f.root)[0], superpixel_source(), f.root / "o9", progress=False), InputError, "none.jpg .* does not exist"),
    # ---------------------------------------------------------------- toy world
    ("toy: negative train", lambda f: write_toy_dataset(f.root / "toy", train_scenes=-1, eval_scenes=1), InputError, "train_scenes=-1"),
    ("toy: negative eval", lambda f: write_toy_dataset(f.root / "toy", train_scenes=1, eval_scenes=-1), InputError, "eval_scenes=-1"),
    ("toy: nothing to write", lambda f: write_toy_dataset(f.root / "toy", train_scenes=0, eval_scenes=0), InputError, "nothing to write"),
    ("toy: negative seed", lambda f: write_toy_dataset(f.root / "toy", train_scenes=1, eval_scenes=1, seed=-1), InputError, "seed=-1"),
    ("toy: zero mix records", lambda f: write_toy_dataset(f.root / "toy", train_scenes=2, eval_scenes=1, mix_records=0), InputError, "mix_records=0"),
    ("toy: mix above scenes", lambda f: write_toy_dataset(f.root / "toy", train_scenes=2, eval_scenes=1, mix_records=3), InputError, "mix_records=3"),
    ("toy: mix without training", lambda f: write_toy_dataset(f.root / "toy", train_scenes=0, eval_scenes=1, mix_records=3), InputError, "no training scenes"),
    ("toy: fraction above 1", lambda f: write_toy_dataset(f.root / "toy", train_scenes=2, eval_scenes=1, som_fraction=2), InputError, "som_fraction"),
    ("toy: zero turns", lambda f: write_toy_dataset(f.root / "toy", train_scenes=1, eval_scenes=1, turns=0), InputError, "turns=0"),
    ("toy: unwritable output", lambda f: write_toy_dataset(f.bad / "toy", train_scenes=1, eval_scenes=1), WriteError, "cannot write"),
    ("toy: image size 0", lambda f: WorldConfig(image_size=0), InputError, "image_size=0"),
    ("toy: patch size 0", lambda f: WorldConfig(patch_size=0), InputError, "patch_size=0"),
    ("toy: zero objects", lambda f: WorldConfig(min_objects=0), InputError, "min_objects"),
    ("toy: unknown colour", lambda f: WorldConfig(colours=("pink",)), InputError, "colours"),
    ("toy: too many objects to place", lambda f: make_scene(WorldConfig(min_objects=20, max_objects=20), 0), InputError, "could not place"),
    ("toy: negative scene seed", lambda f: make_scene(WorldConfig(), -1), InputError, "scene seed -1"),
    ("toy: scene seed as text", lambda f: make_scene(WorldConfig(), "7"), InputError, "scene seed '7'"),  # type: ignore[arg-type]
    ("toy: unknown shape", lambda f: shape_mask("blob", (1.0, 1.0), 1.0, 4), InputError, "unknown shape"),
    ("toy: no manifest", lambda f: load_manifest(f.root), InputError, "not found"),
    ("toy: corrupt manifest", lambda f: load_manifest(f.write("man/manifest.json", "{").parent), DataFormatError, "not valid JSON"),
    ("toy: manifest without config", lambda f: load_manifest(f.write("man2/manifest.json", "[]").parent), DataFormatError, "not a toy-world manifest"),
]  # fmt: skip


def test_the_table_is_readable() -> None:
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)) == 124, len(names)


@pytest.mark.parametrize(("name", "call", "error", "match"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input(
    files: Files, name: str, call: Callable[[Files], object], error: type[SomprobeError], match: str
) -> None:
    with pytest.raises(error, match=match):
        call(files)

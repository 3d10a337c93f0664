"""Hostile inputs to the public functions of ``somprobe.finetune``: each must raise a
:class:`~somprobe.errors.SomprobeError` naming the problem, and settings must fail
*before* the model loads or a step runs (never a raw ``ValueError`` / ``TypeError`` from
transformers, peft or pandas halfway through a run, never a silent fallback).

One table row per hostile input: (function call, error class, message pattern)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from finetune_testing import write_colour_set
from PIL import Image

from somprobe.errors import (
    DataFormatError,
    InputError,
    ModelLoadError,
    SomprobeError,
    WriteError,
)
from somprobe.finetune import (
    LlavaSFTDataset,
    LoraOptions,
    PeriodicEval,
    SFTCollator,
    finetune,
    get_preset,
    merge_lora,
    set_trainable,
    training_arguments,
)

_RUNS = itertools.count()  # every call trains into a fresh folder: cases stay independent


@dataclass(frozen=True)
class Setup:
    """A tiny model, a small valid training set, and places to put hostile files."""

    root: Path
    model: Path
    data: Path
    images: Path
    processor: Any
    bad: Path  # under a regular file: unwritable, even for root

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def train(self, **kw: Any) -> object:
        """``finetune`` of one tiny step, with ``kw`` replacing any argument."""
        args: dict[str, Any] = {
            "model": self.model, "data": self.data, "image_folder": self.images,
            "output_dir": self.root / f"run{next(_RUNS)}", "preset": "toy", "max_steps": 1,
            "global_batch_size": 4, "per_device_batch_size": 4, "warmup": 0,
            "progress": False,
        }  # fmt: skip
        args.update(kw)
        return finetune(args.pop("model"), args.pop("data"), args.pop("image_folder"),
                        args.pop("output_dir"), **args)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_llava_path: Path) -> Setup:
    from somprobe.models import load_model

    root = tmp_path_factory.mktemp("hostile")
    data, images = write_colour_set(root / "colour", n=8)
    (root / "a-file").write_text("a regular file\n")
    _, processor = load_model(tiny_llava_path)
    return Setup(root, tiny_llava_path, data, images, processor, root / "a-file" / "sub")


def _corrupt_images(s: Setup) -> Path:
    folder = s.root / "corrupt"
    if not folder.exists():
        shutil.copytree(s.images, folder)
        (folder / "0.png").write_bytes(b"not a png")
    return folder


Case = tuple[str, Callable[[Setup], object], type[SomprobeError], str]

CASES: list[Case] = [
    # ---------------------------------------------------------------- settings (checked before the model loads)
    ("max_steps 0", lambda s: s.train(max_steps=0), InputError, "max_steps=0"),
    ("max_steps -5", lambda s: s.train(max_steps=-5), InputError, "max_steps=-5"),
    ("epochs 0", lambda s: s.train(max_steps=None, epochs=0), InputError, "epochs=0"),
    ("global batch 0", lambda s: s.train(global_batch_size=0), InputError, "global_batch_size=0"),
    ("per-device batch 0", lambda s: s.train(per_device_batch_size=0), InputError, "per_device_batch_size=0"),
    ("batch not a multiple", lambda s: s.train(per_device_batch_size=3), InputError, "not a multiple"),
    ("learning rate 0", lambda s: s.train(learning_rate=0.0), InputError, "learning_rate=0.0"),
    ("learning rate -1", lambda s: s.train(learning_rate=-1.0), InputError, "learning_rate=-1.0"),
    ("warmup -1", lambda s: s.train(warmup=-1), InputError, "warmup=-1"),
    ("warmup 1.5 steps", lambda s: s.train(warmup=1.5), InputError, "warmup=1.5"),
    ("weight decay -1", lambda s: s.train(weight_decay=-1.0), InputError, "weight_decay=-1.0"),
    ("save_steps 0", lambda s: s.train(save_steps=0), InputError, "save_steps=0"),
    ("save_steps -1", lambda s: s.train(save_steps=-1), InputError, "save_steps=-1"),
    ("save_steps 2.5", lambda s: s.train(save_steps=2.5), InputError, "save_steps=2.5"),
    ("save_total_limit 0", lambda s: s.train(save_total_limit=0), InputError, "save_total_limit=0"),
    ("logging_steps 0", lambda s: s.train(logging_steps=0), InputError, "logging_steps=0"),
    ("seed -1", lambda s: s.train(seed=-1), InputError, "seed=-1"),
    ("max_length 0", lambda s: s.train(max_length=0), InputError, "max_length=0"),
    ("trainable vision", lambda s: s.train(trainable="vision"), InputError, "trainable='vision'"),
    ("aspect ratio wide", lambda s: s.train(image_aspect_ratio="wide"), InputError, "image_aspect_ratio='wide'"),
    ("template llama", lambda s: s.train(template="llama"), InputError, "template='llama'"),
    ("unknown scheduler", lambda s: s.train(lr_scheduler="zigzag"), InputError, "lr_scheduler='zigzag'"),
    ("unknown scheduler argument", lambda s: s.train(lr_scheduler_kwargs={"nope": 1}), InputError, "lr_scheduler_kwargs"),
    ("dataloader workers -1", lambda s: s.train(dataloader_workers=-1), InputError, "dataloader_workers=-1"),
    ("unknown field", lambda s: s.train(lr=1.0), InputError, "unknown preset field"),
    ("unknown preset", lambda s: s.train(preset="huge"), InputError, "unknown finetune preset"),
    ("preset not a name", lambda s: get_preset(3), InputError, "unknown finetune preset"),  # type: ignore[arg-type]
    ("on_bad_record ignore", lambda s: s.train(on_bad_record="ignore"), InputError, "on_bad_record"),
    ("save dtype float7", lambda s: s.train(save_dtype="float7"), ModelLoadError, "unknown dtype 'float7'"),
    ("missing DeepSpeed config", lambda s: s.train(deepspeed=str(s.root / "ds.json")), InputError, "DeepSpeed config .* does not exist"),
    ("resume from a missing checkpoint", lambda s: s.train(resume=str(s.root / "nockpt")), InputError, "no checkpoint folder"),
    ("LoRA rank 0", lambda s: LoraOptions(r=0), InputError, "LoRA r=0"),
    ("LoRA alpha -1", lambda s: LoraOptions(alpha=-1), InputError, "LoRA alpha=-1"),
    ("LoRA dropout 1", lambda s: LoraOptions(dropout=1.0), InputError, "LoRA dropout=1.0"),
    ("three processes", lambda s: training_arguments(get_preset("toy"), s.root / "x", world_size=3), InputError, "not a multiple"),
    # ---------------------------------------------------------------- files
    ("missing data file", lambda s: s.train(data=s.root / "nope.json"), InputError, "does not exist"),
    ("no data files", lambda s: s.train(data=[]), InputError, "no training data"),
    ("data is a folder", lambda s: s.train(data=s.root), InputError, "does not exist"),
    ("unwritable output folder", lambda s: s.train(output_dir=s.bad / "run"), WriteError, "cannot write"),
    ("output folder is a file", lambda s: s.train(output_dir=s.root / "a-file"), WriteError, "cannot write"),
    ("missing model", lambda s: s.train(model=s.root / "nomodel"), ModelLoadError, "neither a local folder"),
    ("not a model folder", lambda s: s.train(model=s.images), ModelLoadError, "could not load"),
    ("missing image folder", lambda s: s.train(image_folder=s.root / "noimages"), InputError, "image folder .* does not exist"),
    ("no image folder for image records", lambda s: s.train(image_folder=None), InputError, "no image folder was given"),
    ("truncated data", lambda s: s.train(data=s.write("t.json", s.data.read_text()[:-30])), DataFormatError, "not valid JSON"),
    ("zero-byte data", lambda s: s.train(data=s.write("z.json", "")), DataFormatError, "expected a JSON array"),
    ("wrong-schema data", lambda s: s.train(data=s.write("w.json", '[{"id": "a"}]')), DataFormatError, "field 'conversations'"),
    ("records missing their image", lambda s: s.train(data=s.write("g.json", s.data.read_text().replace('.png"', '.gone.png"'))), DataFormatError, "no usable training record .*missing_image=8"),
    ("no record at all", lambda s: s.train(data=s.write("e.json", "[]")), DataFormatError, "no usable training record"),
    ("a missing image with on_bad_record=error", lambda s: s.train(data=s.write("g1.json", s.data.read_text().replace('"3.png"', '"gone.png"')), on_bad_record="error"), DataFormatError, "gone.png"),
    ("corrupt image file", lambda s: s.train(image_folder=_corrupt_images(s), max_steps=2), DataFormatError, "cannot be read"),
    # ---------------------------------------------------------------- dataset, collator, callbacks, LoRA merge
    ("dataset: aspect ratio", lambda s: LlavaSFTDataset(s.data, s.images, s.processor, image_aspect_ratio="x"), InputError, "image_aspect_ratio"),  # type: ignore[arg-type]
    ("dataset: on_bad_record", lambda s: LlavaSFTDataset(s.data, s.images, s.processor, on_bad_record="x"), InputError, "on_bad_record"),  # type: ignore[arg-type]
    ("dataset: template", lambda s: LlavaSFTDataset(s.data, s.images, s.processor, template="x"), InputError, "unknown conversation template"),  # type: ignore[arg-type]
    ("dataset: max_length 0", lambda s: LlavaSFTDataset(s.data, s.images, s.processor, max_length=0), InputError, "max_length=0"),
    ("dataset: max_length -1", lambda s: LlavaSFTDataset(s.data, s.images, s.processor, max_length=-1), InputError, "max_length=-1"),
    ("dataset: items not records", lambda s: LlavaSFTDataset([3], s.images, s.processor), InputError, "LLaVA JSON paths or LlavaRecord"),  # type: ignore[list-item]
    ("collator: empty batch", lambda s: SFTCollator(0)([]), InputError, "empty batch"),
    ("trainable: unknown part", lambda s: set_trainable(torch.nn.Linear(2, 2), "x"), InputError, "trainable must be one of"),  # type: ignore[arg-type]
    ("trainable: not a LLaVA", lambda s: set_trainable(torch.nn.Linear(2, 2), "all"), InputError, "expects a LlavaForConditionalGeneration"),
    ("periodic eval every 0", lambda s: PeriodicEval(lambda m: {}, every=0), InputError, "every=0"),
    ("periodic eval unreadable CSV", lambda s: PeriodicEval(lambda m: {}, every=1, csv_path=s.write("curve.csv", 'a,b\n"open quote')), DataFormatError, "not a readable curve CSV"),
    ("merge: missing adapter", lambda s: merge_lora(s.model, s.root / "noadapter", s.root / "m"), InputError, "adapter folder .* does not exist"),
    ("merge: not an adapter", lambda s: merge_lora(s.model, s.images, s.root / "m2"), ModelLoadError, "could not load the LoRA adapter"),
    ("merge: unwritable output", lambda s: merge_lora(s.model, s.images, s.bad / "m"), WriteError, "cannot write"),
]  # fmt: skip


def test_the_table_is_readable() -> None:
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)) == 65, len(names)


@pytest.mark.parametrize(("name", "call", "error", "match"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input(
    setup: Setup, name: str, call: Callable[[Setup], object], error: type[SomprobeError], match: str
) -> None:
    with pytest.raises(error, match=match):
        call(setup)


def test_settings_fail_before_the_model_loads(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad setting costs nothing: the model is never loaded."""
    import somprobe.finetune.trainer as trainer

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(trainer, "load_model", no_load)
    for kw in ({"max_steps": 0}, {"save_steps": -1}, {"lr_scheduler_kwargs": {"x": 1}},
               {"save_dtype": "float7"}, {"data": setup.root / "nope.json"},
               {"output_dir": setup.bad}, {"image_folder": setup.root / "nowhere"}):  # fmt: skip
        with pytest.raises(SomprobeError):
            setup.train(**kw)


def test_a_corrupt_image_is_named(setup: Setup) -> None:
    """Image files that exist but cannot be decoded are found when their item loads."""
    folder = _corrupt_images(setup)
    ds = LlavaSFTDataset(setup.data, folder, setup.processor)
    with pytest.raises(DataFormatError, match=r"record id='s0': image .*0\.png cannot be read"):
        ds[0]
    assert Image.open(folder / "1.png").size == (128, 96)  # the others are fine

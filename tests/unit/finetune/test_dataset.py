"""LlavaSFTDataset: labels on assistant tokens only, images, bad records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from somprobe.data import make_record, write_records
from somprobe.data.llava_json import LlavaRecord, Turn
from somprobe.errors import DataFormatError, InputError
from somprobe.finetune.dataset import (
    IGNORE_INDEX,
    LlavaSFTDataset,
    SkipReport,
    expand_to_square,
    mean_colour,
)
from somprobe.finetune.template import render_conversation


def expected_learned(tokens: list[str]) -> list[bool]:
    """Reference mask from the token strings alone: after each "▁ASSISTANT:" every token up
    to and including "</s>" is learned, a lone "▁" right after the cue included (generation
    starts after "ASSISTANT:", so that blank is the first token the model must write)."""
    out: list[bool] = []
    inside = False
    for tok in tokens:
        if not inside:
            out.append(False)
            if tok == "▁ASSISTANT:":
                inside = True
            continue
        out.append(True)
        if tok == "</s>":
            inside = False
    return out


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    Image.new("RGB", (150, 100), (200, 20, 20)).save(tmp_path / "wide.png")
    Image.new("RGB", (90, 90), (20, 20, 200)).save(tmp_path / "square.png")
    return tmp_path


@pytest.mark.parametrize("template", ["chat", "vicuna_v1"])
def test_labels_fall_on_assistant_tokens_only(tiny_llava, folder: Path, template: str) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    record = make_record(
        "r1",
        "wide.png",
        [
            ("List the tagged items one by one.", "1. red circle\n12. blue square"),
            ("What is tagged 2?", "a green triangle"),
        ],
    )
    ds = LlavaSFTDataset([record], folder, processor, template=template)  # type: ignore[arg-type]
    item = ds[0]
    ids, labels = item["input_ids"], item["labels"]
    tokens = processor.tokenizer.convert_ids_to_tokens(ids.tolist())
    want = expected_learned(tokens)
    got = (labels != IGNORE_INDEX).tolist()
    assert got == want, [(t, g, w) for t, g, w in zip(tokens, got, want, strict=True) if g != w]
    assert torch.equal(labels[labels != IGNORE_INDEX], ids[labels != IGNORE_INDEX])
    learned = processor.tokenizer.decode(ids[labels != IGNORE_INDEX].tolist())
    # the lone "▁" before "1" and "▁a" carry the blank after each cue
    assert learned.strip() == "1. red circle\n12. blue square</s> a green triangle</s>"
    assert "▁" in [t for t, g in zip(tokens, got, strict=True) if g][:1]
    assert tokens.count("</s>") == 2 and sum(want) > 10
    assert (ids == processor.image_token_id).sum() == ds.image_tokens == 64


def test_ids_equal_the_processors(tiny_llava, folder: Path) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    record = make_record("r1", "square.png", [("What colour?", "blue")])
    ds = LlavaSFTDataset([record], folder, processor, image_aspect_ratio="crop")
    text = render_conversation(processor, record).text
    with Image.open(folder / "square.png") as img:
        ref = processor(text=[text], images=[img.convert("RGB")], return_tensors="pt")
    item = ds[0]
    assert torch.equal(item["input_ids"], ref["input_ids"][0])
    assert torch.allclose(item["pixel_values"], ref["pixel_values"][0])


def test_pad_to_square_with_mean_colour(tiny_llava, folder: Path) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    fill = mean_colour(processor)
    assert fill == (122, 116, 104)  # CLIP's mean × 255, truncated as LLaVA does
    with Image.open(folder / "wide.png") as img:
        wide = img.convert("RGB")
    square = np.asarray(expand_to_square(wide, fill))
    assert square.shape == (150, 150, 3)
    assert (square[25:125] == (200, 20, 20)).all()
    assert (square[:25] == fill).all() and (square[125:] == fill).all()
    records = [make_record("w", "wide.png", [("Q?", "A")])]
    padded = LlavaSFTDataset(records, folder, processor, image_aspect_ratio="pad")[0]
    cropped = LlavaSFTDataset(records, folder, processor, image_aspect_ratio="crop")[0]
    ref = processor.image_processor(images=[Image.fromarray(square)], return_tensors="pt")
    assert torch.allclose(padded["pixel_values"], ref["pixel_values"][0])
    assert not torch.allclose(padded["pixel_values"], cropped["pixel_values"])
    same = [make_record("s", "square.png", [("Q?", "A")])]
    a = LlavaSFTDataset(same, folder, processor, image_aspect_ratio="pad")[0]
    b = LlavaSFTDataset(same, folder, processor, image_aspect_ratio="crop")[0]
    assert torch.equal(a["pixel_values"], b["pixel_values"])


def test_text_only_record_has_no_pixels(tiny_llava) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    record = LlavaRecord("t", None, [Turn("human", "Hi?"), Turn("gpt", "hello")])
    item = LlavaSFTDataset([record], None, processor)[0]
    assert item["pixel_values"] is None
    assert not (item["input_ids"] == processor.image_token_id).any()


def bad_records(folder: Path) -> list[LlavaRecord]:
    long_answer = " ".join(["red circle"] * 80)
    return [
        make_record("ok", "square.png", [("Q?", "A")]),
        make_record("gone", "missing.png", [("Q?", "A")]),
        LlavaRecord("mute", "square.png", [Turn("human", "<image>\nQ?")]),
        make_record("long", "square.png", [("Q?", long_answer)]),
        make_record("ok2", "wide.png", [("Q?", "B")]),
    ]


def test_bad_records_are_skipped_and_counted(tiny_llava, folder: Path) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    path = folder / "data.jsonl"
    write_records(bad_records(folder), path)
    ds = LlavaSFTDataset(path, folder, processor, max_length=120)
    assert ds.ids == ["ok", "ok2"]
    assert dict(ds.skipped.counts) == {"missing_image": 1, "no_assistant_turn": 1, "too_long": 1}
    assert ds.skipped.examples == {
        "missing_image": ["gone"],
        "no_assistant_turn": ["mute"],
        "too_long": ["long"],
    }
    summary = ds.skipped.summary()
    assert "skipped 3 record(s)" in summary and "too_long=1 (e.g. long)" in summary
    # the limit counts image tokens: the kept items fit, the long one does not
    assert max(ds.lengths) <= 120


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (1, "image 'missing.png' not found"),
        (2, "no assistant"),
        (3, "exceed the limit of 120"),
    ],
)
def test_bad_records_raise_when_asked(tiny_llava, folder: Path, bad: int, message: str) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    records = [bad_records(folder)[0], bad_records(folder)[bad]]
    with pytest.raises(DataFormatError, match=message):
        LlavaSFTDataset(records, folder, processor, max_length=120, on_bad_record="error")


def test_default_limit_is_the_models_position_limit(tiny_llava, folder: Path) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    limit = model.config.text_config.max_position_embeddings
    ds = LlavaSFTDataset(bad_records(folder)[:1], folder, processor, max_position_embeddings=limit)
    assert ds.max_length == min(limit, processor.tokenizer.model_max_length)
    ds = LlavaSFTDataset(bad_records(folder)[:1], folder, processor, max_position_embeddings=90)
    assert ds.max_length == 90


def test_nothing_usable_and_unreadable_image(tiny_llava, folder: Path) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny_llava
    with pytest.raises(DataFormatError, match=r"no usable training record.*missing_image=1"):
        LlavaSFTDataset([bad_records(folder)[1]], folder, processor)
    (folder / "broken.png").write_bytes(b"not a png")
    ds = LlavaSFTDataset([make_record("b", "broken.png", [("Q?", "A")])], folder, processor)
    with pytest.raises(DataFormatError, match=r"id='b'.*cannot be read"):
        ds[0]
    with pytest.raises(InputError, match="no image folder"):
        LlavaSFTDataset(bad_records(folder)[:1], None, processor)
    with pytest.raises(InputError, match="image_aspect_ratio"):
        LlavaSFTDataset(bad_records(folder)[:1], folder, processor, image_aspect_ratio="fit")  # type: ignore[arg-type]


def test_skip_report_keeps_a_few_examples() -> None:
    report = SkipReport(max_examples=2)
    for i in range(5):
        report.add("too_long", f"r{i}")
    assert report.total == 5 and report.examples == {"too_long": ["r0", "r1"]}
    assert report.to_dict()["counts"] == {"too_long": 5}
    assert SkipReport().summary() == "skipped no records"


@pytest.mark.parametrize("template", ["auto", "chat"])
@pytest.mark.parametrize(
    "answer", ["1. red circle\n2. blue square", "Green", "There are 2 shapes."]
)
def test_learned_tokens_are_what_generation_writes(  # type: ignore[no-untyped-def]
    tiny_llava, folder: Path, template: str, answer: str
) -> None:
    """Training and inference agree: the prompt that generation starts from
    (``build_prompt``, ending at "ASSISTANT:") tokenises to the unlearned prefix, and
    every token after it up to "</s>" is learned, the first one included."""
    from somprobe.models.inputs import build_prompt

    _, processor = tiny_llava
    question = "List the tagged items one by one."
    record = make_record("g", "square.png", [(question, answer)])
    item = LlavaSFTDataset([record], folder, processor, template=template)[0]
    ids, labels = item["input_ids"].tolist(), item["labels"]
    with Image.open(folder / "square.png") as img:
        prompt = processor(
            text=[build_prompt(processor, question)], images=[img.convert("RGB")],
            return_tensors="pt",
        )["input_ids"][0].tolist()  # fmt: skip
    assert ids[: len(prompt)] == prompt
    learned = (labels != IGNORE_INDEX).tolist()
    assert not any(learned[: len(prompt)])
    assert all(learned[len(prompt) :]), processor.tokenizer.convert_ids_to_tokens(
        ids[len(prompt) :]
    )

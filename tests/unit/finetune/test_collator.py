"""SFTCollator: right padding, masks, images; a padded batch gives the unpadded loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from somprobe.data import make_record
from somprobe.data.llava_json import LlavaRecord, Turn
from somprobe.errors import InputError
from somprobe.finetune import IGNORE_INDEX, LlavaSFTDataset, SFTCollator


def test_padding_and_masks() -> None:
    items = [
        {"input_ids": torch.tensor([1, 5, 6]), "labels": torch.tensor([-100, 5, 6]),
         "pixel_values": torch.ones(3, 2, 2)},
        {"input_ids": torch.tensor([1, 7]), "labels": torch.tensor([-100, 7]),
         "pixel_values": None},
    ]  # fmt: skip
    batch = SFTCollator(pad_token_id=3, pad_to_multiple_of=4)(items)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 3], [1, 7, 3, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 5, 6, -100], [-100, 7, -100, -100]]
    assert batch["pixel_values"].shape == (1, 3, 2, 2)
    no_images = SFTCollator(pad_token_id=3)([items[1]])
    assert "pixel_values" not in no_images and no_images["input_ids"].shape == (1, 2)
    with pytest.raises(InputError):
        SFTCollator(pad_token_id=3)([])


def test_batched_loss_equals_token_weighted_single_losses(
    tiny_llava, colour_set: tuple[Path, Path]
) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    _, images = colour_set
    records = [
        make_record("a", "0.png", [("What colour is the square?", "a blue square")]),
        make_record("b", "1.png", [("Name the colour of the square in the image.", "green")]),
        LlavaRecord("t", None, [Turn("human", "Say hi."), Turn("gpt", "hi there")]),
    ]
    ds = LlavaSFTDataset(records, images, processor)
    collate = SFTCollator(pad_token_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        batch_loss = model(**collate([ds[i] for i in range(3)])).loss
        total = count = 0.0
        for i in range(3):
            single = collate([ds[i]])
            n = (single["labels"][0, 1:] != IGNORE_INDEX).sum().item()
            total += model(**single).loss.item() * n
            count += n
    torch.testing.assert_close(batch_loss.item(), total / count, rtol=1e-4, atol=1e-5)

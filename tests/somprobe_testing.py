"""Helpers shared by tests (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from somprobe.errors import LayoutError
from somprobe.models import ImageLayout, build_prompt, load_model, prepare_inputs


def sharpen(model: torch.nn.Module, factor: float = 6.0) -> None:
    """Scale query/key projections so attention is far from uniform (a stronger test)."""
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.k_proj.weight.mul_(factor)


def load_pair(path):  # type: ignore[no-untyped-def]
    """The same weights twice: SDPA (for the Recorder) and eager (the reference)."""
    sdpa, processor = load_model(path)
    eager, _ = load_model(path, attn_implementation="eager")
    sharpen(sdpa)
    sharpen(eager)
    return sdpa, eager, processor


def two_prompts(processor, sizes=((100, 60), (40, 90))):  # type: ignore[no-untyped-def]
    """A left-padded batch of two prompts of different length, images of ``sizes``."""
    images = [Image.new("RGB", sizes[0], (200, 30, 30)), Image.new("RGB", sizes[1], (0, 90, 200))]
    images[0].paste((255, 255, 0), (10, 10, 40, 40))
    prompts = [
        build_prompt(processor, "Hi."),
        build_prompt(processor, "List the tagged items in this picture one by one, please."),
    ]
    return images, prepare_inputs(processor, images, prompts)


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(name: str) -> ModuleType:
    """Import ``experiments/<name>.py`` as module ``name`` (registered in ``sys.modules``,
    where dataclasses look their module up), as running the script would: with its folder
    on ``sys.path``, where its shared ``_common`` module lives."""
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    assert spec and spec.loader
    job = importlib.util.module_from_spec(spec)
    sys.modules[name] = job
    spec.loader.exec_module(job)
    return job


def bad_job_run(name: str, tmp_path: Path, capsys: Any, extra: list[str], *more: str) -> str:
    """Run experiment ``name`` with bad arguments ``extra`` (``{tmp}`` is ``tmp_path``)
    into ``tmp_path/r`` and ``tmp_path/f``; check it exits with 2 before writing anything
    and return its one error line. ``tmp_path`` holds ``file.txt`` (a file where a folder
    is expected), ``empty/`` and a truncated ``bad.json``."""
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir(exist_ok=True)
    (tmp_path / "bad.json").write_text('{"images": [')
    args = ["--out", str(tmp_path / "r"), "--figures", str(tmp_path / "f"), "--no-progress"]
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert load_experiment(name).main([*args, *more, *extra]) == 2
    err = str(capsys.readouterr().err)
    assert err.startswith(f"{name}: error:"), err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "f").exists()
    return err


class Pieces:
    """A tokenizer stand-in: id i decodes to ``pieces[i]`` (to split text as we like)."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.vocab_size = len(pieces)

    def decode(self, ids: list[int], **kwargs: Any) -> str:
        return "".join(self.pieces[i] for i in ids)


# -- image-token layouts of every family, checked through the real processor ----------------

#: Painted image sizes ``(width, height)`` every family's layout is checked on.
PAINT_SIZES = {
    "wide": (200, 90),
    "tall": (60, 170),
    "tiny": (9, 13),
    "square": (100, 100),
    "very-wide": (300, 40),
}


def layout_of(processor: Any, images: list[Image.Image], questions: list[str]) -> Any:
    """``(inputs, ImageLayout)`` of one prompt per image."""
    prompts = [build_prompt(processor, q) for q in questions]
    inputs = prepare_inputs(processor, images, prompts)
    return inputs, ImageLayout.from_inputs(processor, inputs, images=images)


def painted(width: int, height: int, seed: int) -> tuple[Image.Image, list[np.ndarray]]:
    """Three rectangles in pure red, green and blue on black, and their masks."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), np.uint8)
    masks = []
    for channel in range(3):
        x0, y0 = rng.integers(0, max(width - 3, 1)), rng.integers(0, max(height - 3, 1))
        x1 = rng.integers(x0 + 1, width + 1)
        y1 = rng.integers(y0 + 1, height + 1)
        mask = np.zeros((height, width), bool)
        mask[y0:y1, x0:x1] = True
        mask &= pixels.sum(-1) == 0
        pixels[mask, channel] = 255
        masks.append(mask)
    return Image.fromarray(pixels), masks


def check_painted_tokens(
    processor: Any,
    reference: Callable[[Image.Image, Any], np.ndarray],
    size: tuple[int, int],
    seed: int,
    resample: str,
) -> tuple[Any, list[np.ndarray]]:
    """Paint rectangles, run the real processor and compare every image token's colour,
    ``reference(image, resample)`` (one row per token, NaN for a token of no pixels),
    with the layout's coverage of each rectangle. Returns the layout and the masks."""
    image, masks = painted(*size, seed)
    _, layout = layout_of(processor, [image], ["x"])
    nearest = resample == "nearest"
    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    observed = np.clip(reference(image, mode), 0.0, 1.0)
    assert observed.shape[0] == len(layout.image_token_positions(0))
    for channel, mask in enumerate(masks):
        predicted = layout.mask_to_tokens(mask)
        # the tokens without a box are exactly those without pixels
        np.testing.assert_array_equal(np.isnan(predicted), np.isnan(observed[:, channel]))
        keep = ~np.isnan(predicted)
        obs, pred = observed[keep, channel], predicted[keep]
        error = np.abs(obs - pred)
        assert error.mean() < 0.02, (size, channel, error.mean())
        assert error.max() < 0.2, (size, channel, error.max())
        if nearest:  # exact: untouched tokens hold no colour, covered ones are all colour
            assert (obs[pred == 0.0] == 0.0).all(), (size, channel)
            assert (obs[pred >= 1.0 - 1e-9] == 1.0).all(), (size, channel)
            assert (pred[obs == 1.0] > 0.8).all() and (pred[obs == 0.0] < 0.2).all()
    return layout, masks


def check_two_sizes_and_a_forward_pass(model: Any, processor: Any) -> Any:
    """A batch of a wide and a tall image with prompts of unequal length: each row's image
    tokens are the layout's, and the model runs on the inputs. Returns the inputs."""
    images = [Image.new("RGB", (200, 90), "red"), Image.new("RGB", (30, 170), "blue")]
    questions = ["Hi.", "List all of the tagged items in this picture one by one, please."]
    inputs, layout = layout_of(processor, images, questions)
    ids = inputs["input_ids"]
    for row in range(2):
        found = torch.nonzero(ids[row] == processor.image_token_id).flatten().tolist()
        assert layout.images_in(row) == [row]
        assert layout.image_token_positions(row).tolist() == found
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[:2] == ids.shape
    return inputs


def check_sizes_out_of_order(processor: Any, sizes_input: str) -> None:
    """Sizes in another order than the inputs' (caught by ``sizes_input``, or without it
    by the image tokens), or too few of them, are layout errors."""
    images = [Image.new("RGB", (100, 60)), Image.new("RGB", (40, 90))]
    inputs = prepare_inputs(processor, images, [build_prompt(processor, "x")] * 2)
    with pytest.raises(LayoutError, match=sizes_input):
        ImageLayout.from_inputs(processor, inputs, images=images[::-1])
    with pytest.raises(LayoutError, match="processed image"):
        ImageLayout.from_inputs(processor, inputs, images=images[:1])
    # two placeholders in one prompt, ids only: each image's tokens must be consecutive
    token = processor.image_token
    if token == "<image>":
        prompt = build_prompt(processor, f"Compare {token} with the first.")
    else:  # Qwen's ChatML puts one vision block per image before the text
        content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}]
        messages = [{"role": "user", "content": content}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    images = [Image.new("RGB", (64, 64)), Image.new("RGB", (30, 170))]
    ids_only = {"input_ids": prepare_inputs(processor, images, [prompt])["input_ids"]}
    ImageLayout.from_inputs(processor, ids_only, images=images)
    with pytest.raises(LayoutError, match="consecutive"):
        ImageLayout.from_inputs(processor, ids_only, images=images[::-1])


def check_batched_generation(model: Any, processor: Any, split: Path, n: int, new: int) -> None:
    """Greedy answers to ``n`` tag-QA items of ``split`` (unequal prompt lengths) are the
    same generated as one left-padded batch and one by one."""
    from somprobe.evals import generate_answers, load_eval_file

    items = load_eval_file(split / "tag_qa.json", limit=n)
    images, questions = [i.image for i in items], [i.question for i in items]
    questions[1] = questions[1] + " Answer with one word, please."  # unequal lengths
    batched = generate_answers(model, processor, images, questions, max_new_tokens=new,
                               batch_size=n, progress=False)  # fmt: skip
    single = generate_answers(model, processor, images, questions, max_new_tokens=new,
                              batch_size=1, progress=False)  # fmt: skip
    assert batched == single

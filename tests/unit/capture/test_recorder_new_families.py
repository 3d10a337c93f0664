"""The Recorder and the framework backends on tiny LLaVA-NeXT and Qwen2.5-VL, against HF
eager ``output_attentions`` (the reference), on a left-padded batch of two images of
different sizes (so each row has its own number of image tokens)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from PIL import Image
from somprobe_testing import load_pair, two_prompts
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from somprobe.capture import Recorder, capture, teacher_force
from somprobe.capture.collector import BackendUnavailableError
from somprobe.errors import InputError, UnsupportedModelError
from somprobe.models import (
    build_tiny_llava_next,
    build_tiny_qwen2_5_vl,
    check_inputs,
    check_processor,
)
from somprobe.models.adapters import SUPPORTED_ARCHITECTURES, adapter_for

TOL = 1e-5
BUILDERS = {"llava_next": build_tiny_llava_next, "qwen2_vl": build_tiny_qwen2_5_vl}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family_pair(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    return request.param, *load_pair(path)


def _two_images(processor: Any) -> tuple[list[Image.Image], Any]:
    """A wide and a tall image (different token counts) with prompts of unequal length."""
    return two_prompts(processor, sizes=((150, 70), (40, 120)))


def _assert_same_rows(other: Any, native: Any, *, hidden: bool = True) -> None:
    """Every attention row (and hidden state) of ``native``'s trace is ``other``'s."""
    assert native.trace.records
    for r in native.trace.records:
        torch.testing.assert_close(
            other.trace.attention(r.batch, r.position),
            native.trace.attention(r.batch, r.position),
            atol=TOL,
            rtol=0,
        )
        if hidden:
            torch.testing.assert_close(
                other.trace.hidden(r.batch, r.position),
                native.trace.hidden(r.batch, r.position),
                atol=TOL,
                rtol=1e-5,
            )


def _image_counts(inputs: Any, processor: Any) -> list[int]:
    return (inputs["input_ids"] == processor.image_token_id).sum(1).tolist()


@pytest.mark.parametrize("keys", ["image", "all"])
def test_prompt_pass_equals_eager(family_pair: Any, keys: str) -> None:
    _, sdpa, eager, processor = family_pair
    _, inputs = _two_images(processor)
    counts = _image_counts(inputs, processor)
    assert counts[0] != counts[1] and (inputs["attention_mask"][0] == 0).any()
    length = inputs["input_ids"].shape[1]
    first_image = int(torch.nonzero(inputs["input_ids"][1] == processor.image_token_id)[0])
    positions = {0: [length - 5, length - 1], 1: [first_image + 2, length - 2]}
    with torch.no_grad(), Recorder(sdpa, queries=positions, keys=keys) as rec:
        sdpa(**inputs)
    with torch.no_grad():
        reference = eager(**inputs, output_attentions=True, output_hidden_states=True)
    norm = adapter_for(sdpa).language_model.norm
    for b, wanted in positions.items():
        image_cols = torch.nonzero(inputs["input_ids"][b] == processor.image_token_id).flatten()
        if keys == "image":
            assert rec.trace.key_positions(b).tolist() == image_cols.tolist()
        for pos in wanted:
            want = torch.stack([a[b, :, pos, :] for a in reference.attentions])
            want = want[..., image_cols] if keys == "image" else want
            got = rec.trace.attention(b, pos)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=TOL, rtol=0)
            hidden = rec.trace.hidden(b, pos)
            with torch.no_grad():
                hidden = torch.cat([hidden[:-1], norm(hidden[-1:])])
            want_hidden = torch.stack([h[b, pos] for h in reference.hidden_states[1:]])
            torch.testing.assert_close(hidden, want_hidden, atol=TOL, rtol=1e-5)


def test_every_generation_step_equals_eager(family_pair: Any) -> None:
    """Each step's row equals eager ``generate``'s, and also one eager pass over the whole
    generated sequence: the positions used step by step (Qwen's multimodal rotary
    positions, moved on by ``rope_deltas``) are the ones a fresh pass computes."""
    family, sdpa, eager, processor = family_pair
    _, inputs = _two_images(processor)
    new = 5
    options = {"max_new_tokens": new, "min_new_tokens": new, "do_sample": False}
    with Recorder(sdpa, queries="generated") as rec:
        out = sdpa.generate(**inputs, **options)
    ref = eager.generate(**inputs, **options, output_attentions=True, return_dict_in_generate=True)
    assert torch.equal(out, ref.sequences)
    if family == "qwen2_vl":  # the text positions are not the token indices
        assert bool((sdpa.model.rope_deltas != 0).any())
    length = inputs["input_ids"].shape[1]
    expected = [(b, p) for p in range(length, length + new - 1) for b in range(2)]
    assert [(r.batch, r.position) for r in rec.trace.records] == expected
    full = dict(inputs)
    full["input_ids"] = out
    for key in ("attention_mask", "mm_token_type_ids"):
        if key in inputs:
            fill = torch.ones if key == "attention_mask" else torch.zeros
            extra = fill(2, new, dtype=inputs[key].dtype)
            full[key] = torch.cat([inputs[key], extra], dim=1)
    with torch.no_grad():
        whole = eager(**full, output_attentions=True)
    for b, pos in expected:
        cols = rec.trace.key_positions(b)
        got = rec.trace.attention(b, pos)
        step = pos - length + 1
        want = torch.stack([a[b, :, -1, :] for a in ref.attentions[step]])[..., cols]
        torch.testing.assert_close(got, want, atol=TOL, rtol=0)
        want = torch.stack([a[b, :, pos, :] for a in whole.attentions])[..., cols]
        torch.testing.assert_close(got, want, atol=TOL, rtol=0)


@pytest.mark.parametrize("new", [0, 3])
def test_nnsight_equals_native(family_pair: Any, new: int) -> None:
    _, sdpa, _, processor = family_pair
    _, inputs = _two_images(processor)
    length = inputs["input_ids"].shape[1]
    options: dict[str, Any] = (
        {"queries": {0: [length - 3, length - 1], 1: [length - 2]}}
        if new == 0
        else {"queries": "generated", "max_new_tokens": new}
    )
    native = capture(sdpa, inputs, **options)
    other = capture(sdpa, inputs, backend="nnsight", **options)
    assert other.trace.backend == "nnsight"
    assert [(r.batch, r.position) for r in other.trace.records] == [
        (r.batch, r.position) for r in native.trace.records
    ]
    _assert_same_rows(other, native)
    if new:
        assert native.sequences is not None and other.sequences is not None
        assert torch.equal(native.sequences, other.sequences)
    assert sdpa.config.text_config._attn_implementation == "sdpa"


def test_transformer_lens_on_each_family(family_pair: Any) -> None:
    """LLaVA-NeXT: TransformerLens' own adapter, equal to the native rows. Qwen2.5-VL: its
    adapter needs torchvision; without it a BackendUnavailableError says so."""
    family, sdpa, _, processor = family_pair
    _, inputs = _two_images(processor)
    length = inputs["input_ids"].shape[1]
    options: dict[str, Any] = {"queries": {0: [length - 1], 1: [length - 2]}}
    native = capture(sdpa, inputs, **options)
    if family == "qwen2_vl" and importlib.util.find_spec("torchvision") is None:
        with pytest.raises(BackendUnavailableError, match="torchvision"):
            capture(sdpa, inputs, backend="transformer_lens", **options)
        assert sdpa.config.text_config._attn_implementation == "sdpa"
        return
    for new in (0, 3):
        opts = options if not new else {"queries": "generated", "max_new_tokens": new}
        native = capture(sdpa, inputs, **opts) if new else native
        other = capture(sdpa, inputs, backend="transformer_lens", **opts)
        _assert_same_rows(other, native, hidden=False)
    assert sdpa.config.text_config._attn_implementation == "sdpa"


def _tiny_qwen2_vl() -> Qwen2VLForConditionalGeneration:
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]},
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2},
        image_token_id=60,
        video_token_id=61,
        vision_start_token_id=62,
    )
    return Qwen2VLForConditionalGeneration(config).eval()


def test_transformer_lens_refuses_qwen2_vl_which_it_has_no_adapter_for() -> None:
    model = _tiny_qwen2_vl()
    inputs = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "attention_mask": torch.ones(1, 4)}
    native = capture(model, inputs, queries=[3], keys="all")
    assert native.trace.attention(0, 3).shape == (1, 2, 4)
    with pytest.raises(UnsupportedModelError, match=r"no adapter for Qwen2VLForConditional"):
        capture(model, inputs, backend="transformer_lens", queries=[3], keys="all")
    assert model.config.text_config._attn_implementation != "eager"


def test_unsupported_architecture_names_every_supported_one() -> None:
    with pytest.raises(UnsupportedModelError) as err:
        Recorder(torch.nn.Linear(2, 2))
    for name in SUPPORTED_ARCHITECTURES:
        assert name in str(err.value)


@pytest.fixture(scope="module")
def llava_15(tiny_llava: Any) -> Any:
    return tiny_llava


def test_a_processor_of_another_family_is_refused(
    family_pair: Any, llava_15: Any, tmp_path: Any
) -> None:
    _, sdpa, _, processor = family_pair
    model_15, processor_15 = llava_15
    images, inputs = _two_images(processor)
    # this family's inputs, LLaVA-1.5 model: the capture API says so before running
    with pytest.raises(InputError, match=r"processor .* LlavaForConditionalGeneration"):
        capture(model_15, inputs, queries=[5])
    with pytest.raises(InputError, match="does not fit the model"):
        teacher_force(model_15, processor, images[:1], ["Q?"], [" 1. red"])
    with pytest.raises(InputError, match="does not fit the model"):
        check_processor(sdpa, processor_15)
    # LLaVA-1.5 inputs for this family's model
    _, inputs_15 = _two_images(processor_15)
    with pytest.raises(InputError, match=r"LLaVA-1\.5 processor"):
        capture(sdpa, inputs_15, queries=[5])
    check_processor(sdpa, processor)  # the pair that belongs together passes
    check_inputs(sdpa, inputs)


def test_llava_next_and_qwen_inputs_are_told_apart(tmp_path: Any) -> None:
    next_model, _ = _load(build_tiny_llava_next(tmp_path / "n"))
    qwen_model, qwen_processor = _load(build_tiny_qwen2_5_vl(tmp_path / "q"))
    _, qwen_inputs = _two_images(qwen_processor)
    with pytest.raises(InputError, match=r"Qwen2-VL / Qwen2.5-VL processor .* 'llava_next'"):
        check_inputs(next_model, qwen_inputs)
    missing = {k: v for k, v in qwen_inputs.items() if k != "image_grid_thw"}
    with pytest.raises(InputError, match="without image_grid_thw"):
        check_inputs(qwen_model, missing)


def _load(path: Any) -> Any:
    from somprobe.models import load_model

    return load_model(path)

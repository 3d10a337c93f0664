"""Knockout and activation patching: against a hand-made eager reference, exact no-ops,
composition with the Recorder, restoration after errors, clear errors on bad edges."""

from __future__ import annotations

import pytest
import torch
from somprobe_testing import two_prompts
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from somprobe.capture import Recorder, digit_token_filter
from somprobe.capture.intervene import Edges, knockout, patch_activations
from somprobe.capture.model_state import attention_implementations
from somprobe.errors import CaptureError
from somprobe.models import build_prompt, prepare_inputs

TOL = 1e-5
HAND = {"layer": -1, "heads": None, "cut": None}  # what the hand-made reference removes


def _hand_eager(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):  # type: ignore[no-untyped-def]
    """Eager attention written here, with the knocked edges set to -inf by hand."""
    n_rep = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(n_rep, dim=1)
    v = value.repeat_interleave(n_rep, dim=1)
    scores = torch.matmul(query, k.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : k.shape[-2]]
    if module.layer_idx == HAND["layer"]:
        cut = HAND["cut"]  # [batch, query, key] bool
        heads = HAND["heads"] or list(range(scores.shape[1]))
        for h in heads:
            scores[:, h] = scores[:, h].masked_fill(cut, float("-inf"))
    probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    return torch.matmul(probs, v).transpose(1, 2).contiguous(), probs


AttentionInterface.register("test_hand_knockout", _hand_eager)
AttentionMaskInterface.register("test_hand_knockout", eager_mask)


def _hand_reference(model, inputs, layer, heads, cut):  # type: ignore[no-untyped-def]
    config = model.config.text_config
    saved = config._attn_implementation
    HAND.update(layer=layer, heads=heads, cut=cut)
    config._attn_implementation = "test_hand_knockout"
    try:
        with torch.no_grad():
            return model(**inputs, output_attentions=True)
    finally:
        config._attn_implementation = saved
        HAND.update(layer=-1, heads=None, cut=None)


def _image_columns(inputs, processor, b):  # type: ignore[no-untyped-def]
    return torch.nonzero(inputs["input_ids"][b] == processor.image_token_id).flatten().tolist()


@pytest.mark.parametrize("heads", [None, [1]])
@pytest.mark.parametrize("layer", [0, 1])
def test_knockout_at_one_layer_equals_a_hand_made_eager_reference(pair, layer, heads) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    queries = {0: [length - 3, length - 1], 1: [length - 2]}
    keys = {b: _image_columns(inputs, processor, b)[:20] for b in (0, 1)}
    cut = torch.zeros(2, length, length, dtype=torch.bool)
    for b, qs in queries.items():
        for q in qs:
            cut[b, q, keys[b]] = True
    ref = _hand_reference(sdpa, inputs, layer, heads, cut)
    with (
        torch.no_grad(),
        knockout(sdpa, Edges(queries=queries, keys=keys, layers=[layer], heads=heads)),
    ):
        got = sdpa(**inputs)
    plain = _hand_reference(sdpa, inputs, -1, None, cut)
    valid = inputs["attention_mask"].bool()
    torch.testing.assert_close(got.logits[valid], ref.logits[valid], atol=TOL, rtol=0)
    assert not torch.allclose(plain.logits[valid], ref.logits[valid], atol=1e-4)  # it did something


def test_an_empty_edge_set_leaves_the_logits_bit_identical(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with torch.no_grad():
        plain = sdpa(**inputs).logits
        with knockout(sdpa, []):
            none = sdpa(**inputs).logits
        with knockout(sdpa, Edges(queries=lambda t: False, keys="image")) as ko:
            never = sdpa(**inputs).logits
    assert torch.equal(plain, none) and torch.equal(plain, never)
    assert ko.knocked == []


def test_positions_before_the_knocked_query_are_untouched(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    q = length - 4
    with torch.no_grad():
        plain = sdpa(**inputs).logits
        with knockout(sdpa, Edges(queries=[q], keys="image")):
            cut = sdpa(**inputs).logits
    assert torch.equal(plain[:, :q], cut[:, :q])
    assert not torch.allclose(plain[:, q], cut[:, q], atol=1e-4)


def test_generation_is_identical_outside_the_edited_edges(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    kwargs = {
        "max_new_tokens": 5,
        "do_sample": False,
        "output_scores": True,
        "return_dict_in_generate": True,
    }
    with torch.no_grad():
        plain = sdpa.generate(**inputs, **kwargs)
        with knockout(sdpa, Edges(queries="generated", keys="image")) as ko:
            cut = sdpa.generate(**inputs, **kwargs)
        with knockout(sdpa, Edges(queries=lambda t: False, keys="image")):
            never = sdpa.generate(**inputs, **kwargs)
    # the prompt pass has no generated query: the first new token's scores are identical
    assert torch.equal(plain.scores[0], cut.scores[0])
    assert not torch.allclose(plain.scores[1], cut.scores[1], atol=1e-4)
    assert torch.equal(plain.sequences, never.sequences)
    assert all(torch.equal(a, b) for a, b in zip(plain.scores, never.scores, strict=True))
    assert {p for _, p in ko.knocked} == set(range(length, length + 4))


def test_recorder_inside_a_knockout_records_the_edited_rows(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    q, layer, heads = length - 2, 1, [0, 2]
    keys = {b: _image_columns(inputs, processor, b)[5:30] for b in (0, 1)}
    cut = torch.zeros(2, length, length, dtype=torch.bool)
    for b in (0, 1):
        cut[b, q, keys[b]] = True
    ref = _hand_reference(sdpa, inputs, layer, heads, cut)
    with (
        torch.no_grad(),
        knockout(sdpa, Edges([q], keys, layers=[layer], heads=heads)),
        Recorder(sdpa, queries=[q], keys="all") as rec,
    ):
        sdpa(**inputs)
    for b in (0, 1):
        got = rec.trace.attention(b, q)  # [layer, head, key]
        want = torch.stack([a[b, :, q, :] for a in ref.attentions])
        torch.testing.assert_close(got, want, atol=TOL, rtol=0)
        assert float(got[layer, heads][:, keys[b]].abs().max()) == 0.0
        assert float(got[layer, 1][keys[b]].sum()) > 0  # a head left alone keeps them
    assert attention_implementations(sdpa)[""] == "sdpa"


def test_the_model_is_restored_also_after_an_exception(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    before = attention_implementations(sdpa)
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in sdpa.modules())
    with pytest.raises(RuntimeError, match="boom"), knockout(sdpa, Edges([3], "image")):
        raise RuntimeError("boom")
    with (
        pytest.raises(RuntimeError, match="boom"),
        Recorder(sdpa, queries=[3]) as rec,
        patch_activations(sdpa, rec.trace, [3], [0]),
    ):
        raise RuntimeError("boom")
    assert attention_implementations(sdpa) == before
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in sdpa.modules()) == hooks
    assert not any(hasattr(m, "_somprobe_knockout") for m in sdpa.modules())
    with torch.no_grad(), knockout(sdpa, Edges([3], "image")):
        sdpa(**inputs)  # usable again


def test_patching_a_run_with_its_own_activations_changes_nothing(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    positions = {
        0: _image_columns(inputs, processor, 0)[:12],
        1: _image_columns(inputs, processor, 1)[:12],
    }
    with torch.no_grad():
        with Recorder(sdpa, queries=positions, attention=False) as rec:
            plain = sdpa(**inputs).logits
        with patch_activations(sdpa, rec.trace, positions, layers=[0, 1]) as patched:
            again = sdpa(**inputs).logits
    assert torch.equal(plain, again)
    assert len(patched) == 2 * 24


def test_patching_from_another_image_moves_the_logits_after_the_patch_only(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    images, _ = two_prompts(processor)
    other = prepare_inputs(processor, images[::-1], [build_prompt(processor, "Hi.")] * 2)
    clean = prepare_inputs(processor, images, [build_prompt(processor, "Hi.")] * 2)
    cols = _image_columns(clean, processor, 0)
    positions = {0: cols[10:20]}
    with torch.no_grad():
        with Recorder(sdpa, queries={0: cols}, attention=False) as rec:
            sdpa(**other)
        plain = sdpa(**clean).logits
        with patch_activations(sdpa, rec.trace, positions, layers=[0]):
            patched = sdpa(**clean).logits
    first = cols[10]
    assert torch.equal(plain[0, :first], patched[0, :first])
    assert not torch.allclose(plain[0, -1], patched[0, -1], atol=1e-5)
    assert torch.equal(plain[1], patched[1])  # sequence 1 was not patched


def test_knockout_by_token_predicate_cuts_tag_digits_in_the_prompt(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    images, _ = two_prompts(processor)
    inputs = prepare_inputs(
        processor, images[:1], [build_prompt(processor, "What is tagged 3 and 12?")]
    )
    digits = digit_token_filter(processor.tokenizer)
    ids = inputs["input_ids"][0].tolist()
    expected = {i for i, t in enumerate(ids) if digits(t)}
    with torch.no_grad(), knockout(sdpa, Edges(queries=digits, keys="image")) as ko:
        sdpa(**inputs)
    assert {p for _, p in ko.knocked} == expected and len(expected) == 3


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        (Edges([3], []), "key set is empty"),
        (Edges([3], {0: []}), "key set of sequence 0 is empty"),
        (Edges([], "image"), "query set is empty"),
        (Edges([3], "image", layers=[9]), "layer 9 does not exist"),
        (Edges([3], "image", heads=[-9]), "head -9 does not exist"),
        (Edges([3], "pixels"), "keys must be 'image'"),
        (Edges("everything", "image"), "queries must be 'generated'"),
        ("not edges", "needs Edges"),
    ],
)
def test_bad_edges_are_clear_errors_before_anything_changes(pair, edges, message) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, _ = pair
    before = attention_implementations(sdpa)
    with pytest.raises(CaptureError, match=message):
        knockout(sdpa, edges).__enter__()
    assert attention_implementations(sdpa) == before


def test_positions_outside_the_sequence_and_text_only_inputs_are_clear_errors(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    text = processor.tokenizer(["hello there"], return_tensors="pt")
    cases = [
        (Edges([length + 5], "image"), inputs, "lie past the sequence"),
        (Edges([3], [length + 2]), inputs, r"key position \d+ of sequence 0 lies past"),
        (Edges({5: [3]}, "image"), inputs, "sequence 5"),
        (Edges([1], "image"), dict(text), "no image tokens"),
    ]
    for edges, given, message in cases:
        with pytest.raises(CaptureError, match=message), torch.no_grad(), knockout(sdpa, edges):
            sdpa(**given)
    with (
        pytest.raises(CaptureError, match="already active"),
        knockout(sdpa, Edges([3], "image")),
        knockout(sdpa, Edges([4], "image")),
    ):
        pass
    assert attention_implementations(sdpa)[""] == "sdpa"


def test_patch_needs_a_trace_with_those_layers_and_positions(pair) -> None:  # type: ignore[no-untyped-def]
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with torch.no_grad(), Recorder(sdpa, queries=[3], layers=[0], attention=False) as rec:
        sdpa(**inputs)
    with pytest.raises(CaptureError, match="no layer"):
        patch_activations(sdpa, rec.trace, [3], layers=[1]).__enter__()
    with pytest.raises(CaptureError, match="no hidden states captured"):
        patch_activations(sdpa, rec.trace, [4], layers=[0]).__enter__()
    with pytest.raises(CaptureError, match="needs a Trace"):
        patch_activations(sdpa, {"x": 1}, [3]).__enter__()  # type: ignore[arg-type]
    with pytest.raises(CaptureError, match="no positions"):
        patch_activations(sdpa, rec.trace, [], layers=[0]).__enter__()

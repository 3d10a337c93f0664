"""The native Recorder against HF eager attention with output_attentions (the reference)."""

from __future__ import annotations

import pytest
import torch
from somprobe_testing import two_prompts

from somprobe.capture import Recorder, Trace, digit_token_filter
from somprobe.errors import CaptureError, InputError, UnsupportedModelError

TOL = 1e-5


def _eager_forward(eager, inputs):
    with torch.no_grad():
        return eager(**inputs, output_attentions=True, output_hidden_states=True)


@pytest.mark.parametrize("fixture", ["pair", "gqa_pair", "full_pair"])
@pytest.mark.parametrize("keys", ["image", "all"])
def test_forward_pass_equals_eager(request, fixture, keys):
    sdpa, eager, processor = request.getfixturevalue(fixture)
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    positions = {0: [length - 5, length - 1], 1: [3, length - 2]}
    with torch.no_grad(), Recorder(sdpa, queries=positions, keys=keys) as rec:
        sdpa(**inputs)
    reference = _eager_forward(eager, inputs)
    ids = inputs["input_ids"]
    for b, wanted in positions.items():
        image_cols = torch.nonzero(ids[b] == processor.image_token_id).flatten()
        for pos in wanted:
            got = rec.trace.attention(b, pos)
            want = torch.stack([a[b, :, pos, :] for a in reference.attentions])
            want = want[..., image_cols] if keys == "image" else want
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=TOL, rtol=0)
            # HF's last hidden state is after the final norm; the trace keeps the residual
            # stream, so apply the norm to compare the last layer
            hidden = rec.trace.hidden(b, pos)
            final_norm = sdpa.model.language_model.norm
            with torch.no_grad():
                hidden = torch.cat([hidden[:-1], final_norm(hidden[-1:])])
            want_hidden = torch.stack([h[b, pos] for h in reference.hidden_states[1:]])
            torch.testing.assert_close(hidden, want_hidden, atol=TOL, rtol=1e-5)
    assert rec.trace.key_mode == keys


def test_every_generation_step_equals_eager_on_a_left_padded_batch(pair):
    sdpa, eager, processor = pair
    _, inputs = two_prompts(processor)
    assert (inputs["attention_mask"][0] == 0).any()
    new = 6
    with Recorder(sdpa, queries="generated") as rec:
        out = sdpa.generate(**inputs, max_new_tokens=new, do_sample=False)
    ref = eager.generate(
        **inputs,
        max_new_tokens=new,
        do_sample=False,
        output_attentions=True,
        return_dict_in_generate=True,
    )
    assert torch.equal(out, ref.sequences)
    length = inputs["input_ids"].shape[1]
    # generated token at position P is read as a query in step P - length + 1
    expected = [(b, p) for p in range(length, length + new - 1) for b in range(2)]
    got = [(r.batch, r.position) for r in rec.trace.records]
    assert got == expected
    for b, pos in expected:
        step = pos - length + 1
        want = torch.stack([a[b, :, -1, :] for a in ref.attentions[step]])
        cols = rec.trace.key_positions(b)
        torch.testing.assert_close(rec.trace.attention(b, pos), want[..., cols], atol=TOL, rtol=0)
        assert rec.trace.queries.set_index(["batch", "position"]).loc[(b, pos), "token_id"] == int(
            out[b, pos]
        )


def test_gqa_generation_equals_eager(gqa_pair):
    sdpa, eager, processor = gqa_pair
    _, inputs = two_prompts(processor)
    with Recorder(sdpa, queries="generated", layers=[-1], heads=[0, 3]) as rec:
        sdpa.generate(**inputs, max_new_tokens=3, do_sample=False)
    ref = eager.generate(
        **inputs,
        max_new_tokens=3,
        do_sample=False,
        output_attentions=True,
        return_dict_in_generate=True,
    )
    length = inputs["input_ids"].shape[1]
    for b in range(2):
        want = ref.attentions[1][-1][b, [0, 3], -1, :][..., rec.trace.key_positions(b)]
        torch.testing.assert_close(rec.trace.attention(b, length)[0], want, atol=TOL, rtol=0)
    assert rec.trace.layers == [1] and rec.trace.heads == [0, 3]


def test_generated_tokens_identical_with_and_without_recorder(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    plain = sdpa.generate(**inputs, max_new_tokens=8, do_sample=False)
    with Recorder(sdpa, queries=digit_token_filter(processor.tokenizer)):
        recorded = sdpa.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(plain, recorded)


def test_predicate_captures_exactly_the_generated_digits(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    digits = digit_token_filter(processor.tokenizer)
    # force digits into the output: ban every non-digit token but EOS
    allowed = sorted(digits.token_ids)  # type: ignore[attr-defined]
    bad = [[i] for i in range(len(processor.tokenizer)) if i not in set(allowed)]
    with Recorder(sdpa, queries=digits) as rec:
        out = sdpa.generate(**inputs, max_new_tokens=5, do_sample=False, bad_words_ids=bad)
    length = inputs["input_ids"].shape[1]
    expected = [
        (b, p) for p in range(length, length + 4) for b in range(2) if digits(int(out[b, p]))
    ]
    assert expected, "the test needs generated digits"
    assert [(r.batch, r.position) for r in rec.trace.records] == expected


def test_model_is_restored_after_an_exception(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with torch.no_grad():
        before = sdpa(**inputs).logits
    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in sdpa.modules())
    with pytest.raises(RuntimeError, match="boom"), Recorder(sdpa, queries=[5]):
        sdpa(**inputs)
        raise RuntimeError("boom")
    assert sdpa.config.text_config._attn_implementation == "sdpa"
    hooks_after = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in sdpa.modules())
    assert hooks_after == hooks_before
    assert not any(hasattr(m, "_somprobe_recorder") for m in sdpa.modules())
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**inputs).logits, before)


def test_bf16_model_rows_are_close_to_float32_reference(tiny_llava_path, pair):
    from somprobe_testing import sharpen

    from somprobe.models import load_model

    _, eager, processor = pair
    model, _ = load_model(tiny_llava_path, dtype="bf16")
    sharpen(model)
    _, inputs = two_prompts(processor)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    length = inputs["input_ids"].shape[1]
    with torch.no_grad(), Recorder(model, queries=[length - 1]) as rec:
        model(**inputs)
    inputs["pixel_values"] = inputs["pixel_values"].float()
    ref = _eager_forward(eager, inputs)
    cols = rec.trace.key_positions(0)
    want = torch.stack([a[0, :, length - 1, :] for a in ref.attentions])[..., cols]
    got = rec.trace.attention(0, length - 1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.03, rtol=0)


def test_rows_captured_with_gradients_on_are_detached_and_equal(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    positions = {0: [length - 3, length - 2, length - 1], 1: [length - 1]}
    with torch.no_grad(), Recorder(sdpa, queries=positions) as plain:
        sdpa(**inputs)
    sdpa.requires_grad_(True)
    try:
        with torch.enable_grad(), Recorder(sdpa, queries=positions) as graded:
            sdpa(**inputs)
    finally:
        sdpa.requires_grad_(False)
    for b, wanted in positions.items():
        for pos in wanted:
            for got, want in (
                (graded.trace.attention(b, pos), plain.trace.attention(b, pos)),
                (graded.trace.hidden(b, pos), plain.trace.hidden(b, pos)),
            ):
                assert not got.requires_grad and got.grad_fn is None
                assert got.is_contiguous()
                torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_trace_save_load_round_trip(pair, tmp_path):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with Recorder(sdpa, queries="generated") as rec:
        sdpa.generate(**inputs, max_new_tokens=3, do_sample=False)
    path = rec.trace.save(tmp_path / "trace")
    again = Trace.load(path)
    assert again.records == rec.trace.records
    assert again.layers == rec.trace.layers and again.heads == rec.trace.heads
    for r in rec.trace.records:
        assert torch.equal(
            again.attention(r.batch, r.position), rec.trace.attention(r.batch, r.position)
        )
        assert torch.equal(again.hidden(r.batch, r.position), rec.trace.hidden(r.batch, r.position))
    assert torch.equal(again.key_positions(1), rec.trace.key_positions(1))
    frame = again.attention_frame()
    n_keys = len(rec.trace.key_positions(0))
    assert (
        len(frame) == len(rec.trace.records) * len(rec.trace.layers) * len(rec.trace.heads) * n_keys
    )
    sums = frame.groupby(["batch", "position", "layer", "head"])["weight"].sum()
    assert (sums <= 1 + 1e-6).all() and (sums > 0).all()
    assert not list(tmp_path.glob("trace/*.tmp"))


def test_position_past_the_sequence(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with (
        pytest.raises(CaptureError, match="past the"),
        torch.no_grad(),
        Recorder(sdpa, queries=[10_000]),
    ):
        sdpa(**inputs)


@pytest.mark.parametrize("layers", [[2], [-3], [0, 0]])
def test_layer_that_does_not_exist(pair, layers):
    with pytest.raises(CaptureError, match="layer"):
        Recorder(pair[0], layers=layers)


def test_head_that_does_not_exist(pair):
    with pytest.raises(CaptureError, match="head"):
        Recorder(pair[0], heads=[4])


def test_model_that_is_not_llava():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
        )
    )
    with pytest.raises(UnsupportedModelError, match="LLaVA"):
        Recorder(model)


def test_second_prompt_in_one_recorder_is_an_error(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with (
        pytest.raises(CaptureError, match="second prompt"),
        torch.no_grad(),
        Recorder(sdpa, queries=[3]),
    ):
        sdpa(**inputs)
        sdpa(**inputs)


def test_llava_15_geometry_preset_equals_eager(tmp_path):
    from somprobe_testing import load_pair

    from somprobe.models import build_tiny_llava

    sdpa, eager, processor = load_pair(build_tiny_llava(tmp_path, preset="llava-1.5-geometry"))
    _, inputs = two_prompts(processor)
    ids = inputs["input_ids"]
    assert int((ids[1] == processor.image_token_id).sum()) == 576
    length = ids.shape[1]
    with torch.no_grad(), Recorder(sdpa, queries=[length - 3, length - 1]) as rec:
        sdpa(**inputs)
    reference = _eager_forward(eager, inputs)
    for b in range(2):
        cols = rec.trace.key_positions(b)
        assert len(cols) == 576
        for pos in (length - 3, length - 1):
            want = torch.stack([a[b, :, pos, :] for a in reference.attentions])[..., cols]
            torch.testing.assert_close(rec.trace.attention(b, pos), want, atol=TOL, rtol=0)


# -- nesting and reuse ---------------------------------------------------------------------


def _model_state(model):
    """What a Recorder changes on a model: hooks, per-module attributes, attention."""
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    marked = [n for n, m in model.named_modules() if hasattr(m, "_somprobe_recorder")]
    return hooks, marked, model.config.text_config._attn_implementation


def _same_trace(got, want):
    assert got.records == want.records and got.records
    for r in want.records:
        assert torch.equal(got.attention(r.batch, r.position), want.attention(r.batch, r.position))
        assert torch.equal(got.hidden(r.batch, r.position), want.hidden(r.batch, r.position))


def test_nested_recorder_is_refused_and_the_outer_one_still_captures(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with torch.no_grad(), Recorder(sdpa, queries="generated") as alone:
        sdpa.generate(**inputs, max_new_tokens=3, do_sample=False)
    before = _model_state(sdpa)
    inner = Recorder(sdpa, queries=[3], layers=[1])
    with torch.no_grad(), Recorder(sdpa, queries="generated") as outer:
        during = _model_state(sdpa)
        with pytest.raises(CaptureError, match="already recording"), inner:
            sdpa.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert _model_state(sdpa) == during  # the refused one changed nothing
        sdpa.generate(**inputs, max_new_tokens=3, do_sample=False)
    _same_trace(outer.trace, alone.trace)
    assert _model_state(sdpa) == before
    # the refused Recorder was never entered: it can run once the model is free
    with torch.no_grad(), inner:
        sdpa(**inputs)
    assert [(r.batch, r.position) for r in inner.trace.records] == [(0, 3), (1, 3)]
    assert _model_state(sdpa) == before


def test_nested_recorder_around_generate_does_not_break_the_outer_one(pair):
    """The reported case: generate inside both; the outer used to fail with KeyError: 0."""
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    with torch.no_grad(), Recorder(sdpa, queries=[length - 1]) as alone:
        sdpa(**inputs)
    with torch.no_grad(), Recorder(sdpa, queries=[length - 1]) as outer:
        sdpa(**inputs)
        with pytest.raises(CaptureError, match="already recording"), Recorder(sdpa):
            sdpa(**inputs)
    _same_trace(outer.trace, alone.trace)


def test_one_recorder_used_twice_is_a_clear_error(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    last = inputs["input_ids"].shape[1] - 1
    before = _model_state(sdpa)
    rec = Recorder(sdpa, queries=[last])
    with torch.no_grad(), rec:
        sdpa(**inputs)
    first = list(rec.trace.records)
    # sequentially
    with pytest.raises(CaptureError, match="entered once"), rec:
        sdpa(**inputs)
    assert rec.trace.records == first and _model_state(sdpa) == before
    # nested in itself
    again = Recorder(sdpa, queries=[last])
    with torch.no_grad(), again:
        with pytest.raises(CaptureError, match="entered once"), again:
            pass
        sdpa(**inputs)
    _same_trace(again.trace, rec.trace)
    assert _model_state(sdpa) == before


@pytest.mark.parametrize("backend", ["native", "nnsight", "transformer_lens"])
def test_capture_inside_an_active_recorder_is_refused(pair, backend):
    from somprobe.capture import capture

    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    last = inputs["input_ids"].shape[1] - 1
    with torch.no_grad(), Recorder(sdpa, queries=[last]) as alone:
        sdpa(**inputs)
    before = _model_state(sdpa)
    with torch.no_grad(), Recorder(sdpa, queries=[last]) as outer:
        during = _model_state(sdpa)
        with pytest.raises(CaptureError, match="already recording"):
            capture(sdpa, inputs, backend=backend, queries=[3])
        assert _model_state(sdpa) == during
        sdpa(**inputs)
    _same_trace(outer.trace, alone.trace)
    assert _model_state(sdpa) == before


def test_recorder_entered_during_a_capture_is_refused(pair):
    """A callback that runs inside capture()'s generate cannot start a second recording."""
    from transformers import LogitsProcessor, LogitsProcessorList

    from somprobe.capture import capture

    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    errors: list[Exception] = []

    class Nested(LogitsProcessor):
        def __call__(self, input_ids, scores):  # type: ignore[no-untyped-def]
            try:
                with Recorder(sdpa, queries=[3]):
                    pass
            except CaptureError as err:
                errors.append(err)
            return scores

    for backend in ("native", "nnsight"):
        errors.clear()
        capture(
            sdpa,
            inputs,
            backend=backend,  # type: ignore[arg-type]
            max_new_tokens=2,
            logits_processor=LogitsProcessorList([Nested()]),
        )
        assert errors and "already recording" in str(errors[0]), backend


# -- the default tag filter ------------------------------------------------------------------


def test_digit_filter_rejects_byte_tokens_of_the_tiny_tokenizer(tiny_tokenizer):
    tok = tiny_tokenizer
    digits = digit_token_filter(tok)
    for d in "0123456789":
        assert digits(tok.convert_tokens_to_ids(d)), d
    for i in range(256):  # byte tokens pass only where the byte is an ASCII digit
        byte = f"<0x{i:02X}>"
        assert digits(tok.convert_tokens_to_ids(byte)) == ("0" <= chr(i) <= "9"), byte
    for token_id in digits.token_ids:  # type: ignore[attr-defined]
        text = tok.convert_tokens_to_string([tok.convert_ids_to_tokens(token_id)])
        assert text.strip().isdigit() and text.strip().isascii(), text


def _byte_fallback_tokenizer():
    """A LLaMA-like tokenizer with no newline piece: a newline is the byte token <0x0A>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", *(f"<0x{i:02X}>" for i in range(256)), "▁", ".", *"0123456789"]
    pieces += ["▁red", "▁blue", "r", "e", "d", "b", "l", "u"]
    backend = Tokenizer(
        models.BPE(
            vocab={p: i for i, p in enumerate(pieces)},
            merges=[],
            unk_token="<unk>",
            byte_fallback=True,
        )
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def test_digit_filter_rejects_a_listings_newlines():
    """In LLaMA's tokenizer every newline is <0x0A>; it must not count as a tag digit."""
    tok = _byte_fallback_tokenizer()
    ids = tok("1. red\n2. blue", add_special_tokens=False).input_ids
    tokens = tok.convert_ids_to_tokens(ids)
    assert "<0x0A>" in tokens
    digits = digit_token_filter(tok)
    assert [t for t, i in zip(tokens, ids, strict=True) if digits(i)] == ["1", "2"]


def test_digit_filter_decision_on_a_plain_vocabulary():
    class VocabOnly:
        def get_vocab(self):  # type: ignore[no-untyped-def]
            return {
                "<0x0A>": 0,
                "<0x31>": 1,
                "▁7": 2,
                "12": 3,
                "a1": 4,
                "1.": 5,
                "²": 6,
                "Ġ3": 7,
                "<extra_id_0>": 8,
                "▁": 9,
            }

    digits = digit_token_filter(VocabOnly())
    assert sorted(digits.token_ids) == [1, 2, 3, 7]  # type: ignore[attr-defined]


def test_digit_filter_accepts_a_processor_and_refuses_other_objects(tiny_llava):
    from somprobe.errors import InputError

    _, processor = tiny_llava
    assert (
        digit_token_filter(processor).token_ids
        == digit_token_filter(  # type: ignore[attr-defined]
            processor.tokenizer
        ).token_ids
    )
    with pytest.raises(InputError, match="tokenizer"):
        digit_token_filter(None)


def test_trace_bytes_split_into_attention_and_hidden_states(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with Recorder(sdpa, queries=[inputs["input_ids"].shape[1] - 1]) as rec:
        sdpa(**inputs)
    trace = rec.trace
    attention = sum(
        trace.attention(r.batch, r.position).numel() * 4 for r in trace.records
    )  # float32 rows
    hidden = sum(trace.hidden(r.batch, r.position).numel() * 4 for r in trace.records)
    keys = sum(trace.key_positions(b).numel() * 8 for b in range(2))  # int64 key columns
    assert attention > 0 and hidden > 0
    assert trace.nbytes("attention") == attention
    assert trace.nbytes("hidden") == hidden
    assert trace.nbytes() == attention + hidden + keys
    with pytest.raises(InputError, match="what"):
        trace.nbytes("logits")

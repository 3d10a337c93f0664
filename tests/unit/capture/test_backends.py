"""The nnsight and TransformerLens backends give the native Recorder's rows, and leave the
model as it was (the reference for the rows themselves is HF eager output_attentions)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from somprobe_testing import two_prompts
from transformers import LogitsProcessorList

from somprobe.capture import capture, digit_token_filter
from somprobe.capture.collector import BackendUnavailableError
from somprobe.capture.tl_backend import refuse_runtime_installs
from somprobe.errors import CaptureError, InputError

TOL = 1e-5
PEERS = ["nnsight", "transformer_lens"]


def _fingerprint(model):
    """Everything a framework could leave behind: module types, attributes, hooks, attention."""
    modules = {
        name: (
            type(m).__name__,
            tuple(sorted(m.__dict__)),
            tuple(len(getattr(m, t)) for t in ("_forward_hooks", "_forward_pre_hooks")),
            m.training,
        )
        for name, m in model.named_modules()
    }
    configs = (
        model.config._attn_implementation,
        model.config.text_config._attn_implementation,
        model.config.vision_config._attn_implementation,
    )
    return modules, configs


def _assert_same_rows(got, want):
    assert got.records == want.records and got.records
    assert (got.layers, got.heads, got.key_mode) == (want.layers, want.heads, want.key_mode)
    for r in want.records:
        torch.testing.assert_close(
            got.attention(r.batch, r.position),
            want.attention(r.batch, r.position),
            atol=TOL,
            rtol=0,
        )
        torch.testing.assert_close(
            got.hidden(r.batch, r.position), want.hidden(r.batch, r.position), atol=TOL, rtol=1e-5
        )


@pytest.mark.parametrize("backend", PEERS)
@pytest.mark.parametrize("keys", ["image", "all"])
def test_forward_pass_rows_equal_native(pair, backend, keys):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    queries = {0: [length - 5, length - 1], 1: [3, length - 2]}
    native = capture(sdpa, inputs, queries=queries, keys=keys)
    before = _fingerprint(sdpa)  # after a first run: HF installs some hooks lazily
    peer = capture(sdpa, inputs, backend=backend, queries=queries, keys=keys)
    assert peer.trace.backend == backend and native.trace.backend == "native"
    assert peer.sequences is None
    _assert_same_rows(peer.trace, native.trace)
    if keys == "image":
        for b in range(2):
            assert torch.equal(peer.trace.key_positions(b), native.trace.key_positions(b))
    assert _fingerprint(sdpa) == before


@pytest.mark.parametrize("backend", PEERS)
def test_generation_rows_equal_native_and_eager_on_a_left_padded_batch(pair, backend):
    sdpa, eager, processor = pair
    _, inputs = two_prompts(processor)
    assert (inputs["attention_mask"][0] == 0).any()
    new = 4
    native = capture(sdpa, inputs, queries="generated", max_new_tokens=new)
    before = _fingerprint(sdpa)
    peer = capture(sdpa, inputs, backend=backend, queries="generated", max_new_tokens=new)
    assert torch.equal(peer.sequences, native.sequences)
    _assert_same_rows(peer.trace, native.trace)
    length = inputs["input_ids"].shape[1]
    assert [(r.batch, r.position) for r in peer.trace.records] == [
        (b, p) for p in range(length, length + new - 1) for b in range(2)
    ]
    # and against the independent reference, HF eager generate with output_attentions
    ref = eager.generate(
        **inputs,
        max_new_tokens=new,
        do_sample=False,
        output_attentions=True,
        return_dict_in_generate=True,
    )
    for r in peer.trace.records:
        want = torch.stack([a[r.batch, :, -1, :] for a in ref.attentions[r.step]])
        cols = peer.trace.key_positions(r.batch)
        torch.testing.assert_close(
            peer.trace.attention(r.batch, r.position), want[..., cols], atol=TOL, rtol=0
        )
    assert _fingerprint(sdpa) == before


@pytest.mark.parametrize("backend", PEERS)
def test_predicate_and_generation_options_reach_generate(pair, backend):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    digits = digit_token_filter(processor.tokenizer)
    allowed = torch.tensor(sorted(digits.token_ids))  # type: ignore[attr-defined]

    def only_digits(input_ids, scores):
        masked = torch.full_like(scores, float("-inf"))
        masked[:, allowed] = scores[:, allowed]
        return masked

    options = {
        "queries": digits,
        "max_new_tokens": 4,
        "logits_processor": LogitsProcessorList([only_digits]),
        "min_new_tokens": 4,
    }
    native = capture(sdpa, inputs, layers=[-1], heads=[1, 2], **options)
    peer = capture(sdpa, inputs, backend=backend, layers=[-1], heads=[1, 2], **options)
    assert torch.equal(peer.sequences, native.sequences)
    assert all(digits(r.token_id) for r in peer.trace.records)
    _assert_same_rows(peer.trace, native.trace)
    first = peer.trace.records[0]
    assert peer.trace.attention(first.batch, first.position).shape[:2] == (1, 2)


@pytest.mark.parametrize("backend", PEERS)
def test_grouped_query_attention(gqa_pair, backend):
    sdpa, _, processor = gqa_pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    native = capture(sdpa, inputs, queries=[length - 1], heads=[0, 3])
    peer = capture(sdpa, inputs, backend=backend, queries=[length - 1], heads=[0, 3])
    _assert_same_rows(peer.trace, native.trace)


@pytest.mark.parametrize("backend", PEERS)
def test_model_restored_after_an_exception(pair, backend):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with torch.no_grad():
        logits = sdpa(**inputs).logits
    before = _fingerprint(sdpa)
    # raised inside generate, while the framework is wired in
    with pytest.raises(ValueError, match="not_an_option"):
        capture(sdpa, inputs, backend=backend, max_new_tokens=2, not_an_option=1)
    assert _fingerprint(sdpa) == before
    # raised after the run, when the trace is assembled
    with pytest.raises(CaptureError, match="past the"):
        capture(sdpa, inputs, backend=backend, queries=[10_000])
    assert _fingerprint(sdpa) == before
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**inputs).logits, logits)
    # and the native Recorder still works on it
    again = capture(sdpa, inputs, queries=[5], keys="all")
    assert again.trace.attention(0, 5).shape[-1] == inputs["input_ids"].shape[1]


def test_bad_requests_are_clear_errors(pair):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    with pytest.raises(InputError, match="backend"):
        capture(sdpa, inputs, backend="pytorch", queries=[3])  # type: ignore[arg-type]
    with pytest.raises(CaptureError, match="forward pass generates nothing"):
        capture(sdpa, inputs, queries="generated")
    with pytest.raises(InputError, match="max_new_tokens=0"):
        capture(sdpa, inputs, queries=[3], do_sample=True)
    with pytest.raises(InputError, match="input_ids"):
        capture(sdpa, {"pixel_values": inputs["pixel_values"]}, queries=[3])
    with pytest.raises(CaptureError, match="layer"):
        capture(sdpa, inputs, backend="nnsight", queries=[3], layers=[7])


def test_missing_backend_package_is_a_clear_error(pair, monkeypatch):
    sdpa, _, processor = pair
    _, inputs = two_prompts(processor)
    monkeypatch.setitem(sys.modules, "nnsight", None)
    with pytest.raises(BackendUnavailableError, match="nnsight"):
        capture(sdpa, inputs, backend="nnsight", queries=[3])
    monkeypatch.setitem(sys.modules, "transformer_lens.model_bridge.sources", None)
    with pytest.raises(BackendUnavailableError, match="TransformerLens"):
        capture(sdpa, inputs, backend="transformer_lens", queries=[3])


def test_runtime_installs_are_refused(monkeypatch):
    calls = []

    def fake_check_call(*args, **kwargs):
        calls.append(args)
        return 0

    monkeypatch.setattr(subprocess, "check_call", fake_check_call)
    with refuse_runtime_installs():
        with pytest.raises(BackendUnavailableError, match="install"):
            subprocess.check_call([sys.executable, "-m", "pip", "install", "torchvision"])
        with pytest.raises(BackendUnavailableError):
            subprocess.check_call(["uv", "pip", "install", "torchvision", "-q"])
        # TransformerLens' own installer, as it runs when a processor fails to load
        from transformer_lens.model_bridge.sources.transformers.helpers import (
            _ensure_torchvision,
        )

        ensured = _ensure_torchvision()
        assert subprocess.check_call([sys.executable, "-c", "pass"]) == 0
    assert calls == [([sys.executable, "-c", "pass"],)]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        assert ensured is False
    assert subprocess.check_call is fake_check_call


def test_collector_reports_layers_a_backend_never_delivered(pair):
    from somprobe.capture.collector import MapCollector

    _, eager, processor = pair
    _, inputs = two_prompts(processor)
    length = inputs["input_ids"].shape[1]
    collector = MapCollector(eager, backend="test", queries=[length - 1])
    missing = r"delivered no attention for layer\(s\) \[1\]"
    with pytest.raises(CaptureError, match=missing), collector, torch.no_grad():
        out = eager(**inputs, output_attentions=True, output_hidden_states=True)
        collector.take_attention(0, out.attentions[0])  # layer 1 is never delivered
        for layer, hidden in enumerate(out.hidden_states[1:]):
            collector.take_hidden(layer, hidden)

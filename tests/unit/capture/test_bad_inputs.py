"""Hostile inputs to somprobe.capture: every one is a SomprobeError that says what to do,
or the documented behaviour; never a raw traceback or a silently wrong trace.

Nesting and reuse of Recorders are in test_recorder.py; the tag filter too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from somprobe.capture import Recorder, Trace, capture, digit_token_filter, teacher_force
from somprobe.errors import CaptureError, DataFormatError, InputError, SomprobeError, WriteError
from somprobe.models import build_prompt, prepare_inputs


@pytest.fixture(scope="module")
def model_inputs(tiny_llava):  # type: ignore[no-untyped-def]
    model, processor = tiny_llava
    images = [Image.new("RGB", (60, 40), (200, 30, 30)), Image.new("RGB", (30, 50), (0, 90, 200))]
    prompts = [build_prompt(processor, "Hi."), build_prompt(processor, "List the tagged items.")]
    return model, processor, prepare_inputs(processor, images, prompts)


# -- Recorder options -----------------------------------------------------------------------

RECORDER_OPTIONS: list[tuple[dict[str, Any], type[SomprobeError], str]] = [
    ({"layers": [2]}, CaptureError, "layer 2 does not exist"),
    ({"layers": [-3]}, CaptureError, "layer -3 does not exist"),
    ({"layers": [0, 0]}, CaptureError, "repeat"),
    ({"layers": []}, CaptureError, "no layers"),
    ({"layers": ["a"]}, CaptureError, "layers must be integers"),
    ({"layers": [1.5]}, CaptureError, "layers must be integers"),
    ({"layers": 1}, CaptureError, "layers must be a list"),
    ({"heads": [4]}, CaptureError, "head 4 does not exist"),
    ({"heads": []}, CaptureError, "no heads"),
    ({"heads": [True]}, CaptureError, "heads must be integers"),
    ({"keys": "text"}, CaptureError, "keys must be"),
    ({"attention": False, "hidden_states": False}, CaptureError, "nothing to capture"),
    ({"queries": "everything"}, CaptureError, "queries must be"),
    ({"queries": None}, CaptureError, "queries must be"),
    ({"queries": 5}, CaptureError, "queries must be"),
    ({"queries": [-1]}, CaptureError, "positions must be integers ≥ 0"),
    ({"queries": ["a"]}, CaptureError, "positions must be integers ≥ 0"),
    ({"queries": {0: [-2]}}, CaptureError, "positions must be integers ≥ 0"),
    ({"queries": {"x": [3]}}, CaptureError, "batch indices must be integers ≥ 0"),
    ({"queries": {-1: [3]}}, CaptureError, "batch indices must be integers ≥ 0"),
    ({"queries": {0: 3}}, CaptureError, "positions must be a list"),
]


@pytest.mark.parametrize(("options", "error", "match"), RECORDER_OPTIONS)
def test_recorder_options(model_inputs, options, error, match):  # type: ignore[no-untyped-def]
    model = model_inputs[0]
    with pytest.raises(error, match=match):
        Recorder(model, **options)


@pytest.mark.parametrize("model", [None, "llava", torch.nn.Linear(2, 2)])
def test_recorder_on_something_that_is_not_llava(model):  # type: ignore[no-untyped-def]
    from somprobe.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="LLaVA"):
        Recorder(model)


def _no_image(model: Any, processor: Any, inputs: Any) -> None:
    ids = processor.tokenizer(["USER: hi ASSISTANT:"], return_tensors="pt").input_ids
    with Recorder(model, queries=[1]):
        model(input_ids=ids)


def _embeds_only(model: Any, processor: Any, inputs: Any) -> None:
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with Recorder(model, queries=[1]):
        model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])


def _absent_sequence(model: Any, processor: Any, inputs: Any) -> None:
    with Recorder(model, queries={5: [3]}):
        model(**inputs)


def _past_the_end(model: Any, processor: Any, inputs: Any) -> None:
    with Recorder(model, queries=[10_000]):
        model(**inputs)


def _second_prompt(model: Any, processor: Any, inputs: Any) -> None:
    with Recorder(model, queries=[3]):
        model(**inputs)
        model(**inputs)


RECORDER_RUNS: list[tuple[Callable[..., None], type[SomprobeError], str]] = [
    (_no_image, CaptureError, "no image tokens"),
    (_embeds_only, CaptureError, "inputs_embeds"),
    (_absent_sequence, CaptureError, "sequence 5 does not exist"),
    (_past_the_end, CaptureError, "past the"),
    (_second_prompt, CaptureError, "second prompt"),
]


@pytest.mark.parametrize(("run", "error", "match"), RECORDER_RUNS)
def test_recorder_runs(model_inputs, run, error, match):  # type: ignore[no-untyped-def]
    model, processor, inputs = model_inputs
    with torch.no_grad(), pytest.raises(error, match=match):
        run(model, processor, inputs)
    assert not any(hasattr(m, "_somprobe_recorder") for m in model.modules())
    assert model.config.text_config._attn_implementation == "sdpa"


# -- capture() ------------------------------------------------------------------------------


def _ids(transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any], dict[str, Any]]:
    return lambda inputs: {**inputs, "input_ids": transform(inputs["input_ids"])}


CAPTURE_CALLS: list[tuple[Callable[[Any], Any], dict[str, Any], type[SomprobeError], str]] = [
    (lambda i: i, {"backend": "pytorch", "queries": [3]}, InputError, "backend must be"),
    (lambda i: i["input_ids"], {"queries": [3]}, InputError, "inputs must be a mapping"),
    (lambda i: [1, 2], {"queries": [3]}, InputError, "inputs must be a mapping"),
    (lambda i: {"pixel_values": i["pixel_values"]}, {"queries": [3]}, InputError, "input_ids"),
    (_ids(lambda t: t.float()), {"queries": [3]}, InputError, "integer token ids"),
    (_ids(lambda t: t[0]), {"queries": [3]}, InputError, r"\(batch, sequence\)"),
    (_ids(lambda t: t * 0 + 10**6), {"queries": [3]}, InputError, "outside the vocabulary"),
    (_ids(lambda t: t * 0 - 1), {"queries": [3]}, InputError, "outside the vocabulary"),
    (lambda i: i, {"queries": [3], "max_new_tokens": -1}, InputError, "max_new_tokens"),
    (lambda i: i, {"queries": [3], "max_new_tokens": "2"}, InputError, "max_new_tokens"),
    (lambda i: i, {"queries": [3], "max_new_tokens": 1.5}, InputError, "max_new_tokens"),
    (lambda i: i, {"queries": [3], "do_sample": True}, InputError, "max_new_tokens=0"),
    (lambda i: i, {"queries": "generated"}, CaptureError, "generates nothing"),
    (lambda i: i, {"queries": [10_000]}, CaptureError, "past the"),
    (lambda i: i, {"queries": [3], "layers": [7]}, CaptureError, "layer 7"),
    (lambda i: i, {"queries": [3], "backend": "nnsight", "layers": [7]}, CaptureError, "layer 7"),
]


@pytest.mark.parametrize(("make_inputs", "options", "error", "match"), CAPTURE_CALLS)
def test_capture_calls(model_inputs, make_inputs, options, error, match):  # type: ignore[no-untyped-def]
    model, _, inputs = model_inputs
    with pytest.raises(error, match=match):
        capture(model, make_inputs(inputs), **options)


# -- teacher_force ----------------------------------------------------------------------------

IMAGE = Image.new("RGB", (50, 40), (10, 200, 10))

TEACHER_CALLS: list[tuple[tuple[Any, Any, Any], dict[str, Any], type[SomprobeError], str]] = [
    (([IMAGE], ["q", "r"], [" a"]), {}, InputError, "one of each"),
    (([], [], []), {}, InputError, "at least one"),
    ((IMAGE, ["q"], [" a"]), {}, InputError, "images must be a list"),
    (([IMAGE], "q", [" a"]), {}, InputError, "questions must be a list"),
    (([IMAGE], ["q"], [None]), {}, InputError, "answer 0 is a NoneType"),
    (([IMAGE], ["<image> q"], [" a"]), {}, SomprobeError, "placeholder"),
    (([[1, 2]], ["q"], [" a"]), {}, InputError, "image 0"),
    (([IMAGE], ["q"], [" a"]), {"queries": "all"}, InputError, "queries must be"),
    (([IMAGE], ["q"], [" a"]), {"layers": [7]}, CaptureError, "layer 7"),
]


@pytest.mark.parametrize(("args", "options", "error", "match"), TEACHER_CALLS)
def test_teacher_force_calls(model_inputs, args, options, error, match):  # type: ignore[no-untyped-def]
    model, processor, _ = model_inputs
    with pytest.raises(error, match=match):
        teacher_force(model, processor, *args, **options)


def test_teacher_force_takes_arrays_like_images(model_inputs):  # type: ignore[no-untyped-def]
    import numpy as np

    model, processor, _ = model_inputs
    pixels = np.asarray(IMAGE)
    from_array = teacher_force(model, processor, [pixels], ["q"], [" 1. red"])
    from_pil = teacher_force(model, processor, [IMAGE], ["q"], [" 1. red"])
    assert from_array.trace.records == from_pil.trace.records
    assert from_array.layout.image_size(0) == (50, 40)


# -- digit_token_filter -------------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", [None, 5, "tokenizer", object()])
def test_digit_filter_on_something_that_is_not_a_tokenizer(tokenizer):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="tokenizer"):
        digit_token_filter(tokenizer)


# -- Trace files --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_trace(model_inputs, tmp_path_factory):  # type: ignore[no-untyped-def]
    model, _, inputs = model_inputs
    length = inputs["input_ids"].shape[1]
    with torch.no_grad(), Recorder(model, queries=[length - 2, length - 1]) as rec:
        model(**inputs)
    return rec.trace.save(tmp_path_factory.mktemp("trace") / "trace")


def _cut(name: str, keep: float | int) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        data = (folder / name).read_bytes()
        size = int(len(data) * keep) if isinstance(keep, float) else keep
        (folder / name).write_bytes(data[:size])

    return mutate


def _meta(**changes: Any) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        meta = json.loads((folder / "trace.json").read_text())
        for key, value in changes.items():
            if value is KeyError:
                del meta[key]
            else:
                meta[key] = value
        (folder / "trace.json").write_text(json.dumps(meta))

    return mutate


def _tensors(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / "trace.safetensors"))
        change(tensors)
        save_file(tensors, str(folder / "trace.safetensors"))

    return mutate


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _drop_rows(tensors: dict[str, torch.Tensor]) -> None:
    for name in [n for n in tensors if n.startswith(("attention.0.", "hidden.0."))]:
        del tensors[name]


def _shrink_attention(tensors: dict[str, torch.Tensor]) -> None:
    name = next(n for n in tensors if n.startswith("attention."))
    tensors[name] = tensors[name][:1]


def _odd_name(tensors: dict[str, torch.Tensor]) -> None:
    tensors["attention.x.y"] = torch.zeros(1)


def _extra_row(tensors: dict[str, torch.Tensor]) -> None:
    name = next(n for n in tensors if n.startswith("hidden."))
    tensors["hidden.7.1"] = tensors[name].clone()


TRACE_FILES: list[tuple[Callable[[Path], None], type[SomprobeError], str]] = [
    (_cut("trace.safetensors", 0.5), DataFormatError, "truncated or corrupt"),
    (_cut("trace.safetensors", 10), DataFormatError, "truncated or corrupt"),
    (_cut("trace.safetensors", 0), DataFormatError, "truncated or corrupt"),
    (_cut("trace.json", 0.5), DataFormatError, "not valid JSON"),
    (_cut("trace.json", 0), DataFormatError, "not valid JSON"),
    (_remove("trace.safetensors"), InputError, "no trace at"),
    (_remove("trace.json"), InputError, "no trace at"),
    (lambda f: (f / "trace.json").write_text("[]"), DataFormatError, "JSON object"),
    (_meta(records=KeyError), DataFormatError, "no 'records' field"),
    (_meta(layers=KeyError), DataFormatError, "no 'layers' field"),
    (_meta(heads=KeyError), DataFormatError, "no 'heads' field"),
    (_meta(key_mode=KeyError), DataFormatError, "no 'key_mode' field"),
    (_meta(format_version=2), DataFormatError, "trace format 2"),
    (_meta(records=[[0, 3, 5, 0], [1, 4, 5, 0]]), DataFormatError, "no rows"),
    (_meta(records=[]), DataFormatError, "no record"),
    (_meta(records=[[0, 3]]), DataFormatError, "record 0"),
    (_meta(records="abc"), DataFormatError, "records"),
    (_meta(layers=3), DataFormatError, "layers"),
    (_meta(layers=[0]), DataFormatError, "shape"),
    (_meta(key_mode="text"), DataFormatError, "key_mode"),
    (_tensors(_drop_rows), DataFormatError, "no rows"),
    (_tensors(_shrink_attention), DataFormatError, "shape"),
    (_tensors(_odd_name), DataFormatError, "attention.x.y"),
    (_tensors(_extra_row), DataFormatError, "no record"),
]


@pytest.mark.parametrize(("mutate", "error", "match"), TRACE_FILES)
def test_trace_files(saved_trace, tmp_path, mutate, error, match):  # type: ignore[no-untyped-def]
    folder = Path(shutil.copytree(saved_trace, tmp_path / "copy"))
    assert len(Trace.load(folder)) == 4  # the copy loads before it is damaged
    mutate(folder)
    with pytest.raises(error, match=match):
        Trace.load(folder)


def test_trace_folder_that_does_not_exist_or_is_a_file(tmp_path):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="no trace at"):
        Trace.load(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="no trace at"):
        Trace.load(tmp_path / "a-file")


@pytest.mark.parametrize("where", ["a-file/trace", "a-file"])
def test_trace_saved_where_it_cannot_be_written(saved_trace, tmp_path, where):  # type: ignore[no-untyped-def]
    trace = Trace.load(saved_trace)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(WriteError, match="cannot write"):
        trace.save(tmp_path / where)
    assert (tmp_path / "a-file").read_text() == "x"


TRACE_LOOKUPS: list[tuple[Callable[[Trace], Any], type[SomprobeError], str]] = [
    (lambda t: t.attention(0, 3), CaptureError, "no attention captured"),
    (lambda t: t.hidden(5, 3), CaptureError, "no hidden states captured"),
    (lambda t: t.attention("a", 3), InputError, "batch must be an integer"),
    (lambda t: t.hidden(0, None), InputError, "position must be an integer"),
    (lambda t: t.key_positions(9), CaptureError, "no sequence 9"),
    (lambda t: t.key_positions("a"), InputError, "batch must be an integer"),
]


@pytest.mark.parametrize(("lookup", "error", "match"), TRACE_LOOKUPS)
def test_trace_lookups(saved_trace, lookup, error, match):  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        lookup(Trace.load(saved_trace))

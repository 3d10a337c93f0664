"""Recipes that join capture, tag mentions and scores: the paper's measurements.

* :func:`teacher_forced_listing`: a model read through the ground-truth listing of each
  tagged image, with the tag mentions of every answer (the shared first step of the
  attention scores, the probes and the Fig. 4 maps);
* :func:`tag_attention_maps`: each tag token's head-averaged attention map at one layer
  (the paper's Fig. 4);
* :func:`listing_alignment`: tag-token attention scored over many images.

``listing_alignment`` asks a model about tagged images in one of two ways and scores
where each tag token's attention went:

* ``mode="teacher_forced"``: the ground-truth listing ("1. red circle\\n2. …") is fed as
  the answer, and every tag the listing mentions is scored. A model that would not write
  the listing itself is still measured on the same tokens as any other model.
* ``mode="generated"``: the model writes its own answer (greedy); the tags it mentions
  are scored; tags it invents are kept and flagged ``hallucinated``. The last generated
  token is never read back by ``generate``, so a mention ending there has no attention
  row: it is kept in the mentions table with ``captured=False`` and left out of scores.

Scores are those of :func:`~somprobe.measure.align.score_alignment` (absolute masses
``mass_*``, shares conditional on the image ``image_share_*``, lifts, top-k / pointing /
AUROC against the mark-free object with their chance levels), attention sinks excluded
by its "auto" rule unless ``sinks=None``.

Example:
    >>> scores, mentions = listing_alignment(model, processor, tagged_images)  # doctest: +SKIP
    >>> aggregate_by_layer(scores)[["layer", "mass_object_markfree", "lift_object_markfree",
    ...                             "topk_hit", "chance_topk", "n_topk_hit"]]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from somprobe.capture.recorder import Recorder, digit_token_filter
from somprobe.capture.teacher import TeacherForced, teacher_force
from somprobe.data.listing import Describer, listing_answer
from somprobe.errors import InputError
from somprobe.measure.align import (
    Target,
    _empty_scores,
    check_options,
    patch_attention,
    score_alignment,
)
from somprobe.measure.mentions import find_tag_mentions
from somprobe.models.adapters import check_processor
from somprobe.models.inputs import (
    answer_ends,
    build_prompt,
    eos_token_ids,
    prepare_inputs,
    to_model,
)
from somprobe.models.layout import ImageLayout
from somprobe.tagging.types import TaggedImage, TagSet

DEFAULT_QUESTION = "List the tagged items one by one."


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def _check_item(item: Any, where: str) -> TaggedImage:
    """A TaggedImage whose image is the size its TagSet was made for."""
    if not isinstance(item, TaggedImage):
        raise InputError(
            f"{where} is a {type(item).__name__}, not a TaggedImage (tag_regions makes them)"
        )
    if tuple(item.image.size) != tuple(item.tagset.image_size):
        w, h = item.tagset.image_size
        raise InputError(
            f"{where}: the image is {item.image.width}×{item.image.height} but its TagSet is for "
            f"a {w}×{h} image; tag the image you measure (tag_regions), or resize it back"
        )
    return item


def _check_tagged(tagged: Any) -> list[TaggedImage]:
    """The tagged images as a list, each checked by :func:`_check_item`."""
    if isinstance(tagged, TaggedImage) or not isinstance(tagged, Sequence):
        raise InputError(
            f"tagged must be a list of TaggedImage, got a {type(tagged).__name__}; "
            "wrap a single image in a list"
        )
    if not tagged:
        raise InputError("no tagged images given")
    return [_check_item(t, f"tagged[{i}]") for i, t in enumerate(tagged)]


def _with_position(mentions: pd.DataFrame) -> pd.DataFrame:
    """``mentions`` with a ``position`` column (after ``scored_positions``): the last scored
    token of each mention, the first at which the model has read the whole tag label, which
    is the token :func:`~somprobe.probes.build_probe_dataset` reads the hidden state at."""
    out = mentions.drop(columns="position", errors="ignore")
    last = [int(p[-1]) for p in out["scored_positions"]]
    where = list(out.columns).index("scored_positions") + 1
    out.insert(where, "position", pd.Series(last, index=out.index, dtype="int64"))
    return out


def answer_mentions(
    tokenizer: Any,
    input_ids: torch.Tensor,
    spans: Sequence[tuple[int, int]],
    tagsets: Sequence[TagSet],
) -> list[pd.DataFrame]:
    """Per sequence ``b``, the tag mentions of its answer span ``spans[b]``, with absolute
    token positions and ``batch = b`` (:func:`~somprobe.measure.find_tag_mentions`).

    Raises:
        InputError: not one span and one TagSet per sequence, or a span that is not
            ``start <= end`` within the sequence.
    """
    n, length = int(input_ids.shape[0]), int(input_ids.shape[1])
    if not len(spans) == len(tagsets) == n:
        raise InputError(
            f"{n} sequences but {len(spans)} answer spans and {len(tagsets)} TagSets; give "
            "one of each per sequence"
        )
    for b, (start, end) in enumerate(spans):
        if not 0 <= start <= end <= length:
            raise InputError(
                f"answer span {(start, end)} of sequence {b} is not within its {length} tokens "
                "(start <= end)"
            )
    return [
        find_tag_mentions(
            tokenizer, input_ids[b, start:end].tolist(), tag_ids=tagset, offset=start, batch=b
        )
        for b, ((start, end), tagset) in enumerate(zip(spans, tagsets, strict=True))
    ]


def teacher_forced_listing(
    model: Any,
    processor: Any,
    tagged: Sequence[TaggedImage],
    *,
    question: str = DEFAULT_QUESTION,
    answers: Sequence[str] | None = None,
    describer: Describer | None = None,
    queries: str | Callable[[int], bool] | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    attention: bool = True,
    hidden_states: bool = True,
) -> tuple[TeacherForced, pd.DataFrame]:
    """Teacher-force each tagged image's listing in one forward pass; find its tag mentions.

    Args:
        tagged: the tagged images (one forward pass for all: batch them yourself).
        question: the user turn (default the paper's "List the tagged items one by one.").
        answers: the answers fed (default :func:`~somprobe.data.listing_answer` of each
            TagSet, "1. red circle\\n2. …").
        describer: the phrase after each tag number in the default answers (default
            :func:`~somprobe.data.label_describer`, the region's category; regions without
            one, e.g. superpixels, need another, such as
            :func:`~somprobe.data.listing.region_describer`). Called with the tagged image.
        queries: which answer tokens to capture: default the tag digits
            (:func:`~somprobe.capture.digit_token_filter`), or every answer token
            (``"answer"``) when a TagSet uses letter labels.
        layers, heads, attention, hidden_states: as for :func:`~somprobe.capture.teacher_force`.

    Returns:
        ``(result, mentions)``: the capture, and one row per tag mention with ``batch``
        (the image's index in ``tagged``) and ``position``, the last token of the tag
        label (the first at which the model has read the whole tag: the probes' token).

    Example:
        >>> result, mentions = teacher_forced_listing(model, processor, tagged[:8])
        ... # doctest: +SKIP
        >>> result.trace.hidden(0, int(mentions["position"][0]))  # doctest: +SKIP
    """
    tagged = _check_tagged(tagged)
    if answers is not None and len(answers) != len(tagged):
        raise InputError(f"{len(answers)} answers for {len(tagged)} images")
    if queries is None:
        letter = any(t.tagset.label_mode == "letter" for t in tagged)
        queries = "answer" if letter else digit_token_filter(processor.tokenizer)
    texts = (
        list(answers)
        if answers is not None
        else [listing_answer(t.tagset, describer, t.image) for t in tagged]
    )
    result = teacher_force(
        model,
        processor,
        [t.image for t in tagged],
        [question] * len(tagged),
        texts,
        queries=queries,
        layers=layers,
        heads=heads,
        attention=attention,
        hidden_states=hidden_states,
    )
    frames = answer_mentions(
        processor.tokenizer,
        result.inputs["input_ids"],
        result.answer_spans,
        [t.tagset for t in tagged],
    )
    return result, _with_position(pd.concat(frames, ignore_index=True))


def tag_attention_maps(
    model: Any,
    processor: Any,
    item: TaggedImage,
    layer: int,
    *,
    question: str = DEFAULT_QUESTION,
    describer: Describer | None = None,
) -> tuple[dict[int, np.ndarray], ImageLayout]:
    """Per tag id, the head-averaged attention map ``(rows, cols)`` of the tag's token at
    ``layer``, teacher-forced through the image's listing: the paper's Fig. 4 input
    (``describer`` as for :func:`teacher_forced_listing`).

    Example:
        >>> maps, layout = tag_attention_maps(model, processor, tagged[0], layer=3)
        ... # doctest: +SKIP
        >>> plot_top_patches(tagged[0].image, {"SoM": maps}, layout, tagged[0].tagset)
        ... # doctest: +SKIP
    """
    result, mentions = teacher_forced_listing(
        model,
        processor,
        [_check_item(item, "item")],
        question=question,
        describer=describer,
        layers=[layer],
        hidden_states=False,
    )
    return {
        int(m.tag_id): patch_attention(result.trace, result.layout, 0, [m.position])[0].mean(0)
        for m in mentions.itertuples()
    }, result.layout


def listing_alignment(
    model: Any,
    processor: Any,
    tagged: Sequence[TaggedImage],
    *,
    mode: Literal["teacher_forced", "generated"] = "teacher_forced",
    question: str = DEFAULT_QUESTION,
    answers: Sequence[str] | None = None,
    describer: Describer | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    k: int = 5,
    hit_threshold: float = 0.5,
    target: Target = "object_markfree",
    mark_free_max: float = 0.0,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    sinks: Literal["auto"] | None = "auto",
    progress: bool = True,
    image_ids: Sequence[Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score tag-token attention over many tagged images.

    Args:
        model, processor: any HF LLaVA model and its processor.
        tagged: tagged images (image + TagSet ground truth).
        mode: "teacher_forced" (the listing is given) or "generated" (the model writes).
        question: the user turn; default the paper's "List the tagged items one by one."
        answers: teacher-forced answers (default :func:`listing_answer` of each TagSet).
        describer: the phrase after each tag number of the default teacher-forced answers
            (see :func:`teacher_forced_listing`; e.g.
            :func:`~somprobe.data.listing.region_describer` for regions without a category).
        layers, heads: what to capture (default all).
        k: top-k of the hit rate (the paper's Fig. 4 uses 5).
        hit_threshold, target, mark_free_max: what counts as a target patch and as
            mark-free (see :func:`~somprobe.measure.align.score_maps`; default the object's
            patches covered at least half and free of any mark pixel).
        batch_size: images per forward pass / generate call.
        max_new_tokens: generation budget in "generated" mode.
        sinks: "auto" (default: exclude attention-sink patches on each image whose
            mentions allow the median rule, see ``score_alignment``; the ``sink_rule``
            column says where it was applied) or None (keep every patch).
        image_ids: names for the images in the output (default 0..n-1).

    Raises:
        InputError: no images, an item that is not a TaggedImage or whose image is not the
            size of its TagSet, an unknown mode or target, a ``hit_threshold`` or
            ``mark_free_max`` out of range, a non-positive ``k``, ``batch_size`` or
            (generated) ``max_new_tokens``, or a processor of another model family.
        CaptureError: a layer or head the model does not have.

    Returns:
        ``(scores, mentions)``: scores one row per mention × layer × head, mentions one
        row per mention (with ``position``, the last scored token as in
        :func:`teacher_forced_listing`, the ``answer`` text and ``captured``). In both,
        ``batch`` is the image's index in ``tagged`` and ``image`` its id, so
        ``(batch, mention)`` identifies a mention across the whole run.
    """
    if mode not in ("teacher_forced", "generated"):
        raise InputError(f"mode must be 'teacher_forced' or 'generated', got {mode!r}")
    tagged = _check_tagged(tagged)
    check_options(k=k, hit_threshold=hit_threshold, target=target, mark_free_max=mark_free_max)
    _positive(batch_size, "batch_size")
    if mode == "generated":
        _positive(max_new_tokens, "max_new_tokens")
    ids = list(image_ids) if image_ids is not None else list(range(len(tagged)))
    if len(ids) != len(tagged):
        raise InputError(f"{len(ids)} image ids for {len(tagged)} images")
    if answers is not None and len(answers) != len(tagged):
        raise InputError(f"{len(answers)} answers for {len(tagged)} images")
    check_processor(model, processor)
    digits = digit_token_filter(processor.tokenizer)
    letter = any(t.tagset.label_mode == "letter" for t in tagged)
    score_frames: list[pd.DataFrame] = []
    mention_frames: list[pd.DataFrame] = []
    batches = _chunks(len(tagged), batch_size)
    for chunk in tqdm(batches, desc=f"{mode} listing", disable=not progress, unit="batch"):
        items = [tagged[i] for i in chunk]
        if mode == "teacher_forced":
            result, found = teacher_forced_listing(
                model,
                processor,
                items,
                question=question,
                answers=[answers[i] for i in chunk] if answers else None,
                describer=describer,
                layers=layers,
                heads=heads,
            )
            trace, layout, input_ids = result.trace, result.layout, result.inputs["input_ids"]
            spans = result.answer_spans
            per_item = [found[found["batch"] == b] for b in range(len(items))]
        else:
            images = [t.image for t in items]
            trace, layout, input_ids, spans = _generate(
                model, processor, images, question, layers, heads, max_new_tokens, digits, letter
            )
            per_item = answer_mentions(
                processor.tokenizer, input_ids, spans, [t.tagset for t in items]
            )
        captured = {(r.batch, r.position) for r in trace.records}
        for b, index in enumerate(chunk):
            start, end = spans[b]
            mentions = _with_position(per_item[b].reset_index(drop=True))
            mentions["captured"] = [
                all((b, int(p)) in captured for p in ps) for ps in mentions["scored_positions"]
            ]
            answer = processor.tokenizer.decode(input_ids[b, start:end], skip_special_tokens=True)
            if len(mentions) and mentions["captured"].any():
                scores = score_alignment(
                    trace,
                    layout,
                    {b: tagged[index].tagset},
                    mentions[mentions["captured"]],
                    k=k,
                    hit_threshold=hit_threshold,
                    target=target,
                    mark_free_max=mark_free_max,
                    sinks=sinks,
                )
                scores["batch"] = index  # the image's index over the whole run
                scores.insert(0, "image", ids[index])
                score_frames.append(scores)
            mentions["batch"] = index
            mentions.insert(0, "image", ids[index])
            mentions["answer"] = answer
            mention_frames.append(mentions)
    scores_df = (
        pd.concat(score_frames, ignore_index=True) if score_frames else _empty_scores(["image"])
    )
    mentions_df = pd.concat(mention_frames, ignore_index=True)
    return scores_df, mentions_df


def _generate(
    model: Any,
    processor: Any,
    images: list[Any],
    question: str,
    layers: Sequence[int] | None,
    heads: Sequence[int] | None,
    max_new_tokens: int,
    digits: Callable[[int], bool],
    letter: bool,
) -> tuple[Any, ImageLayout, torch.Tensor, list[tuple[int, int]]]:
    prompts = [build_prompt(processor, question)] * len(images)
    inputs = prepare_inputs(processor, images, prompts)
    layout = ImageLayout.from_inputs(processor, inputs, images=images)
    recorder = Recorder(
        model,
        queries="generated" if letter else digits,
        layers=layers,
        heads=heads,
    )
    with torch.no_grad(), recorder:
        out = model.generate(
            **to_model(model, inputs),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    out = out.cpu()
    length = inputs["input_ids"].shape[1]
    ends = answer_ends(out, length, eos_token_ids(model, processor), keep_eos=False)
    spans = [(length, end) for end in ends]
    return recorder.trace, layout, out, spans

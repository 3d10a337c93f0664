"""Score a trace store record by record: what :func:`score_alignment` and the probes need.

:func:`iter_store_inputs` walks a :class:`~somprobe.capture.TraceStore` (one record's
tensors in memory at a time) and yields, per record, its one-sequence trace, the image
layout (from a single-record ``prepare_inputs`` of the same prompt, checked against the
stored ids), the record's TagSet and the tag mentions of its answer that were captured.
:func:`score_store` runs :func:`~somprobe.measure.score_alignment` on each and joins the
tables; :func:`~somprobe.probes.stored.probe_dataset_from_store` gathers probe samples.

TagSets come from ``tagset_for(record)``; the default, :func:`tagset_beside_image`, reads
``.../tagsets/<key>.json`` beside ``.../images/<key>.png`` (the layout of ``somprobe
data tag`` folders and of the toy world's ``tagged/``).

Example:
    >>> store = TraceStore("runs/capture")  # doctest: +SKIP
    >>> scores = score_store(store, processor)  # doctest: +SKIP
    >>> aggregate_by_layer(scores)[["layer", "mass_object_markfree"]]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from somprobe.capture.store import StoredRecord, TraceStore
from somprobe.errors import DataFormatError, InputError
from somprobe.measure.align import score_alignment
from somprobe.measure.mentions import find_tag_mentions
from somprobe.measure.recipes import _with_position
from somprobe.models.inputs import build_prompt, prepare_inputs
from somprobe.models.layout import ImageLayout
from somprobe.tagging.io import load_tagset
from somprobe.tagging.types import TagSet

TagSetFor = Callable[[StoredRecord], TagSet]


def tagset_beside_image(record: StoredRecord) -> TagSet:
    """The TagSet of ``.../images/<key>.png``: ``.../tagsets/<key>.json``.

    Raises:
        InputError: the image is not in an ``images`` folder, or the TagSet file is missing.
    """
    image = Path(record.image)
    if image.parent.name != "images":
        raise InputError(
            f"record {record.record_id!r}: its image {image} is not in an images/ folder, so "
            "its TagSet cannot be found beside it; pass tagset_for"
        )
    return load_tagset(image.parent.parent / "tagsets" / f"{image.stem}.json")


@dataclass
class StoreInputs:
    """One record's inputs to the scores: trace (batch 0), layout, TagSet and mentions
    (with ``position``, the last scored token: the probes' token)."""

    record: StoredRecord
    layout: ImageLayout
    tagset: TagSet
    mentions: pd.DataFrame


def record_layout(record: StoredRecord, processor: Any, generated: bool = False) -> ImageLayout:
    """The image layout of a stored record, rebuilt from its image and prompt.

    A teacher-forced record's ids must equal those of its prompt and answer; a
    ``generated`` record's (the model wrote the answer) must begin with its prompt's.

    Raises:
        InputError: the image cannot be read.
        DataFormatError: the processor makes other token ids than the stored ones (another
            model's processor, or the record's image or text changed).
    """
    try:
        with Image.open(record.image) as img:
            image = img.convert("RGB")
    except (OSError, ValueError) as err:
        raise InputError(
            f"record {record.record_id!r}: cannot read {record.image} ({err})"
        ) from err
    answer = None if generated else record.answer
    inputs = prepare_inputs(
        processor, [image], [build_prompt(processor, record.question, answer=answer)]
    )
    ids = inputs["input_ids"][0]
    stored = record.input_ids[: len(ids)] if generated else record.input_ids
    if ids.shape != stored.shape or not bool((ids == stored).all()):
        raise DataFormatError(
            f"record {record.record_id!r}: this processor tokenises the record differently "
            "from the capture; use the processor of the captured model"
        )
    return ImageLayout.from_inputs(processor, inputs, images=[image])


def iter_store_inputs(
    store: TraceStore, processor: Any, tagset_for: TagSetFor = tagset_beside_image
) -> Iterator[StoreInputs]:
    """Per record (in store order): trace, layout, TagSet and captured tag mentions."""
    if not isinstance(store, TraceStore):
        raise InputError(f"store must be a TraceStore, got {type(store).__name__}")
    tokenizer = getattr(processor, "tokenizer", processor)
    generated = store.settings.get("mode") == "generated"
    for record in store:
        tagset = tagset_for(record)
        start, end = record.answer_span
        mentions = find_tag_mentions(
            tokenizer, record.input_ids[start:end].tolist(), tag_ids=tagset, offset=start
        )
        if len(mentions):
            mentions = _with_position(mentions)
            captured = set(record.positions)
            keep = [all(p in captured for p in ps) for ps in mentions["scored_positions"]]
            mentions = mentions[keep].reset_index(drop=True)
        layout = record_layout(record, processor, generated=generated)
        yield StoreInputs(record, layout, tagset, mentions)


def score_store(
    store: TraceStore,
    processor: Any,
    tagset_for: TagSetFor = tagset_beside_image,
    **score_kwargs: Any,
) -> pd.DataFrame:
    """:func:`~somprobe.measure.score_alignment` over every record of a store.

    Returns:
        score_alignment's table with ``record_id`` first (``batch`` is 0 throughout).

    Raises:
        InputError: a store captured without attention, or as for :func:`iter_store_inputs`.
    """
    if not store.settings["attention"]:
        raise InputError(f"the trace store at {store.root} holds no attention to score")
    frames = []
    for inputs in iter_store_inputs(store, processor, tagset_for):
        if not len(inputs.mentions):
            continue
        scores = score_alignment(
            inputs.record.trace, inputs.layout, inputs.tagset, inputs.mentions, **score_kwargs
        )
        scores.insert(0, "record_id", inputs.record.record_id)
        frames.append(scores)
    if not frames:
        return pd.DataFrame(columns=["record_id"])
    return pd.concat(frames, ignore_index=True)


__all__ = [
    "StoreInputs",
    "iter_store_inputs",
    "record_layout",
    "score_store",
    "tagset_beside_image",
]

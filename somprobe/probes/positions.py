"""Probe a listing line at three tokens: the tag number, the "." after it, the first word.

In a teacher-forced listing ("3. red circle"), the hidden state at a token is computed
after reading that token, so the three tokens of a line hold different things:

* ``number`` ("3", the last digit; the probes' default): the state has read the tag and
  its input *is* the tag number (controls: ``number_baseline``, ``binding``).
* ``dot`` (the "." right after the number): the state has read the whole tag and nothing
  of the object's name, and it is the state from which the model predicts the name's
  first word: where an object-bound representation must be if the model is to name it.
* ``attribute`` (the first token of the first word after the "."): the state has read
  that token. An attribute this word names (the toy world's colour in "red circle") is
  then read from the token itself, as the number is at the number token: a positive
  reference for what a directly given attribute looks like, not evidence about binding;
  other attributes (shape, area) at that token still are.

Probing all three on the same samples (:func:`build_probe_datasets`, then
:func:`~somprobe.probes.run_probes` with the same ``controls``, ``test_size`` and ``seed``)
and comparing them pairwise (:func:`~somprobe.probes.compare_probes`) says where the
object's attributes appear. What would knock over "the tag token carries its object": a
number-token probe no better than ``number_baseline`` and a ``dot`` probe no better than
its own ``binding`` control. Chance levels are those of the controls (the ``chance``
column).

:func:`listing_positions` finds the three tokens of each mention from the token ids and
the decoded text (any tokenizer with ``decode``), and raises a
:class:`~somprobe.errors.TagMentionError` saying what it found when a tokenizer splits
the line in a way that has no such token (the number and "." in one token, "." glued to
the word, no word after the "."), or when the mention is not a listing line.

The capture must hold those tokens: :func:`~somprobe.measure.teacher_forced_listing`
captures only the tag digits by default; pass ``queries="answer"`` for every answer token.

Example:
    >>> from somprobe.measure import teacher_forced_listing  # doctest: +SKIP
    >>> tf, mentions = teacher_forced_listing(model, processor, tagged, queries="answer",
    ...                                       attention=False)  # doctest: +SKIP
    >>> at = listing_positions(processor.tokenizer, tf.inputs["input_ids"], tf.answer_spans,
    ...                        mentions)  # doctest: +SKIP
    >>> datasets = build_probe_datasets(tf.trace, at, [t.tagset for t in tagged])
    ... # doctest: +SKIP
    >>> results = {k: run_probes(ds, ["colour"]) for k, ds in datasets.items()}
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from somprobe.errors import InputError, TagMentionError
from somprobe.measure.mentions import DecodedTokens, decode_with_offsets
from somprobe.probes.dataset import ProbeDataset, TraceLike, build_probe_dataset
from somprobe.tagging.types import TagSet

#: The tokens of a listing line that can be probed, in reading order.
POSITIONS: tuple[str, ...] = ("number", "dot", "attribute")
_NEED = ("batch", "span_start", "span_end")


def _ids_2d(input_ids: Any) -> np.ndarray:
    if hasattr(input_ids, "detach"):
        input_ids = input_ids.detach().cpu().numpy()
    arr = np.asarray(input_ids)
    if arr.ndim != 2 or (arr.size and arr.dtype.kind not in "iu"):
        raise InputError(
            f"input_ids must be integer token ids [batch, token] (the teacher-forced inputs' "
            f"input_ids), got shape {arr.shape}, dtype {arr.dtype}"
        )
    return arr


def _token_chars(dec: DecodedTokens, token: int) -> tuple[int, int]:
    """Characters ``[start, end)`` of the decoded text that token ``token`` produced (with
    the rest of its group when one character spans several tokens)."""
    return int(np.searchsorted(dec.first, token, "left")), int(
        np.searchsorted(dec.first, token, "right")
    )


def _line_tokens(dec: DecodedTokens, number: int, where: str) -> tuple[int, int]:
    """Local indices of the "." token and the first token of the next word."""
    text = dec.text
    cs, ce = _token_chars(dec, number)
    piece = text[cs:ce]
    alnum = [i for i, ch in enumerate(piece) if ch.isalnum()]
    if not alnum:
        raise TagMentionError(
            f"{where}: the number token decodes to {piece!r}, which holds no digit or letter; "
            "the mention's span_end must end at the tag label"
        )
    end = cs + alnum[-1] + 1  # just after the label
    if end >= len(text) or text[end] != ".":
        raise TagMentionError(
            f"{where}: the text after the tag label is {text[end : end + 8]!r}, not '.'; "
            "listing_positions reads listing lines such as '3. red circle'"
        )
    dot = int(dec.first[end])
    if dot == number:
        raise TagMentionError(
            f"{where}: the tokenizer writes the tag number and '.' as one token ({piece!r}); "
            "there is no separate '.' token to probe"
        )
    c = end + 1
    while c < len(text) and text[c].isspace() and text[c] not in "\r\n":
        c += 1
    if c >= len(text) or text[c] in "\r\n":
        raise TagMentionError(
            f"{where}: there is no word after the '.' on its line ({text[end : end + 8]!r}); "
            "the attribute token is the first token of the first word after the '.'"
        )
    attribute = int(dec.first[c])
    ds, de = _token_chars(dec, dot)
    if attribute == dot:
        raise TagMentionError(
            f"{where}: '.' and the next word share one token ({text[ds:de]!r}); the '.' and "
            "the attribute word have no tokens of their own"
        )
    if text[ds:de].strip() != ".":
        raise TagMentionError(
            f"{where}: the token after the tag number decodes to {text[ds:de]!r}, not '.'"
        )
    return dot, attribute


def listing_positions(
    tokenizer: Any,
    input_ids: Any,
    answer_spans: Sequence[tuple[int, int]],
    mentions: pd.DataFrame,
) -> pd.DataFrame:
    """The number, "." and first attribute-word token of each listing-line mention.

    Args:
        tokenizer: the tokenizer that made ``input_ids`` (anything with ``decode``).
        input_ids: ``[batch, token]`` ids of the teacher-forced sequences
            (``result.inputs["input_ids"]``).
        answer_spans: ``(start, end)`` of each sequence's answer (``result.answer_spans``);
            the text is decoded over this span, as the mentions were found.
        mentions: one row per mention with ``batch``, ``span_start`` and ``span_end``
            (absolute positions of the tag label, end exclusive), as
            :func:`~somprobe.measure.teacher_forced_listing` returns them.

    Returns:
        ``mentions`` with absolute positions ``position_number`` (the last token of the
        label: the mentions' ``position``), ``position_dot`` (the token of the "." right
        after it) and ``position_attribute`` (the first token of the first word after the
        "."), and the text each of them decodes to (``token_number``, ``token_dot``,
        ``token_attribute``).

    Raises:
        InputError: ``input_ids`` is not ``[batch, token]`` integers, or not one answer
            span ``0 <= start <= end <= length`` per sequence.
        TagMentionError: ``mentions`` lacks a column, names a batch item with no sequence,
            or a label outside its answer span; or a line that is not "<label>. <word>"
            in separate tokens (the message says what the tokenizer did).
    """
    ids = _ids_2d(input_ids)
    n_seq, length = ids.shape
    spans = [tuple(int(v) for v in s) for s in answer_spans]
    if len(spans) != n_seq:
        raise InputError(f"{n_seq} sequences but {len(spans)} answer spans; give one each")
    for b, (start, end) in enumerate(spans):
        if not 0 <= start <= end <= length:
            raise InputError(
                f"answer span {(start, end)} of sequence {b} is not within its {length} tokens "
                "(0 <= start <= end)"
            )
    if not isinstance(mentions, pd.DataFrame) or not set(_NEED) <= set(mentions.columns):
        have = list(mentions.columns) if isinstance(mentions, pd.DataFrame) else mentions
        raise TagMentionError(
            f"mentions need columns {list(_NEED)} (teacher_forced_listing's mentions); got {have}"
        )
    out = mentions.copy()
    cols: dict[str, list[object]] = {
        f"{kind}_{name}": [] for kind in ("position", "token") for name in POSITIONS
    }
    decoded: dict[int, DecodedTokens] = {}
    for i, row in enumerate(mentions[list(_NEED)].itertuples(index=False)):
        b, s0, s1 = (int(v) for v in row)
        if not 0 <= b < n_seq:
            raise TagMentionError(
                f"mention {i} is in batch item {b} but there are {n_seq} sequences"
            )
        start, end = spans[b]
        if not start <= s0 < s1 <= end:
            raise TagMentionError(
                f"mention {i} (batch {b}) has its label at tokens [{s0}, {s1}), outside the "
                f"answer span [{start}, {end}) of a {length}-token sequence"
            )
        if b not in decoded:
            decoded[b] = decode_with_offsets(tokenizer, ids[b, start:end].tolist())
        dec = decoded[b]
        number = s1 - 1 - start
        dot, attribute = _line_tokens(dec, number, f"mention {i} (batch {b})")
        for name, local in zip(POSITIONS, (number, dot, attribute), strict=True):
            cs, ce = _token_chars(dec, local)
            cols[f"position_{name}"].append(start + local)
            cols[f"token_{name}"].append(dec.text[cs:ce])
    for key, values in cols.items():
        out[key] = pd.Series(
            values, index=out.index, dtype="int64" if "position" in key else object
        )
    return out


def build_probe_datasets(
    trace: TraceLike,
    mentions: pd.DataFrame,
    tagsets: Sequence[TagSet],
    image_ids: Sequence[Hashable] | None = None,
    at: Sequence[str] = POSITIONS,
) -> dict[str, ProbeDataset]:
    """One :class:`ProbeDataset` per listing token, the same samples in the same order.

    Args:
        trace, tagsets, image_ids: as for :func:`~somprobe.probes.build_probe_dataset`;
            the trace must hold every token read (``queries="answer"``).
        mentions: :func:`listing_positions`' table (``position_<name>`` columns).
        at: which tokens, from :data:`POSITIONS`.

    Returns:
        ``{name: dataset}`` in the order of ``at``; each dataset's ``position`` is that
        token's and its samples carry ``at`` = the name. Probe each with
        :func:`~somprobe.probes.run_probes` and compare two with
        :func:`~somprobe.probes.compare_probes` (same sample keys, same split).

    Raises:
        InputError: ``at`` is empty or names an unknown token.
        TagMentionError: ``mentions`` lacks a ``position_<name>`` column, or as
            :func:`~somprobe.probes.build_probe_dataset` (a position the trace did not
            capture, a negative one, ...).
    """
    names = [at] if isinstance(at, str) else list(at)
    unknown = [a for a in names if a not in POSITIONS]
    if not names or unknown:
        raise InputError(f"unknown token position(s) {unknown or names!r}; choose from {POSITIONS}")
    if not isinstance(mentions, pd.DataFrame):
        raise InputError(f"mentions must be a DataFrame, got {type(mentions).__name__}")
    missing = [f"position_{a}" for a in names if f"position_{a}" not in mentions.columns]
    if missing:
        raise TagMentionError(
            f"mentions lack {missing}; add them with listing_positions(tokenizer, input_ids, "
            "answer_spans, mentions)"
        )
    out: dict[str, ProbeDataset] = {}
    for name in dict.fromkeys(names):
        table = mentions.assign(position=mentions[f"position_{name}"], at=name)
        try:
            out[name] = build_probe_dataset(trace, table, tagsets, image_ids)
        except TagMentionError as err:
            if "did not capture" not in str(err):
                raise
            raise TagMentionError(
                f"{err} (the {name!r} tokens: teacher_forced_listing(..., queries='answer') "
                "captures every answer token)"
            ) from err
    return out

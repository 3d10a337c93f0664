"""Find the tags a model writes (or is teacher-forced through) in a token stream.

A *mention* is a place in the text that refers to a Set-of-Mark tag: a listing line
("3. a cat", "3) a cat"), a bracket ("[3]", "(3)"), a keyword ("tag 3", "tagged with id 3",
"tags 2 and 5", "ID 3"), a hash ("#3"), and, only when asked for, any bare number. In
letter mode the labels are letters ("tag c", "[c]", "c. a cat").

The text is decoded from the token ids and every character is mapped back to the tokens
that produced it, so a tag is found whatever the tokenizer did with it: LLaMA-style
tokenizers write "12" as "▁", "1", "2"; byte-level BPEs may write " 12" as one token; a
number may be glued to other text ("tag12", "[3]person"). A mention's token span covers
the tokens of its *label* (the digits or letters), not of the keyword or brackets.

Rules (documented, tested):

* **Numbers that are not tags.** A number is a mention only when it appears in one of the
  requested formats. "there are 3 cats" has no mention with the default formats; add
  ``"bare"`` to ``formats`` to read every standalone number as a tag (a bare number is a
  run of digits not glued after a letter or digit and not part of a decimal or a
  thousands-separated number or a time such as "3.5", "1,000", "10:30"). Inside a
  format, any number is a tag: "(2019)" is a mention of tag 2019, reported as
  hallucinated if the image has no such tag.
* **Listing lines** start a line (optionally after spaces) with the label followed by
  "." or ")" that is not followed by a digit ("3.5 m" is not a listing line).
* **Keyword lists** ("tags 2, 5 and 7") give one mention per label.
* **One mention per label.** When several formats match the same label ("tag #3"), the
  first in the order listing, tag, bracket, hash, bare names it.
* **Letter mode.** Labels are 1–2 lowercase letters in bijective base 26 (1→"a",
  26→"z", 27→"aa", 28→"ab"); a label must not touch another letter. After a keyword,
  common two-letter words ("is", "as", "in", ...) are not labels; the single letter "a"
  after a keyword is read as a label ("tagged a" and "tag a red ..." are ambiguous); a
  bracket glued after a word ("object(s)") is not a mention.
* **Scored token.** ``score_token="last"`` (the default) scores the query at the last
  token of the label: it is the first position at which the whole tag has been read (the
  first digit of "12" could still become 1, 12 or 13). ``"first"`` scores the first
  token, ``"mean"`` every token of the span (the aligner averages their attention).
* **Special tokens** (BOS, ``<image>``, ...) decode to no text and so never hold a label.

Example:
    >>> from somprobe.measure.mentions import find_tag_mentions
    >>> ids = tokenizer.encode("1. a cat\\n12. a dog", add_special_tokens=False)  # doctest: +SKIP
    >>> df = find_tag_mentions(tokenizer, ids, tag_ids=range(1, 6))  # doctest: +SKIP
    >>> df[["tag_id", "format", "span_start", "span_end", "hallucinated"]]  # doctest: +SKIP
       tag_id   format  span_start  span_end  hallucinated
    0       1  listing           1         2         False
    1      12  listing           6         8          True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from somprobe.errors import InputError
from somprobe.tagging.draw import letter_label
from somprobe.tagging.types import LabelMode, TagSet

ScoreToken = Literal["first", "last", "mean"]

#: Every format :func:`find_tag_mentions` knows, in precedence order.
ALL_FORMATS: tuple[str, ...] = ("listing", "tag", "bracket", "hash", "bare")
#: The formats used when none are given: everything except bare numbers.
DEFAULT_FORMATS: tuple[str, ...] = ("listing", "tag", "bracket", "hash")

MENTION_COLUMNS: tuple[str, ...] = (
    "batch",
    "mention",
    "tag_id",
    "label",
    "format",
    "occurrence",
    "span_start",
    "span_end",
    "scored_positions",
    "char_start",
    "char_end",
    "text",
    "hallucinated",
)

# Two-letter words that are not read as letter labels after a keyword.
_LETTER_STOPWORDS = frozenset(
    [
        "am",
        "an",
        "as",
        "at",
        "be",
        "by",
        "do",
        "go",
        "he",
        "if",
        "in",
        "is",
        "it",
        "me",
        "my",
        "no",
        "of",
        "on",
        "or",
        "so",
        "to",
        "up",
        "us",
        "we",
    ]
)
_MAX_PENDING_TOKENS = 4  # a UTF-8 character spans at most 4 bytes (tokens)


class TokenizerLike(Protocol):
    """What :func:`find_tag_mentions` needs from a tokenizer (any Hugging Face one)."""

    def decode(self, token_ids: list[int], **kwargs: Any) -> str: ...


# --------------------------------------------------------------------------------------
# letter labels


def letter_to_id(label: str) -> int:
    """Inverse of :func:`letter_label`: "a"→1, "aa"→27.

    Example:
        >>> letter_to_id("ab")
        28
    """
    if not label or not all("a" <= ch <= "z" for ch in label):
        raise InputError(f"a letter label is lowercase letters a-z, got {label!r}")
    n = 0
    for ch in label:
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n


# --------------------------------------------------------------------------------------
# text ↔ tokens


@dataclass(frozen=True)
class DecodedTokens:
    """Decoded text and, for each character, the tokens that produced it.

    ``first[c]``..``last[c]`` (inclusive) are the token indices (into the ids given)
    whose decoding produced character ``c``; usually ``first == last``, but a character
    split over several byte tokens has the whole group.
    """

    text: str
    first: np.ndarray
    last: np.ndarray

    def token_span(self, char_start: int, char_end: int) -> tuple[int, int]:
        """Token span ``[start, end)`` of the characters ``[char_start, char_end)``."""
        return int(self.first[char_start:char_end].min()), int(
            self.last[char_start:char_end].max() + 1
        )


def _decode(tokenizer: TokenizerLike, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _pieces_windowed(tokenizer: TokenizerLike, ids: list[int]) -> list[tuple[str, int, int]]:
    """Text pieces, each with the token group ``[first, last]`` that produced it.

    Decodes a short window (the previous group as context, then the new tokens) and keeps
    what the new tokens added, waiting while the text ends in an incomplete character.
    Linear in the number of tokens.
    """
    pieces: list[tuple[str, int, int]] = []
    ctx_start, read_start = 0, 0
    for i in range(len(ids)):
        new_text = _decode(tokenizer, ids[ctx_start : i + 1])
        pending = i + 1 - read_start
        if new_text.endswith("\ufffd") and pending < _MAX_PENDING_TOKENS and i < len(ids) - 1:
            continue
        prefix_text = _decode(tokenizer, ids[ctx_start:read_start])
        if not new_text.startswith(prefix_text):
            raise _InconsistentDecode
        pieces.append((new_text[len(prefix_text) :], read_start, i))
        ctx_start, read_start = read_start, i + 1
    return pieces


def _pieces_prefix(
    tokenizer: TokenizerLike, ids: list[int], full: str
) -> list[tuple[str, int, int]]:
    """Like :func:`_pieces_windowed` but decoding every prefix (quadratic, always right).

    Token ``i`` owns the characters by which the longest common prefix of
    ``decode(ids[:i+1])`` and the full text grew.
    """
    pieces: list[tuple[str, int, int]] = []
    emitted, group_start = 0, 0
    for i in range(len(ids)):
        text = full if i == len(ids) - 1 else _decode(tokenizer, ids[: i + 1])
        limit = min(len(text), len(full))
        lcp = emitted
        while lcp < limit and text[lcp] == full[lcp]:
            lcp += 1
        if lcp > emitted:  # characters this token completed (a partial one waits)
            pieces.append((full[emitted:lcp], group_start, i))
            emitted, group_start = lcp, i + 1
    return pieces


class _InconsistentDecode(Exception):
    pass


def vocabulary_size(tokenizer: Any) -> int | None:
    """The number of token ids ``tokenizer`` can decode (``len(tokenizer)``, which counts
    added tokens, else its ``vocab_size``); None when it does not say."""
    try:
        return len(tokenizer)
    except TypeError:
        size = getattr(tokenizer, "vocab_size", None)
        return int(size) if isinstance(size, int | np.integer) else None


def _check_tokenizer(tokenizer: Any) -> None:
    if not callable(getattr(tokenizer, "decode", None)):
        raise InputError(
            f"the tokenizer must have a Hugging Face style decode(ids), got "
            f"{type(tokenizer).__name__}; pass processor.tokenizer"
        )


def _check_vocabulary(tokenizer: Any, ids: Sequence[int]) -> None:
    """Reject ids the tokenizer cannot decode: its decoder would drop them silently."""
    if not ids:
        return
    size = vocabulary_size(tokenizer)
    high = max(ids)
    if size is not None and high >= size:
        raise InputError(
            f"token id {high} is outside the tokenizer's vocabulary of {size} ids (0..{size - 1}); "
            "the ids must come from this tokenizer (same model and processor)"
        )


def decode_with_offsets(tokenizer: TokenizerLike, token_ids: Sequence[int]) -> DecodedTokens:
    """Decode ``token_ids`` and map every character back to its token(s).

    Special tokens decode to nothing. Works with any tokenizer that has ``decode``: a
    fast windowed pass is checked against the full decode and replaced by an exact
    prefix-by-prefix pass when they disagree.

    Raises:
        InputError: the ids are not one sequence of integers, or an id is negative or
            outside the tokenizer's vocabulary (a decoder would silently drop it, and with
            it any tag it spells).

    Example:
        >>> dec = decode_with_offsets(tokenizer, ids)  # doctest: +SKIP
        >>> dec.text, dec.token_span(0, 2)  # doctest: +SKIP
        ('12. a dog', (1, 3))
    """
    _check_tokenizer(tokenizer)
    ids = _as_id_list(token_ids)
    _check_vocabulary(tokenizer, ids)
    full = _decode(tokenizer, ids)
    try:
        pieces = _pieces_windowed(tokenizer, ids)
        if "".join(p for p, _, _ in pieces) != full:
            raise _InconsistentDecode
    except _InconsistentDecode:
        pieces = _pieces_prefix(tokenizer, ids, full)
    first = np.empty(len(full), dtype=np.int64)
    last = np.empty(len(full), dtype=np.int64)
    pos = 0
    for piece, lo, hi in pieces:
        first[pos : pos + len(piece)] = lo
        last[pos : pos + len(piece)] = hi
        pos += len(piece)
    if pos != len(full):  # pragma: no cover - guarded by construction
        raise InputError("could not map the decoded text back to its tokens")
    return DecodedTokens(full, first, last)


# --------------------------------------------------------------------------------------
# patterns


def _label_pattern(mode: LabelMode) -> str:
    if mode == "number":
        return r"(?<![0-9])[0-9]+(?![0-9])"
    return r"(?<![A-Za-z])[a-z]{1,2}(?![A-Za-z])"


def _format_patterns(fmt: str, mode: LabelMode) -> list[re.Pattern[str]]:
    lab = _label_pattern(mode)
    after_punct = r"(?![0-9])" if mode == "number" else r"(?![A-Za-z])"
    if fmt == "listing":
        return [re.compile(rf"(?m)^[ \t]*(?P<label>{lab})[.)]{after_punct}")]
    if fmt == "bracket":
        # in letter mode "object(s)" is not a mention: the bracket must not touch a word
        before = "" if mode == "number" else r"(?<![A-Za-z])"
        return [
            re.compile(rf"{before}\[[ \t]*(?P<label>{lab})[ \t]*\]"),
            re.compile(rf"{before}\([ \t]*(?P<label>{lab})[ \t]*\)"),
        ]
    if fmt == "hash":
        return [re.compile(rf"#[ \t]?(?P<label>{lab})")]
    if fmt == "tag":
        keyword = (
            r"(?<![A-Za-z])(?i:tag(?:ged|s)?|mark(?:ed|s)?|ids?)"
            r"(?:\s+(?i:with|as|by))?"
            r"(?:\s+(?i:the\s+)?(?i:id|number|no\.|label))?"
            r"[ \t]*[:#]?[ \t]*"
        )
        sep = r"[ \t]*(?:,[ \t]*(?:and|or|&)?|and|or|&)[ \t]*"
        return [re.compile(rf"{keyword}(?P<labels>{lab}(?:{sep}{lab})*)")]
    if fmt == "bare":
        return [re.compile(r"(?<![0-9A-Za-z])(?<![0-9][.,:])(?P<label>[0-9]+)(?![0-9]|[.,:][0-9])")]
    raise AssertionError(fmt)  # pragma: no cover - validated before


@dataclass(frozen=True)
class _Match:
    char_start: int
    char_end: int
    label: str
    fmt: str
    text: str


def _find_in_text(text: str, formats: Sequence[str], mode: LabelMode) -> list[_Match]:
    found: dict[tuple[int, int], _Match] = {}
    label_re = re.compile(_label_pattern(mode))
    for fmt in ALL_FORMATS:
        if fmt not in formats:
            continue
        for pattern in _format_patterns(fmt, mode):
            for m in pattern.finditer(text):
                if "labels" in pattern.groupindex:
                    base = m.start("labels")
                    spans = [
                        (base + lm.start(), base + lm.end())
                        for lm in label_re.finditer(m.group("labels"))
                    ]
                else:
                    spans = [(m.start("label"), m.end("label"))]
                for start, end in spans:
                    label = text[start:end]
                    if fmt == "tag" and mode == "letter" and label in _LETTER_STOPWORDS:
                        continue
                    found.setdefault((start, end), _Match(start, end, label, fmt, m.group(0)))
    return sorted(found.values(), key=lambda mt: mt.char_start)


# --------------------------------------------------------------------------------------
# public entry point


def _as_id_list(token_ids: Any) -> list[int]:
    if hasattr(token_ids, "detach"):  # torch tensor
        token_ids = token_ids.detach().cpu().numpy()
    try:
        arr = np.asarray(token_ids)
    except ValueError as err:  # ragged nested lists
        raise InputError(f"token_ids must be one sequence of token ids (1-D): {err}") from err
    if arr.ndim != 1:
        raise InputError(
            f"token_ids must be one sequence (1-D), got shape {arr.shape}; "
            "pass one row of a batch at a time and set batch= for it"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"token_ids must be integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise InputError("token_ids must be non-negative token ids (found a negative id)")
    return [int(t) for t in arr]


def _known_tags(
    tag_ids: TagSet | Iterable[int] | None, mode: LabelMode | None
) -> tuple[LabelMode, set[int] | None, dict[str, int]]:
    """The label mode, the ids on the image (None if unknown) and label → id overrides."""
    if isinstance(tag_ids, TagSet):
        if mode is not None and mode != tag_ids.label_mode:
            raise InputError(
                f"label_mode={mode!r} but the TagSet was drawn in {tag_ids.label_mode!r} "
                "mode; leave label_mode unset to use the TagSet's"
            )
        labels = {t.label: t.id for t in tag_ids.tags}
        return tag_ids.label_mode, set(tag_ids.ids), labels
    resolved: LabelMode = mode if mode is not None else "number"
    if tag_ids is None:
        return resolved, None, {}
    ids: set[int] = set()
    for t in tag_ids:
        if isinstance(t, bool) or not isinstance(t, int | np.integer):
            raise InputError(f"tag_ids must be integers (the tag numbers), got {t!r}")
        ids.add(int(t))
    return resolved, ids, {}


def _empty_mentions() -> pd.DataFrame:
    df = pd.DataFrame({c: [] for c in MENTION_COLUMNS})
    int_cols = ["batch", "mention", "tag_id", "occurrence", "span_start", "span_end"]
    int_cols += ["char_start", "char_end"]
    df = df.astype({c: "int64" for c in int_cols})
    df = df.astype({"label": object, "format": object, "text": object})
    df["scored_positions"] = df["scored_positions"].astype(object)
    df["hallucinated"] = df["hallucinated"].astype("boolean")
    return df


def find_tag_mentions(
    tokenizer: TokenizerLike,
    token_ids: Sequence[int] | Any,
    *,
    tag_ids: TagSet | Iterable[int] | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    label_mode: LabelMode | None = None,
    score_token: ScoreToken = "last",
    offset: int = 0,
    batch: int = 0,
) -> pd.DataFrame:
    """Every tag mention in a token stream, one row per mention.

    Args:
        tokenizer: anything with a Hugging Face ``decode``.
        token_ids: the token stream (list, 1-D array or tensor).
        tag_ids: the tags on the image (ids, or the TagSet itself); mentions of other
            tags get ``hallucinated=True``. ``None``: unknown, ``hallucinated`` is NA.
        formats: which formats count (see :data:`ALL_FORMATS`; default
            :data:`DEFAULT_FORMATS`, i.e. no bare numbers).
        label_mode: "number" or "letter"; default the TagSet's, else "number".
        score_token: which token of a label's span is scored ("last", "first", "mean").
        offset: absolute position of ``token_ids[0]`` in the model's sequence (e.g. the
            prompt length when ``token_ids`` are only the generated tokens).
        batch: batch index written to the ``batch`` column.

    Returns:
        Columns ``batch, mention`` (0-based running index), ``tag_id, label, format,
        occurrence`` (how many earlier mentions of the same tag), ``span_start, span_end``
        (absolute token positions of the label, end exclusive), ``scored_positions``
        (tuple of absolute positions), ``char_start, char_end`` (label in the decoded
        text), ``text`` (the whole matched text, e.g. "tagged with id 3"),
        ``hallucinated`` (nullable boolean).

    Raises:
        InputError: bad arguments, or token ids that are not one sequence of ids of this
            tokenizer (negative, fractional, or outside its vocabulary).

    Example:
        >>> df = find_tag_mentions(tok, tok.encode("tag 3 and [12]"), tag_ids=[1, 2, 3])
        ... # doctest: +SKIP
        >>> df[["tag_id", "hallucinated"]].values.tolist()  # doctest: +SKIP
        [[3, False], [12, True]]
    """
    unknown = [f for f in formats if f not in ALL_FORMATS]
    if isinstance(formats, str) or unknown:
        raise InputError(
            f"unknown tag mention format(s) {unknown or formats!r}; "
            f"formats must be a sequence drawn from {list(ALL_FORMATS)}"
        )
    if label_mode is not None and label_mode not in ("number", "letter"):
        raise InputError(f"label_mode must be 'number' or 'letter', got {label_mode!r}")
    if score_token not in ("first", "last", "mean"):
        raise InputError(f"score_token must be 'first', 'last' or 'mean', got {score_token!r}")
    if isinstance(offset, bool) or not isinstance(offset, int | np.integer) or offset < 0:
        raise InputError(f"offset must be a non-negative integer, got {offset!r}")
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 0:
        raise InputError(f"batch must be a non-negative integer (a batch index), got {batch!r}")
    _check_tokenizer(tokenizer)
    mode, known, label_ids = _known_tags(tag_ids, label_mode)
    if mode == "letter" and "bare" in formats:
        raise InputError("the 'bare' format only applies to number labels; drop it in letter mode")

    ids = _as_id_list(token_ids)
    decoded = decode_with_offsets(tokenizer, ids)
    rows: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for m in _find_in_text(decoded.text, formats, mode):
        if m.label in label_ids:
            tag_id = label_ids[m.label]
        else:
            tag_id = int(m.label) if mode == "number" else letter_to_id(m.label)
        start, end = decoded.token_span(m.char_start, m.char_end)
        if score_token == "first":
            scored: tuple[int, ...] = (start,)
        elif score_token == "last":
            scored = (end - 1,)
        else:
            scored = tuple(range(start, end))
        rows.append(
            {
                "batch": int(batch),
                "mention": len(rows),
                "tag_id": tag_id,
                "label": m.label,
                "format": m.fmt,
                "occurrence": seen.get(tag_id, 0),
                "span_start": start + int(offset),
                "span_end": end + int(offset),
                "scored_positions": tuple(p + int(offset) for p in scored),
                "char_start": m.char_start,
                "char_end": m.char_end,
                "text": m.text,
                "hallucinated": pd.NA if known is None else tag_id not in known,
            }
        )
        seen[tag_id] = seen.get(tag_id, 0) + 1
    if not rows:
        return _empty_mentions()
    df = pd.DataFrame(rows, columns=list(MENTION_COLUMNS))
    df["hallucinated"] = df["hallucinated"].astype("boolean")
    return df


__all__ = [
    "ALL_FORMATS",
    "DEFAULT_FORMATS",
    "MENTION_COLUMNS",
    "DecodedTokens",
    "decode_with_offsets",
    "find_tag_mentions",
    "letter_label",
    "letter_to_id",
]

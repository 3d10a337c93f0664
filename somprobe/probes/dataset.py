"""Probe datasets: hidden states at tag-mention tokens plus what each tag marks.

The capture engine is connected through :class:`TraceLike`, a small structural interface:
anything with ``layers`` (captured layer indices) and ``hidden(batch, position)`` returning
a ``[layer, dim]`` tensor works. ``somprobe.capture.Trace`` satisfies it (its optional
``queries`` table is used to check mention positions early); so does a stand-in built
from plain tensors, as in the example below.

Example:
    >>> import numpy as np, pandas as pd, torch
    >>> from somprobe.tagging.types import Tag, TagSet
    >>> mask = np.zeros((4, 8), bool); mask[0:2, 0:4] = True
    >>> tag = Tag(1, "1", mask, mask, (2.0, 1.0), (0, 0, 2, 2), "cat", metadata={"colour": "red"})
    >>> class Stub:
    ...     layers = [0, 1]
    ...     def hidden(self, batch, position):
    ...         return torch.full((2, 3), float(position))
    >>> mentions = pd.DataFrame({"batch": [0], "position": [5], "tag_id": [1]})
    >>> ds = build_probe_dataset(Stub(), mentions, [TagSet([tag], (8, 4))])
    >>> tuple(ds.features.shape), ds.samples.loc[0, ["colour", "centroid_x", "area"]].tolist()
    ((2, 1, 3), ['red', np.float64(0.25), np.float64(0.25)])
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from somprobe.errors import DataFormatError, InputError, TagMentionError
from somprobe.tagging.types import Tag, TagSet

#: Columns every samples table has; a tag-metadata key with one of these names is kept
#: as ``META_PREFIX + key`` (COCO regions carry their annotation's ``area``, in pixels,
#: which becomes ``meta_area`` beside the built-in ``area``, a share of the image).
RESERVED_COLUMNS = (
    "sample",
    "batch",
    "position",
    "image_id",
    "tag_id",
    "category",
    "centroid_x",
    "centroid_y",
    "area",
)
#: The regression targets derived from each tag's mask, normalised to [0, 1].
REGION_TARGETS = ("centroid_x", "centroid_y", "area")
#: Prefix of the column that keeps a tag-metadata key named like a built-in column.
META_PREFIX = "meta_"


@runtime_checkable
class TraceLike(Protocol):
    """What :func:`build_probe_dataset` needs from a capture.

    ``layers`` lists the captured layer indices; ``hidden(batch, position)`` returns the
    residual stream after each of those layers at that absolute token position, shape
    ``[len(layers), dim]``. An optional ``queries`` DataFrame (columns ``batch``,
    ``position``, ...) lists the captured positions and is used to check mentions early.
    """

    layers: list[int]

    def hidden(self, batch: int, position: int) -> Float[Tensor, "layer dim"]: ...


@dataclass(frozen=True)
class ProbeDataset:
    """Hidden states at mention tokens and one row of ground truth per sample.

    Attributes:
        features: ``[layer, sample, dim]`` hidden states (float32 unless given float64).
        samples: one row per sample, in feature order: ``sample``, ``batch``,
            ``position``, ``image_id`` (the grouping unit for splits), ``tag_id``,
            ``category``, every tag-metadata key (a key named like one of these
            built-in columns, e.g. COCO's ``area``, as ``meta_<key>``), and
            ``centroid_x``, ``centroid_y``, ``area`` (mask centroid over width/height and
            mask pixels over width × height), plus any extra columns the mentions table had.
        layers: the layer index of each entry of ``features``'s first axis.
        target_columns: the ground-truth columns (category, metadata keys, region targets).
    """

    features: Float[Tensor, "layer sample dim"]
    samples: pd.DataFrame
    layers: list[int]
    target_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n_layer, n_sample = self.features.shape[:2]
        if len(self.layers) != n_layer or len(self.samples) != n_sample:
            raise InputError(
                f"features have shape {tuple(self.features.shape)} but there are "
                f"{len(self.layers)} layers and {len(self.samples)} sample rows; they must match"
            )

    def targets(self) -> list[str]:
        """Ground-truth columns worth probing: no missing values and two or more values.

        Columns left out here (e.g. ``category`` when no tag has one) can still be named
        explicitly, and then raise a :class:`~somprobe.errors.ProbeError` saying why.
        """
        out = []
        for c in self.target_columns:
            col = self.samples[c]
            if not col.isna().any() and col.astype(str).nunique() >= 2:
                out.append(c)
        return out


def region_targets(mask: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float]:
    """Centroid x, y (over width, height) and area (over width × height) of a mask.

    Pixel ``(row, col)`` counts at its centre ``(col + 0.5, row + 0.5)``, so values lie in
    ``(0, 1)``. An empty mask gives NaN for all three (fitting such a target then raises).

    Example:
        >>> m = np.zeros((2, 4), bool); m[:, 2:] = True
        >>> region_targets(m, (4, 2))
        (0.75, 0.5, 0.5)
    """
    width, height = image_size
    if mask.shape != (height, width):
        raise DataFormatError(
            f"tag mask has shape {mask.shape} but the TagSet's image is {width}×{height} "
            f"(expected mask shape {(height, width)}); rebuild the TagSet with matching masks"
        )
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    return (
        float((cols.mean() + 0.5) / width),
        float((rows.mean() + 0.5) / height),
        float(rows.size / (width * height)),
    )


def _metadata_columns(tag: Tag) -> dict[str, object]:
    """The tag's metadata as sample columns: a key named like a built-in column is kept
    as ``meta_<key>`` (the built-in value wins its own name; nothing is dropped)."""
    out: dict[str, object] = {}
    for key, value in tag.metadata.items():
        name = f"{META_PREFIX}{key}" if key in RESERVED_COLUMNS else str(key)
        if name != key and name in tag.metadata:
            raise DataFormatError(
                f"tag {tag.id} has metadata keys {key!r} and {name!r}: {key!r} clashes with a "
                f"built-in sample column {list(RESERVED_COLUMNS)} and would be kept as "
                f"{name!r}, which is taken; rename one of them in the tag metadata"
            )
        out[name] = value
    return out


def _tag_row(tag: Tag, tagset: TagSet) -> dict[str, object]:
    cx, cy, area = region_targets(np.asarray(tag.mask, bool), tagset.image_size)
    row: dict[str, object] = {"category": tag.category, **_metadata_columns(tag)}
    row.update(centroid_x=cx, centroid_y=cy, area=area)
    return row


def _whole(value: object, row: int, column: str) -> int:
    """A mention's batch / position / tag id as an int: a whole number ≥ 0."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number >= 0 and number == int(number)):
        raise TagMentionError(
            f"mention {row}: {column} {value!r} must be a whole number ≥ 0 (a batch index, "
            "token position or tag id)"
        )
    return int(number)


def build_probe_dataset(
    trace: TraceLike,
    mentions: pd.DataFrame,
    tagsets: Sequence[TagSet],
    image_ids: Sequence[Hashable] | None = None,
) -> ProbeDataset:
    """Gather hidden states at tag mentions and the ground truth of the tags they name.

    Args:
        trace: a capture with ``layers`` and ``hidden(batch, position)`` (see
            :class:`TraceLike`); the real ``Trace`` or any stand-in.
        mentions: one row per mention with at least ``batch``, ``position`` (the token
            scored for this mention) and ``tag_id``; further columns are kept.
        tagsets: the ground truth, one TagSet per batch item.
        image_ids: the image behind each batch item (default: the batch index); batch
            items that show the same image must share an id so splits keep them together.

    Returns:
        A :class:`ProbeDataset` with one sample per mention, in the mentions' order.

    Raises:
        InputError: ``mentions`` is not a DataFrame or ``trace`` has no ``hidden``.
        TagMentionError: a mention names a batch item, tag or position that is not there
            (or one that is not a whole number ≥ 0).
        DataFormatError: a tag's mask does not fit its TagSet's image size, or its
            metadata has both a built-in column's name and that name with ``meta_``.
        ProbeError: the hidden states contain NaN or infinity.
    """
    from somprobe.probes.validate import check_finite

    if not isinstance(mentions, pd.DataFrame):
        raise InputError(
            f"mentions must be a DataFrame with batch, position and tag_id, got "
            f"{type(mentions).__name__}"
        )
    if not callable(getattr(trace, "hidden", None)) or not hasattr(trace, "layers"):
        raise InputError(
            f"trace must have layers and hidden(batch, position) (a capture Trace), got "
            f"{type(trace).__name__}"
        )
    need = {"batch", "position", "tag_id"}
    if not need <= set(mentions.columns):
        raise TagMentionError(f"mentions need columns {sorted(need)}; got {list(mentions.columns)}")
    if len(mentions) == 0:
        raise TagMentionError("mentions is empty: there is nothing to probe")
    if image_ids is None:
        image_ids = list(range(len(tagsets)))
    if len(image_ids) != len(tagsets):
        raise InputError(
            f"{len(image_ids)} image ids for {len(tagsets)} TagSets; give one id per batch item"
        )
    captured: set[tuple[int, int]] | None = None
    queries = getattr(trace, "queries", None)
    if isinstance(queries, pd.DataFrame) and {"batch", "position"} <= set(queries.columns):
        captured = set(
            zip(queries["batch"].astype(int), queries["position"].astype(int), strict=True)
        )

    rows: list[dict[str, object]] = []
    hidden: list[Tensor] = []
    for i, m in enumerate(mentions.itertuples(index=False)):
        batch, position, tag_id = (
            _whole(m.batch, i, "batch"),  # type: ignore[attr-defined]
            _whole(m.position, i, "position"),  # type: ignore[attr-defined]
            _whole(m.tag_id, i, "tag_id"),  # type: ignore[attr-defined]
        )
        if not 0 <= batch < len(tagsets):
            raise TagMentionError(
                f"mention {i} is in batch item {batch} but there are {len(tagsets)} TagSets"
            )
        tagset = tagsets[batch]
        if tag_id not in tagset.ids:
            raise TagMentionError(
                f"mention {i} names tag {tag_id} but batch item {batch} has tags {tagset.ids}"
            )
        if captured is not None and (batch, position) not in captured:
            raise TagMentionError(
                f"mention {i} is at batch {batch}, position {position}, which the trace did not "
                "capture; add the mention positions to the capture request"
            )
        try:
            h = torch.as_tensor(trace.hidden(batch, position))
        except (KeyError, IndexError, ValueError) as err:
            raise TagMentionError(
                f"mention {i}: the trace has no hidden state at batch {batch}, position "
                f"{position} ({err!r}); capture that position"
            ) from err
        if h.ndim != 2 or h.shape[0] != len(trace.layers):
            raise TagMentionError(
                f"trace.hidden({batch}, {position}) returned shape {tuple(h.shape)}; expected "
                f"[{len(trace.layers)} layers, dim]"
            )
        hidden.append(h)
        row = {"sample": i, "batch": batch, "position": position, "image_id": image_ids[batch]}
        row["tag_id"] = tag_id
        row.update(_tag_row(tagset[tag_id], tagset))
        rows.append(row)

    dims = {h.shape[1] for h in hidden}
    if len(dims) != 1:
        raise TagMentionError(f"hidden states have different widths {sorted(dims)}")
    dtype = torch.float64 if hidden[0].dtype == torch.float64 else torch.float32
    features = torch.stack([h.to(dtype) for h in hidden], dim=1)
    check_finite(features, list(trace.layers))
    samples = pd.DataFrame(rows)
    skip = {"sample", "batch", "position", "image_id", "tag_id"}
    target_columns = tuple(c for c in samples.columns if c not in skip)
    extra = [c for c in mentions.columns if c not in samples.columns]
    for c in extra:
        samples[c] = mentions[c].to_numpy()
    return ProbeDataset(features, samples, list(trace.layers), target_columns)

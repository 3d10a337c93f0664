"""Figures: layer curves, layer × head maps, and the paper's top-k patch pictures.

Every function draws on a matplotlib ``Axes`` (or makes a figure) and returns the figure,
so notebooks and scripts use them alike; :func:`save_figure` writes PNGs atomically.

Example:
    >>> fig = plot_layer_curves({"LLaVA": per_a, "SoM": per_b},
    ...                         ["image_share_object_markfree", "topk_hit"], absolute=True)
    ... # doctest: +SKIP
    >>> save_figure(fig, "results/layer_curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from somprobe.errors import InputError
from somprobe.io import atomic_path, check_writable
from somprobe.measure.align import CHANCE_COLUMNS, scored_tokens

_PART_WORDS = {
    "object": "object",
    "object_markfree": "mark-free object",
    "mark": "own mark",
    "other": "other objects",
    "other_mark": "other marks",
    "rest": "background",
}
METRIC_LABELS = {
    **{f"mass_{p}": f"mass on {w} (absolute)" for p, w in _PART_WORDS.items()},
    **{f"image_share_{p}": f"share of image attention on {w}" for p, w in _PART_WORDS.items()},
    **{f"lift_{p}": f"lift on {w} (1 = uniform)" for p, w in _PART_WORDS.items()},
    **{f"lift_{p}_weighted": f"mass-weighted lift on {w}" for p, w in _PART_WORDS.items()},
    "mass_image": "mass on image (absolute)",
    "mass_text": "mass on text (absolute)",
    "mass_sink": "mass on sinks (absolute)",
    "topk_hit": "top-k hit rate (target)",
    "topk_any": "top-k any hit (target)",
    "pointing": "pointing game (target)",
    "auroc": "AUROC (target vs rest)",
}
DEFAULT_CURVES: tuple[str, ...] = (
    "mass_object_markfree",
    "image_share_object_markfree",
    "lift_object_markfree",
)


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 130) -> Path:
    """Save ``fig`` as PNG, atomically (:func:`somprobe.io.atomic_path`), then close it.

    Raises:
        InputError: ``fig`` is not a matplotlib Figure.
        WriteError: ``path`` is a folder, or its folder cannot be created or written.
    """
    if not isinstance(fig, Figure):
        raise InputError(f"save_figure needs a matplotlib Figure, got {type(fig).__name__}")
    out = check_writable(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out


def _with_absolute(metrics: list[str]) -> list[str]:
    """``metrics`` with ``mass_<part>`` put before each ``image_share_<part>`` (once)."""
    out: list[str] = []
    for metric in metrics:
        if metric.startswith("image_share_"):
            mass = "mass_" + metric.removeprefix("image_share_")
            if mass not in metrics and mass not in out:
                out.append(mass)
        out.append(metric)
    return out


def _chance_columns(
    chance_lines: Mapping[str, str] | None, metrics: list[str], frames: list[pd.DataFrame]
) -> dict[str, str]:
    """The chance column of each plotted metric that has one (explicit or automatic)."""
    if chance_lines is None:
        return {
            m: c
            for m, c in CHANCE_COLUMNS.items()
            if m in metrics and all(c in f.columns for f in frames)
        }
    if not isinstance(chance_lines, Mapping):
        raise InputError(
            "chance_lines must be a mapping metric → chance column, e.g. "
            f"{{'topk_hit': 'chance_topk'}}, got {type(chance_lines).__name__}"
        )
    lines = {str(m): str(c) for m, c in chance_lines.items()}
    unplotted = [m for m in lines if m not in metrics]
    if unplotted:
        raise InputError(f"chance_lines names metric(s) {unplotted} that are not plotted")
    return lines


def _count_note(data: pd.DataFrame, metric: str) -> str:
    """``n = a`` (or ``a–b``): mentions with a value per layer and model."""
    counts = data.dropna(subset=[metric]).groupby(["model", "layer"]).size()
    counts = counts.reindex(
        pd.MultiIndex.from_frame(data[["model", "layer"]].drop_duplicates()), fill_value=0
    )
    lo, hi = int(counts.min()), int(counts.max())
    return f"n = {lo} per layer" if lo == hi else f"n = {lo}–{hi} per layer"


def plot_layer_curves(
    per_mention: Mapping[str, pd.DataFrame],
    metrics: Sequence[str] = DEFAULT_CURVES,
    *,
    title: str | None = None,
    seed: int = 0,
    absolute: bool = False,
    chance_lines: Mapping[str, str] | None = None,
    ncols: int | None = None,
) -> Figure:
    """Mean of each metric per layer with a 95% bootstrap interval, one line per model.

    Each panel's title says how many mentions per layer had a value (NaN, e.g. a top-k
    hit with no target patch, is left out, never drawn as 0).

    Args:
        per_mention: model name → ``aggregate_by_layer(scores, per_mention=True)``.
        metrics: score columns, one panel each (default the mark-free object's absolute
            mass, its share of the image attention and its lift).
        absolute: put the absolute ``mass_<part>`` in a panel just before each
            conditional ``image_share_<part>`` asked for, so the two read side by side (a
            share can rise while the mass falls).
        chance_lines: metric → chance column, drawn dashed per model (the per-layer mean
            of the chance column over the mentions where the metric has a value); None
            (default): :data:`~somprobe.measure.align.CHANCE_COLUMNS` for every plotted
            metric whose chance column the scores hold; ``{}``: none. Lift panels always
            have their uniform line at 1.
        ncols: panels per row (default: up to 3); the panels fill the rows in order.

    Raises:
        InputError: no model or metric, scores without rows or lacking a column (a
            metric, its mass under ``absolute``, or a chance column named), or
            ``chance_lines`` naming a metric not plotted.

    Example:
        >>> fig = plot_layer_curves(per, ["image_share_object", "topk_hit"], absolute=True)
        ... # doctest: +SKIP
    """
    if not per_mention:
        raise InputError("give at least one model's scores")
    metrics = list(metrics)
    if not metrics:
        raise InputError("give at least one metric to plot (a score column)")
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1):
        raise InputError(f"ncols must be a positive integer, got {ncols!r}")
    if absolute:
        metrics = _with_absolute(metrics)
    chance = _chance_columns(chance_lines, metrics, list(per_mention.values()))
    frames = []
    for name, df in per_mention.items():
        missing = [m for m in [*metrics, "layer", *chance.values()] if m not in df.columns]
        if missing:
            raise InputError(f"scores of {name!r} lack column(s) {missing}")
        if df.empty:
            raise InputError(f"scores of {name!r} have no rows: there is nothing to plot")
        frames.append(df.assign(model=name))
    data = pd.concat(frames, ignore_index=True)
    models = list(per_mention)
    palette = dict(zip(models, sns.color_palette(n_colors=len(models)), strict=True))
    sns.set_theme(style="whitegrid", context="notebook")
    cols = min(len(metrics), ncols or 3)
    n_rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.6 * cols, 3.6 * n_rows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.remove()
    for ax, metric in zip(axes.flat, metrics, strict=False):
        sns.lineplot(
            data=data,
            x="layer",
            y=metric,
            hue="model",
            hue_order=models,
            palette=palette,
            marker="o",
            errorbar=("ci", 95),
            n_boot=1000,
            seed=seed,
            ax=ax,
        )
        if metric.startswith("lift"):
            ax.axhline(1.0, color="grey", lw=1, ls="--")
        if metric in chance:
            for model in models:
                rows = data[(data["model"] == model) & data[metric].notna()]
                level = rows.groupby("layer", sort=True)[chance[metric]].mean()
                ax.plot(
                    level.index.to_numpy(), level.to_numpy(), ls="--", lw=1.2,
                    color=palette[model], label=f"chance ({model})",
                )  # fmt: skip
            ax.legend(fontsize="small")
        ax.set_title(_count_note(data, metric), fontsize="small")
        ax.set_xlabel("decoder layer")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title or "Tag-token attention by layer (mean, 95% bootstrap CI)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.06 / n_rows))
    return fig


def plot_layer_head_map(
    scores: pd.DataFrame,
    metric: str = "lift_object",
    *,
    ax: Any = None,
    title: str | None = None,
    center: float | None = None,
) -> Figure:
    """Heat map of a metric's mean over mentions, layer × head."""
    for col in ("layer", "head", metric):
        if col not in scores.columns:
            raise InputError(f"scores lack column {col!r}")
    if scores[metric].notna().sum() == 0:
        raise InputError(f"scores have no rows with a {metric!r} value: there is nothing to plot")
    table = scores.groupby(["layer", "head"])[metric].mean().unstack("head")
    sns.set_theme(style="white", context="notebook")
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.45 * table.shape[1], 1.0 + 0.4 * table.shape[0]))
    else:
        fig = ax.figure
    sns.heatmap(
        table,
        ax=ax,
        cmap="RdBu_r" if center is not None else "viridis",
        center=center,
        annot=table.size <= 64,
        fmt=".2f",
        cbar_kws={"label": METRIC_LABELS.get(metric, metric)},
    )
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title or f"{metric}: mean over tag mentions")
    return fig


def top_patch_boxes(
    attention: np.ndarray, layout: Any, image: int = 0, k: int = 5
) -> list[tuple[float, float, float, float]]:
    """Boxes (original pixels) of the ``k`` most-attended patches of a map over the
    layout's scored tokens (:func:`~somprobe.measure.align.scored_tokens`: the
    ``(rows, cols)`` patch grid, or ``(1, tokens)`` for LLaVA-NeXT's base + tiles)."""
    flat = np.asarray(attention, dtype=np.float64).reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    scored = scored_tokens(layout, image)
    return [scored.box(int(i), clip=True) for i in order]


def draw_top_patches(
    ax: Any,
    image: Image.Image,
    attention: np.ndarray | None,
    layout: Any,
    *,
    image_index: int = 0,
    k: int = 5,
    mask: np.ndarray | None = None,
    colour: Any = "C0",
    dim: float = 0.0,
    line_width: float = 2.0,
    outline_width: float = 1.2,
) -> list[tuple[float, float, float, float]]:
    """Draw ``image`` on ``ax`` with the ``k`` most-attended patches of ``attention`` boxed.

    Args:
        attention: one ``(rows, cols)`` map over the layout's patch grid (None: no boxes).
        mask: a region to outline in white (e.g. the tagged or queried object).
        dim: opacity of a dark veil over everything but the top patches (0: none).
        line_width, outline_width: of the patch boxes and of the mask's outline.

    Returns:
        The boxes drawn, in original-image pixels, most attended first.
    """
    boxes = [] if attention is None else top_patch_boxes(attention, layout, image_index, k=k)
    # pixel (x, y) covers [x, x+1) × [y, y+1), as in the layout's patch boxes
    extent = (0, image.width, image.height, 0)
    ax.imshow(image, interpolation="nearest", extent=extent)
    if dim > 0:
        veil = np.zeros((image.height, image.width, 4))
        veil[..., 3] = dim
        for x0, y0, x1, y1 in boxes:
            veil[round(y0) : round(y1), round(x0) : round(x1), 3] = 0.0
        ax.imshow(veil, interpolation="nearest", extent=extent)
    if mask is not None:
        centres = np.arange(image.width) + 0.5, np.arange(image.height) + 0.5
        ax.contour(*centres, mask, levels=[0.5], colors="white", linewidths=outline_width)
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=line_width, ec=colour))
    ax.set_xlim(0, image.width)
    ax.set_ylim(image.height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return boxes


def _layout_per_model(layout: Any, models: list[str]) -> dict[str, Any]:
    """One layout per model: a mapping as given (every model needs one), else shared."""
    if not isinstance(layout, Mapping):
        return dict.fromkeys(models, layout)
    missing = [m for m in models if m not in layout]
    if missing:
        raise InputError(
            f"no layout for model(s) {missing}; give one layout, or one per model of the maps"
        )
    return {m: layout[m] for m in models}


def plot_top_patches(
    image: Image.Image,
    maps: Mapping[str, Mapping[int, np.ndarray]],
    layout: Any,
    tagset: Any,
    *,
    k: int = 5,
    image_index: int = 0,
    title: str | None = None,
) -> Figure:
    """The paper's Fig. 4: per tag, the top-k attended patches of each model.

    Args:
        image: the tagged image shown.
        maps: model name → {tag id → attention map ``(rows, cols)`` of that tag's token}
            (e.g. from :func:`~somprobe.measure.tag_attention_maps`).
        layout: the :class:`~somprobe.models.ImageLayout` the maps come from, or one per
            model (model name → layout) when the models' processors differ.
        tagset: ground truth; each tag's object is outlined.

    Raises:
        InputError: no maps, a map off the layout's patch grid, a tag not in ``tagset``,
            an image of another size than the TagSet's, ``k`` below 1, or a mapping of
            layouts without one of the models.
    """
    models = list(maps)
    tag_ids = sorted({t for m in maps.values() for t in m})
    if not models or not tag_ids:
        raise InputError("no attention maps to draw")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if tuple(image.size) != tuple(tagset.image_size):
        raise InputError(
            f"the image is {image.width}×{image.height} but the TagSet is for a "
            f"{tagset.image_size[0]}×{tagset.image_size[1]} image; draw the image the maps "
            "were measured on"
        )
    layouts = _layout_per_model(layout, models)
    for model, by_tag in maps.items():
        grid = scored_tokens(layouts[model], image_index).shape
        for tag_id, attention in by_tag.items():
            shape = np.shape(attention)
            if shape != grid:
                raise InputError(
                    f"the map of tag {tag_id} ({model!r}) has shape {shape} but the layout's "
                    f"patch grid is {grid}; give one (rows, cols) map per tag"
                )
    sns.set_theme(style="white")
    fig, axes = plt.subplots(
        len(tag_ids), len(models), figsize=(2.6 * len(models), 2.6 * len(tag_ids)), squeeze=False
    )
    colours = sns.color_palette("tab10", len(models))
    for r, tag_id in enumerate(tag_ids):
        tag = tagset[tag_id]
        for c, model in enumerate(models):
            ax = axes[r][c]
            draw_top_patches(
                ax, image, maps[model].get(tag_id), layouts[model], image_index=image_index, k=k,
                mask=tag.mask, colour=colours[c],
            )  # fmt: skip
            if r == 0:
                ax.set_title(model)
            if c == 0:
                ax.set_ylabel(f"tag {tag.label}: {tag.category or ''}".strip())
    fig.suptitle(title or f"Top-{k} attended patches of each tag token (white: tagged object)")
    fig.tight_layout()
    return fig

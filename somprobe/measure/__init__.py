"""Measure: Trace → tag mentions → scores → statistics → figures.

* :mod:`~somprobe.measure.mentions`: which token positions say which tag
  (:func:`find_tag_mentions`);
* :mod:`~somprobe.measure.align`: attention-to-region scores per mention, layer and head
  (:func:`score_alignment`), and their aggregates;
* :mod:`~somprobe.measure.recipes`: the paper's measurements end to end
  (:func:`listing_alignment`, :func:`teacher_forced_listing`, :func:`tag_attention_maps`);
* :mod:`~somprobe.measure.stats`: two models' score tables compared per layer × metric,
  resampled by image, family-wise adjusted (:func:`compare_scores`, alias
  :func:`compare_models`);
* :mod:`~somprobe.measure.plots`: layer curves, layer × head maps, top-patch pictures.

Example:
    >>> scores, mentions = listing_alignment(model, processor, tagged)  # doctest: +SKIP
    >>> aggregate_by_layer(scores)[["layer", "mass_object_markfree", "image_share_object_markfree",
    ...                             "topk_hit", "chance_topk", "n_topk_hit"]]  # doctest: +SKIP
"""

from somprobe.measure.align import (
    CHANCE_COLUMNS,
    SCORE_COLUMNS,
    RegionMaps,
    aggregate_by_head,
    aggregate_by_layer,
    patch_attention,
    region_maps,
    score_alignment,
    score_maps,
    sink_patches,
)
from somprobe.measure.mentions import decode_with_offsets, find_tag_mentions
from somprobe.measure.plots import (
    plot_layer_curves,
    plot_layer_head_map,
    plot_top_patches,
    save_figure,
)
from somprobe.measure.recipes import (
    DEFAULT_QUESTION,
    answer_mentions,
    listing_alignment,
    tag_attention_maps,
    teacher_forced_listing,
)
from somprobe.measure.stats import adjust_pvalues, compare_models, compare_scores, paired_test

__all__ = [
    "CHANCE_COLUMNS",
    "DEFAULT_QUESTION",
    "SCORE_COLUMNS",
    "RegionMaps",
    "adjust_pvalues",
    "aggregate_by_head",
    "aggregate_by_layer",
    "answer_mentions",
    "compare_models",
    "compare_scores",
    "decode_with_offsets",
    "find_tag_mentions",
    "listing_alignment",
    "paired_test",
    "patch_attention",
    "plot_layer_curves",
    "plot_layer_head_map",
    "plot_top_patches",
    "region_maps",
    "save_figure",
    "score_alignment",
    "score_maps",
    "sink_patches",
    "tag_attention_maps",
    "teacher_forced_listing",
]

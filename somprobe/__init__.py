"""somprobe: measure how multimodal LLMs tie Set-of-Mark tags to the objects they mark.

The pipeline, one package per stage (see README.md, "Architecture")::

    somprobe.tagging   image + regions → TagSet → tagged image
    somprobe.data      listing / tag-QA data in LLaVA's JSON, mixes, the toy world
    somprobe.finetune  the SoM-LLaVA recipe on HF LLaVA
    somprobe.models    loading, tiny offline models, prompts and inputs, image layouts
    somprobe.capture   Recorder / capture / teacher_force → Trace
    somprobe.measure   Trace → tag mentions → scores → statistics → figures
    somprobe.probes    linear probes on hidden states at tag tokens
    somprobe.evals     tag listing, tag-QA, POPE

The names below are the short path through it; everything else is imported from its
stage package.

Example:
    >>> import somprobe as sp
    >>> model, processor = sp.load_model(sp.build_tiny_llava("tiny"))  # doctest: +SKIP
    >>> scores, mentions = sp.listing_alignment(model, processor, tagged)  # doctest: +SKIP
"""

import importlib
from typing import TYPE_CHECKING, Any

from somprobe import _compat
from somprobe.errors import SomprobeError

if TYPE_CHECKING:  # imported on first use (below), so `import somprobe` stays light
    from somprobe.capture import Recorder, Trace, digit_token_filter, teacher_force
    from somprobe.measure import (
        aggregate_by_layer,
        compare_models,
        compare_scores,
        find_tag_mentions,
        listing_alignment,
        score_alignment,
    )
    from somprobe.models import build_tiny_llava, load_model
    from somprobe.probes import build_probe_dataset, run_probes
    from somprobe.tagging import TagSet, annotate, tag_regions

__version__ = "0.2.0"

#: the short path's names and the stage package each comes from
_SURFACE = {
    **dict.fromkeys(["Recorder", "Trace", "digit_token_filter", "teacher_force"], "capture"),
    **dict.fromkeys(
        [
            "aggregate_by_layer",
            "compare_models",
            "compare_scores",
            "find_tag_mentions",
            "listing_alignment",
            "score_alignment",
        ],
        "measure",
    ),
    **dict.fromkeys(["build_tiny_llava", "load_model"], "models"),
    **dict.fromkeys(["build_probe_dataset", "run_probes"], "probes"),
    **dict.fromkeys(["TagSet", "annotate", "tag_regions"], "tagging"),
}
_PACKAGES = frozenset(
    ["capture", "data", "evals", "finetune", "io", "measure", "models", "probes", "tagging"]
)

__all__ = [
    "Recorder",
    "SomprobeError",
    "TagSet",
    "Trace",
    "__version__",
    "aggregate_by_layer",
    "annotate",
    "build_probe_dataset",
    "build_tiny_llava",
    "compare_models",
    "compare_scores",
    "digit_token_filter",
    "find_tag_mentions",
    "listing_alignment",
    "load_model",
    "run_probes",
    "score_alignment",
    "tag_regions",
    "teacher_force",
]

_compat.install()


def __getattr__(name: str) -> Any:
    """The surface's names and the stage packages, imported on first use; names of the
    0.1 surface that moved to a stage package are found there, with a warning."""
    if name in _SURFACE:
        value = getattr(importlib.import_module(f"somprobe.{_SURFACE[name]}"), name)
        globals()[name] = value
        return value
    if name in _PACKAGES:
        return importlib.import_module(f"somprobe.{name}")
    return _compat.moved_name(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_SURFACE, *_PACKAGES})

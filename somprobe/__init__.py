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

from typing import Any

from somprobe import _compat
from somprobe.capture import Recorder, Trace, digit_token_filter, teacher_force
from somprobe.errors import SomprobeError
from somprobe.measure import (
    aggregate_by_layer,
    compare_models,
    find_tag_mentions,
    listing_alignment,
    score_alignment,
)
from somprobe.models import build_tiny_llava, load_model
from somprobe.probes import build_probe_dataset, run_probes
from somprobe.tagging import TagSet, annotate, tag_regions

__version__ = "0.2.0"

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
    """Names of the 0.1 surface that moved to a stage package: found, with a warning."""
    return _compat.moved_name(name)

"""somprobe: measure how multimodal LLMs tie Set-of-Mark tags to the objects they mark.

The public API, re-exported from the modules that own it (see README.md for recipes):

* models: :func:`load_model`, :func:`build_tiny_llava`, :class:`ImageLayout`,
  :func:`build_prompt`, :func:`prepare_inputs`
* tagging: :func:`tag_regions`, :class:`TagSet`, :func:`save_tagset`, :func:`load_tagset`,
  :class:`Region` and the region sources
* capture: :class:`Recorder`, :class:`Trace`, :func:`capture` (native, nnsight or
  TransformerLens backend), :func:`teacher_force`, :func:`digit_token_filter`
* measurement: :func:`find_tag_mentions`, :func:`score_alignment`,
  :func:`aggregate_by_layer`, :func:`aggregate_by_head`, :func:`compare_models`,
  :func:`listing_alignment`
* probes: :func:`build_probe_dataset`, :func:`run_probes`, :func:`probe_layers`,
  :func:`compare_probes`
* data, evaluations, finetuning: the subpackages ``somprobe.data``, ``somprobe.evals``,
  ``somprobe.finetune``
"""

from somprobe.align import aggregate_by_head, aggregate_by_layer, score_alignment
from somprobe.capture import (
    CaptureResult,
    QueryRecord,
    Recorder,
    Trace,
    capture,
    digit_token_filter,
    teacher_force,
)
from somprobe.errors import (
    CaptureError,
    DataFormatError,
    InputError,
    LayoutError,
    ModelLoadError,
    ProbeError,
    SomprobeError,
    TagMentionError,
    UnsupportedModelError,
)
from somprobe.marks import Tag, TaggedImage, TagSet, tag_regions
from somprobe.measure import listing_alignment
from somprobe.models import (
    ImageLayout,
    build_prompt,
    build_tiny_llava,
    load_model,
    prepare_inputs,
)
from somprobe.probes import (
    ProbeDataset,
    ProbeResult,
    build_probe_dataset,
    compare_probes,
    probe_layers,
    run_probes,
)
from somprobe.regions import (
    Region,
    from_coco,
    from_label_image,
    from_masks,
    from_sam,
    from_superpixels,
)
from somprobe.stats import compare_models
from somprobe.tags import find_tag_mentions
from somprobe.tagset_io import load_tagset, save_tagset

__version__ = "0.1.0"

__all__ = [
    "CaptureError",
    "CaptureResult",
    "DataFormatError",
    "ImageLayout",
    "InputError",
    "LayoutError",
    "ModelLoadError",
    "ProbeDataset",
    "ProbeError",
    "ProbeResult",
    "QueryRecord",
    "Recorder",
    "Region",
    "SomprobeError",
    "Tag",
    "TagMentionError",
    "TagSet",
    "TaggedImage",
    "Trace",
    "UnsupportedModelError",
    "__version__",
    "aggregate_by_head",
    "aggregate_by_layer",
    "build_probe_dataset",
    "build_prompt",
    "build_tiny_llava",
    "capture",
    "compare_models",
    "compare_probes",
    "digit_token_filter",
    "find_tag_mentions",
    "from_coco",
    "from_label_image",
    "from_masks",
    "from_sam",
    "from_superpixels",
    "listing_alignment",
    "load_model",
    "load_tagset",
    "prepare_inputs",
    "probe_layers",
    "run_probes",
    "save_tagset",
    "score_alignment",
    "tag_regions",
    "teacher_force",
]

"""somprobe: measure how multimodal LLMs tie Set-of-Mark tags to the objects they mark.

The public API is re-exported here; see README.md for recipes.
"""

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
from somprobe.marks import Tag, TaggedImage, TagSet

__version__ = "0.1.0"

__all__ = [
    "CaptureError",
    "DataFormatError",
    "InputError",
    "LayoutError",
    "ModelLoadError",
    "ProbeError",
    "SomprobeError",
    "Tag",
    "TagMentionError",
    "TagSet",
    "TaggedImage",
    "UnsupportedModelError",
    "__version__",
]

"""SoM training data: listing answers, tag-QA, LLaVA JSON records, mixing, survey.

Example:
    >>> from somprobe.data import listing_answer, make_record, LISTING_INSTRUCTIONS
    >>> len(LISTING_INSTRUCTIONS) >= 40
    True
"""

from somprobe.data.build import build_listing, build_qa
from somprobe.data.listing import (
    LISTING_INSTRUCTIONS,
    Describer,
    label_describer,
    listing_answer,
    listing_lines,
    listing_record,
    sample_instruction,
)
from somprobe.data.llava_json import (
    LlavaRecord,
    Turn,
    iter_records,
    make_record,
    read_records,
    validate_file,
    validate_record,
    write_records,
)
from somprobe.data.mix import MixSource, mix_files
from somprobe.data.survey import classify_answer, is_listing_style, survey_file, survey_records
from somprobe.data.tag_qa import COCO_CATEGORIES, QA_KINDS, QAPair, qa_record, tag_questions
from somprobe.data.tagging import coco_source, folder_items, mask_folder_source, tag_images

__all__ = [
    "COCO_CATEGORIES",
    "LISTING_INSTRUCTIONS",
    "QA_KINDS",
    "Describer",
    "LlavaRecord",
    "MixSource",
    "QAPair",
    "Turn",
    "build_listing",
    "build_qa",
    "classify_answer",
    "coco_source",
    "folder_items",
    "is_listing_style",
    "iter_records",
    "label_describer",
    "listing_answer",
    "listing_lines",
    "listing_record",
    "make_record",
    "mask_folder_source",
    "mix_files",
    "qa_record",
    "read_records",
    "sample_instruction",
    "survey_file",
    "survey_records",
    "tag_images",
    "tag_questions",
    "validate_file",
    "validate_record",
    "write_records",
]

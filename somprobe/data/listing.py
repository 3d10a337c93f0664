"""Listing answers ("list items one by one") from a TagSet, and the instruction pool.

The answer has one line per tag, in tag order: ``"<label>. <phrase>"``, e.g.
``"1. person"``, ``"2. cat"``. The phrase comes from a :class:`Describer`; the default,
:func:`label_describer`, uses the region's category, as the paper's rule-based listing
benchmark does. Plug in any callable (a VLM client, a template over ``tag.metadata``) to
get richer phrases.

Example:
    >>> import numpy as np
    >>> from somprobe.tagging.types import Tag, TagSet
    >>> m = np.ones((2, 2), bool)
    >>> ts = TagSet([Tag(1, "1", m, m, (0.5, 0.5), (0, 0, 1, 1), category="cat")], (2, 2))
    >>> listing_answer(ts)
    '1. cat'
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from somprobe.data.llava_json import LlavaRecord, make_record
from somprobe.errors import InputError
from somprobe.tagging.types import Tag, TagSet


class Describer(Protocol):
    """Turns one tag's region into the phrase written after its number.

    ``image`` is the tagged image when the caller has it loaded, else None. A describer
    must be deterministic for reproducible data (e.g. a VLM called with greedy decoding).
    """

    def __call__(self, tag: Tag, image: Image.Image | None = None) -> str: ...


def label_describer(tag: Tag, image: Image.Image | None = None) -> str:
    """The offline default: the region's category name.

    Raises:
        InputError: the tag has no category; give regions categories or pass a describer.
    """
    if not tag.category or not tag.category.strip():
        raise InputError(
            f"tag {tag.id} has no category, so the default describer has no phrase for it; "
            "give the regions categories, or pass describer=region_describer (from "
            "somprobe.data.listing: the neutral word 'region' for a tag without a category; "
            "`somprobe data listing --describer somprobe.data.listing:region_describer`, "
            "`experiments/attn_alignment.py --describe region`) or a describer of your own"
        )
    return " ".join(tag.category.split())


#: The phrase :func:`region_describer` writes for a tag without a category.
NEUTRAL_PHRASE = "region"


def region_describer(tag: Tag, image: Image.Image | None = None) -> str:
    """The region's category when it has one, else the neutral word ``"region"``.

    For regions that carry no name (superpixels, SAM masks): the listing then reads
    "1. region\\n2. region ...", which names no object, so the tag numbers are the only
    content a model is teacher-forced through. Scores of such listings measure where
    the tag tokens look, not whether the model knows what the region is.

    Example:
        >>> import numpy as np
        >>> m = np.ones((2, 2), bool)
        >>> region_describer(Tag(1, "1", m, m, (0.5, 0.5), (0, 0, 1, 1)))
        'region'
    """
    if tag.category and tag.category.strip():
        return label_describer(tag, image)
    return NEUTRAL_PHRASE


def listing_lines(
    tagset: TagSet, describer: Describer | None = None, image: Image.Image | None = None
) -> list[str]:
    """One ``"<label>. <phrase>"`` line per tag, in tag order.

    Raises:
        InputError: a describer returned an empty phrase or one spanning several lines.
    """
    describe = describer or label_describer
    lines = []
    for tag in tagset.tags:
        phrase = describe(tag, image)
        if not isinstance(phrase, str) or not phrase.strip() or "\n" in phrase.strip():
            raise InputError(
                f"describer gave {phrase!r} for tag {tag.id}; it must return a non-empty "
                "single-line string"
            )
        lines.append(f"{tag.label}. {phrase.strip()}")
    return lines


def listing_answer(
    tagset: TagSet, describer: Describer | None = None, image: Image.Image | None = None
) -> str:
    """The whole answer: :func:`listing_lines` joined by newlines."""
    return "\n".join(listing_lines(tagset, describer, image))


# Written for this project: varied wording of the same request, so a model learns the
# task rather than one sentence. Every entry asks for all tagged items, in order.
LISTING_INSTRUCTIONS: tuple[str, ...] = (
    "List the items one by one.",
    "Go through the tagged objects in order and name each one.",
    "Name every numbered object in the image, one per line.",
    "For each tag in the image, say what it marks.",
    "Write down what each numbered mark points to, in order.",
    "Enumerate the marked items, starting from tag 1.",
    "What does each numbered tag label? Answer line by line.",
    "Identify all the tagged objects in numerical order.",
    "Please list everything that carries a number tag.",
    "Tell me what every mark in this picture refers to.",
    "Walk through the tags one at a time and describe what they mark.",
    "Give a numbered list of the objects that are tagged.",
    "Which objects are tagged? List them by their numbers.",
    "One line per tag: what is under each number?",
    "Read out the tags in order and name the object for each.",
    "Describe each tagged region briefly, following the tag numbers.",
    "List all objects marked with numbers, keeping the numbering.",
    "Catalogue the tagged items in this image.",
    "For tag 1, tag 2 and so on, name the object it is placed on.",
    "Produce an itemized list matching each tag number to its object.",
    "Name the things the numeric marks sit on, in ascending order.",
    "Count off the tags and say what each one identifies.",
    "What has been labeled in this image? Go tag by tag.",
    "Make a list: each tag number followed by the object it marks.",
    "I see numbers drawn on the image. What object does each one mark?",
    "Map every tag in the image to the object it belongs to.",
    "Itemize the marked regions using their tag numbers.",
    "Starting at the lowest number, list what each tag indicates.",
    "Provide the object name for each of the numbered tags.",
    "Please go through the marks one by one and name the objects.",
    "Label check: list each tag and the object it is attached to.",
    "Tell me, tag by tag, which objects are marked in this picture.",
    "Write a line for every tag with the name of the tagged object.",
    "List the numbered regions and what they contain.",
    "Sequentially name all items that have a tag on them.",
    "Each object here has a number. List the numbers with their objects.",
    "Break down the tagged contents of the image in order of the tags.",
    "What is marked by each tag? Keep the answer in tag order.",
    "Give me the inventory of tagged objects, numbered as in the image.",
    "Scan the tags from first to last and name the object behind each.",
    "Report every tag number together with the object it highlights.",
    "Please enumerate the objects the numeric labels are drawn on.",
    "Name each marked item, using the tag numbers as the list numbers.",
    "List, in order, the objects indicated by the tags in this photo.",
)


def sample_instruction(
    rng: np.random.Generator, pool: tuple[str, ...] | list[str] = LISTING_INSTRUCTIONS
) -> str:
    """Draw one instruction uniformly from ``pool`` with ``rng``."""
    if not pool:
        raise InputError("the instruction pool is empty; give at least one instruction")
    return pool[int(rng.integers(len(pool)))]


def listing_record(
    record_id: str,
    image_path: str,
    tagset: TagSet,
    rng: np.random.Generator,
    *,
    describer: Describer | None = None,
    image: Image.Image | None = None,
    pool: tuple[str, ...] | list[str] = LISTING_INSTRUCTIONS,
) -> LlavaRecord:
    """A one-turn LLaVA record: a sampled listing instruction and the listing answer.

    Raises:
        InputError: the tag set is empty (nothing to list).
    """
    if len(tagset) == 0:
        raise InputError(f"record {record_id!r}: the tag set has no tags, nothing to list")
    answer = listing_answer(tagset, describer, image)
    return make_record(record_id, image_path, [(sample_instruction(rng, pool), answer)])


__all__ = [
    "LISTING_INSTRUCTIONS",
    "Describer",
    "label_describer",
    "listing_answer",
    "listing_lines",
    "listing_record",
    "region_describer",
    "sample_instruction",
]

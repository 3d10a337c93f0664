"""What a dataset-scale capture reads: one image, one question and its answer per record.

:class:`CaptureItem` is the unit of :func:`~somprobe.capture.capture_dataset`; an
:class:`ItemSource` streams them from a LLaVA JSON / JSON Lines file (the first human
turn, without ``<image>``, is the question; the first gpt turn is the answer fed by
teacher forcing), and can be iterated again (each pass re-reads the file), so a 665k
record file is never held in memory. The toy world's eval split is such a file
(``<dataset>/eval/listing.json``, image paths relative to ``<dataset>/eval``).

Example:
    >>> items = llava_items("toy/eval/listing.json", image_root="toy/eval")  # doctest: +SKIP
    >>> next(iter(items)).record_id  # doctest: +SKIP
    'listing_eval_000000'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from somprobe.data.llava_json import IMAGE_TOKEN, LlavaRecord, iter_records
from somprobe.errors import DataFormatError, InputError


@dataclass(frozen=True)
class CaptureItem:
    """One record to capture: an id unique in the dataset, an image file, a question, and
    the answer teacher forcing feeds after it."""

    record_id: str
    image: Path
    question: str
    answer: str

    def load_image(self) -> Image.Image:
        """The image as RGB.

        Raises:
            InputError: the file is missing or is not an image.
        """
        try:
            with Image.open(self.image) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as err:
            raise InputError(
                f"record {self.record_id!r}: cannot read its image {self.image} ({err})"
            ) from err


def item_from_record(
    record: LlavaRecord, image_root: Path, require_answer: bool = True
) -> CaptureItem:
    """The item of one LLaVA record: first human turn (without ``<image>``) and first answer.

    Raises:
        DataFormatError: the record has no image, or no answer turn when ``require_answer``
            (without it, such a record's answer is ``""``: for captures where the model
            answers itself).
    """
    if record.image is None:
        raise DataFormatError(
            f"record {record.id!r} has no image; a capture needs one image per record"
        )
    if len(record.conversations) < 2 and require_answer:
        raise DataFormatError(
            f"record {record.id!r} has no gpt turn; teacher forcing needs an answer to feed"
        )
    question = record.conversations[0].value.replace(IMAGE_TOKEN, "").strip()
    return CaptureItem(
        record_id=str(record.id),
        image=image_root / record.image,
        question=question,
        answer=record.conversations[1].value if len(record.conversations) > 1 else "",
    )


class ItemSource:
    """A re-iterable stream of the :class:`CaptureItem` of a LLaVA JSON / JSONL file.

    Args:
        path: the records file.
        image_root: the folder the records' image paths are relative to (default: the
            file's folder).
        require_answer: refuse records without an answer turn (False: their answer is
            ``""``, for captures where the model answers itself).

    Raises:
        InputError: the file does not exist.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_root: str | os.PathLike[str] | None = None,
        require_answer: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"no records file at {self.path}; give a LLaVA .json or .jsonl file")
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        self.require_answer = require_answer

    def __iter__(self) -> Iterator[CaptureItem]:
        for record in iter_records(self.path):
            yield item_from_record(record, self.image_root, self.require_answer)

    def __repr__(self) -> str:
        return f"ItemSource({str(self.path)!r}, image_root={str(self.image_root)!r})"


def llava_items(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    require_answer: bool = True,
) -> ItemSource:
    """The items of a LLaVA records file (see :class:`ItemSource`)."""
    return ItemSource(path, image_root, require_answer)


def toy_eval_items(dataset: str | os.PathLike[str], task: str = "listing") -> ItemSource:
    """The items of a toy-world dataset's eval split (``<dataset>/eval/<task>.json``).

    Raises:
        InputError: the dataset has no such eval file.
    """
    root = Path(dataset) / "eval"
    path = root / f"{task}.json"
    if not path.is_file():
        raise InputError(
            f"no {path}: give a toy-world dataset folder written by write_toy_dataset "
            "(its eval split holds listing.json, tag_qa.json, ...)"
        )
    return ItemSource(path, root)


__all__ = ["CaptureItem", "ItemSource", "item_from_record", "llava_items", "toy_eval_items"]

"""Regions from SAM's automatic mask generation, through transformers.

Runs transformers' ``mask-generation`` pipeline (point grid → ``SamModel`` → predicted-IoU
and stability filtering) and finishes it here: box non-maximum suppression across points
in numpy (so torchvision is not needed) and RLE decoding with pycocotools. The paper's
knobs are the arguments: points per side, predicted-IoU and stability thresholds, and a
minimum region area.

No weights are downloaded unless you name a hub checkpoint yourself, e.g.
``from_sam(image, "facebook/sam-vit-base")``; tests use a tiny randomly initialised
``SamModel`` built from a config.

Example (a real checkpoint; not run in tests):
    >>> regions = from_sam(image, "facebook/sam-vit-base", points_per_side=32)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from jaxtyping import Float
from PIL import Image
from pycocotools import mask as mask_utils

from somprobe.errors import InputError, ModelLoadError
from somprobe.tagging.regions.base import Region
from somprobe.tagging.rgb import as_rgb_array


def box_nms(
    boxes: Float[np.ndarray, "n 4"], scores: Float[np.ndarray, " n"], iou_threshold: float
) -> list[int]:
    """Greedy non-maximum suppression over ``(x0, y0, x1, y1)`` boxes.

    Boxes are visited by decreasing score (ties: lower index first); a box is dropped when
    its IoU with an already kept box is ``> iou_threshold`` (torchvision's rule). Boxes
    are inclusive pixel boxes as SAM produces them, so a box spans ``x1 - x0 + 1`` pixels.

    Example:
        >>> box_nms(np.array([[0, 0, 9, 9], [1, 1, 9, 9], [20, 20, 25, 25]]),
        ...         np.array([0.9, 0.8, 0.7]), 0.7)
        [0, 2]
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    area = (b[:, 2] - b[:, 0] + 1).clip(0) * (b[:, 3] - b[:, 1] + 1).clip(0)
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.asarray(keep)
            iw = (np.minimum(b[k, 2], b[i, 2]) - np.maximum(b[k, 0], b[i, 0]) + 1).clip(0)
            ih = (np.minimum(b[k, 3], b[i, 3]) - np.maximum(b[k, 1], b[i, 1]) + 1).clip(0)
            inter = iw * ih
            union = area[k] + area[i] - inter
            iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
            if (iou > iou_threshold).any():
                continue
        keep.append(int(i))
    return keep


def _decode_rle(rle: dict[str, Any]) -> np.ndarray:
    h, w = (int(v) for v in rle["size"])
    counts = [int(c) for c in rle["counts"]]
    obj = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    with warnings.catch_warnings():  # numpy-2 copy-keyword notice inside pycocotools
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = mask_utils.decode(obj)
    return np.ascontiguousarray(decoded.astype(bool))


def _load(model: Any, processor: Any) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, SamModel

    if isinstance(model, (str, os.PathLike)):
        try:
            loaded = SamModel.from_pretrained(model)
            if processor is None:
                processor = AutoImageProcessor.from_pretrained(model)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"could not load a SAM model from {model!r} ({err}); pass a local folder, "
                "a SamModel, or allow the hub download of a checkpoint such as "
                "'facebook/sam-vit-base'"
            ) from err
        model = loaded
    if not isinstance(model, SamModel):
        raise InputError(f"model must be a SamModel or a path/hub name, got {type(model).__name__}")
    if processor is None:
        from transformers import SamImageProcessorPil

        vision: Any = model.config.vision_config
        side = int(vision.image_size)
        processor = SamImageProcessorPil(
            size={"longest_edge": side}, pad_size={"height": side, "width": side}
        )
    return model.eval(), processor


def _pipeline(model: Any, processor: Any, device: Any) -> Any:
    from transformers.pipelines.mask_generation import MaskGenerationPipeline

    class _RawMaskGeneration(MaskGenerationPipeline):
        """The stock pipeline up to the per-point filtering; NMS is done by from_sam."""

        def postprocess(self, model_outputs: Any, **_: Any) -> dict[str, Any]:  # type: ignore[override]
            rles: list[dict[str, Any]] = []
            scores: list[np.ndarray] = []
            boxes: list[np.ndarray] = []
            for out in model_outputs:
                rles.extend(out["masks"])
                scores.append(out["iou_scores"].float().cpu().numpy().reshape(-1))
                boxes.append(out["boxes"].float().cpu().numpy().reshape(-1, 4))
            return {
                "rles": rles,
                "scores": np.concatenate(scores) if scores else np.zeros(0),
                "boxes": np.concatenate(boxes) if boxes else np.zeros((0, 4)),
            }

    return _RawMaskGeneration(model=model, image_processor=processor, device=device)


def from_sam(
    image: Image.Image | np.ndarray,
    model: Any,
    *,
    processor: Any = None,
    points_per_side: int = 32,
    points_per_batch: int = 64,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    nms_thresh: float = 0.7,
    min_area: int = 0,
    crops_n_layers: int = 0,
    device: Any = None,
) -> list[Region]:
    """SAM automatic masks of ``image``, by decreasing predicted IoU.

    Args:
        image: PIL image or array (converted as in :mod:`somprobe.tagging.rgb`).
        model: a ``transformers.SamModel``, or a local folder / hub name to load one from.
        processor: the SAM image processor; default: the checkpoint's, or for a model
            object a ``SamImageProcessorPil`` sized to its vision config.
        points_per_side: the point grid is ``points_per_side`` × ``points_per_side``.
        points_per_batch: points run through the mask decoder at once.
        pred_iou_thresh, stability_score_thresh: SAM's mask filters (defaults: SAM's).
        nms_thresh: box IoU above which a lower-scoring mask is dropped.
        min_area: drop masks with fewer pixels than this.
        crops_n_layers: SAM's extra crop layers (0: the whole image only).
        device: torch device for the pipeline (default: the model's).

    Each region has ``source_id`` = its rank and metadata ``method="sam"``,
    ``predicted_iou`` and ``bbox`` (x0, y0, x1, y1 inclusive, as SAM reports it).
    """
    if points_per_side < 1 or points_per_batch < 1:
        raise InputError(
            f"points_per_side and points_per_batch must be ≥ 1, got {points_per_side}, "
            f"{points_per_batch}"
        )
    pixels = as_rgb_array(image)
    sam, proc = _load(model, processor)
    generator = _pipeline(sam, proc, device)
    out = generator(
        Image.fromarray(pixels),
        points_per_crop=points_per_side,
        points_per_batch=points_per_batch,
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
        crops_n_layers=crops_n_layers,
    )
    keep = box_nms(out["boxes"], out["scores"], nms_thresh)
    regions: list[Region] = []
    for i in keep:
        mask = _decode_rle(out["rles"][i])
        if mask.shape != pixels.shape[:2]:
            raise InputError(
                f"SAM returned a {mask.shape} mask for a {pixels.shape[:2]} image; check that "
                "the processor matches the model"
            )
        if int(mask.sum()) < min_area:
            continue
        regions.append(
            Region(
                mask,
                source_id=len(regions),
                metadata={
                    "method": "sam",
                    "predicted_iou": float(out["scores"][i]),
                    "bbox": [int(v) for v in out["boxes"][i]],
                },
            )
        )
    return regions

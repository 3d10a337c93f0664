"""Vision warm-up for the toy models: the toy world's stand-in for CLIP's pretraining.

LLaVA starts from a pretrained CLIP vision tower; the toy models start from random
weights, and learning shape through the language model alone is slow on a CPU (after
750 instruction steps untagged shape accuracy was 0.28, chance 0.25). This step trains
only the vision tower, with two throw-away linear heads, to name the shape and colour of
the object under every patch (:func:`somprobe.data.toyworld.patch_labels.patch_labels`)
on freshly drawn untagged scenes, then saves the model with the new vision tower and
everything else unchanged. The heads read the features the projector reads (the
model's ``vision_feature_layer``, the CLS token dropped under the ``default`` strategy).

Scenes: training scenes ``(world_seed, 3, i)``, held-out scenes ``(world_seed, 4, i)``,
apart from the dataset's splits (codes 0–2). The held-out score is per object: the
majority label over the patches it owns, compared with its shape and colour.

Example:
    >>> from somprobe.data.toyworld import world
    >>> result = warmup_vision("tiny/", "tiny-warm/", world("v2"), steps=400)  # doctest: +SKIP
    >>> result.shape_accuracy  # doctest: +SKIP
    0.98
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from somprobe.data.toyworld.patch_labels import PatchLabels, patch_labels
from somprobe.data.toyworld.scenes import ToyScene, WorldConfig, make_scene
from somprobe.errors import InputError, WriteError
from somprobe.io import atomic_write, check_writable
from somprobe.models.adapters import adapter_for
from somprobe.models.loading import load_model

TRAIN_CODE, EVAL_CODE = 3, 4
RESULT_FILE = "vision_warmup.json"


@dataclass
class VisionWarmupResult:
    """What :func:`warmup_vision` did: held-out per-object accuracy and its curve."""

    steps: int
    shape_accuracy: float
    colour_accuracy: float
    objects: int
    seconds: float
    settings: dict[str, Any]
    curve: list[dict[str, float]] = field(default_factory=list)


def _check(name: str, value: Any, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
        raise InputError(f"{name}={value!r}: must be a number ≥ {low}")


def _features(model: Any, pixel_values: Tensor) -> Float[Tensor, "batch patch width"]:
    cfg = model.config
    out = adapter_for(model).vision_tower(pixel_values, output_hidden_states=True)
    feats = out.hidden_states[cfg.vision_feature_layer]
    return feats[:, 1:] if cfg.vision_feature_select_strategy == "default" else feats


def check_world_fits(model: Any, config: WorldConfig) -> None:
    """The world's images and patches are the vision tower's own (one patch, one label).

    Raises:
        InputError: they are not.
    """
    vision = model.config.vision_config
    if (vision.image_size, vision.patch_size) != (config.image_size, config.patch_size):
        raise InputError(
            f"the world draws {config.image_size} px images with {config.patch_size} px "
            f"patches but the model expects {vision.image_size} px / {vision.patch_size} px"
        )


def vision_patch_features(
    model: Any, processor: Any, scenes: list[ToyScene], *, batch_size: int = 50
) -> Float[Tensor, "layer scene patch width"]:
    """Every vision hidden state (embeddings first) at every patch of ``scenes``.

    The patch tokens are the last ``(image_size / patch_size)²`` of each state (a CLS
    token before them is dropped); the layer the projector reads is
    ``model.config.vision_feature_layer`` of these.

    Example:
        >>> scenes = [make_scene(world("v2"), (0, EVAL_CODE, i)) for i in range(8)]
        >>> feats = vision_patch_features(model, processor, scenes)  # doctest: +SKIP
        >>> feats.shape  # doctest: +SKIP
        torch.Size([5, 8, 64, 128])
    """
    if not scenes:
        raise InputError("vision_patch_features needs at least one scene")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}: must be a whole number ≥ 1")
    vision = model.config.vision_config
    n_patches = (vision.image_size // vision.patch_size) ** 2
    tower = adapter_for(model).vision_tower
    param = next(tower.parameters())
    parts = []
    for start in range(0, len(scenes), batch_size):
        chunk = scenes[start : start + batch_size]
        pixels = processor.image_processor([s.image for s in chunk], return_tensors="pt")
        with torch.no_grad():
            out = tower(
                pixels["pixel_values"].to(param.device, param.dtype), output_hidden_states=True
            )
        parts.append(torch.stack([h[:, -n_patches:] for h in out.hidden_states]).float().cpu())
    return torch.cat(parts, dim=1)


def _batch(
    scenes: list[ToyScene], processor: Any, min_share: float
) -> tuple[Tensor, Int[Tensor, "batch patch"], Int[Tensor, "batch patch"], list[PatchLabels]]:
    labels = [patch_labels(s, min_share=min_share) for s in scenes]
    pixels = processor.image_processor([s.image for s in scenes], return_tensors="pt")
    shape = torch.from_numpy(np.stack([lab.shape.ravel() for lab in labels]))
    colour = torch.from_numpy(np.stack([lab.colour.ravel() for lab in labels]))
    return pixels["pixel_values"], shape, colour, labels


def _vote(pred: Int[Tensor, " patch"], owned: np.ndarray, classes: int) -> int:
    """The majority non-background label over the owned patches (0 if none)."""
    counts = torch.bincount(pred[torch.from_numpy(owned)], minlength=classes + 1)[1:]
    return int(counts.argmax()) + 1 if counts.sum() > 0 else 0


def _accuracy(
    model: Any,
    heads: torch.nn.ModuleList,
    batch: tuple[Tensor, Any, Any, list[PatchLabels]],
    classes: tuple[int, int],
) -> tuple[float, float, int]:
    """Per-object (shape, colour) accuracy of the patch votes, and the number of objects."""
    pixels, _, _, labels = batch
    with torch.no_grad():
        feats = _features(model, pixels)
        shape_pred, colour_pred = (h(feats).argmax(-1) for h in heads)
    hits_s = hits_c = n = 0
    for b, lab in enumerate(labels):
        for k in np.unique(lab.owner[lab.owner >= 0]):
            owned = (lab.owner == k).ravel()
            truth_s, truth_c = lab.shape.ravel()[owned][0], lab.colour.ravel()[owned][0]
            hits_s += _vote(shape_pred[b], owned, classes[0]) == truth_s
            hits_c += _vote(colour_pred[b], owned, classes[1]) == truth_c
            n += 1
    return float(hits_s / max(n, 1)), float(hits_c / max(n, 1)), n


def warmup_vision(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: WorldConfig,
    *,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    min_share: float = 0.25,
    world_seed: int = 0,
    seed: int = 0,
    eval_scenes: int = 200,
    eval_every: int = 50,
    progress: bool = True,
) -> VisionWarmupResult:
    """Train the vision tower of ``model_dir`` to label patches; save the model to ``out_dir``.

    Only the vision tower changes (AdamW, constant ``lr``); the projector and language
    model are saved as they were. ``out_dir`` gets the model, its processor and
    ``vision_warmup.json`` (this result); it is written in a temporary folder and
    renamed, so a killed run leaves nothing half written.

    Raises:
        InputError: bad numbers; a world whose images are not the model's image size;
            ``out_dir`` already exists.
        WriteError: ``out_dir``'s folder cannot be written.
    """
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1),
                             ("eval_scenes", eval_scenes, 1), ("eval_every", eval_every, 1),
                             ("lr", lr, 1e-12), ("weight_decay", weight_decay, 0)):  # fmt: skip
        _check(name, value, low)
    if not 0 < min_share <= 1:
        raise InputError(f"min_share must lie in (0, 1], got {min_share}")
    out = Path(out_dir)
    if out.exists():
        raise InputError(f"{out} exists already; warmup_vision writes a new folder")
    check_writable(out)  # creates out.parent; out itself is written at the end
    model, processor = load_model(model_dir, dtype=torch.float32)
    check_world_fits(model, config)
    vision = model.config.vision_config
    torch.manual_seed(seed)
    width = vision.hidden_size
    classes = (len(config.shapes), len(config.colours))
    heads = torch.nn.ModuleList(
        [torch.nn.Linear(width, len(config.shapes) + 1), torch.nn.Linear(width, len(config.colours) + 1)]
    )  # fmt: skip
    tower = adapter_for(model).vision_tower
    for p in model.parameters():
        p.requires_grad_(False)
    for p in tower.parameters():
        p.requires_grad_(True)
    params = [*tower.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    held_out = _batch(
        [make_scene(config, (world_seed, EVAL_CODE, i)) for i in range(eval_scenes)],
        processor, min_share,
    )  # fmt: skip
    from tqdm import tqdm

    curve: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for step in tqdm(range(1, steps + 1), desc="vision warm-up", disable=not progress):
        tower.train()
        first = (step - 1) * batch_size
        pixels, shape, colour, _ = _batch(
            [make_scene(config, (world_seed, TRAIN_CODE, first + j)) for j in range(batch_size)],
            processor, min_share,
        )  # fmt: skip
        feats = _features(model, pixels)
        loss = torch.stack(
            [
                torch.nn.functional.cross_entropy(head(feats).flatten(0, 1), target.flatten())
                for head, target in zip(heads, (shape, colour), strict=True)
            ]
        ).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            tower.eval()
            acc_s, acc_c, n = _accuracy(model, heads, held_out, classes)
            curve.append({"step": step, "loss": float(loss.detach()), "shape_accuracy": acc_s,
                          "colour_accuracy": acc_c, "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    tower.eval()
    acc_s, acc_c, n = _accuracy(model, heads, held_out, classes)
    for p in model.parameters():
        p.requires_grad_(True)
    settings = {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                "min_share": min_share, "world_seed": world_seed, "seed": seed,
                "eval_scenes": eval_scenes, "world": json.loads(json.dumps(config.to_dict()))}  # fmt: skip
    result = VisionWarmupResult(steps, acc_s, acc_c, n, round(time.perf_counter() - t0, 1),
                                settings, curve)  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        with atomic_write(tmp / RESULT_FILE) as fh:
            json.dump(asdict(result), fh, indent=1)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except OSError as err:
        raise WriteError(f"cannot write {out}: {err.strerror or err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def load_warmup_result(folder: str | os.PathLike[str]) -> VisionWarmupResult:
    """The :class:`VisionWarmupResult` saved beside a warmed model."""
    return VisionWarmupResult(**json.loads((Path(folder) / RESULT_FILE).read_text()))


__all__ = [
    "VisionWarmupResult",
    "check_world_fits",
    "load_warmup_result",
    "vision_patch_features",
    "warmup_vision",
]

"""Finetune a Hugging Face LLaVA on LLaVA JSON data with the HF ``Trainer``.

The same function runs on one CPU, one GPU, or many processes under
``accelerate launch`` (DDP, or DeepSpeed ZeRO-3 through an accelerate config or the
preset's ZeRO-3 settings); see ``configs/accelerate/``.

* Full finetuning with the vision tower frozen (``trainable="projector+lm"``, the
  SoM-LLaVA recipe), the projector alone (``"projector"``, LLaVA's stage 1), or every
  part (``"all"``, for models whose vision tower starts from random weights).
* LoRA through peft on the language model's linear layers (projector trained fully),
  merged into a plain checkpoint at the end (:class:`LoraOptions`).
* Checkpoints: by default one every 10 % of the run (preset ``save_steps=0.1``), the last
  ``save_total_limit`` kept.
* Resume: with ``resume=True`` a run continues from the last complete ``checkpoint-*`` in
  ``output_dir`` (optimizer, scheduler, RNG and data position included); a checkpoint a
  kill cut short (its ``trainer_state.json``, written last, missing or unreadable) is
  removed and the one before it is used.
* At the end the model and processor are saved in ``output_dir`` (loadable with
  :func:`somprobe.load_model`) with ``finetune_summary.json``: steps, loss, time, and
  the records skipped by reason.

Example:
    >>> result = finetune("tiny-llava/", "train.json", "images/", "out/", preset="toy",
    ...                   max_steps=20)
    >>> result.skipped["total"]
    0
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments

from somprobe.errors import InputError, ModelLoadError, UnsupportedModelError
from somprobe.finetune.collator import SFTCollator
from somprobe.finetune.dataset import LlavaSFTDataset, OnBadRecord
from somprobe.finetune.loss import turn_weighted_loss
from somprobe.finetune.presets import FinetunePreset, Trainable, get_preset
from somprobe.io import atomic_write, check_writable
from somprobe.models.adapters import adapter_for
from somprobe.models.loading import load_model, resolve_dtype

logger = logging.getLogger("somprobe.finetune")

#: The language model's linear layers (LLaMA / Vicuna names), as a peft regex.
LM_LINEAR_LAYERS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
SUMMARY_FILE = "finetune_summary.json"
#: Test hook: after the checkpoint of this step is saved, stop and wait (to be killed).
PAUSE_ENV = "SOMPROBE_FINETUNE_PAUSE_AFTER_SAVE"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class LoraOptions:
    """LoRA on the language model (LLaVA-1.5's LoRA recipe: r 128, alpha 256).

    Attributes:
        r, alpha, dropout: the adapter's rank, scaling and dropout.
        target_modules: regex of module names that get adapters.
        train_projector: also train the projector fully (saved with the adapter).
        merge: merge the adapter into the weights at the end and save a plain
            checkpoint in ``output_dir`` (the adapter itself goes to ``output_dir/adapter``).
        init_lora_weights: peft's init; ``False`` gives random non-zero adapters.
    """

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: str = LM_LINEAR_LAYERS
    train_projector: bool = True
    merge: bool = True
    init_lora_weights: bool = True

    def __post_init__(self) -> None:
        for name in ("r", "alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"LoRA {name}={value!r}: give a whole number ≥ 1")
        if not 0 <= self.dropout < 1:
            raise InputError(f"LoRA dropout={self.dropout!r}: give a number in [0, 1)")


@dataclass(frozen=True)
class FinetuneResult:
    """What a run did; also written to ``output_dir/finetune_summary.json``."""

    output_dir: str
    preset: str
    global_step: int
    train_loss: float | None
    first_loss: float | None
    last_loss: float | None
    seconds: float
    seconds_per_step: float | None
    world_size: int
    records: int
    skipped: dict[str, Any]
    trainable_parameters: int
    total_parameters: int
    resumed_from: str | None
    lora: bool
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)


def model_parts(model: Any) -> dict[str, list[torch.nn.Module]]:
    """The vision tower, projector and language model (with its head) of a LLaVA model,
    as the model family's adapter locates them.

    Raises:
        InputError: the model is not a LLaVA model.
    """
    try:
        adapter = adapter_for(model)
    except UnsupportedModelError as err:
        raise InputError(
            f"finetune expects a LlavaForConditionalGeneration with a vision tower, projector, "
            f"language model and lm_head: {err}"
        ) from err
    return {
        "vision": [adapter.vision_tower],
        "projector": [adapter.projector],
        "lm": [adapter.language_model, adapter.lm_head],
    }


def set_trainable(model: Any, trainable: Trainable) -> tuple[int, int]:
    """Freeze what ``trainable`` leaves out; return (trainable, total) parameter counts."""
    wanted = {"projector": {"projector"}, "projector+lm": {"projector", "lm"}, "all": None}
    if trainable not in wanted:
        raise InputError(f"trainable must be one of {sorted(wanted)}, got {trainable!r}")
    keep = wanted[trainable]
    for name, modules in model_parts(model).items():
        for module in modules:
            module.requires_grad_(keep is None or name in keep)
    for module in unused_vision_modules(model):
        module.requires_grad_(False)
    return count_parameters(model)


def unused_vision_modules(model: Any) -> list[torch.nn.Module]:
    """Vision-tower modules whose output LLaVA never uses (so they never get gradients).

    LLaVA takes the hidden states of ``vision_feature_layer``: the tower's final layer
    norm (and, for a layer before the last, the layers after it) do not reach the loss.
    They are frozen so that distributed training does not wait for their gradients.
    """
    tower = model_parts(model)["vision"][0]
    tower = getattr(tower, "vision_model", tower)
    unused: list[torch.nn.Module] = []
    post = getattr(tower, "post_layernorm", None)
    if post is not None:
        unused.append(post)
    layers = getattr(getattr(tower, "encoder", None), "layers", None)
    feature = getattr(model.config, "vision_feature_layer", -1)
    if layers is not None:
        wanted = (
            feature
            if isinstance(feature, int)
            else max(feature, key=lambda i: i % (len(layers) + 1))
        )
        unused.extend(layers[wanted % (len(layers) + 1) :])
    return unused


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def apply_lora(model: PreTrainedModel, options: LoraOptions) -> Any:
    """Wrap ``model`` with LoRA adapters (vision tower frozen, projector optional)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=options.target_modules,
        modules_to_save=["multi_modal_projector"] if options.train_projector else None,
        init_lora_weights=options.init_lora_weights,
        bias="none",
    )
    return get_peft_model(model, config)


def merge_lora(
    base: str | os.PathLike[str],
    adapter: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype | None = None,
) -> Path:
    """Merge a saved LoRA adapter into its base model; save model + processor to ``out_dir``.

    Example:
        >>> merge_lora("llava-1.5-7b-hf/", "run/adapter", "run/merged")  # doctest: +SKIP
    """
    from peft import PeftModel

    check_writable(Path(out_dir) / "config.json")
    if not Path(adapter).is_dir():
        raise InputError(
            f"LoRA adapter folder {adapter} does not exist; give the folder a LoRA run "
            "saved (output-dir/adapter)"
        )
    model, processor = load_model(base, dtype=dtype or torch.float32)
    try:
        peft_model = PeftModel.from_pretrained(model, os.fspath(adapter))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"could not load the LoRA adapter from {adapter}: {err}") from err
    merged = peft_model.merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _uses_accelerate_deepspeed() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def training_arguments(
    preset: FinetunePreset,
    output_dir: str | os.PathLike[str],
    *,
    deepspeed: str | dict[str, Any] | None = "preset",
    progress: bool = True,
    world_size: int | None = None,
) -> TrainingArguments:
    """HF ``TrainingArguments`` for ``preset`` (global batch via gradient accumulation).

    ``deepspeed="preset"`` uses the preset's ZeRO-3 settings on GPUs (dropped, with a log
    line, on CPU or when ``accelerate launch`` already configures DeepSpeed); a path or
    dict is used as given; ``None`` turns DeepSpeed off.

    Raises:
        InputError: the global batch is not a multiple of per-device batch × processes.
    """
    world = world_size or _world_size()
    per_step = preset.per_device_batch_size * world
    if preset.global_batch_size % per_step:
        raise InputError(
            f"global batch {preset.global_batch_size} is not a multiple of per-device batch "
            f"{preset.per_device_batch_size} × {world} process(es); change one of them"
        )
    accumulation = preset.global_batch_size // per_step
    cuda = torch.cuda.is_available()
    ds: str | dict[str, Any] | None = deepspeed
    if deepspeed == "preset":
        ds = preset.deepspeed
        if ds is not None and (not cuda or _uses_accelerate_deepspeed()):
            why = "no GPU" if not cuda else "accelerate launch configures DeepSpeed"
            logger.info(
                "preset %s: its DeepSpeed ZeRO-3 settings are not used (%s)", preset.name, why
            )
            ds = None
    if isinstance(ds, str | os.PathLike) and not Path(ds).is_file():
        raise InputError(
            f"DeepSpeed config {os.fspath(ds)} does not exist; give a JSON file, 'preset' or off"
        )
    if ds is not None:
        try:
            import deepspeed as _  # noqa: F401
        except ImportError as err:
            raise InputError(
                "DeepSpeed is requested but not installed; `pip install somprobe[deepspeed]` "
                "or run with deepspeed off (--deepspeed off)"
            ) from err
    bf16 = preset.bf16
    if bf16 and cuda and not torch.cuda.is_bf16_supported():
        logger.warning("this GPU has no bf16; training in fp32")
        bf16 = False
    try:
        return _training_arguments(preset, output_dir, accumulation, bf16, cuda, ds, progress)
    except ValueError as err:  # transformers' own checks (e.g. a bad scheduler argument)
        raise InputError(f"preset {preset.name!r}: invalid training settings: {err}") from None


def _training_arguments(
    preset: FinetunePreset,
    output_dir: str | os.PathLike[str],
    accumulation: int,
    bf16: bool,
    cuda: bool,
    ds: str | dict[str, Any] | None,
    progress: bool,
) -> TrainingArguments:
    return TrainingArguments(
        output_dir=os.fspath(output_dir),
        per_device_train_batch_size=preset.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=preset.learning_rate,
        lr_scheduler_type=preset.lr_scheduler,
        lr_scheduler_kwargs=dict(preset.lr_scheduler_kwargs),
        warmup_steps=preset.warmup,
        weight_decay=preset.weight_decay,
        num_train_epochs=preset.epochs,
        max_steps=preset.max_steps,
        max_grad_norm=preset.max_grad_norm,
        bf16=bf16,
        logging_steps=preset.logging_steps,
        save_strategy="steps",
        save_steps=preset.save_steps,
        save_total_limit=preset.save_total_limit,
        seed=preset.seed,
        data_seed=preset.seed,
        train_sampling_strategy=preset.order,
        dataloader_num_workers=preset.dataloader_workers,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=not cuda,
        deepspeed=ds,
        ddp_find_unused_parameters=False,
        **_checkpointing_kwargs(preset.gradient_checkpointing),
    )


class ResumableTrainer(Trainer):
    """``Trainer`` whose resume restores the weights of a LLaVA checkpoint.

    transformers 5 saves LLaVA checkpoints under the original hub key names
    (``language_model.model.layers...``) while the live model uses the new ones
    (``model.language_model.layers...``); ``Trainer`` loads a checkpoint's weights with a
    plain ``load_state_dict(strict=False)``, which matches no key, only warns, and resumes
    from the initial weights. Here the weights are read back with ``from_pretrained``
    (which converts the names) and copied in strictly. Adapters, FSDP and DeepSpeed
    checkpoints keep the Trainer's own loading.
    """

    def __init__(self, *args: Any, loss: str = "token", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_kind = loss
        if loss == "turn":  # the loss is a mean over turns: the Trainer averages micro-batches
            self.model_accepts_loss_kwargs = False

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        if self.loss_kind != "turn":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        loss = turn_weighted_loss(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target: Any = model if model is not None else self.model
        folder = Path(resume_from_checkpoint)
        plain = any(
            (folder / name).is_file()
            for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        )
        if not plain or self.is_fsdp_enabled or hasattr(target, "peft_config"):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        dtype = next(target.parameters()).dtype
        saved = type(target).from_pretrained(os.fspath(folder), dtype=dtype)
        target.load_state_dict(saved.state_dict(), strict=True)
        del saved


def _checkpointing_kwargs(enabled: bool) -> dict[str, Any]:
    """Gradient checkpointing (non-reentrant) under the name this transformers uses."""
    if not enabled:
        return {}
    params = inspect.signature(TrainingArguments).parameters
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in params
        else ("gradient_checkpointing")
    )
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def finetune(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    image_folder: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    *,
    preset: str | FinetunePreset = "toy",
    lora: LoraOptions | None = None,
    resume: bool | str = True,
    callbacks: Sequence[TrainerCallback] = (),
    deepspeed: str | dict[str, Any] | None = "preset",
    on_bad_record: OnBadRecord = "skip",
    system_prompt: str | None = None,
    save_dtype: str | torch.dtype | None = None,
    progress: bool = True,
    **overrides: Any,
) -> FinetuneResult:
    """Train ``model`` on LLaVA JSON ``data`` and save the result in ``output_dir``.

    Args:
        model: a LLaVA checkpoint folder (or a hub name in the local cache).
        data: LLaVA ``.json``/``.jsonl`` file(s).
        image_folder: the folder the records' ``image`` paths are relative to.
        output_dir: checkpoints, the final model + processor, ``finetune_summary.json``.
        preset: ``"toy"``, ``"som-llava-1.5"`` or a :class:`FinetunePreset`.
        lora: train LoRA adapters instead of full weights.
        resume: ``True`` continues from the last complete checkpoint in ``output_dir`` if
            any (see :func:`last_checkpoint`); a path resumes from that checkpoint;
            ``False`` starts afresh.
        callbacks: extra ``TrainerCallback`` objects (e.g. :class:`PeriodicEval`).
        deepspeed: see :func:`training_arguments`.
        on_bad_record: ``"skip"`` (count and report) or ``"error"``.
        system_prompt: see :func:`~somprobe.finetune.template.render_conversation`.
        save_dtype: dtype of the saved final weights (e.g. "float16"); default as trained.
        progress: show the progress bar.
        **overrides: any :class:`FinetunePreset` field (``max_steps``, ``learning_rate``,
            ``global_batch_size``, ``per_device_batch_size``, ``trainable``, ...).

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        InputError: a bad setting or a missing data file (before the model loads).
        WriteError: ``output_dir`` cannot be written (before the model loads).
        ModelLoadError: the model cannot be loaded.
        DataFormatError: malformed data, or no usable record.
    """
    spec = get_preset(preset, **overrides)
    if on_bad_record not in ("skip", "error"):
        raise InputError(f"on_bad_record must be 'skip' or 'error', got {on_bad_record!r}")
    if save_dtype is not None:
        resolve_dtype(save_dtype)  # an unknown name fails now, not after training
    _check_data_paths(data)
    if image_folder is not None and not Path(image_folder).is_dir():
        raise InputError(
            f"image folder {os.fspath(image_folder)} does not exist; give the folder the "
            "records' image paths are relative to"
        )
    if isinstance(resume, str | os.PathLike) and not Path(resume).is_dir():
        raise InputError(f"resume={os.fspath(resume)!r}: no checkpoint folder there")
    out = Path(output_dir)
    check_writable(out / SUMMARY_FILE)
    args = training_arguments(spec, out, deepspeed=deepspeed, progress=progress)
    # TrainingArguments come first so that ZeRO-3 can shard the weights while they load.
    net, processor = load_model(model, dtype=torch.float32)
    text_config = getattr(net.config, "text_config", net.config)
    dataset = LlavaSFTDataset(
        data,
        image_folder,
        processor,
        template=spec.template,
        system_prompt=system_prompt,
        image_aspect_ratio=spec.image_aspect_ratio,
        max_length=spec.max_length,
        max_position_embeddings=getattr(text_config, "max_position_embeddings", None),
        on_bad_record=on_bad_record,
    )
    if dataset.skipped.total:
        logger.warning("%s", dataset.skipped.summary())
    if lora is not None:
        set_trainable(net, "projector" if lora.train_projector else "all")
        net.requires_grad_(False)
        net = apply_lora(net, lora)
        if spec.gradient_checkpointing:
            net.enable_input_require_grads()
    else:
        set_trainable(net, spec.trainable)
    n_trainable, n_total = count_parameters(net)
    pause = os.environ.get(PAUSE_ENV)
    trainer = ResumableTrainer(
        model=net,
        args=args,
        train_dataset=dataset,
        data_collator=SFTCollator(pad_token_id=processor.tokenizer.pad_token_id),
        callbacks=[*callbacks, *([_PauseAfterSave(int(pause))] if pause else [])],
        loss=spec.loss,
    )
    checkpoint: str | None = None
    if isinstance(resume, str | os.PathLike):
        checkpoint = os.fspath(resume)
    elif resume:
        checkpoint = last_checkpoint(out, remove_torn=args.should_save)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    _save(trainer, processor, out, lora, save_dtype)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    steps_run = trainer.state.global_step - _step_of(checkpoint)
    result = FinetuneResult(
        output_dir=os.fspath(out),
        preset=spec.name,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        seconds=seconds,
        seconds_per_step=seconds / steps_run if steps_run > 0 else None,
        world_size=args.world_size,
        records=len(dataset),
        skipped=dataset.skipped.to_dict(),
        trainable_parameters=n_trainable,
        total_parameters=n_total,
        resumed_from=checkpoint,
        lora=lora is not None,
        hyperparameters=json.loads(spec.to_json()),
    )
    if trainer.is_world_process_zero():
        with atomic_write(out / SUMMARY_FILE) as fh:
            fh.write(result.to_json() + "\n")
        logger.info(
            "finetune done: %d steps in %.1f s, final loss %s; %d records used; %s",
            result.global_step,
            seconds,
            result.last_loss,
            result.records,
            dataset.skipped.summary(),
        )
    return result


def _check_data_paths(data: Any) -> None:
    """Every training file given by path exists (checked before a model loads)."""
    items = [data] if isinstance(data, str | os.PathLike) else data
    if not isinstance(items, Sequence):
        return  # an iterable of records: read when the dataset is built
    if not items:
        raise InputError("no training data given; pass LLaVA .json/.jsonl files")
    for item in items:
        if isinstance(item, str | os.PathLike) and not Path(item).is_file():
            raise InputError(f"training data {os.fspath(item)} does not exist; check the path")


def checkpoint_complete(folder: str | os.PathLike[str]) -> bool:
    """Whether a ``checkpoint-N`` folder was written to the end: the Trainer writes its
    ``trainer_state.json`` last, so a kill during a save leaves it missing or torn."""
    try:
        state = json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def last_checkpoint(output_dir: str | os.PathLike[str], *, remove_torn: bool = False) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (None when there is none).

    Newer checkpoints that a kill cut short are skipped, and removed when
    ``remove_torn`` (the main process does it; the resumed run writes them again).
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    for _, path in sorted(found, reverse=True):
        if checkpoint_complete(path):
            return os.fspath(path)
        logger.warning("%s was cut short (no readable trainer_state.json): not resumed from", path)
        if remove_torn:
            shutil.rmtree(path, ignore_errors=True)
    return None


class _PauseAfterSave(TrainerCallback):
    """Test hook (``SOMPROBE_FINETUNE_PAUSE_AFTER_SAVE=N``): once the checkpoint of step
    ``N`` is saved, stop and wait forever, so that a test can kill the process."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: TrainingArguments, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step >= self.step:
            print(f"paused after checkpoint-{state.global_step}", file=sys.stderr, flush=True)
            while True:
                time.sleep(60)


def _step_of(checkpoint: str | None) -> int:
    if not checkpoint:
        return 0
    state = Path(checkpoint) / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text()).get("global_step", 0))
    tail = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _save(
    trainer: Trainer,
    processor: Any,
    out: Path,
    lora: LoraOptions | None,
    save_dtype: str | torch.dtype | None,
) -> None:
    dtype = resolve_dtype(save_dtype) if save_dtype is not None else None
    deepspeed = trainer.is_deepspeed_enabled
    if lora is not None:
        trainer.model.save_pretrained(out / "adapter")  # type: ignore[union-attr,operator]
        if lora.merge and deepspeed:
            logger.warning(
                "LoRA under DeepSpeed: adapter saved in %s; merge it afterwards with "
                "`somprobe finetune merge-lora`",
                out / "adapter",
            )
        elif lora.merge and trainer.is_world_process_zero():
            merged = trainer.model.merge_and_unload()  # type: ignore[union-attr,operator]
            if isinstance(dtype, torch.dtype):
                merged.to(dtype)
            merged.save_pretrained(out)
    else:
        if isinstance(dtype, torch.dtype) and not deepspeed:
            trainer.model.to(dtype)  # type: ignore[union-attr,arg-type]
        trainer.save_model(os.fspath(out))
    if trainer.is_world_process_zero():
        processor.save_pretrained(out)


__all__ = [
    "LM_LINEAR_LAYERS",
    "PAUSE_ENV",
    "SUMMARY_FILE",
    "FinetuneResult",
    "LoraOptions",
    "ResumableTrainer",
    "apply_lora",
    "checkpoint_complete",
    "count_parameters",
    "finetune",
    "last_checkpoint",
    "merge_lora",
    "model_parts",
    "set_trainable",
    "training_arguments",
    "unused_vision_modules",
]

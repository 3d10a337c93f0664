"""Helpers shared by tests (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from PIL import Image

from somprobe.models import build_prompt, load_model, prepare_inputs


def sharpen(model: torch.nn.Module, factor: float = 6.0) -> None:
    """Scale query/key projections so attention is far from uniform (a stronger test)."""
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.k_proj.weight.mul_(factor)


def load_pair(path):  # type: ignore[no-untyped-def]
    """The same weights twice: SDPA (for the Recorder) and eager (the reference)."""
    sdpa, processor = load_model(path)
    eager, _ = load_model(path, attn_implementation="eager")
    sharpen(sdpa)
    sharpen(eager)
    return sdpa, eager, processor


def two_prompts(processor):  # type: ignore[no-untyped-def]
    """A left-padded batch of two prompts of different length."""
    images = [Image.new("RGB", (100, 60), (200, 30, 30)), Image.new("RGB", (40, 90), (0, 90, 200))]
    images[0].paste((255, 255, 0), (10, 10, 40, 40))
    prompts = [
        build_prompt(processor, "Hi."),
        build_prompt(processor, "List the tagged items in this picture one by one, please."),
    ]
    return images, prepare_inputs(processor, images, prompts)


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(name: str) -> ModuleType:
    """Import ``experiments/<name>.py`` as module ``name`` (registered in ``sys.modules``,
    where dataclasses look their module up), as running the script would: with its folder
    on ``sys.path``, where its shared ``_common`` module lives."""
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    assert spec and spec.loader
    job = importlib.util.module_from_spec(spec)
    sys.modules[name] = job
    spec.loader.exec_module(job)
    return job


def bad_job_run(name: str, tmp_path: Path, capsys: Any, extra: list[str], *more: str) -> str:
    """Run experiment ``name`` with bad arguments ``extra`` (``{tmp}`` is ``tmp_path``)
    into ``tmp_path/r`` and ``tmp_path/f``; check it exits with 2 before writing anything
    and return its one error line. ``tmp_path`` holds ``file.txt`` (a file where a folder
    is expected), ``empty/`` and a truncated ``bad.json``."""
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir(exist_ok=True)
    (tmp_path / "bad.json").write_text('{"images": [')
    args = ["--out", str(tmp_path / "r"), "--figures", str(tmp_path / "f"), "--no-progress"]
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert load_experiment(name).main([*args, *more, *extra]) == 2
    err = str(capsys.readouterr().err)
    assert err.startswith(f"{name}: error:"), err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "f").exists()
    return err


class Pieces:
    """A tokenizer stand-in: id i decodes to ``pieces[i]`` (to split text as we like)."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.vocab_size = len(pieces)

    def decode(self, ids: list[int], **kwargs: Any) -> str:
        return "".join(self.pieces[i] for i in ids)

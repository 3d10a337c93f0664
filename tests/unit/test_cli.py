"""The ``somprobe`` command as a user meets it: one-line errors, exit code 2, no traceback,
outputs checked before any work, readable help at 80 columns, and hostile inputs.

Commands run in this process through the same entry points the console script and
``python -m somprobe.<area>.cli`` use (``main()``), with ``sys.argv`` set, so the tests
see exactly what a user sees on stdout and stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from somprobe.data import make_record, write_records
from somprobe.tagging import tag_regions
from somprobe.tagging.io import save_tagset

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def somprobe(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``somprobe ARGS`` (or another module's ``main``) here; (exit code, out, err)."""

    def run(*args: object, main: Callable[[], None] | None = None) -> tuple[int, str, str]:
        if main is None:
            from somprobe.cli import main as main_
        else:
            main_ = main
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["somprobe", *map(str, args)])
        try:
            main_()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        else:
            code = 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def assert_one_line_error(code: int, err: str, match: str) -> None:
    """Exit code 2 and, on stderr, exactly one ``somprobe: error:`` line matching ``match``
    (the last line; log lines of a started run may come before it), no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    assert err.rstrip("\n").splitlines()[-1] == errors[0]
    assert errors[0].startswith("somprobe: error: "), err
    assert re.search(match, errors[0]), (match, errors[0])


# --------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small valid inputs of every command: images, a tagged folder, a LLaVA file."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    tagged = root / "tagged"
    (tagged / "images").mkdir(parents=True)
    (tagged / "tagsets").mkdir()
    for i in range(3):
        pixels = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"im{i}.png")
        masks = np.zeros((2, 40, 60), bool)
        masks[0, 2:20, 2:30] = True
        masks[1, 22:38, 30:58] = True
        from somprobe.tagging.regions.arrays import from_masks

        done = tag_regions(Image.fromarray(pixels), from_masks(masks, categories=["cat", "dog"]))
        done.image.save(tagged / "images" / f"im{i}.png")
        save_tagset(done.tagset, tagged / "tagsets" / f"im{i}.json")
    base = root / "base.json"
    write_records(
        [make_record(f"r{i}", None, [("List them.", "1. cat\n2. dog")]) for i in range(5)], base
    )
    blocker = root / "a-file"
    blocker.write_text("a regular file: nothing can be written under it\n")
    hostile = root / "hostile"
    for name, text in {
        "truncated.json": base.read_text()[:-20],
        "schema.json": '[{"id": "a"}]',
        "empty.json": "",
        "notutf8.json": "[\udcff]",
        "words.txt": "",
        "coco.json": '{"images": [',
    }.items():
        (hostile / name).parent.mkdir(exist_ok=True)
        (hostile / name).write_text(text, errors="surrogateescape")
    (hostile / "empty").mkdir()
    bad_tagged = hostile / "bad-tagged"
    (bad_tagged / "tagsets").mkdir(parents=True)
    (bad_tagged / "tagsets" / "k.json").write_text('{"trunc')
    (hostile / "no-tagsets" / "tagsets").mkdir(parents=True)
    (hostile / "corrupt-images").mkdir()
    (hostile / "corrupt-images" / "x.png").write_bytes(b"not a png")
    return {"images": images, "tagged": tagged, "base": base, "blocker": blocker, "H": hostile}


# --------------------------------------------------------------------------- unwritable outputs

# (command line, a file the command must not have written); BAD is a path under a regular
# file (unwritable even for root), OUT a writable folder, MISSING a path that does not exist:
# the write check must come before any input is even read.
UNWRITABLE: list[tuple[list[str], str | None]] = [
    (["data", "mix", "BAD/out.json", "--source", "a=BASE"], None),
    (["data", "mix", "OUT/out.json", "--source", "a=BASE", "--report", "BAD/r.csv"], "out.json"),
    (
        [
            "data",
            "mix",
            "OUT/out.json",
            "--source",
            "a=BASE",
            "--no-shuffle",
            "--report",
            "BAD/r.csv",
        ],
        "out.json",
    ),
    (["data", "survey", "BASE", "--csv", "BAD/s.csv"], None),
    (["data", "listing", "TAGGED", "BAD/l.json"], None),
    (["data", "qa", "TAGGED", "BAD/q.json"], None),
    (["data", "tag", "IMAGES", "BAD/som", "--superpixels", "slic"], None),
    (["data", "toy", "BAD/toy", "--train", "1", "--eval", "1"], None),
    (["finetune", "train", "MISSING", "BASE", "--output-dir", "BAD/run"], None),
    (["finetune", "merge-lora", "MISSING", "MISSING", "BAD/merged"], None),
    (["eval", "run", "MISSING", "MISSING", "--out", "BAD/results"], None),
    (["capture", "run", "MISSING", "BAD/store", "--toy", "MISSING"], None),
    (["models", "build-tiny", "BAD/tiny"], None),
]


def _fill(args: list[str], inputs: dict[str, Path], out: Path) -> list[str]:
    subs = {
        "H": str(inputs["H"]),
        "BAD": str(inputs["blocker"] / "sub"),
        "OUT": str(out),
        "MISSING": str(out / "missing"),
        "BASE": str(inputs["base"]),
        "TAGGED": str(inputs["tagged"]),
        "IMAGES": str(inputs["images"]),
    }
    return [
        re.sub(r"\b(H|BAD|OUT|MISSING|BASE|TAGGED|IMAGES)\b", lambda m: subs[m[1]], a) for a in args
    ]


@pytest.mark.parametrize(
    ("args", "not_written"),
    UNWRITABLE,
    ids=[f"{a[0]}-{a[1]}-{i}" for i, (a, _) in enumerate(UNWRITABLE)],
)
def test_unwritable_output_is_one_line_before_any_work(
    somprobe: Run, inputs: dict[str, Path], tmp_path: Path, args: list[str], not_written: str | None
) -> None:
    code, out, err = somprobe(*_fill(args, inputs, tmp_path))
    assert_one_line_error(code, err, r"cannot write .*a-file/sub")
    assert len(err.splitlines()) == 1, err  # nothing ran: no progress bar, no log line
    assert out == ""
    if not_written is not None:
        assert not (tmp_path / not_written).exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- entry points


def _module_mains() -> list[tuple[str, list[str]]]:
    return [
        ("somprobe.data.cli", ["mix", "BAD/m.json", "--source", "a=BASE"]),
        ("somprobe.finetune.cli", ["train", "MISSING", "BASE", "--output-dir", "BAD/run"]),
        ("somprobe.evals.cli", ["run", "MISSING", "MISSING", "--out", "BAD/r"]),
        ("somprobe.capture.cli", ["run", "MISSING", "BAD/store", "--toy", "MISSING"]),
        ("somprobe.data.toyworld.__main__", ["BAD/toy", "--train", "1", "--eval", "1"]),
    ]


@pytest.mark.parametrize(("module", "args"), _module_mains(), ids=lambda x: str(x))
def test_every_module_entry_point_gives_the_same_one_line_error(
    somprobe: Run, inputs: dict[str, Path], tmp_path: Path, module: str, args: list[str]
) -> None:
    """``python -m somprobe.finetune.cli`` (under ``accelerate launch``) and the other
    module entry points behave as the ``somprobe`` command does."""
    import importlib

    main = importlib.import_module(module).main
    code, out, err = somprobe(*_fill(args, inputs, tmp_path), main=main)
    assert_one_line_error(code, err, r"cannot write .*a-file/sub")
    assert out == ""


@pytest.mark.slow
def test_python_dash_m_entry_points_in_fresh_processes(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The real thing, as ``accelerate launch -m somprobe.finetune.cli`` runs it (three
    processes side by side: each spends most of its time importing torch)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module, *_fill(args, inputs, tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for module, args in _module_mains()[:3]
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert_one_line_error(proc.returncode, err, r"cannot write .*a-file/sub")
        assert out == ""


# --------------------------------------------------------------------------- help


def _all_commands() -> Iterator[tuple[list[str], Any]]:
    """(path, click command) of every command; typer may vendor its own click."""
    from somprobe.cli import app

    def walk(path: list[str], cmd: Any) -> Iterator[tuple[list[str], Any]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk([*path, name], sub)

    yield from walk([], typer.main.get_command(app))


def test_help_at_80_columns_shows_every_option_name_in_full() -> None:
    from somprobe.cli import app

    seen = 0
    for path, cmd in _all_commands():
        result = CliRunner().invoke(
            app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80
        )
        assert result.exit_code == 0, (path, result.output)
        text = result.output
        for param in cmd.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            for name in (*param.opts, *param.secondary_opts):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (path, name, text)
                seen += 1
        too_long = [line for line in text.splitlines() if len(line) > 80]
        assert not too_long, (path, too_long)
    assert seen > 60  # every command was walked (finetune train alone has 30 options)


# --------------------------------------------------------------------------- hostile inputs

# (command line, pattern of the one error line); OUT is an empty writable folder.
TAG = ["data", "tag", "IMAGES", "OUT/som", "--superpixels", "slic", "--no-progress"]
LISTING = ["data", "listing", "TAGGED", "OUT/l.json", "--no-progress"]
QA = ["data", "qa", "TAGGED", "OUT/q.json", "--no-progress"]
MIX = ["data", "mix", "OUT/m.json", "--no-progress"]
TOY = ["data", "toy", "OUT/toy", "--no-progress"]
TRAIN = ["finetune", "train", "MISSING", "BASE", "--output-dir", "OUT/run", "--no-progress"]
HOSTILE: list[tuple[list[str], str]] = [
    # data tag
    (["data", "tag", "IMAGES", "OUT/som", "--no-progress"], "exactly one region source"),
    ([*TAG[:4], "--superpixels", "slic", "--masks", "H/empty"], "exactly one region source"),
    (["data", "tag", "MISSING", *TAG[3:]], "image folder .* does not exist"),
    (["data", "tag", "H/empty", *TAG[3:]], "no images"),
    (["data", "tag", "H/corrupt-images", *TAG[3:]], "x.png cannot be read"),
    ([*TAG[:4], "--superpixels", "blob"], "superpixel method 'blob'"),
    ([*TAG, "--shard", "x"], "--shard 'x': write it as i/n"),
    ([*TAG, "--shard", "3/2"], "--shard '3/2': need n ≥ 1 and 0 ≤ i < n"),
    ([*TAG, "--shard", "0/0"], "--shard '0/0'"),
    ([*TAG, "--shard", "-1/2"], "--shard '-1/2'"),
    ([*TAG, "--short-side", "0"], "--short-side 0"),
    ([*TAG, "--short-side", "-640"], "--short-side -640"),
    ([*TAG, "--limit", "0"], "--limit 0"),
    ([*TAG, "--limit", "-1"], "--limit -1"),
    ([*TAG, "--label-mode", "roman"], "--label-mode 'roman'"),
    ([*TAG[:4], "--coco", "H/coco.json", "--no-progress"], "coco.json is not valid JSON"),
    ([*TAG[:4], "--coco", "MISSING", "--no-progress"], "no COCO annotation file"),
    ([*TAG[:4], "--masks", "MISSING", "--no-progress"], "mask folder .* does not exist"),
    ([*TAG[:4], "--masks", "H/empty", "--no-progress"], "no mask file for image"),
    # data listing / qa
    (["data", "listing", "MISSING", "OUT/l.json", "--no-progress"], "run `somprobe data tag`"),
    (["data", "listing", "H/no-tagsets", "OUT/l.json", "--no-progress"], "no TagSet files"),
    (
        ["data", "listing", "H/bad-tagged", "OUT/l.json", "--no-progress"],
        "k.json is not valid JSON",
    ),
    ([*LISTING, "--seed", "-1"], "--seed=-1"),
    ([*LISTING, "--shard", "1/1"], "--shard '1/1'"),
    ([*LISTING, "--describer", "nocolon"], "package.module:function"),
    ([*LISTING, "--describer", "no_such_module:f"], "cannot be loaded"),
    (["data", "listing", "TAGGED", "OUT", "--no-progress"], "it is a folder"),
    ([*QA, "--questions", "0"], "questions=0"),
    ([*QA, "--questions", "-2"], "questions=-2"),
    ([*QA, "--kinds", "colour"], "--kinds: unknown"),
    ([*QA, "--kinds", ","], "--kinds: unknown"),
    ([*QA, "--vocabulary", "MISSING"], "--vocabulary .* does not exist"),
    ([*QA, "--vocabulary", "H/words.txt"], "--vocabulary .* is empty"),
    ([*QA, "--seed", "-5"], "--seed=-5"),
    # data mix
    ([*MIX, "--source", "nameonly"], "write it as NAME=PATH"),
    ([*MIX, "--source", "=BASE"], "write it as NAME=PATH"),
    ([*MIX, "--source", "a=MISSING"], "no such file"),
    ([*MIX, "--source", "a=H/empty.json"], "expected a JSON array"),
    ([*MIX, "--source", "a=H/truncated.json"], "is not valid JSON"),
    ([*MIX, "--source", "a=H/schema.json"], "field 'conversations'"),
    ([*MIX, "--source", "a=H/notutf8.json"], "not UTF-8"),
    ([*MIX, "--source", "a=BASE:-1"], "size -1"),
    ([*MIX, "--source", "a=BASE:99"], "has 5 records but 99"),
    ([*MIX, "--source", "a=BASE", "--source", "a=BASE"], "names must be unique"),
    ([*MIX, "--source", "a=BASE", "--source", "b=BASE"], "ids must be unique"),
    ([*MIX, "--source", "a=BASE", "--seed", "-2"], "--seed=-2"),
    ([*MIX, "--source", "a=BASE", "--image-prefix", "noeq"], "write it as NAME=PREFIX"),
    ([*MIX, "--source", "a=BASE", "--image-prefix", "b=x/"], "unknown sources"),
    (["data", "mix", "OUT", "--source", "a=BASE"], "it is a folder"),
    # data survey / validate
    (["data", "survey", "MISSING"], "no such file"),
    (["data", "survey", "H/truncated.json"], "is not valid JSON"),
    (["data", "survey", "BASE", "--min-items", "-3"], "min_items=-3"),
    (["data", "survey", "BASE", "--min-items", "0"], "min_items=0"),
    (["data", "survey", "BASE", "--max-item-words", "0"], "max_item_words=0"),
    (["data", "validate", "H/schema.json"], "field 'conversations'"),
    (["data", "validate", "H/empty.json"], "expected a JSON array"),
    (["data", "validate", "BASE", "--image-root", "MISSING"], "image root .* is not a folder"),
    # data toy
    ([*TOY, "--train", "-1"], "train_scenes=-1"),
    ([*TOY, "--eval", "-1"], "eval_scenes=-1"),
    ([*TOY, "--train", "0", "--eval", "0"], "nothing to write"),
    ([*TOY, "--seed", "-1"], "seed=-1"),
    ([*TOY, "--image-size", "0"], "image_size=0"),
    ([*TOY, "--patch-size", "0"], "patch_size=0"),
    ([*TOY, "--min-objects", "0"], "min_objects"),
    ([*TOY, "--som-fraction", "2"], "som_fraction"),
    ([*TOY, "--listing-share", "-0.5"], "listing_share"),
    ([*TOY, "--train", "2", "--mix-records", "5"], "mix_records=5"),
    ([*TOY, "--train", "2", "--mix-records", "0"], "mix_records=0"),
    # finetune
    ([*TRAIN[:3], "MISSING", *TRAIN[4:]], "training data .* does not exist"),
    (TRAIN, "neither a local folder nor a checkpoint"),
    ([*TRAIN, "--max-steps", "0"], "max_steps=0"),
    ([*TRAIN, "--max-steps", "-3"], "max_steps=-3"),
    ([*TRAIN, "--epochs", "0"], "epochs=0"),
    ([*TRAIN, "--global-batch-size", "0"], "global_batch_size=0"),
    ([*TRAIN, "--global-batch-size", "4", "--per-device-batch-size", "3"], "not a multiple"),
    ([*TRAIN, "--learning-rate", "-1"], "learning_rate=-1"),
    ([*TRAIN, "--warmup", "-1"], "warmup=-1"),
    ([*TRAIN, "--save-steps", "0"], "save_steps=0"),
    ([*TRAIN, "--save-steps", "-1"], "save_steps=-1"),
    ([*TRAIN, "--logging-steps", "0"], "logging_steps=0"),
    ([*TRAIN, "--seed", "-1"], "seed=-1"),
    ([*TRAIN, "--max-length", "0"], "max_length=0"),
    ([*TRAIN, "--preset", "huge"], "unknown finetune preset"),
    ([*TRAIN, "--trainable", "vision"], "trainable='vision'"),
    ([*TRAIN, "--image-aspect-ratio", "wide"], "image_aspect_ratio='wide'"),
    ([*TRAIN, "--template", "llama"], "template='llama'"),
    ([*TRAIN, "--lora", "--lora-r", "0"], "LoRA r=0"),
    ([*TRAIN, "--deepspeed", "MISSING"], "DeepSpeed config .* does not exist"),
    ([*TRAIN, "--on-bad-record", "ignore"], "on_bad_record"),
    ([*TRAIN, "--save-dtype", "float7"], "unknown dtype 'float7'"),
    (
        ["finetune", "merge-lora", "MISSING", "MISSING", "OUT/merged"],
        "adapter folder .* does not exist",
    ),
    # eval, models
    (["eval", "run", "MISSING", "MISSING", "--limit", "0"], "--limit 0"),
    (["eval", "run", "MISSING", "MISSING", "--batch-size", "0"], "--batch-size 0"),
    (["eval", "run", "MISSING", "MISSING", "--max-new-tokens", "0"], "--max-new-tokens 0"),
    (["eval", "run", "MISSING", "MISSING"], "neither a local folder nor a checkpoint"),
    (["models", "build-tiny", "OUT/tiny", "--preset", "nope"], "unknown tiny LLaVA preset"),
]


def test_the_hostile_table_is_readable() -> None:
    assert len(HOSTILE) == len({" ".join(a) for a, _ in HOSTILE}) == 96, len(HOSTILE)


@pytest.mark.parametrize(
    ("args", "match"), HOSTILE, ids=[" ".join(a[:2] + a[-2:]) for a, _ in HOSTILE]
)
def test_hostile_input_is_one_line_and_exit_code_2(
    somprobe: Run, inputs: dict[str, Path], tmp_path: Path, args: list[str], match: str
) -> None:
    code, out, err = somprobe(*_fill(args, inputs, tmp_path))
    assert_one_line_error(code, err, match)
    assert len(err.splitlines()) == 1, err
    assert out == ""


def test_option_values_of_the_wrong_type_are_usage_errors(somprobe: Run, tmp_path: Path) -> None:
    """Values click itself cannot parse (not a number, a missing option) keep click's
    usage message: exit code 2, the option named, no traceback."""
    for args, named in (
        (["data", "toy", str(tmp_path), "--train", "abc"], "'--train'"),
        (["data", "mix", str(tmp_path / "m.json")], "'--source'"),
        (["data", "survey", "x.json", "--min-items", "two"], "'--min-items'"),
    ):
        code, out, err = somprobe(*args)
        assert code == 2 and "Traceback" not in err and named in err, err
        assert out == ""

"""The per-seed runner gives each comparison job the right models and skips finished jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from somprobe_testing import load_experiment


def _models(root: Path) -> list[str]:
    argv = []
    for arm in ("baseline", "som", "control"):
        (root / arm).mkdir(parents=True)
        (root / arm / "config.json").write_text("{}")
        argv += [f"--{arm}", str(root / arm)]
    return argv


def test_every_job_of_seed_effects_is_planned() -> None:
    assert tuple(load_experiment("seed_jobs").PLAN) == load_experiment("seed_effects").JOBS


def test_each_job_parses_its_command_with_the_models_in_their_roles(tmp_path: Path) -> None:
    runner = load_experiment("seed_jobs")
    args = runner.parser().parse_args([*_models(tmp_path), "--out", str(tmp_path / "r")])
    plan = dict(runner.commands(args))
    b, s, c = (tmp_path / a for a in ("baseline", "som", "control"))
    expected = {  # job → (base, base name, som, som name)
        "attn_alignment": (b, "baseline", s, "SoM"),
        "attn_alignment_som_vs_control": (c, "control", s, "SoM"),
        "attn_alignment_control": (b, "baseline", c, "control"),
        "untagged_attention": (b, "baseline", s, "SoM"),
        "untagged_attention_control": (b, "baseline", c, "control"),
        "listing_eval": (b, "baseline", s, "SoM"),
        "listing_eval_control": (b, "baseline", c, "control"),
    }
    for job, (base, base_name, som, som_name) in expected.items():
        script = Path(plan[job][1]).stem
        parsed = load_experiment(script).parse_args(plan[job][2:])
        assert (Path(parsed.base), parsed.base_name, Path(parsed.som), parsed.som_name) == (
            base, base_name, som, som_name), job  # fmt: skip
        assert parsed.out == tmp_path / "r" / job and parsed.threads == 1
    causal = load_experiment("causal_tags").parse_args(plan["causal_tags"][2:])
    assert causal.model == [f"baseline={b}", f"som={s}", f"control={c}"]


def test_finished_jobs_are_skipped_and_a_failure_names_its_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = load_experiment("seed_jobs")
    out = tmp_path / "r"
    (out / "listing_eval").mkdir(parents=True)
    (out / "listing_eval" / "comparison.csv").write_text("x\n")
    ran: list[str] = []

    def fake(argv: list[str], log: Path) -> int:
        ran.append(log.stem)
        return 3 if log.stem == "causal_tags" else 0

    args = runner.parser().parse_args([*_models(tmp_path), "--out", str(out)])
    with pytest.raises(runner.SomprobeError, match=r"causal_tags failed \(exit code 3\)"):
        runner.run(args, runner=fake)
    assert ran == [j for j in runner.PLAN if j != "listing_eval"]
    assert "listing_eval: done already, skipped" in capsys.readouterr().out


def test_a_missing_model_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = load_experiment("seed_jobs")
    argv = _models(tmp_path)
    (tmp_path / "som" / "config.json").unlink()
    assert runner.main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seed_jobs: error: --som") and "no model there" in err
    assert not (tmp_path / "r").exists()


def test_tables_copies_each_jobs_table_and_record_without_the_checkout_path(
    tmp_path: Path,
) -> None:
    runner = load_experiment("seed_jobs")
    out, tables = tmp_path / "r", tmp_path / "tables"
    checkout = f"{runner.HERE.parent}/"

    def fake(argv: list[str], log: Path) -> int:
        folder = out / log.stem
        folder.mkdir(parents=True)
        (folder / "comparison.csv").write_text(f"metric,diff\n{log.stem},0.1\n")
        record = "run.json" if log.stem.startswith("listing") else "summary.json"
        (folder / record).write_text(f'{{"model": "{checkout}models/toy-som"}}\n')
        (folder / "scores.csv.gz").write_text("big, not copied")
        return 0

    argv = [*_models(tmp_path), "--out", str(out), "--tables", str(tables)]
    assert runner.run(runner.parser().parse_args(argv), runner=fake) == 0
    for job in runner.PLAN:
        record = "run.json" if job.startswith("listing") else "summary.json"
        assert sorted(p.name for p in (tables / job).iterdir()) == sorted(
            ["comparison.csv", record]
        )
        assert (tables / job / "comparison.csv").read_text() == f"metric,diff\n{job},0.1\n"
        assert (tables / job / record).read_text() == '{"model": "models/toy-som"}\n'


def test_tables_refuses_a_job_without_its_run_record(tmp_path: Path) -> None:
    runner = load_experiment("seed_jobs")
    out = tmp_path / "r"
    for job in runner.PLAN:
        (out / job).mkdir(parents=True)
        (out / job / "comparison.csv").write_text("x\n")
    argv = [*_models(tmp_path), "--out", str(out), "--tables", str(tmp_path / "t")]
    with pytest.raises(runner.SomprobeError, match="run record"):
        runner.run(runner.parser().parse_args(argv), runner=lambda a, log: 0)
